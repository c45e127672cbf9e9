//! CVE-2024-21626: no host fd reaches the container (create/start, run,
//! exec, --preserve-fds), and a cwd of /proc/self/fd/N cannot reach the
//! host, even from a caller that leaks fds.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use runtime_tests::{path_str as s, read_pid_file, Output, TestEnv};
use serde_json::json;

use crate::common::{no_crash, push_mount, wait_bounded};
use crate::probe::{build_probe, fd_numbers, install_probe};

/// Spawns hpcc with `extra` as fds 3.. (inheritable), everything else
/// above closed: a caller that leaks fds, as containerd-shim once did.
fn hpcc_with_fds(env: &TestEnv, args: &[&str], extra: &[&fs::File]) -> Output {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let raws: Vec<i32> = extra.iter().map(|f| f.as_raw_fd()).collect();
    let out_path = env.path(&format!("fds-{}.out", rand_suffix()));
    let err_path = env.path(&format!("fds-{}.err", rand_suffix()));
    // Through a shell that records hpcc's exit code: another test's orphan
    // reaper may collect our direct child's status before we do.
    let code_path = env.path(&format!("fds-{}.code", rand_suffix()));
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg("\"$0\" \"$@\"; echo $? > \"$HPCC_CODE_FILE\"")
        .arg(&env.bin)
        .args(["--root", env.root_str()])
        .args(args)
        .env("HPCC_CODE_FILE", &code_path)
        .current_dir(&env.dir)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).expect("out"))
        .stderr(fs::File::create(&err_path).expect("err"));
    // SAFETY: only dup/fcntl/close between fork and exec, on fds we own.
    unsafe {
        cmd.pre_exec(move || {
            // First move them all high, then down to 3.., so that no source
            // is overwritten before it is copied.
            let mut high = Vec::new();
            for (i, raw) in raws.iter().enumerate() {
                let h = libc::fcntl(*raw, libc::F_DUPFD, 900 + i as i32);
                if h < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                high.push(h);
            }
            for (i, h) in high.iter().enumerate() {
                let want = 3 + i as i32;
                if libc::dup2(*h, want) < 0 || libc::fcntl(want, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for fd in (3 + high.len() as i32)..1024 {
                libc::close(fd);
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn hpcc");
    wait_bounded(&mut child).expect("hpcc did not finish");
    let code: i32 = fs::read_to_string(&code_path)
        .ok()
        .and_then(|c| c.trim().parse().ok())
        .expect("the wrapper recorded hpcc's exit code");
    let status = {
        use std::os::unix::process::ExitStatusExt;
        std::process::ExitStatus::from_raw(code << 8)
    };
    Output {
        args: args.iter().map(|a| a.to_string()).collect(),
        status,
        stdout: fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: fs::read_to_string(&err_path).unwrap_or_default(),
    }
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// CVE-2024-21626: no fd of the host (the caller's leaked ones, or hpcc's
/// own) reaches the container in create/start, run or exec; only 0, 1, 2
/// and the --preserve-fds ones.
#[test]
fn cve_2024_21626_no_host_fd_leaks_into_the_container() {
    let env = TestEnv::new("fdleak");
    let probe = build_probe(&env);
    let host_dir = fs::File::open(&env.dir).expect("open host dir");
    let host_file = fs::File::open(env.path("probe.c")).expect("open host file");
    let leaks = [&host_dir, &host_file];
    let check = |what: &str, out: &Output, want: &[u32]| {
        no_crash(out);
        out.ok();
        let fds = fd_numbers(&out.stdout);
        assert_eq!(fds, want, "{what}: fds inside the container\n{out}");
        // 0-2 are the caller's stdio (files in the test folder); above
        // that, only a preserved fd 3 may name a host path.
        for line in out
            .stdout
            .lines()
            .filter(|l| fd_numbers(l).iter().all(|n| *n > 3))
        {
            assert!(
                !line.contains(s(&env.dir)),
                "{what}: a host path is reachable: {line}"
            );
        }
    };
    // run
    let bundle = env.bundle(&["/probe", "fds"]);
    install_probe(&probe, &bundle, "probe", 0o755);
    let id = env.id("fd-run");
    check(
        "run",
        &hpcc_with_fds(&env, &["run", "--bundle", bundle.path(), &id], &leaks),
        &[0, 1, 2],
    );
    env.assert_clean(&id, None, &bundle);
    // run --preserve-fds 1 passes exactly fd 3 (the host dir: asked for).
    let id = env.id("fd-preserve");
    let out = hpcc_with_fds(
        &env,
        &["run", "--preserve-fds", "1", "--bundle", bundle.path(), &id],
        &leaks,
    );
    check("run --preserve-fds 1", &out, &[0, 1, 2, 3]);
    env.assert_clean(&id, None, &bundle);
    // create (leaky caller) then start (leaky caller): the probe writes
    // its list to a bound folder.
    let id = env.id("fd-create");
    let outdir = env.path("outdir");
    fs::create_dir(&outdir).expect("outdir");
    fs::set_permissions(&outdir, fs::Permissions::from_mode(0o777)).expect("chmod");
    let mut bundle2 = env.bundle(&["sh", "-c", "exec /probe fds > /out/fds.txt"]);
    install_probe(&probe, &bundle2, "probe", 0o755);
    push_mount(
        &mut bundle2,
        json!({"destination": "/out", "type": "bind", "source": outdir, "options": ["rbind"]}),
    );
    let pid_file = env.path("fd-create.pid");
    hpcc_with_fds(
        &env,
        &[
            "create",
            "--bundle",
            bundle2.path(),
            "--pid-file",
            s(&pid_file),
            &id,
        ],
        &leaks,
    )
    .ok();
    let init = env.live(read_pid_file(&pid_file));
    hpcc_with_fds(&env, &["start", &id], &leaks).ok();
    init.assert_gone("the probe");
    let listed = fs::read_to_string(outdir.join("fds.txt")).expect("the probe wrote its fds");
    assert_eq!(
        fd_numbers(&listed),
        [0, 1, 2],
        "create/start: fds inside\n{listed}"
    );
    env.hpcc(&["delete", &id]).ok();
    env.assert_clean(&id, Some(&init), &bundle2);
    // exec into a running container, from a leaky caller.
    let bundle3 = env.bundle(&["sleep", "1000"]);
    install_probe(&probe, &bundle3, "probe", 0o755);
    let id = env.id("fd-exec");
    let init = env.create_and_start(&bundle3, &id);
    check(
        "exec",
        &hpcc_with_fds(&env, &["exec", &id, "/probe", "fds"], &leaks),
        &[0, 1, 2],
    );
    check(
        "exec --preserve-fds 1",
        &hpcc_with_fds(
            &env,
            &["exec", "--preserve-fds", "1", &id, "/probe", "fds"],
            &leaks,
        ),
        &[0, 1, 2, 3],
    );
    // The init (sleep) itself holds only 0, 1, 2 as seen from the host.
    let mut init_fds: Vec<u32> = fs::read_dir(format!("/proc/{}/fd", init.pid))
        .expect("init fds")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    init_fds.sort();
    assert_eq!(init_fds, [0, 1, 2], "the container's init holds host fds");
    env.hpcc(&["delete", "--force", &id]).ok();
    env.assert_clean(&id, Some(&init), &bundle3);
}

/// CVE-2024-21626, the other half: process.cwd (and exec --cwd) of
/// /proc/self/fd/N is refused or lands inside the container, for every N
/// that hpcc or a leaky caller could have open.
#[test]
fn cve_2024_21626_cwd_through_proc_self_fd_cannot_reach_the_host() {
    let env = TestEnv::new("fdcwd");
    let probe = build_probe(&env);
    let host_dir = fs::File::open(&env.dir).expect("open host dir");
    let leaks = [&host_dir];
    let mut bundle = env.bundle(&["/probe", "cwd"]);
    install_probe(&probe, &bundle, "probe", 0o755);
    let judge = |what: String, out: &Output, refused_ok: &mut u32, inside: &mut u32| {
        no_crash(out);
        if out.success() {
            assert!(
                out.stdout.contains("cwd-inside") && !out.stdout.contains("cwd-OUTSIDE"),
                "{what}: the process's cwd is outside the container\n{out}"
            );
            *inside += 1;
        } else {
            assert!(
                out.stderr.contains("cwd") && !out.stdout.contains("cwd-OUTSIDE"),
                "{what}: refused without naming the cwd\n{out}"
            );
            *refused_ok += 1;
        }
    };
    let (mut refused_n, mut inside_n) = (0, 0);
    for n in 3..=20 {
        let cwd = format!("/proc/self/fd/{n}");
        bundle.edit(|c| c["process"]["cwd"] = json!(cwd));
        let id = env.id("fdcwd");
        let out = hpcc_with_fds(&env, &["run", "--bundle", bundle.path(), &id], &leaks);
        judge(
            format!("run cwd {cwd}"),
            &out,
            &mut refused_n,
            &mut inside_n,
        );
        env.assert_clean(&id, None, &bundle);
    }
    bundle.edit(|c| c["process"]["cwd"] = json!("/"));
    bundle.set_args(&["sleep", "1000"]);
    let id = env.id("fdcwd-exec");
    let init = env.create_and_start(&bundle, &id);
    for n in 3..=20 {
        let cwd = format!("/proc/self/fd/{n}");
        let out = hpcc_with_fds(&env, &["exec", "--cwd", &cwd, &id, "/probe", "cwd"], &leaks);
        judge(
            format!("exec --cwd {cwd}"),
            &out,
            &mut refused_n,
            &mut inside_n,
        );
        let out = hpcc_with_fds(
            &env,
            &[
                "exec",
                "--preserve-fds",
                "1",
                "--cwd",
                &cwd,
                &id,
                "/probe",
                "cwd",
            ],
            &leaks,
        );
        judge(
            format!("exec --preserve-fds 1 --cwd {cwd}"),
            &out,
            &mut refused_n,
            &mut inside_n,
        );
    }
    // Sanity: the probe does tell inside from outside.
    let out = env.hpcc(&["exec", "--cwd", "/tmp", &id, "/probe", "cwd"]);
    out.ok();
    assert!(out.stdout.contains("getcwd /tmp\ncwd-inside"), "{out}");
    say!("cwd /proc/self/fd/N: {refused_n} refused, {inside_n} ran inside the container");
    env.hpcc(&["delete", "--force", &id]).ok();
    env.assert_clean(&id, Some(&init), &bundle);
}
