//! Symlinks: writes through them stay in the rootfs, `..` symlinks
//! resolve while the host renames files, and loops are refused when
//! followed.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use crate::checks::{
    check_contained, contained, file, link, raw, read, refused, refused_or_contained, sane, REL_UP,
};
use crate::env::Env;
use crate::imagefix::{self, list, Entry};

#[test]
fn writes_through_symlinks_stay_in_the_rootfs() {
    // (what, layers given the env, checks on the rootfs)
    type Layers = fn(&Env) -> Vec<Vec<u8>>;
    type Check = fn(&Env, &Path);
    let cases: Vec<(&str, Layers, Check)> = vec![
        (
            "absolute dir symlink and a write through it, one layer",
            |env| {
                vec![imagefix::layer(&[
                    Entry::RawDir(raw(&env.outside())),
                    link("esc", &env.outside()),
                    file("esc/pwned", "p\n"),
                ])]
            },
            |env, r| {
                assert_eq!(read(&r.join(env.outside_rel()).join("pwned")), "p\n");
                assert!(r.join("esc").is_symlink());
            },
        ),
        (
            "relative climbing symlink and a write aimed at the sentinel dir, one layer",
            |env| {
                vec![imagefix::layer(&[
                    Entry::Dir("d", 0o755),
                    link("d/up", REL_UP),
                    file(&format!("d/up/{}/pwned", env.outside_rel()), "p\n"),
                ])]
            },
            |env, r| assert_eq!(read(&r.join(env.outside_rel()).join("pwned")), "p\n"),
        ),
        (
            "a chain of symlinks over three layers",
            |env| {
                vec![
                    imagefix::layer(&[link("a", "b"), Entry::RawDir(raw(&env.outside()))]),
                    imagefix::layer(&[link("b", &env.outside())]),
                    imagefix::layer(&[file("a/pwned", "p\n"), file("a/sub/keep", "k\n")]),
                ]
            },
            |env, r| {
                let inner = r.join(env.outside_rel());
                assert_eq!(read(&inner.join("pwned")), "p\n");
                assert_eq!(read(&inner.join("sub/keep")), "k\n");
            },
        ),
        (
            "a symlink to an outside file, then a file of that name",
            |env| {
                vec![
                    imagefix::layer(&[link("f", &env.secret())]),
                    imagefix::layer(&[file("f", "replaced\n")]),
                ]
            },
            |_, r| {
                let m = std::fs::symlink_metadata(r.join("f")).unwrap();
                assert!(m.is_file(), "the symlink was replaced, not written through");
                assert_eq!(read(&r.join("f")), "replaced\n");
            },
        ),
        (
            "every entry kind through an outside dir symlink, across layers",
            |env| {
                vec![
                    imagefix::layer(&[
                        link("esc", &env.outside()),
                        Entry::RawDir(raw(&env.outside())),
                    ]),
                    imagefix::layer(&[
                        Entry::Dir("esc/newdir", 0o755),
                        file("esc/newdir/x", "x\n"),
                        file("esc/secret", "overwritten\n"),
                        link("esc/sub", "/"),
                        Entry::HardLink("esc/hl".into(), "bin/busybox".into()),
                        Entry::Fifo("esc/fifo"),
                        Entry::CharDev("esc/cdev", 1, 3),
                    ]),
                ]
            },
            |env, r| {
                let inner = r.join(env.outside_rel());
                assert_eq!(read(&inner.join("newdir/x")), "x\n");
                assert_eq!(read(&inner.join("secret")), "overwritten\n");
                assert!(inner.join("sub").is_symlink());
                assert_eq!(
                    std::fs::metadata(inner.join("hl")).unwrap().ino(),
                    std::fs::metadata(r.join("bin/busybox")).unwrap().ino()
                );
                let fifo = std::fs::symlink_metadata(inner.join("fifo")).unwrap();
                assert!(fifo.file_type().is_fifo());
                assert!(std::fs::symlink_metadata(inner.join("cdev")).is_ok());
            },
        ),
        (
            "a write through a symlink into the cache's own directories",
            |_| {
                vec![
                    imagefix::layer(&[link("up", "../../..")]),
                    imagefix::layer(&[
                        file("up/images/evil/rootfs/x", "x\n"),
                        file("up/tmp/x", "x\n"),
                    ]),
                ]
            },
            |_, r| {
                assert_eq!(read(&r.join("images/evil/rootfs/x")), "x\n");
                assert_eq!(read(&r.join("tmp/x")), "x\n");
            },
        ),
    ];
    for (what, layers, check) in cases {
        let env = Env::new("sym");
        let img = env.docker("sym", layers(&env));
        let (rootfs, _) = contained(&env, &img, &["/bin/true"], what);
        check(&env, &rootfs);
    }
    // A symlink to a directory the image does not have, in one layer and
    // across layers: the write through it is refused, or made at the
    // target taken inside the rootfs; never outside.
    for (what, layers) in [
        ("dangling outside symlink, one layer", 1),
        ("dangling outside symlink, across layers", 2),
    ] {
        let env = Env::new("sym-dangling");
        let l = if layers == 1 {
            vec![imagefix::layer(&[
                link("esc", &env.outside()),
                file("esc/pwned", "p\n"),
            ])]
        } else {
            vec![
                imagefix::layer(&[link("esc", &env.outside())]),
                imagefix::layer(&[file("esc/pwned", "p\n")]),
            ]
        };
        let img = env.docker("sym", l);
        if let Some(rootfs) = refused_or_contained(&env, &img, &["esc/pwned"], what) {
            // Followed the way the container would see it: re-rooted.
            assert_eq!(read(&rootfs.join(env.outside_rel()).join("pwned")), "p\n");
        }
    }
}

/// Renames a file back and forth until dropped: every rename on the host
/// bumps the kernel's rename seqcount, which openat2(RESOLVE_IN_ROOT)
/// checks when it walks "..".
struct RenameChurn {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
    dir: PathBuf,
}

impl RenameChurn {
    fn start() -> RenameChurn {
        let dir = std::env::temp_dir().join(format!(
            "hh-churn-{}-{}",
            std::process::id(),
            imagefix::scratch::next_seq()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a"), "").unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (s, d) = (stop.clone(), dir.clone());
        let thread = std::thread::spawn(move || {
            let mut n = 0u64;
            while !s.load(Ordering::Relaxed) {
                std::fs::rename(d.join("a"), d.join("b")).unwrap();
                std::fs::rename(d.join("b"), d.join("a")).unwrap();
                n += 2;
            }
            n
        });
        RenameChurn {
            stop,
            thread: Some(thread),
            dir,
        }
    }

    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for RenameChurn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn dotdot_symlinks_resolve_while_the_host_renames_files() {
    // A layer whose every entry goes through a ".." symlink, unpacked while
    // another process renames files (as any busy node does, and as the other
    // ranks of a job do when they move their unpacks into the cache).
    // openat2 may answer EAGAIN then; hpcc must retry, not fail the image.
    let env = Env::new("churn");
    let mut entries = vec![Entry::Dir("d", 0o755), link("d/up", "../..")];
    for i in 0..3000 {
        entries.push(file(&format!("d/up/f{i}"), "x"));
    }
    let img = env.docker("churn", vec![imagefix::layer(&entries)]);
    let churn = RenameChurn::start();
    let before = env.snapshot();
    let o = env.run(&["run", "-q", img.to_str().unwrap(), "--", "/bin/true"]);
    sane(&env, &before, &o, "\"..\" symlinks under renames");
    let rootfs = check_contained(&env, &o, "\"..\" symlinks under renames");
    let renames = churn.stop();
    eprintln!("churn: {renames} renames during the unpack");
    assert!(renames > 0, "the churn did not run");
    assert_eq!(
        list(&rootfs).iter().filter(|n| n.starts_with('f')).count(),
        3000
    );
}

#[test]
fn symlink_loops_are_refused_when_followed() {
    let cases: Vec<(&str, Vec<Vec<u8>>, &str)> = vec![
        (
            "a -> b, b -> a, then a/f",
            vec![imagefix::layer(&[
                link("a", "b"),
                link("b", "a"),
                file("a/f", "f\n"),
            ])],
            "a/f",
        ),
        (
            "a self loop, then a directory under it",
            vec![imagefix::layer(&[link("s", "s"), Entry::Dir("s/d", 0o755)])],
            "s/d",
        ),
        (
            "a loop made over two layers, written through in a third",
            vec![
                imagefix::layer(&[link("a", "b")]),
                imagefix::layer(&[link("b", "/a")]),
                imagefix::layer(&[file("a/deep/f", "f\n")]),
            ],
            "a/deep/f",
        ),
        (
            "a hard link through a loop",
            vec![imagefix::layer(&[
                link("a", "b"),
                link("b", "a"),
                Entry::HardLink("hl".into(), "a/x".into()),
            ])],
            "hl",
        ),
    ];
    for (what, layers, name) in cases {
        let env = Env::new("loop");
        let img = env.docker("loop", layers);
        let line = refused(&env, &img, &[name], what);
        assert!(
            line.contains("symbolic links") || line.contains("ELOOP"),
            "{what}: the error does not say it is a loop: {line}"
        );
    }
    // Loops nothing goes through are just dangling links.
    let env = Env::new("loop-ok");
    let img = env.docker(
        "loop",
        vec![imagefix::layer(&[link("a", "b"), link("b", "a")])],
    );
    let (rootfs, _) = contained(&env, &img, &["/bin/true"], "an unused loop");
    assert!(rootfs.join("a").is_symlink() && rootfs.join("b").is_symlink());
}
