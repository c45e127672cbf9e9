//! `hpcc run IMAGE [-- CMD]`: image formats, layer semantics, the cache,
//! hostile archives and the exec-in-place process model, observed from
//! inside the container and from the cache on disk. Runs as root and, via
//! integration/run-rootless.sh, as an unprivileged user.

mod imagefix;

use imagefix::{list, Compression, Entry, Image};
use runtime_tests::{is_root, ok, stderr, stdout};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

/// A scratch directory with its own image cache.
type Env = imagefix::scratch::Scratch;

#[track_caller]
fn fails_with(o: &Output, needles: &[&str]) {
    assert!(
        !o.status.success(),
        "expected failure, got success; stdout: {}",
        stdout(o)
    );
    let e = stderr(o);
    for n in needles {
        assert!(e.contains(n), "stderr lacks {n:?}: {e}");
    }
    assert_eq!(
        e.trim()
            .lines()
            .filter(|l| l.starts_with("hpcc: ") && !l.contains("warning"))
            .count(),
        1,
        "one error line: {e}"
    );
}

/// The test image: two layers that exercise whiteouts, an opaque
/// directory, a hard link, a symlink, modes, a setuid bit, a device node,
/// and an entrypoint + cmd + env + workdir.
fn test_image() -> Image {
    let lower = imagefix::layer(&[
        Entry::Dir("data", 0o755),
        Entry::File("data/old.txt".into(), b"old\n".to_vec(), 0o644),
        Entry::File("data/gone.txt".into(), b"gone\n".to_vec(), 0o644),
        Entry::Dir("opq", 0o755),
        Entry::File("opq/lower.txt".into(), b"lower\n".to_vec(), 0o644),
        Entry::Dir("devs", 0o755),
        Entry::CharDev("devs/null0", 1, 3),
        Entry::File("bin/suid".into(), b"#!/bin/sh\n".to_vec(), 0o4755),
        Entry::Dir("ro", 0o555),
        Entry::File("ro/f".into(), b"x\n".to_vec(), 0o444),
    ]);
    let upper = imagefix::layer(&[
        Entry::File("data/.wh.gone.txt".into(), Vec::new(), 0o644),
        Entry::Dir("opq", 0o755),
        Entry::File("opq/.wh..wh..opq".into(), Vec::new(), 0o644),
        Entry::File("opq/upper.txt".into(), b"upper\n".to_vec(), 0o644),
        Entry::HardLink("data/hard.txt".into(), "data/old.txt".into()),
        Entry::Symlink("data/link".into(), "old.txt".into()),
        Entry::Dir("work", 0o755),
    ]);
    Image::new(vec![imagefix::base_layer(), lower, upper], "demo:latest").with_config(
        serde_json::json!({
            "Env": ["PATH=/bin", "GREETING=hello"],
            "Entrypoint": ["/bin/sh", "-c"],
            "Cmd": ["echo default-cmd; pwd"],
            "WorkingDir": "/work"
        }),
    )
}

fn docker_tar(env: &Env) -> PathBuf {
    let p = env.dir.join("docker.tar");
    imagefix::write_docker_archive(&p, &[&test_image()]);
    p
}

#[test]
fn docker_archive_runs_entrypoint_and_cmd_in_workdir() {
    let env = Env::new("default");
    let tar = docker_tar(&env);
    let out = ok(&env.run(&["run", tar.to_str().unwrap()]));
    assert_eq!(out, "default-cmd\n/work\n");
}

#[test]
fn command_entrypoint_and_workdir_overrides() {
    let env = Env::new("override");
    let tar = docker_tar(&env);
    let t = tar.to_str().unwrap();
    assert_eq!(
        ok(&env.run(&["run", t, "--", "echo $GREETING; echo $PATH"])),
        "hello\n/bin\n"
    );
    assert_eq!(
        ok(&env.run(&["run", "--entrypoint", "/bin/echo", t, "--", "a", "b"])),
        "a b\n"
    );
    assert_eq!(
        ok(&env.run(&["run", "--entrypoint", "", t, "--", "/bin/echo", "x"])),
        "x\n"
    );
    assert_eq!(
        ok(&env.run(&["run", "-w", "/data", t, "--", "pwd"])),
        "/data\n"
    );
    // Explicit verb form works too.
    assert_eq!(
        ok(&env.run(&["run-image", "-q", t, "--", "echo direct"])),
        "direct\n"
    );
}

#[test]
fn layers_are_applied_like_docker() {
    let env = Env::new("layers");
    let tar = docker_tar(&env);
    let script = "ls /data; echo ---; ls /opq; echo ---; \
                  test $(stat -c %i /data/old.txt) = $(stat -c %i /data/hard.txt) && echo hardlinked; \
                  readlink /data/link; stat -c %a /ro /bin/suid; \
                  stat -c %F /devs/null0";
    let o = env.run(&["run", tar.to_str().unwrap(), "--", script]);
    let out = ok(&o);
    let expected_dev = if is_root() {
        "character special file"
    } else {
        "regular empty file"
    };
    assert_eq!(
        out,
        format!("hard.txt\nlink\nold.txt\n---\nupper.txt\n---\nhardlinked\nold.txt\n555\n4755\n{expected_dev}\n")
    );
    if !is_root() {
        assert!(
            stderr(&o).contains("device node"),
            "no placeholder warning: {}",
            stderr(&o)
        );
    }
}

#[test]
fn all_formats_give_the_same_tree_and_share_one_cache_entry() {
    let env = Env::new("formats");
    let img = test_image();
    let docker = env.dir.join("d.tar");
    let gz = env.dir.join("o-gz.tar");
    let zst = env.dir.join("o-zst.tar");
    let layout = env.dir.join("layout");
    imagefix::write_docker_archive(&docker, &[&img]);
    imagefix::write_oci_archive(&gz, &[&img], Compression::Gzip);
    imagefix::write_oci_archive(&zst, &[&img], Compression::Zstd);
    std::fs::create_dir_all(&layout).unwrap();
    imagefix::write_oci_layout(&layout, &[&img], Compression::Gzip);
    let script = "ls -lnR /data /opq /ro /bin | sed 's/  */ /g'";
    let trees: Vec<String> = [&docker, &gz, &zst, &layout]
        .iter()
        .map(|p| ok(&env.run(&["run", p.to_str().unwrap(), "--", script])))
        .collect();
    assert!(trees[0].contains("old.txt"));
    for t in &trees[1..] {
        assert_eq!(t, &trees[0]);
    }
    assert_eq!(
        env.images().len(),
        1,
        "one digest-keyed entry for one image"
    );
}

#[test]
fn exit_codes_signals_and_exec_in_place() {
    let env = Env::new("inplace");
    let tar = docker_tar(&env);
    let t = tar.to_str().unwrap();
    assert_eq!(env.run(&["run", t, "--", "exit 7"]).status.code(), Some(7));
    // The program is the process we started: same PID.
    let child = env
        .cmd(&["run", t, "--", "echo $$"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert_eq!(stdout(&out).trim(), pid.to_string());
    // Signals reach it directly: SIGTERM kills a program without a handler.
    let mut child = env.cmd(&["run", t, "--", "exec sleep 30"]).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    // SAFETY: kill with a valid pid and signal.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let st = child.wait().unwrap();
    assert_eq!(st.signal(), Some(libc::SIGTERM));
}

#[test]
fn pid_namespace_on_request() {
    let env = Env::new("pidns");
    let tar = docker_tar(&env);
    let t = tar.to_str().unwrap();
    // PID 1 is hpcc's minimal init; the program comes next.
    let o = env.run(&["run", "--pid", t, "--", "echo $$; exit 3"]);
    assert_eq!(stdout(&o), "2\n");
    assert_eq!(o.status.code(), Some(3));
    // SIGTERM to hpcc reaches the program through the init (a program that
    // was PID 1 itself would ignore it), and the status says so.
    let mut child = env
        .cmd(&["run", "--pid", t, "--", "exec sleep 30"])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    // SAFETY: kill with a valid pid and signal.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(128 + libc::SIGTERM));
}

#[test]
fn root_is_read_only_and_writable_tmpfs_is_thrown_away() {
    let env = Env::new("rw");
    let tar = docker_tar(&env);
    let t = tar.to_str().unwrap();
    let o = env.run(&["run", t, "--", "touch /newfile"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("Read-only"), "{}", stderr(&o));
    // /tmp is the host's (MPI session directories live there).
    let scratch = env.dir.join("scratch");
    let script = format!("touch {} && echo tmp-ok", scratch.display());
    assert_eq!(ok(&env.run(&["run", t, "--", &script])), "tmp-ok\n");
    assert!(scratch.exists(), "the write reached the host's /tmp");
    assert_eq!(
        ok(&env.run(&[
            "run",
            "--writable-tmpfs",
            t,
            "--",
            "touch /newfile /data/new && ls /newfile"
        ])),
        "/newfile\n"
    );
    assert_eq!(
        ok(&env.run(&["run", t, "--", "ls /newfile 2>/dev/null || echo absent"])),
        "absent\n"
    );
    let dirs = env.images();
    let rootfs = env.cache().join("images").join(&dirs[0]).join("rootfs");
    assert!(rootfs.join("data/old.txt").exists());
    assert!(!rootfs.join("newfile").exists() && !rootfs.join("data/new").exists());
    // Mount points for /proc, /dev, /tmp were made in the overlay, not the cache.
    assert!(!rootfs.join("proc").exists() && !rootfs.join("tmp").exists());
}

#[test]
fn archive_with_several_images_needs_a_reference() {
    let env = Env::new("refs");
    let a = Image::new(vec![imagefix::base_layer()], "app:one")
        .with_config(serde_json::json!({"Cmd": ["/bin/echo", "one"]}));
    let b = Image::new(vec![imagefix::base_layer()], "app:two")
        .with_config(serde_json::json!({"Cmd": ["/bin/echo", "two"]}));
    for (i, write) in [true, false].iter().enumerate() {
        let p = env.dir.join(format!("multi{i}.tar"));
        if *write {
            imagefix::write_docker_archive(&p, &[&a, &b]);
        } else {
            imagefix::write_oci_archive(&p, &[&a, &b], Compression::Gzip);
        }
        let ps = p.to_str().unwrap();
        fails_with(&env.run(&["run", ps]), &["app:one", "app:two", "@REF"]);
        assert_eq!(ok(&env.run(&["run", &format!("{ps}@app:two")])), "two\n");
        assert_eq!(ok(&env.run(&["run", &format!("{ps}:one")])), "one\n");
        fails_with(
            &env.run(&["run", &format!("{ps}@nope"), "--", "true"]),
            &["nope", "app:one", "app:two"],
        );
    }
}

#[test]
fn tampered_blob_is_refused_and_leaves_no_entry() {
    let env = Env::new("tamper");
    let p = env.dir.join("o.tar");
    imagefix::write_oci_archive(&p, &[&test_image()], Compression::Gzip);
    // Flip one byte of the last layer blob's data (its gzip trailer region).
    let data = std::fs::read(&p).unwrap();
    let mut archive = tar::Archive::new(&data[..]);
    // The largest blob is the busybox layer.
    let mut target: Option<(u64, usize)> = None;
    for e in archive.entries().unwrap() {
        let e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        if name.starts_with("blobs/") && target.is_none_or(|(size, _)| e.size() > size) {
            target = Some((e.size(), (e.raw_file_position() + e.size() / 2) as usize));
        }
    }
    let target = target.map(|(_, at)| at);
    let mut data = data;
    let at = target.expect("a layer blob");
    data[at] ^= 0xff;
    std::fs::write(&p, &data).unwrap();
    let o = env.run(&["run", p.to_str().unwrap(), "--", "true"]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("digest mismatch") || e.contains("layer"), "{e}");
    assert!(
        env.images().is_empty(),
        "no cache entry for a refused image"
    );
    assert!(env.tmp_entries().is_empty(), "no half-made unpack left");
}

#[test]
fn hostile_layers_write_nothing_outside_the_cache() {
    let env = Env::new("hostile");
    let outside = env.dir.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let outside_s = outside.to_str().unwrap().to_string();
    // 1. A name that climbs: refused.
    let climb = imagefix::layer(&[Entry::RawFile(b"../escaped".to_vec(), b"x".to_vec())]);
    let p = env.dir.join("climb.tar");
    imagefix::write_docker_archive(
        &p,
        &[&Image::new(vec![imagefix::base_layer(), climb], "h:1")],
    );
    fails_with(
        &env.run(&["run", p.to_str().unwrap(), "--", "true"]),
        &["climbs out"],
    );
    assert!(!env.dir.join("escaped").exists() && !env.cache().join("escaped").exists());
    assert!(env.images().is_empty() && env.tmp_entries().is_empty());
    // 2. An absolute name, a symlink to a host directory followed by a write
    //    through it (across layers), and a hard link to a host file: all
    //    confined to the rootfs.
    let l1 = imagefix::layer(&[
        Entry::RawFile(
            format!("{outside_s}/abs.txt").into_bytes(),
            b"abs\n".to_vec(),
        ),
        Entry::Symlink("esc".into(), outside_s.clone()),
        Entry::Symlink("up".into(), "../../../../../../..".into()),
    ]);
    let l2 = imagefix::layer(&[
        Entry::File("esc/pwned".into(), b"p\n".to_vec(), 0o644),
        Entry::File("up/tmp/pwned2".into(), b"p\n".to_vec(), 0o644),
        Entry::RawHardLink(b"etc/hl".to_vec(), b"/etc/passwd".to_vec()),
    ]);
    let p = env.dir.join("confined.tar");
    imagefix::write_docker_archive(
        &p,
        &[&Image::new(vec![imagefix::base_layer(), l1, l2], "h:2")],
    );
    ok(&env.run(&["run", p.to_str().unwrap(), "--", "/bin/true"]));
    // The writes landed inside the cached rootfs (the container's /tmp is a
    // tmpfs, so look from the host side of the cache).
    let rootfs = env
        .cache()
        .join("images")
        .join(&env.images()[0])
        .join("rootfs");
    let inside = |p: &str| {
        std::fs::read_to_string(rootfs.join(p.trim_start_matches('/'))).unwrap_or_default()
    };
    assert_eq!(inside(&format!("{outside_s}/abs.txt")), "abs\n");
    assert_eq!(inside(&format!("{outside_s}/pwned")), "p\n");
    assert_eq!(inside("tmp/pwned2"), "p\n");
    assert_eq!(
        inside("etc/hl"),
        "root:x:0:0:root:/root:/bin/sh\n",
        "the hard link points at the image's file"
    );
    assert!(
        list(&outside).is_empty(),
        "nothing written to the host directory: {:?}",
        list(&outside)
    );
    assert!(!Path::new("/tmp/pwned2").exists());
    // 3. A whiteout that climbs: refused.
    let wh = imagefix::layer(&[Entry::RawFile(b"bin/.wh...".to_vec(), Vec::new())]);
    let p = env.dir.join("whiteout.tar");
    imagefix::write_docker_archive(&p, &[&Image::new(vec![imagefix::base_layer(), wh], "h:3")]);
    fails_with(
        &env.run(&["run", p.to_str().unwrap(), "--", "true"]),
        &["whiteout"],
    );
}

#[test]
fn concurrent_cold_starts_unpack_once() {
    let env = Env::new("concurrent");
    let tar = docker_tar(&env);
    let children: Vec<_> = (0..8)
        .map(|_| {
            env.cmd(&[
                "--debug",
                "run",
                tar.to_str().unwrap(),
                "--",
                "cat /data/old.txt",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    let mut unpacks = 0;
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert_eq!(ok(&o), "old\n");
        unpacks += stderr(&o).matches("unpacked image").count();
    }
    assert_eq!(unpacks, 1, "exactly one of 8 processes unpacked");
    assert_eq!(env.images().len(), 1);
    assert!(env.tmp_entries().is_empty());
}

#[test]
fn killed_unpack_is_never_used_and_is_cleaned_up() {
    let env = Env::new("killed");
    // 512 MiB of zeros compresses to almost nothing but takes a while to write.
    let big = imagefix::layer(&[Entry::File("big".into(), vec![0u8; 512 << 20], 0o644)]);
    let p = env.dir.join("big.tar");
    imagefix::write_oci_archive(
        &p,
        &[&Image::new(vec![imagefix::base_layer(), big], "big:1")],
        Compression::Gzip,
    );
    let mut child = env
        .cmd(&["run", p.to_str().unwrap(), "--", "true"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the unpack has begun, then kill it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while env.tmp_entries().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    std::thread::sleep(std::time::Duration::from_millis(50));
    child.kill().unwrap();
    let st = child.wait().unwrap();
    assert_eq!(
        st.signal(),
        Some(libc::SIGKILL),
        "the unpack ended before the kill; the test proves nothing"
    );
    assert!(
        env.images().is_empty(),
        "a killed unpack must not appear as an image"
    );
    assert_eq!(env.tmp_entries().len(), 1, "the killed unpack's leftovers");
    assert_eq!(
        ok(&env.run(&[
            "run",
            "-q",
            p.to_str().unwrap(),
            "--",
            "/bin/sh",
            "-c",
            "stat -c %s /big"
        ])),
        format!("{}\n", 512u64 << 20)
    );
    assert!(
        env.tmp_entries().is_empty(),
        "the next run cleaned the leftovers"
    );
    assert_eq!(env.images().len(), 1);
}

#[test]
fn warm_start_does_not_read_the_archive() {
    let env = Env::new("warm");
    let tar = docker_tar(&env);
    let t = tar.to_str().unwrap();
    assert_eq!(
        ok(&env.run(&["run", t, "--", "cat /data/old.txt"])),
        "old\n"
    );
    // Overwrite the archive in place with zeros, keeping inode, size and
    // mtime: a run that read it would fail.
    let meta = std::fs::metadata(&tar).unwrap();
    let mtime = meta.modified().unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&tar)
        .unwrap()
        .write_all_at_zero(meta.len());
    std::fs::File::options()
        .write(true)
        .open(&tar)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    assert_eq!(
        ok(&env.run(&["run", t, "--", "cat /data/old.txt"])),
        "old\n"
    );
    // A changed mtime is a different file: now it must be read, and fails.
    std::fs::File::options()
        .write(true)
        .open(&tar)
        .unwrap()
        .set_modified(mtime + std::time::Duration::from_secs(5))
        .unwrap();
    fails_with(
        &env.run(&["run", t, "--", "true"]),
        &["not an image archive"],
    );
}

trait ZeroFill {
    fn write_all_at_zero(&self, len: u64);
}

impl ZeroFill for std::fs::File {
    fn write_all_at_zero(&self, len: u64) {
        use std::os::unix::fs::FileExt;
        self.write_all_at(&vec![0u8; len as usize], 0).unwrap();
    }
}

#[test]
fn images_rmi_and_prune_manage_the_cache() {
    let env = Env::new("cache");
    let tar = docker_tar(&env);
    let t = tar.to_str().unwrap();
    ok(&env.run(&["run", t, "--", "true"]));
    let listing = ok(&env.run(&["images"]));
    let digest = env.images().pop().unwrap();
    assert!(
        listing.contains(&digest[..12]) && listing.contains("demo:latest"),
        "{listing}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&env.run(&["images", "--format", "json"]))).unwrap();
    assert_eq!(json[0]["digest"], format!("sha256:{digest}"));
    // rmi by image file, then run again (re-unpacks), then rmi by prefix.
    assert!(ok(&env.run(&["rmi", t])).contains(&digest));
    assert!(env.images().is_empty());
    ok(&env.run(&["run", t, "--", "true"]));
    assert!(ok(&env.run(&["rmi", &digest[..10]])).contains(&digest));
    assert!(env.images().is_empty());
    fails_with(&env.run(&["rmi", "0000000000"]), &["no cached image"]);
    // prune: an image whose archive is gone goes; a leftover unpack goes.
    ok(&env.run(&["run", t, "--", "true"]));
    std::fs::create_dir_all(
        env.cache()
            .join("tmp")
            .join(format!("{digest}.999999.1/rootfs")),
    )
    .unwrap();
    std::fs::remove_file(&tar).unwrap();
    let o = ok(&env.run(&["prune"]));
    assert!(
        o.contains("removed 1 image(s), 1 unfinished unpack(s), 1 stale reference(s)"),
        "{o}"
    );
    assert!(env.images().is_empty() && env.tmp_entries().is_empty());
}

#[test]
fn non_images_get_one_clear_error() {
    let env = Env::new("notimage");
    let txt = env.dir.join("notes.txt");
    std::fs::write(&txt, "hello").unwrap();
    fails_with(
        &env.run(&["run", txt.to_str().unwrap(), "--", "true"]),
        &["notes.txt", "not an image archive"],
    );
    let plain = env.dir.join("plain.tar");
    {
        let mut b = tar::Builder::new(std::fs::File::create(&plain).unwrap());
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        b.append_data(&mut h, "x", &b"x"[..]).unwrap();
        b.finish().unwrap();
    }
    fails_with(
        &env.run(&["run", plain.to_str().unwrap(), "--", "true"]),
        &["plain.tar", "no manifest.json or index.json"],
    );
    fails_with(
        &env.run(&["run", "/no/such/image.tar", "--", "true"]),
        &["/no/such/image.tar"],
    );
}

#[test]
fn nothing_is_left_mounted_or_running() {
    let env = Env::new("leftovers");
    let tar = docker_tar(&env);
    ok(&env.run(&["run", tar.to_str().unwrap(), "--", "true"]));
    ok(&env.run(&[
        "run",
        "--pid",
        tar.to_str().unwrap(),
        "--",
        "sleep 0.1 & true",
    ]));
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mountinfo.contains(env.cache().to_str().unwrap()),
        "a mount leaked to the host"
    );
    assert!(
        list(&env.cache().join("mnt")).is_empty(),
        "the overlay scratch stays empty on the host"
    );
}

#[test]
fn an_oci_layer_must_match_the_configs_diff_id() {
    // A forged image: the manifest's blob digests are right, but the config
    // (the cache key) claims other layer contents. Accepting it would let
    // it take the cache entry of the image whose config it copied.
    let env = Env::new("forged");
    let mut img = Image::new(vec![imagefix::base_layer()], "forged:1");
    img.claimed_diff_ids = Some(vec![format!("sha256:{}", "0".repeat(64))]);
    let p = env.dir.join("forged.tar");
    imagefix::write_oci_archive(&p, &[&img], Compression::Gzip);
    fails_with(
        &env.run(&["run", p.to_str().unwrap(), "--", "/bin/true"]),
        &["digest mismatch"],
    );
    assert!(env.images().is_empty() && env.tmp_entries().is_empty());
}

#[test]
fn an_image_passwd_symlink_cannot_read_host_files() {
    let env = Env::new("passwd-link");
    let l = imagefix::layer(&[Entry::Symlink("etc/group".into(), "/etc/os-release".into())]);
    let base = imagefix::layer(&[
        Entry::Dir("bin", 0o755),
        Entry::File("bin/busybox".into(), imagefix::busybox(), 0o755),
        Entry::Symlink("bin/cat".into(), "busybox".into()),
        Entry::Dir("etc", 0o755),
        Entry::Symlink("etc/passwd".into(), "/etc/os-release".into()),
    ]);
    let p = env.dir.join("link.tar");
    imagefix::write_docker_archive(&p, &[&Image::new(vec![base, l], "link:1")]);
    let out = ok(&env.run(&[
        "run",
        p.to_str().unwrap(),
        "--",
        "/bin/cat",
        "/etc/passwd",
        "/etc/group",
    ]));
    assert!(
        !out.contains("PRETTY_NAME") && !out.contains("ID="),
        "host file leaked: {out}"
    );
}

#[test]
fn docker_archives_with_linked_layers_load() {
    // docker save stores a layer two images share once and symlinks the
    // second path to it.
    let env = Env::new("linked");
    let img = test_image();
    let p = env.dir.join("plain.tar");
    imagefix::write_docker_archive(&p, &[&img]);
    // Rebuild the archive with the first layer moved and linked back.
    let data = std::fs::read(&p).unwrap();
    let mut out = tar::Builder::new(std::fs::File::create(env.dir.join("linked.tar")).unwrap());
    for e in tar::Archive::new(&data[..]).entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut body).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        if name == "img0/l0/layer.tar" {
            h.set_size(body.len() as u64);
            out.append_data(&mut h, "shared/layer.tar", &body[..])
                .unwrap();
            let mut l = tar::Header::new_gnu();
            l.set_entry_type(tar::EntryType::Symlink);
            l.set_size(0);
            out.append_link(&mut l, &name, "../../shared/layer.tar")
                .unwrap();
        } else {
            h.set_size(body.len() as u64);
            out.append_data(&mut h, &name, &body[..]).unwrap();
        }
    }
    out.finish().unwrap();
    drop(out);
    let linked = env.dir.join("linked.tar");
    assert_eq!(
        ok(&env.run(&["run", linked.to_str().unwrap(), "--", "cat /data/old.txt"])),
        "old\n"
    );
}

#[test]
fn root_containers_cannot_write_kernel_settings() {
    let env = Env::new("rootsys");
    let tar = docker_tar(&env);
    let o = env.run(&[
        "run",
        tar.to_str().unwrap(),
        "--",
        "echo x > /proc/sys/kernel/domainname && echo wrote",
    ]);
    assert!(
        !stdout(&o).contains("wrote"),
        "a container changed the host's domainname"
    );
    if is_root() {
        assert!(stderr(&o).contains("Read-only"), "{}", stderr(&o));
    }
}

#[test]
fn an_image_in_use_is_not_removed() {
    let env = Env::new("inuse");
    let tar = docker_tar(&env);
    let t = tar.to_str().unwrap();
    let mut running = env.cmd(&["run", t, "--", "exec sleep 30"]).spawn().unwrap();
    // Wait until the container is up (its overlay mounted).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while env.images().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let digest = env.images().pop().expect("the image was cached");
    fails_with(&env.run(&["rmi", &digest[..12]]), &["in use"]);
    assert!(ok(&env.run(&["prune", "--all"])).contains("removed 0 image(s)"));
    assert_eq!(env.images().len(), 1);
    running.kill().unwrap();
    running.wait().unwrap();
    assert!(ok(&env.run(&["rmi", &digest[..12]])).contains(&digest));
}
