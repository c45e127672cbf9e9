//! The digest-keyed cache: concurrent cold starts unpack once, a killed
//! unpack is never used, a warm start does not read the archive, and
//! `images`, `rmi` and `prune` manage it (an image in use stays).

use crate::common::*;
use crate::imagefix::{self, Compression, Entry, Image};
use runtime_tests::{ok, stderr};
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;

#[test]
fn concurrent_cold_starts_unpack_once() {
    let env = Env::new("concurrent");
    let tar = docker_tar(&env);
    // As many as the ranks of a big node, all at once.
    const RANKS: usize = 64;
    let children: Vec<_> = (0..RANKS)
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
    assert_eq!(unpacks, 1, "exactly one of {RANKS} processes unpacked");
    assert_eq!(env.images().len(), 1);
    assert!(env.tmp_entries().is_empty());
}

/// An image whose unpack can be caught half-way: 512 MiB of zeros
/// compresses to almost nothing but takes a while to write.
fn slow_to_unpack(env: &Env) -> std::path::PathBuf {
    let big = imagefix::layer(&[Entry::File("big".into(), vec![0u8; 512 << 20], 0o644)]);
    let p = env.dir.join("big.tar");
    imagefix::write_oci_archive(
        &p,
        &[&Image::new(vec![imagefix::base_layer(), big], "big:1")],
        Compression::Gzip,
    );
    p
}

#[test]
fn killed_unpack_is_never_used_and_is_cleaned_up() {
    let env = Env::new("killed");
    let p = slow_to_unpack(&env);
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

/// Ranks wait for an unpack in progress; when its process dies, one of
/// them must take the unpack over, not fail or wait forever.
#[test]
fn a_waiting_rank_takes_over_a_killed_unpack() {
    let env = Env::new("takeover");
    let p = slow_to_unpack(&env);
    let start = |debug: bool| {
        let mut args = vec![
            "run",
            p.to_str().unwrap(),
            "--",
            "/bin/sh",
            "-c",
            "stat -c %s /big",
        ];
        if debug {
            args.insert(0, "--debug");
        }
        env.cmd(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut first = start(false);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while env.tmp_entries().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(env.tmp_entries().len(), 1, "the unpack never began");
    // Stopped mid-unpack, so it cannot finish while the waiters line up.
    // SAFETY: kill(2) on our own child's pid, which it keeps until waited for.
    assert_eq!(unsafe { libc::kill(first.id() as i32, libc::SIGSTOP) }, 0);
    assert!(env.images().is_empty(), "the unpack ended before the stop");
    let waiters: Vec<_> = (0..3).map(|_| start(true)).collect();
    // Each waiter shows in /proc/locks as a blocked request ("->") on the
    // image's lock file.
    let lock_file = imagefix::list(&env.cache().join("locks"))
        .into_iter()
        .find(|n| n.ends_with(".lock"))
        .map(|n| env.cache().join("locks").join(n))
        .unwrap();
    let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&lock_file).unwrap());
    let blocked = || {
        std::fs::read_to_string("/proc/locks")
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("->") && l.contains(&format!(":{ino} ")))
            .count()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while blocked() < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(
        blocked(),
        3,
        "the waiters never blocked on the image's lock"
    );
    first.kill().unwrap();
    assert_eq!(first.wait().unwrap().signal(), Some(libc::SIGKILL));
    let mut unpacks = 0;
    for w in waiters {
        let o = w.wait_with_output().unwrap();
        assert_eq!(ok(&o), format!("{}\n", 512u64 << 20));
        unpacks += stderr(&o).matches("unpacked image").count();
    }
    assert_eq!(unpacks, 1, "exactly one waiting rank unpacked again");
    assert_eq!(env.images().len(), 1);
    assert!(
        env.tmp_entries().is_empty(),
        "the killed unpack's leftovers"
    );
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
        o.contains("removed 1 image(s), 1 unfinished unpack(s) or pull(s), 1 stale reference(s)"),
        "{o}"
    );
    assert!(env.images().is_empty() && env.tmp_entries().is_empty());
}

#[test]
fn an_image_in_use_is_not_removed() {
    let env = Env::new("inuse");
    let tar = docker_tar(&env);
    let t = tar.to_str().unwrap();
    let mut running = env
        .cmd(&["run", t, "--", "echo up; exec sleep 30"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The container is up (its root mounted) once it has said so.
    let mut line = String::new();
    let mut out = std::io::BufReader::new(running.stdout.take().unwrap());
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line, "up\n");
    let digest = env.images().pop().expect("the image was cached");
    fails_with(&env.run(&["rmi", &digest[..12]]), &["in use"]);
    assert!(ok(&env.run(&["prune", "--all"])).contains("removed 0 image(s)"));
    assert_eq!(env.images().len(), 1);
    running.kill().unwrap();
    running.wait().unwrap();
    assert!(ok(&env.run(&["rmi", &digest[..12]])).contains(&digest));
}
