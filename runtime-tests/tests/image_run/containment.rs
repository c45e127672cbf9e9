//! What an image cannot do: write the read-only root (a writable tmpfs is
//! thrown away), be tampered with, write outside the cache, read host
//! files through its /etc/passwd, or reach the kernel's settings as root;
//! and what is not an image gets one clear error.

use crate::common::*;
use crate::imagefix::{self, list, Compression, Entry, Image};
use runtime_tests::{is_root, ok, stderr, stdout};
use std::path::Path;

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
    if runtime_tests::forced_underlay() {
        // Without an overlay the image's files cannot be made writable:
        // one line says so, and nothing else changes.
        let o = env.run(&["run", "--writable-tmpfs", t, "--", "true"]);
        fails_with(&o, &["--writable-tmpfs needs an overlay", "underlay"]);
        let dirs = env.images();
        let rootfs = env.cache().join("images").join(&dirs[0]).join("rootfs");
        assert!(!rootfs.join("proc").exists() && !rootfs.join("tmp").exists());
        return;
    }
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
fn an_image_passwd_symlink_cannot_read_host_files() {
    let env = Env::new("passwd-link");
    let l = imagefix::layer(&[Entry::Symlink("etc/group".into(), "/etc/os-release".into())]);
    let base = imagefix::layer(&[
        Entry::Dir("bin", 0o755),
        Entry::File("bin/busybox".into(), imagefix::busybox(), 0o755),
        Entry::Symlink("bin/cat".into(), "busybox".into()),
        Entry::Symlink("bin/ls".into(), "busybox".into()),
        Entry::Symlink("bin/sh".into(), "busybox".into()),
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
    // The symlinks were replaced by plain files, and the temporary names
    // they were written under are gone.
    let check = "for f in /etc/passwd /etc/group; do \
        if [ -L $f ]; then echo $f link; elif [ -f $f ]; then echo $f file; fi; done; \
        ls -A /etc";
    let out = ok(&env.run(&["run", p.to_str().unwrap(), "--", "/bin/sh", "-c", check]));
    assert!(
        out.starts_with("/etc/passwd file\n/etc/group file\n"),
        "{out}"
    );
    assert!(!out.contains(".hpcc-"), "a temporary name was left: {out}");
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
        &["/no/such/image.tar", "no such image"],
    );
    // Without "--", a name plainly meant as an image is still one: never
    // runc's "reading config.json". (.invalid never resolves: no test
    // reaches the internet.)
    for name in [
        "missing.tar",
        "missing.oci",
        "docker://registry.invalid/busybox:latest",
    ] {
        let o = env.run(&["run", name]);
        fails_with(&o, &[name]);
        assert!(
            !String::from_utf8_lossy(&o.stderr).contains("config.json"),
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    // A registry that cannot be reached: one line naming the reference
    // (as Docker spells it in full) and the host.
    fails_with(
        &env.run(&[
            "run",
            "docker://registry.invalid:5000/busybox",
            "--",
            "true",
        ]),
        &[
            "docker://registry.invalid:5000/busybox:latest",
            "registry.invalid",
        ],
    );
}
