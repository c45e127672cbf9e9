//! Tars that podman itself saved (docker-archive and oci-archive) unpack to
//! the same tree that umoci produces, and run. Needs podman and umoci (CI
//! installs both); set HPCC_REQUIRE_CLIENTS=1 to make their absence fail.

mod imagefix;

use runtime_tests::TempTree as Dir;
use runtime_tests::{have, is_root};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// True when the tools are here; otherwise says why the test cannot run,
/// and fails when CI asked for the clients.
fn clients_present() -> bool {
    let missing: Vec<&str> = ["podman", "umoci"]
        .into_iter()
        .filter(|t| !have(t))
        .collect();
    if missing.is_empty() {
        return true;
    }
    let msg = format!(
        "podman_images: {} not installed (apt-get install podman umoci)",
        missing.join(" and ")
    );
    runtime_tests::missing(&msg);
    false
}

#[track_caller]
fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One line per path: type, permission bits, size, link target, content
/// hash, link count and mtime; ownership too when root unpacked it.
fn tree(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

fn walk(root: &Path, p: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(p).unwrap().flatten() {
        let path = e.path();
        let m = std::fs::symlink_metadata(&path).unwrap();
        let rel = path.strip_prefix(root).unwrap().display().to_string();
        let ft = m.file_type();
        let (kind, extra) = if ft.is_dir() {
            ("d", String::new())
        } else if ft.is_symlink() {
            (
                "l",
                std::fs::read_link(&path).unwrap().display().to_string(),
            )
        } else {
            let data = std::fs::read(&path).unwrap();
            ("f", imagefix::sha256_hex(&data))
        };
        let owner = if is_root() {
            format!(" {}:{}", m.uid(), m.gid())
        } else {
            String::new()
        };
        let mtime = if ft.is_dir() { 0 } else { m.mtime() };
        out.push(format!(
            "{rel} {kind} {:o} {} {extra} n{} t{mtime}{owner}",
            m.permissions().mode() & 0o7777,
            if ft.is_file() { m.len() } else { 0 },
            if ft.is_dir() { 0 } else { m.nlink() }
        ));
        if ft.is_dir() {
            walk(root, &path, out);
        }
    }
}

#[test]
fn podman_saved_tars_match_umoci_and_run() {
    if !clients_present() {
        return;
    }
    let dir = Dir(std::env::temp_dir().join(format!("hpcc-podman-{}", std::process::id())));
    let d = &dir.0;
    let _ = std::fs::remove_dir_all(d);
    // A small tree with the cases that differ between unpackers.
    let root = d.join("root");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("data/sub")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    std::fs::write(root.join("data/a"), "hi\n").unwrap();
    std::fs::hard_link(root.join("data/a"), root.join("data/b")).unwrap();
    std::os::unix::fs::symlink("../a", root.join("data/sub/c")).unwrap();
    std::fs::set_permissions(root.join("data/a"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    std::fs::set_permissions(
        root.join("data/sub"),
        std::fs::Permissions::from_mode(0o555),
    )
    .unwrap();
    run(Command::new("tar")
        .arg("-C")
        .arg(&root)
        .args(["-cf"])
        .arg(d.join("rootfs.tar"))
        .arg("."));
    std::fs::write(
        d.join("containers.conf"),
        "[containers]\nnetns = \"none\"\n[engine]\nevents_logger = \"file\"\ncgroup_manager = \"cgroupfs\"\n",
    )
    .unwrap();
    let podman = || {
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", d.join("containers.conf"))
            .arg("--root")
            .arg(d.join("storage"))
            .arg("--runroot")
            .arg(d.join("runroot"))
            .args(["--storage-driver", "vfs"]);
        c
    };
    run(podman()
        .arg("import")
        .arg(d.join("rootfs.tar"))
        .arg("hpcc-podman:1"));
    let docker_tar = d.join("docker.tar");
    let oci_tar = d.join("oci.tar");
    run(podman()
        .args(["save", "--format", "docker-archive", "-o"])
        .arg(&docker_tar)
        .arg("hpcc-podman:1"));
    run(podman()
        .args(["save", "--format", "oci-archive", "-o"])
        .arg(&oci_tar)
        .arg("hpcc-podman:1"));
    // umoci's tree, from the OCI archive unpacked as a layout.
    let layout = d.join("layout");
    std::fs::create_dir_all(&layout).unwrap();
    run(Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-xf")
        .arg(&oci_tar));
    let mut umoci = Command::new("umoci");
    umoci.arg("unpack");
    if !is_root() {
        umoci.arg("--rootless");
    }
    umoci
        .arg("--image")
        .arg(format!("{}:localhost/hpcc-podman:1", layout.display()))
        .arg(d.join("umoci-bundle"));
    run(&mut umoci);
    let expected = tree(&d.join("umoci-bundle/rootfs"));
    assert!(
        expected.iter().any(|l| l.starts_with("data/a f 4755")),
        "{expected:#?}"
    );
    for (tar, cache) in [(&docker_tar, "cache-docker"), (&oci_tar, "cache-oci")] {
        let cache = d.join(cache);
        let out = run(Command::new(runtime_tests::hpcc_bin())
            .env("HPCC_CACHE_DIR", &cache)
            .arg("run")
            .arg(format!("{}@hpcc-podman:1", tar.display()))
            .args(["--", "/bin/sh", "-c", "cat /data/sub/c"]));
        assert_eq!(out, "hi\n");
        let images: Vec<_> = std::fs::read_dir(cache.join("images"))
            .unwrap()
            .flatten()
            .collect();
        assert_eq!(images.len(), 1);
        let got = tree(&images[0].path().join("rootfs"));
        assert_eq!(
            got,
            expected,
            "hpcc's unpack of {} differs from umoci's",
            tar.display()
        );
    }
    // Rootless podman stores files under subordinate ids we cannot remove
    // ourselves; let it remove its storage from inside its namespace, then
    // end the pause process it keeps that namespace alive with.
    if !is_root() {
        run(podman()
            .arg("unshare")
            .arg("rm")
            .arg("-rf")
            .arg(d.join("storage"))
            .arg(d.join("runroot")));
        stop_rootless_pause_process();
    }
}

/// Rootless podman leaves `catatonit -P` running to hold its user
/// namespace; its pid is in $XDG_RUNTIME_DIR/libpod/tmp/pause.pid.
fn stop_rootless_pause_process() {
    let Some(xdg) = std::env::var_os("XDG_RUNTIME_DIR") else {
        return;
    };
    let pidfile = PathBuf::from(xdg).join("libpod/tmp/pause.pid");
    if let Some(pid) = std::fs::read_to_string(&pidfile)
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
    {
        // SAFETY: kill with a pid read from podman's own pid file.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let _ = std::fs::remove_file(pidfile);
    }
}
