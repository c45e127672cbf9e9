//! A hostile image corpus, generated here, against `hpcc run IMAGE`: names
//! that climb, absolute names, symlinks and hard links aimed outside the
//! rootfs (in one layer and across layers), whiteouts that climb or pass
//! through symlinks, broken digests, blobs and documents, device nodes,
//! symlink loops, very long names, a gzip bomb and a full disk.
//!
//! Every case must end in either one clear error line (`hpcc: ...` naming
//! the entry, blob or document at fault) or a result contained in the cache;
//! the tree around the cache (sentinel files at the very paths the hostile
//! entries aim at) must not change; nothing may panic; and a refused image
//! must leave nothing in the cache. Runs as root and, via
//! integration/run-rootless.sh, as an unprivileged user.

mod imagefix;

use imagefix::{list, Blob, Entry, Image};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

static SEQ: AtomicUsize = AtomicUsize::new(0);

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A missing tool fails the test under HPCC_REQUIRE_CLIENTS=1; otherwise
/// the test says why it could not run.
fn tool_missing(why: &str) {
    runtime_tests::missing(&format!("hostile_images: cannot run: {why}"));
}

/// What a cache may hold at its top.
const CACHE_DIRS: &[&str] = &["images", "tmp", "refs", "locks", "mnt"];
/// What a cached image may hold.
const IMAGE_FILES: &[&str] = &["rootfs", "config.json", "meta.json", "last-used"];

/// A scratch directory: the cache, the image files, and `outside/`, the
/// sentinel directory every hostile entry aims at.
struct Env {
    dir: PathBuf,
}

impl Env {
    fn new(tag: &str) -> Env {
        let dir = std::env::temp_dir().join(format!(
            "hh-{tag}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("outside/sub")).unwrap();
        std::fs::write(dir.join("outside/secret"), "secret\n").unwrap();
        std::fs::write(dir.join("outside/sub/keep"), "keep\n").unwrap();
        // Made up front so the snapshot of `dir` sees no change when hpcc
        // fills it.
        std::fs::create_dir(dir.join("cache")).unwrap();
        Env { dir }
    }

    fn cache(&self) -> PathBuf {
        self.dir.join("cache")
    }

    fn outside(&self) -> String {
        self.dir.join("outside").to_str().unwrap().to_string()
    }

    /// The sentinel directory as a path relative to "/".
    fn outside_rel(&self) -> String {
        self.outside().trim_start_matches('/').to_string()
    }

    fn secret(&self) -> String {
        format!("{}/secret", self.outside())
    }

    fn cmd(&self, args: &[&str]) -> Command {
        imagefix::hpcc_with_cache(&self.cache(), args)
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("running hpcc")
    }

    fn images(&self) -> Vec<String> {
        list(&self.cache().join("images"))
    }

    fn tmp_entries(&self) -> Vec<String> {
        list(&self.cache().join("tmp"))
    }

    /// A docker archive of the busybox base layer and `layers`.
    fn docker(&self, name: &str, layers: Vec<Vec<u8>>) -> PathBuf {
        let mut all = vec![imagefix::base_layer()];
        all.extend(layers);
        let p = self.dir.join(format!("{name}.tar"));
        imagefix::write_docker_archive(&p, &[&Image::new(all, "hostile:1")]);
        p
    }

    /// A tar of ready-made OCI layout files.
    fn oci(&self, name: &str, files: &[(String, Vec<u8>)]) -> PathBuf {
        let p = self.dir.join(format!("{name}.tar"));
        imagefix::write_tar_files(&p, files);
        p
    }

    /// Everything under `dir` but the cache: type, mode, size, link count,
    /// mtime, contents (hashed) and link targets.
    fn snapshot(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        snap(&self.dir, &self.dir, &self.cache(), &mut out);
        out
    }
}

fn snap(root: &Path, p: &Path, skip: &Path, out: &mut BTreeMap<String, String>) {
    if p == skip {
        return;
    }
    let m = std::fs::symlink_metadata(p).unwrap();
    let rel = p.strip_prefix(root).unwrap().display().to_string();
    let ft = m.file_type();
    let what = if ft.is_symlink() {
        format!("symlink -> {:?}", std::fs::read_link(p).unwrap())
    } else if ft.is_file() {
        format!(
            "file sha256:{}",
            imagefix::sha256_hex(&std::fs::read(p).unwrap())
        )
    } else if ft.is_dir() {
        "dir".to_string()
    } else {
        format!("special rdev {}", m.rdev())
    };
    // A directory's mtime would move if an entry were made and removed.
    out.insert(
        rel,
        format!(
            "{what} mode {:o} nlink {} size {} mtime {}.{}",
            m.mode(),
            m.nlink(),
            m.size(),
            m.mtime(),
            m.mtime_nsec()
        ),
    );
    if ft.is_dir() {
        let mut names: Vec<_> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for n in names {
            snap(root, &n, skip, out);
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // chmod and rm walk with *at calls: deep trees and read-only
        // directories go too.
        let _ = Command::new("chmod")
            .args(["-R", "u+rwx"])
            .arg(&self.dir)
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("rm").arg("-rf").arg(&self.dir).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The checks every case must pass, whatever hpcc made of it: no panic,
/// nothing changed outside the cache, the cache holds only its own
/// directories, and no unpack is left half-made.
#[track_caller]
fn sane(env: &Env, before: &BTreeMap<String, String>, o: &Output, what: &str) {
    let e = stderr(o);
    assert!(!e.contains("panicked"), "{what}: hpcc panicked: {e}");
    assert!(
        o.status.signal().is_none() && !matches!(o.status.code(), Some(101) | Some(134)),
        "{what}: hpcc died: {:?}: {e}",
        o.status
    );
    let after = env.snapshot();
    if &after != before {
        let changed: Vec<String> = before
            .iter()
            .filter(|(k, v)| after.get(*k) != Some(v))
            .map(|(k, v)| format!("{k}: {v} -> {:?}", after.get(k)))
            .chain(
                after
                    .iter()
                    .filter(|(k, _)| !before.contains_key(*k))
                    .map(|(k, v)| format!("new {k}: {v}")),
            )
            .collect();
        panic!("{what}: something outside the cache changed: {changed:#?}\nstderr: {e}");
    }
    for n in list(&env.cache()) {
        assert!(
            CACHE_DIRS.contains(&n.as_str()),
            "{what}: a stray {n:?} at the top of the cache"
        );
    }
    assert!(
        env.tmp_entries().is_empty(),
        "{what}: a half-made unpack was left: {:?}",
        env.tmp_entries()
    );
    assert!(
        list(&env.cache().join("mnt")).is_empty(),
        "{what}: the overlay scratch is not empty"
    );
}

/// Runs `hpcc run -q IMAGE -- ARGS` and checks it left everything sane.
///
/// A failure from openat2's EAGAIN (a rename or mount elsewhere on the host
/// raced a ".." walk) is a known bug owned by
/// `dotdot_symlinks_resolve_while_the_host_renames_files`; here it is
/// retried, loudly, so the other cases do not flake on it.
fn attempt(env: &Env, image: &Path, args: &[&str], what: &str) -> Output {
    let mut argv = vec!["run", "-q", image.to_str().unwrap(), "--"];
    argv.extend_from_slice(args);
    let mut tries = 0;
    loop {
        let before = env.snapshot();
        let o = env.run(&argv);
        sane(env, &before, &o, what);
        tries += 1;
        if o.status.success() || !stderr(&o).contains("EAGAIN") || tries == 5 {
            return o;
        }
        eprintln!(
            "{what}: openat2 EAGAIN (see dotdot_symlinks_resolve_while_the_host_renames_files), retrying: {}",
            stderr(&o).trim()
        );
    }
}

/// The image is refused with one error line that contains every needle,
/// and leaves no cache entry. Returns the line.
#[track_caller]
fn refused(env: &Env, image: &Path, needles: &[&str], what: &str) -> String {
    let images_before = env.images();
    let refs_before = list(&env.cache().join("refs"));
    let o = attempt(env, image, &["/bin/true"], what);
    check_refused(env, &o, needles, &images_before, &refs_before, what)
}

#[track_caller]
fn check_refused(
    env: &Env,
    o: &Output,
    needles: &[&str],
    images_before: &[String],
    refs_before: &[String],
    what: &str,
) -> String {
    let e = stderr(o);
    assert!(
        !o.status.success(),
        "{what}: the image was accepted; stderr: {e}"
    );
    let lines: Vec<&str> = e.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{what}: want one error line, got: {e}");
    let line = lines[0];
    assert!(
        line.starts_with("hpcc: ") && !line.starts_with("hpcc: warning"),
        "{what}: not an hpcc error line: {line}"
    );
    eprintln!("refused: {what}: {line}");
    for n in needles {
        assert!(line.contains(n), "{what}: the error lacks {n:?}: {line}");
    }
    assert!(
        !line.chars().any(char::is_control),
        "{what}: control characters reach the terminal: {line:?}"
    );
    assert_eq!(
        env.images(),
        images_before,
        "{what}: a refused image left a cache entry"
    );
    assert_eq!(
        list(&env.cache().join("refs")),
        refs_before,
        "{what}: a refused image left a reference"
    );
    line.to_string()
}

/// The image runs `args`; returns the cached rootfs and the output.
#[track_caller]
fn contained(env: &Env, image: &Path, args: &[&str], what: &str) -> (PathBuf, Output) {
    let o = attempt(env, image, args, what);
    let rootfs = check_contained(env, &o, what);
    (rootfs, o)
}

#[track_caller]
fn check_contained(env: &Env, o: &Output, what: &str) -> PathBuf {
    let e = stderr(o);
    assert!(
        o.status.success(),
        "{what}: hpcc failed: {:?}\nstdout: {}\nstderr: {e}",
        o.status,
        stdout(o)
    );
    for l in e.lines().filter(|l| l.starts_with("hpcc: ")) {
        assert!(l.starts_with("hpcc: warning: "), "{what}: an error: {l}");
    }
    let images = env.images();
    assert_eq!(images.len(), 1, "{what}: one cache entry: {images:?}");
    let dir = env.cache().join("images").join(&images[0]);
    for n in list(&dir) {
        assert!(
            IMAGE_FILES.contains(&n.as_str()),
            "{what}: a stray {n:?} next to the rootfs"
        );
    }
    dir.join("rootfs")
}

/// Cases where either clean outcome is right: a refusal (one line with
/// the needles, nothing cached) or a contained unpack (returned, for the
/// caller to check where the entry landed).
#[track_caller]
fn refused_or_contained(env: &Env, image: &Path, needles: &[&str], what: &str) -> Option<PathBuf> {
    let images_before = env.images();
    let refs_before = list(&env.cache().join("refs"));
    let o = attempt(env, image, &["/bin/true"], what);
    if o.status.success() {
        eprintln!("contained: {what}");
        Some(check_contained(env, &o, what))
    } else {
        check_refused(env, &o, needles, &images_before, &refs_before, what);
        None
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn raw(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn file(name: &str, data: &str) -> Entry {
    Entry::File(name.into(), data.as_bytes().to_vec(), 0o644)
}

fn link(name: &str, target: &str) -> Entry {
    Entry::Symlink(name.into(), target.into())
}

/// "../" enough times to climb from `<cache>/tmp/<unpack>/rootfs` (or
/// `<cache>/images/<hex>/rootfs`) to the test directory.
const TO_TEST_DIR: &str = "../../../..";

/// A relative symlink target that climbs far past "/".
const REL_UP: &str = "../../../../../../../../../../..";

// ---------------------------------------------------------------------------
// Names

#[test]
fn climbing_names_are_refused_in_any_entry_kind_and_layer() {
    let aimed = format!("{TO_TEST_DIR}/outside/pwned");
    let cases: Vec<(&str, Vec<Vec<u8>>, &str)> = vec![
        (
            "file aimed at the sentinel dir",
            vec![imagefix::layer(&[Entry::RawFile(raw(&aimed), raw("x"))])],
            "pwned",
        ),
        (
            "climb in the middle of a name",
            vec![imagefix::layer(&[Entry::RawFile(
                raw("bin/../../../../../outside/pwned"),
                raw("x"),
            )])],
            "pwned",
        ),
        (
            "./ then ../",
            vec![imagefix::layer(&[Entry::RawFile(
                raw("./../mid"),
                raw("x"),
            )])],
            "mid",
        ),
        (
            "directory",
            vec![imagefix::layer(&[Entry::RawDir(raw(&format!(
                "{TO_TEST_DIR}/outside/newdir"
            )))])],
            "newdir",
        ),
        (
            "symlink name",
            vec![imagefix::layer(&[Entry::RawSymlink(
                raw(&format!("{TO_TEST_DIR}/outside/lnk")),
                raw("/"),
            )])],
            "lnk",
        ),
        (
            "hard link name",
            vec![imagefix::layer(&[Entry::RawHardLink(
                raw(&format!("{TO_TEST_DIR}/outside/hl")),
                raw("bin/busybox"),
            )])],
            "hl",
        ),
        (
            "in the third layer, after a layer wrote files",
            vec![
                imagefix::layer(&[
                    Entry::Dir("data", 0o755),
                    file("data/a", "a\n"),
                    file("data/b", "b\n"),
                ]),
                imagefix::layer(&[file("data/c", "c\n"), Entry::RawFile(raw(&aimed), raw("x"))]),
            ],
            "pwned",
        ),
    ];
    for (what, layers, name) in cases {
        let env = Env::new("climb");
        let img = env.docker("climb", layers);
        refused(&env, &img, &["climbs out", name], what);
    }
    // The same through an OCI gzip archive.
    let env = Env::new("climb-oci");
    let blobs = [
        Blob::gzip(&imagefix::base_layer()),
        Blob::gzip(&imagefix::layer(&[Entry::RawFile(raw(&aimed), raw("x"))])),
    ];
    let img = env.oci("climb", &imagefix::oci_files_of(&blobs));
    refused(&env, &img, &["climbs out", "pwned", "layer 2"], "oci climb");
}

#[test]
fn absolute_names_land_inside_the_rootfs() {
    let env = Env::new("abs");
    let out = env.outside();
    let l1 = imagefix::layer(&[
        Entry::RawDir(raw(&format!("{out}/absdir"))),
        Entry::RawFile(raw(&format!("//{out}//./dbl")), raw("dbl\n")),
        Entry::RawSymlink(raw(&format!("{out}/abslink")), raw(&env.secret())),
        Entry::RawFile(raw(&env.secret()), raw("image secret\n")),
    ]);
    let l2 = imagefix::layer(&[
        Entry::RawFile(raw(&format!("{out}/absdir/f")), raw("f\n")),
        Entry::RawHardLink(raw(&format!("{out}/hl")), raw(&env.secret())),
    ]);
    let img = env.docker("abs", vec![l1, l2]);
    let (rootfs, _) = contained(&env, &img, &["/bin/true"], "absolute names");
    let inner = rootfs.join(env.outside_rel());
    assert_eq!(read(&inner.join("absdir/f")), "f\n");
    assert_eq!(read(&inner.join("dbl")), "dbl\n");
    assert_eq!(read(&inner.join("secret")), "image secret\n");
    assert_eq!(
        std::fs::read_link(inner.join("abslink")).unwrap(),
        PathBuf::from(env.secret()),
        "a symlink is stored as written"
    );
    assert_eq!(
        std::fs::metadata(inner.join("hl")).unwrap().ino(),
        std::fs::metadata(inner.join("secret")).unwrap().ino(),
        "the absolute hard link target is the image's file"
    );
}

// ---------------------------------------------------------------------------
// Symlinks

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
            SEQ.fetch_add(1, Ordering::SeqCst)
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

// ---------------------------------------------------------------------------
// Hard links

#[test]
fn hard_links_never_reach_outside_files() {
    // Refused: the target does not exist in the rootfs, or climbs.
    type Layers = fn(&Env) -> Vec<Vec<u8>>;
    let refusals: Vec<(&str, Layers, &[&str])> = vec![
        (
            "absolute target naming the host's sentinel file",
            |env| {
                vec![imagefix::layer(&[Entry::RawHardLink(
                    raw("hl"),
                    raw(&env.secret()),
                )])]
            },
            &["hl", "hard link"],
        ),
        (
            "target climbing to the sentinel file",
            |_| {
                vec![imagefix::layer(&[Entry::RawHardLink(
                    raw("hl"),
                    raw(&format!("{TO_TEST_DIR}/outside/secret")),
                )])]
            },
            &["hl", "climbs out"],
        ),
        (
            "target climbing from the middle",
            |_| {
                vec![imagefix::layer(&[Entry::RawHardLink(
                    raw("etc/hl"),
                    raw("bin/../../../../../outside/secret"),
                )])]
            },
            &["etc/hl", "climbs out"],
        ),
        (
            "target through an outside dir symlink of an earlier layer",
            |env| {
                vec![
                    imagefix::layer(&[link("esc", &env.outside())]),
                    imagefix::layer(&[Entry::HardLink("hl".into(), "esc/secret".into())]),
                ]
            },
            &["hl", "esc/secret"],
        ),
    ];
    for (what, layers, needles) in refusals {
        let env = Env::new("hl");
        let img = env.docker("hl", layers(&env));
        refused(&env, &img, needles, what);
        assert_eq!(
            std::fs::metadata(env.secret()).unwrap().nlink(),
            1,
            "{what}: the host file gained a link"
        );
    }

    // Contained: a link to a symlink that points outside links the symlink.
    let env = Env::new("hl-sym");
    let img = env.docker(
        "hl",
        vec![
            imagefix::layer(&[link("lnk", &env.secret())]),
            imagefix::layer(&[Entry::HardLink("hl".into(), "lnk".into())]),
        ],
    );
    let (rootfs, _) = contained(&env, &img, &["/bin/true"], "hard link to a symlink");
    let m = std::fs::symlink_metadata(rootfs.join("hl")).unwrap();
    assert!(m.is_symlink(), "the link is to the symlink itself");
    assert_eq!(
        m.ino(),
        std::fs::symlink_metadata(rootfs.join("lnk")).unwrap().ino()
    );

    // Contained: a file over a hard link replaces the link, not its target.
    let env = Env::new("hl-over");
    let img = env.docker(
        "hl",
        vec![
            imagefix::layer(&[Entry::HardLink("etc/hl".into(), "etc/passwd".into())]),
            imagefix::layer(&[file("etc/hl", "changed\n")]),
        ],
    );
    let (rootfs, _) = contained(&env, &img, &["/bin/true"], "a file over a hard link");
    assert_eq!(read(&rootfs.join("etc/hl")), "changed\n");
    assert_eq!(
        read(&rootfs.join("etc/passwd")),
        "root:x:0:0:root:/root:/bin/sh\n"
    );
}

// ---------------------------------------------------------------------------
// Whiteouts

#[test]
fn whiteouts_never_climb_or_follow_symlinks() {
    let refusals: Vec<(&str, Vec<u8>, &[&str])> = vec![
        (
            "a whiteout climbing to the sentinel file",
            raw(&format!("{TO_TEST_DIR}/outside/.wh.secret")),
            &["climbs out", ".wh.secret"],
        ),
        (
            ".wh. then ../ components",
            raw(&format!("a/.wh../{TO_TEST_DIR}/outside/secret")),
            &["climbs out"],
        ),
        (
            "a whiteout of the parent",
            raw(".wh..."),
            &["whiteout", ".wh..."],
        ),
        (
            "a whiteout of the directory itself",
            raw("bin/.wh.."),
            &["whiteout"],
        ),
        ("a whiteout with no name", raw("bin/.wh."), &["whiteout"]),
    ];
    for (what, name, needles) in refusals {
        let env = Env::new("wh");
        let img = env.docker(
            "wh",
            vec![imagefix::layer(&[Entry::RawFile(name, Vec::new())])],
        );
        refused(&env, &img, needles, what);
    }

    // Through symlinks, absolute or climbing, a whiteout or an opaque
    // marker acts on the image's copy of the path, never the host's.
    type Layers = fn(&Env) -> Vec<Vec<u8>>;
    let cases: Vec<(&str, Layers)> = vec![
        ("dir symlink -> outside, then link/.wh.secret", |env| {
            vec![
                imagefix::layer(&[
                    Entry::RawFile(raw(&env.secret()), raw("image secret\n")),
                    link("link", &env.outside()),
                ]),
                imagefix::layer(&[file("link/.wh.secret", "")]),
            ]
        }),
        ("dir symlink -> outside, then an opaque marker", |env| {
            vec![
                imagefix::layer(&[
                    Entry::RawFile(raw(&env.secret()), raw("image secret\n")),
                    Entry::RawFile(raw(&format!("{}/sub/deep/keep", env.outside())), raw("k\n")),
                    link("link", &env.outside()),
                ]),
                imagefix::layer(&[file("link/.wh..wh..opq", "")]),
            ]
        }),
        (
            "a climbing relative symlink, then whiteouts aimed at the sentinel",
            |env| {
                vec![
                    imagefix::layer(&[
                        Entry::RawFile(raw(&env.secret()), raw("image secret\n")),
                        link("up", REL_UP),
                    ]),
                    imagefix::layer(&[
                        file(&format!("up/{}/.wh.secret", env.outside_rel()), ""),
                        file(&format!("up/{}/.wh..wh..opq", env.outside_rel()), ""),
                    ]),
                ]
            },
        ),
        ("an absolute whiteout name", |env| {
            vec![
                imagefix::layer(&[Entry::RawFile(raw(&env.secret()), raw("image secret\n"))]),
                imagefix::layer(&[Entry::RawFile(
                    raw(&format!("{}/.wh.secret", env.outside())),
                    Vec::new(),
                )]),
            ]
        }),
        ("a whiteout of the symlink itself", |env| {
            vec![
                imagefix::layer(&[
                    Entry::RawFile(raw(&env.secret()), raw("image secret\n")),
                    link("link", &env.outside()),
                ]),
                imagefix::layer(&[file(".wh.link", "")]),
            ]
        }),
    ];
    for (what, layers) in cases {
        let env = Env::new("wh-sym");
        let img = env.docker("wh", layers(&env));
        let (rootfs, _) = contained(&env, &img, &["/bin/true"], what);
        // The image's copy went (the whiteout did act), the host's stayed
        // (the snapshot check in `contained`).
        let inner = rootfs.join(env.outside_rel()).join("secret");
        if what.contains("of the symlink itself") {
            assert!(!rootfs.join("link").exists() && !rootfs.join("link").is_symlink());
            assert_eq!(read(&inner), "image secret\n");
        } else {
            assert!(
                !inner.exists(),
                "{what}: the whiteout did not remove the image's copy"
            );
        }
        if what.contains("opaque") {
            assert!(
                !rootfs.join(env.outside_rel()).join("sub").exists(),
                "{what}: the opaque marker did not empty the image's directory"
            );
            assert_eq!(read(&env.dir.join("outside/sub/keep")), "keep\n");
        }
        assert_eq!(read(Path::new(&env.secret())), "secret\n");
    }

    // `.wh.` as a directory component is a name like any other.
    let env = Env::new("wh-dir");
    let img = env.docker(
        "wh",
        vec![imagefix::layer(&[Entry::RawFile(
            raw("bin/.wh.../x"),
            raw("x\n"),
        )])],
    );
    let (rootfs, _) = contained(&env, &img, &["/bin/true"], "a .wh. directory");
    assert_eq!(read(&rootfs.join("bin/.wh.../x")), "x\n");
}

// ---------------------------------------------------------------------------
// Digests, blobs and documents

fn base_and(entries: &[Entry]) -> Vec<Blob> {
    vec![
        Blob::gzip(&imagefix::base_layer()),
        Blob::gzip(&imagefix::layer(entries)),
    ]
}

fn blob_hex(b: &Blob) -> String {
    imagefix::sha256_hex(&b.data)
}

#[test]
fn digest_mismatches_are_refused_after_or_before_unpacking() {
    // A docker-archive layer whose bytes differ from the config's diff_id
    // (no blob digests there: only the diff_id catches it, after the layer
    // was applied).
    let env = Env::new("dig-docker");
    let marker = vec![b'M'; 4096];
    let img = env.docker(
        "d",
        vec![imagefix::layer(&[Entry::File(
            "marker".into(),
            marker.clone(),
            0o644,
        )])],
    );
    let mut data = std::fs::read(&img).unwrap();
    let at = data
        .windows(marker.len())
        .position(|w| w == &marker[..])
        .unwrap();
    data[at + 100] = b'N';
    std::fs::write(&img, &data).unwrap();
    refused(
        &env,
        &img,
        &["digest mismatch", "layer 2", "layer.tar"],
        "docker layer vs diff_id",
    );

    // An OCI layer blob swapped for another valid layer under the same
    // name: it applies cleanly; only the digest refuses it.
    let env = Env::new("dig-layer");
    let blobs = base_and(&[file("good", "good\n")]);
    let mut files = imagefix::oci_files_of(&blobs);
    let evil = Blob::gzip(&imagefix::layer(&[file("evil", "evil\n")]));
    let name = format!("blobs/sha256/{}", blob_hex(&blobs[1]));
    files.iter_mut().find(|(n, _)| *n == name).unwrap().1 = evil.data;
    let img = env.oci("o", &files);
    refused(
        &env,
        &img,
        &["digest mismatch", "layer 2", &blob_hex(&blobs[1])[..12]],
        "swapped OCI layer",
    );

    // The config blob's bytes differ from its digest.
    let env = Env::new("dig-config");
    let blobs = base_and(&[file("x", "x\n")]);
    let config = imagefix::config_for(&blobs);
    let config_hex = imagefix::sha256_hex(&config);
    let mut files = imagefix::oci_files_of(&blobs);
    let name = format!("blobs/sha256/{config_hex}");
    let doc = &mut files.iter_mut().find(|(n, _)| *n == name).unwrap().1;
    *doc = String::from_utf8(doc.clone())
        .unwrap()
        .replace("/bin/sh", "/bin/xx")
        .into_bytes();
    let img = env.oci("o", &files);
    refused(
        &env,
        &img,
        &["config", &config_hex[..12]],
        "tampered config blob",
    );

    // The manifest blob's bytes differ from the index's digest.
    let env = Env::new("dig-manifest");
    let blobs = base_and(&[file("x", "x\n")]);
    let config = imagefix::config_for(&blobs);
    let manifest = imagefix::manifest_for(&blobs, &config);
    let manifest_hex = imagefix::sha256_hex(&manifest);
    let mut files = imagefix::oci_files_of(&blobs);
    let name = format!("blobs/sha256/{manifest_hex}");
    files
        .iter_mut()
        .find(|(n, _)| *n == name)
        .unwrap()
        .1
        .push(b' ');
    let img = env.oci("o", &files);
    refused(
        &env,
        &img,
        &["manifest", &manifest_hex[..12]],
        "tampered manifest blob",
    );
}

#[test]
fn truncated_missing_and_garbage_blobs_are_refused() {
    let full = imagefix::layer(&[Entry::File(
        "big".into(),
        (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect(),
        0o644,
    )]);
    let gz = Blob::gzip(&full);
    // Truncated, with the manifest naming the truncated bytes: the digest
    // holds, the gzip stream ends early.
    let env = Env::new("trunc");
    let cut = Blob {
        data: gz.data[..gz.data.len() / 2].to_vec(),
        diff_id: gz.diff_id.clone(),
    };
    let blobs = vec![Blob::gzip(&imagefix::base_layer()), cut];
    let img = env.oci("t", &imagefix::oci_files_of(&blobs));
    refused(
        &env,
        &img,
        &["layer 2", &blob_hex(&blobs[1])[..12]],
        "truncated gzip",
    );

    // Truncated, with the manifest naming the full blob.
    let env = Env::new("trunc2");
    let blobs = vec![Blob::gzip(&imagefix::base_layer()), gz];
    let mut files = imagefix::oci_files_of(&blobs);
    let name = format!("blobs/sha256/{}", blob_hex(&blobs[1]));
    files
        .iter_mut()
        .find(|(n, _)| *n == name)
        .unwrap()
        .1
        .truncate(blobs[1].data.len() / 2);
    let img = env.oci("t", &files);
    refused(&env, &img, &["layer 2"], "truncated gzip, full digest");

    // Not compressed and not a tar.
    let env = Env::new("garbage");
    let junk: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + 3) as u8).collect();
    let blobs = vec![
        Blob::gzip(&imagefix::base_layer()),
        Blob {
            diff_id: format!("sha256:{}", imagefix::sha256_hex(&junk)),
            data: junk,
        },
    ];
    let img = env.oci("g", &imagefix::oci_files_of(&blobs));
    refused(&env, &img, &["layer 2"], "a layer that is no tar");

    // Missing blobs: a layer, the config, the manifest.
    let blobs = base_and(&[file("x", "x\n")]);
    let config = imagefix::config_for(&blobs);
    let manifest = imagefix::manifest_for(&blobs, &config);
    for (what, hex) in [
        ("missing layer blob", blob_hex(&blobs[1])),
        ("missing config blob", imagefix::sha256_hex(&config)),
        ("missing manifest blob", imagefix::sha256_hex(&manifest)),
    ] {
        let env = Env::new("missing");
        let files: Vec<_> = imagefix::oci_files_of(&blobs)
            .into_iter()
            .filter(|(n, _)| !n.ends_with(&hex))
            .collect();
        let img = env.oci("m", &files);
        refused(&env, &img, &["missing", &hex[..12]], what);
        // The same in an OCI layout directory.
        let layout = env.dir.join("layout");
        for (n, d) in &files {
            let p = layout.join(n);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, d).unwrap();
        }
        refused(&env, &layout, &[&hex[..12]], &format!("{what} (layout)"));
    }

    // A docker archive cut short in the middle of a layer.
    let env = Env::new("cut-docker");
    let img = env.docker("d", vec![imagefix::layer(&[file("x", "x\n")])]);
    let data = std::fs::read(&img).unwrap();
    std::fs::write(&img, &data[..data.len() / 2]).unwrap();
    refused(&env, &img, &["d.tar"], "truncated docker archive");
}

#[test]
fn malformed_documents_are_refused_with_their_name() {
    let blobs = base_and(&[file("x", "x\n")]);
    let config = imagefix::config_for(&blobs);
    let manifest = imagefix::manifest_for(&blobs, &config);
    let index = imagefix::index_for(&manifest);
    let manifest_with = |m: serde_json::Value| -> Vec<u8> { serde_json::to_vec(&m).unwrap() };
    let m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let mut bad_config_digest = m.clone();
    bad_config_digest["config"]["digest"] = "sha256:../../../../etc/passwd".into();
    let mut md5 = m.clone();
    md5["layers"][1]["digest"] = "md5:d41d8cd98f00b204e9800998ecf8427e".into();

    let cfg: serde_json::Value = serde_json::from_slice(&config).unwrap();
    let mut short_ids = cfg.clone();
    short_ids["rootfs"]["diff_ids"] = serde_json::json!([blobs[0].diff_id]);

    // (what, config, manifest, index, needles)
    type DocCase<'a> = (&'a str, Vec<u8>, Vec<u8>, Option<Vec<u8>>, &'a [&'a str]);
    let cases: Vec<DocCase> = vec![
        (
            "index.json is not JSON",
            config.clone(),
            manifest.clone(),
            Some(b"{\"manifests\": [".to_vec()),
            &["index.json", "malformed"],
        ),
        (
            "index.json has the wrong shape",
            config.clone(),
            manifest.clone(),
            Some(br#"{"manifests": 5}"#.to_vec()),
            &["index.json", "malformed"],
        ),
        (
            "index.json lists nothing",
            config.clone(),
            manifest.clone(),
            Some(br#"{"schemaVersion": 2, "manifests": []}"#.to_vec()),
            &["no image"],
        ),
        (
            "index.json names a climbing digest",
            config.clone(),
            manifest.clone(),
            Some(
                br#"{"manifests": [{"digest": "sha256:../../../etc/passwd", "size": 1}]}"#.to_vec(),
            ),
            &["digest", "etc/passwd"],
        ),
        (
            "the manifest is not JSON",
            config.clone(),
            b"{\"config\": ".to_vec(),
            None,
            &["manifest", "malformed"],
        ),
        (
            "the manifest has the wrong shape",
            config.clone(),
            br#"{"config": "x", "layers": {}}"#.to_vec(),
            None,
            &["manifest", "malformed"],
        ),
        (
            "the manifest's config digest climbs",
            config.clone(),
            manifest_with(bad_config_digest),
            None,
            &["doc.tar", "manifest config", "etc/passwd"],
        ),
        (
            "the manifest's layer digest is md5",
            config.clone(),
            manifest_with(md5),
            None,
            &["doc.tar", "manifest layer 2", "md5"],
        ),
        (
            "the config is not JSON",
            b"{\"rootfs\": nope".to_vec(),
            Vec::new(),
            None,
            &["config", "malformed"],
        ),
        (
            "the config has too few diff_ids",
            serde_json::to_vec(&short_ids).unwrap(),
            Vec::new(),
            None,
            &["diff_ids"],
        ),
    ];
    for (what, config, manifest, index_override, needles) in cases {
        let env = Env::new("doc");
        // An empty manifest means: the right one for this config.
        let manifest = if manifest.is_empty() {
            imagefix::manifest_for(&blobs, &config)
        } else {
            manifest
        };
        let idx = index_override.unwrap_or_else(|| imagefix::index_for(&manifest));
        let files = imagefix::oci_parts(&blobs, &config, &manifest, &idx);
        let img = env.oci("doc", &files);
        refused(&env, &img, needles, what);
    }

    // A document too large to be real is refused before it is read whole.
    let env = Env::new("doc-big");
    let mut huge = index.clone();
    huge.extend(std::iter::repeat_n(b' ', 17 << 20));
    let files = imagefix::oci_parts(&blobs, &config, &manifest, &huge);
    let img = env.oci("doc", &files);
    refused(
        &env,
        &img,
        &["index.json", "too large"],
        "a 17 MB index.json",
    );

    // docker-archive manifest.json: not JSON, a missing layer, a climbing one.
    for (what, doc, needles) in [
        (
            "manifest.json is not JSON",
            "[{\"Config\":".to_string(),
            &["manifest.json", "malformed"][..],
        ),
        (
            "manifest.json names a missing layer",
            "[{\"Config\": \"CFG\", \"Layers\": [\"nope/layer.tar\"]}]".to_string(),
            &["nope/layer.tar", "missing"][..],
        ),
        (
            "manifest.json names a climbing layer",
            "[{\"Config\": \"CFG\", \"Layers\": [\"../../../etc/passwd\"]}]".to_string(),
            &["etc/passwd", "climbs out"][..],
        ),
    ] {
        let env = Env::new("doc-docker");
        let cfg = br#"{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000000"]}}"#.to_vec();
        let cfg_name = format!("{}.json", imagefix::sha256_hex(&cfg));
        let files = vec![
            (cfg_name.clone(), cfg),
            (
                "manifest.json".to_string(),
                doc.replace("CFG", &cfg_name).into_bytes(),
            ),
        ];
        let img = env.oci("docker", &files);
        refused(&env, &img, needles, what);
    }
}

#[test]
fn control_characters_in_names_never_reach_the_terminal() {
    // Refused entries whose names carry an escape sequence, a carriage
    // return and a newline: the one error line must stay one printable line.
    let evil = "e\x1b]0;owned\x07\x1b[2J\rfake\n";
    let cases: Vec<(&str, Vec<Vec<u8>>)> = vec![
        (
            "a climbing name",
            vec![imagefix::layer(&[Entry::RawFile(
                raw(&format!("{evil}/../../x")),
                raw("x"),
            )])],
        ),
        (
            "a write through a symlink loop",
            vec![imagefix::layer(&[
                Entry::RawSymlink(raw(evil), raw(evil)),
                Entry::RawFile(raw(&format!("{evil}/f")), raw("x")),
            ])],
        ),
        (
            "a bad whiteout",
            vec![imagefix::layer(&[Entry::RawFile(
                raw(&format!("{evil}/.wh...")),
                Vec::new(),
            )])],
        ),
    ];
    for (what, layers) in cases {
        let env = Env::new("ctl");
        let img = env.docker("ctl", layers);
        refused(&env, &img, &["fake"], what);
    }
    // A layer of noise: tar quotes the header's bytes back.
    let env = Env::new("ctl-noise");
    let noise: Vec<u8> = (0..2048u32).map(|i| (i * 7 + 3) as u8).collect();
    let blobs = vec![
        Blob::gzip(&imagefix::base_layer()),
        Blob {
            diff_id: format!("sha256:{}", imagefix::sha256_hex(&noise)),
            data: noise,
        },
    ];
    let img = env.oci("noise", &imagefix::oci_files_of(&blobs));
    refused(&env, &img, &["layer 2"], "a layer of noise");
    // Accepted: such a name is just a name in the rootfs.
    let env = Env::new("ctl-ok");
    let img = env.docker(
        "ctl",
        vec![imagefix::layer(&[Entry::RawFile(raw(evil), raw("x\n"))])],
    );
    let (rootfs, _) = contained(&env, &img, &["/bin/true"], "a control-character name");
    assert_eq!(read(&rootfs.join(evil)), "x\n");
}

// ---------------------------------------------------------------------------
// Device nodes

#[test]
fn device_nodes_are_made_by_root_and_become_empty_files_otherwise() {
    let env = Env::new("dev");
    let img = env.docker(
        "dev",
        vec![imagefix::layer(&[
            Entry::Dir("dev", 0o755),
            Entry::CharDev("dev/cnull", 1, 3),
            Entry::BlockDev("dev/bloop", 7, 250),
            Entry::Fifo("dev/fifo"),
        ])],
    );
    let (rootfs, o) = contained(&env, &img, &["/bin/true"], "device nodes");
    let e = stderr(&o);
    let ft = |n: &str| std::fs::symlink_metadata(rootfs.join(n)).unwrap();
    assert!(
        ft("dev/fifo").file_type().is_fifo(),
        "anyone may make a FIFO"
    );
    if is_root() {
        let c = ft("dev/cnull");
        assert!(c.file_type().is_char_device(), "root makes the char device");
        assert_eq!((libc::major(c.rdev()), libc::minor(c.rdev())), (1, 3));
        let b = ft("dev/bloop");
        assert!(
            b.file_type().is_block_device(),
            "root makes the block device"
        );
        assert_eq!((libc::major(b.rdev()), libc::minor(b.rdev())), (7, 250));
        assert!(!e.contains("device node"), "no warning as root: {e}");
    } else {
        for n in ["dev/cnull", "dev/bloop"] {
            let m = ft(n);
            assert!(m.is_file() && m.len() == 0, "{n} is an empty file");
        }
        let warnings: Vec<&str> = e
            .lines()
            .filter(|l| l.starts_with("hpcc: warning"))
            .collect();
        assert_eq!(warnings.len(), 1, "one warning: {e}");
        assert!(
            warnings[0].contains("2 device node(s)") && warnings[0].contains("empty files"),
            "the warning says what happened: {e}"
        );
    }
}

// ---------------------------------------------------------------------------
// Long names

fn long_path(components: usize, len: usize) -> String {
    (0..components)
        .map(|i| format!("{}", (b'a' + (i % 26) as u8) as char).repeat(len))
        .collect::<Vec<_>>()
        .join("/")
}

#[test]
fn very_long_names_unpack_or_fail_cleanly() {
    // NAME_MAX exactly: fine.
    let env = Env::new("long");
    let name255 = "n".repeat(255);
    let img = env.docker("long", vec![imagefix::layer(&[file(&name255, "255\n")])]);
    let (rootfs, o) = contained(
        &env,
        &img,
        &["/bin/cat", &format!("/{name255}")],
        "255-byte name",
    );
    assert_eq!(read(&rootfs.join(&name255)), "255\n");
    assert_eq!(stdout(&o), "255\n");

    // One past NAME_MAX: the kernel refuses it; so does hpcc, in one line.
    let env = Env::new("long");
    let name256 = "n".repeat(256);
    let img = env.docker("long", vec![imagefix::layer(&[file(&name256, "256\n")])]);
    refused(
        &env,
        &img,
        &["File name too long", &name256[..40]],
        "256-byte name",
    );

    // A path just under PATH_MAX inside the rootfs: unpacks, runs, and the
    // cache can still remove it (the absolute path is past PATH_MAX).
    let env = Env::new("deep");
    let deep = format!("{}/f", long_path(19, 200));
    assert!(deep.len() < 4000);
    let img = env.docker("deep", vec![imagefix::layer(&[file(&deep, "deep\n")])]);
    let script = deep
        .split('/')
        .map(|c| {
            if c == "f" {
                "cat f".to_string()
            } else {
                format!("cd {c}")
            }
        })
        .collect::<Vec<_>>()
        .join(" && ");
    let (_, o) = contained(&env, &img, &["/bin/sh", "-c", &script], "a 3.8 KB path");
    assert_eq!(stdout(&o), "deep\n");
    let digest = env.images().pop().unwrap();
    let o = env.run(&["rmi", &digest[..12]]);
    assert!(
        o.status.success() && !stderr(&o).contains("panicked"),
        "rmi of a deep image: {}",
        stderr(&o)
    );
    assert!(
        env.images().is_empty() && env.tmp_entries().is_empty(),
        "rmi left {:?} {:?}",
        env.images(),
        env.tmp_entries()
    );

    // The same deep tree, then a refused entry: the half-made unpack, with
    // its deep tree, must still go.
    let env = Env::new("deep-bad");
    let img = env.docker(
        "deep",
        vec![
            imagefix::layer(&[file(&deep, "deep\n")]),
            imagefix::layer(&[Entry::RawFile(raw("../x"), raw("x"))]),
        ],
    );
    refused(
        &env,
        &img,
        &["climbs out"],
        "a deep tree, then a climbing entry",
    );

    // A path past PATH_MAX: refused in one line.
    let env = Env::new("deeper");
    let deeper = format!("{}/f", long_path(21, 200));
    assert!(deeper.len() > 4096);
    let img = env.docker("deeper", vec![imagefix::layer(&[file(&deeper, "x\n")])]);
    refused(&env, &img, &["File name too long"], "a 4.2 KB path");
}

// ---------------------------------------------------------------------------
// A gzip bomb

/// Writes through to `inner` and hashes what passes.
struct HashingWriter<W> {
    inner: W,
    hasher: sha2::Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        sha2::Digest::update(&mut self.hasher, &buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A gzip layer holding one file of `size` zero bytes, built as a stream.
fn zero_bomb(name: &str, size: u64) -> Blob {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let mut w = HashingWriter {
        inner: gz,
        hasher: <sha2::Sha256 as sha2::Digest>::new(),
    };
    {
        let mut b = tar::Builder::new(&mut w);
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, name, std::io::repeat(0).take(size))
            .unwrap();
        b.finish().unwrap();
    }
    let diff = sha2::Digest::finalize(w.hasher);
    Blob {
        data: w.inner.finish().unwrap(),
        diff_id: format!(
            "sha256:{}",
            diff.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ),
    }
}

/// Free bytes on the filesystem holding `p`.
fn free_bytes(p: &Path) -> u64 {
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    // SAFETY: a zeroed statvfs is a valid out-parameter; c is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    assert_eq!(rc, 0, "statvfs {}", p.display());
    st.f_bavail as u64 * st.f_frsize as u64
}

/// Runs a command to its end and returns its output, its peak RSS in KiB
/// (wait4's rusage of that child alone, so other tests' children do not
/// count; but see the caller about what a fork inherits) and how long it
/// took.
fn run_measured(mut cmd: Command) -> (Output, u64, std::time::Duration) {
    let t0 = std::time::Instant::now();
    // Reaped by the wait4 below, which also gives its rusage.
    #[allow(clippy::zombie_processes)]
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        out.read_to_end(&mut v).unwrap();
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        err.read_to_end(&mut v).unwrap();
        v
    });
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid out-parameter.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child by pid; both pointers are valid.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut ru) };
    assert_eq!(pid, child.id() as i32, "wait4");
    let took = t0.elapsed();
    let o = Output {
        status: std::process::ExitStatus::from_raw(status),
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    };
    (o, ru.ru_maxrss as u64, took)
}

#[test]
fn a_2_gib_gzip_bomb_unpacks_in_constant_memory() {
    const SIZE: u64 = 2 << 30;
    let env = Env::new("bomb");
    let free = free_bytes(&env.dir);
    if free < SIZE + (1 << 30) {
        runtime_tests::skip(&format!(
            "the gzip bomb needs 3 GiB free at {}, there are {} MiB",
            env.dir.display(),
            free >> 20
        ));
        return;
    }
    let t0 = std::time::Instant::now();
    let bomb = zero_bomb("zeros", SIZE);
    eprintln!(
        "bomb: 2 GiB of zeros -> {} bytes of gzip (built in {:?})",
        bomb.data.len(),
        t0.elapsed()
    );
    assert!(bomb.data.len() < 8 << 20, "a bomb: a few MB");
    let blobs = vec![Blob::gzip(&imagefix::base_layer()), bomb];
    let img = env.oci("bomb", &imagefix::oci_files_of(&blobs));
    let before = env.snapshot();
    let args = [
        "run",
        "-q",
        img.to_str().unwrap(),
        "--",
        "/bin/stat",
        "-c",
        "%s",
        "/zeros",
    ];
    // GNU time forks hpcc from its own small process, so %M is hpcc's peak
    // alone. wait4 from here is the fallback: a child forked from this
    // test process (which other tests may have made large) starts with
    // the test's resident pages, so it can only give an upper bound.
    let time_out = std::env::temp_dir().join(format!("hh-time-{}", std::process::id()));
    let have_time = Path::new("/usr/bin/time").is_file();
    let (o, maxrss_kib, took, how) = if have_time {
        let mut cmd = Command::new("/usr/bin/time");
        cmd.args(["-f", "%M", "-o", time_out.to_str().unwrap()])
            .arg(runtime_tests::hpcc_bin())
            .args(args)
            .env("HPCC_CACHE_DIR", env.cache())
            .current_dir("/")
            .stdin(Stdio::null());
        let (o, _, took) = run_measured(cmd);
        let text = std::fs::read_to_string(&time_out).unwrap();
        let _ = std::fs::remove_file(&time_out);
        let kib: u64 = text
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .next_back()
            .unwrap_or_else(|| panic!("no %M in {text:?}"));
        (o, kib, took, "GNU time %M")
    } else {
        tool_missing("/usr/bin/time (GNU time); measuring with wait4, an upper bound");
        let (o, kib, took) = run_measured(env.cmd(&args));
        (o, kib, took, "wait4 ru_maxrss")
    };
    eprintln!(
        "bomb: unpack + run took {took:?}, peak RSS of hpcc {} KiB ({} MiB) by {how}",
        maxrss_kib,
        maxrss_kib >> 10
    );
    sane(&env, &before, &o, "gzip bomb");
    assert!(o.status.success(), "bomb: {}", stderr(&o));
    assert_eq!(stdout(&o), format!("{SIZE}\n"));
    assert!(maxrss_kib > 512, "{how} measured nothing: {maxrss_kib} KiB");
    assert!(
        maxrss_kib < 100 << 10,
        "the unpack must stream: peak RSS {maxrss_kib} KiB"
    );
    let rootfs = env
        .cache()
        .join("images")
        .join(&env.images()[0])
        .join("rootfs");
    let m = std::fs::metadata(rootfs.join("zeros")).unwrap();
    assert_eq!(m.len(), SIZE);
    // The tail is zeros too (the whole file was written, not just sized).
    let mut f = std::fs::File::open(rootfs.join("zeros")).unwrap();
    std::io::Seek::seek(&mut f, std::io::SeekFrom::End(-(1 << 20))).unwrap();
    let mut tail = Vec::new();
    f.read_to_end(&mut tail).unwrap();
    assert!(tail.len() == 1 << 20 && tail.iter().all(|&b| b == 0));
    drop(f);
    // 2 GiB on disk: remove it now, through hpcc, and see it gone.
    let o = env.run(&["rmi", img.to_str().unwrap()]);
    assert!(o.status.success(), "rmi: {}", stderr(&o));
    assert!(env.images().is_empty() && env.tmp_entries().is_empty());
}

// ---------------------------------------------------------------------------
// A full disk

/// How to get a private mount namespace to mount a tmpfs in: root needs
/// only a mount namespace, a user also a user namespace (where it is root,
/// but not real root, so hpcc takes its unprivileged path).
fn unshare_args() -> Vec<&'static str> {
    if is_root() {
        vec!["-m"]
    } else {
        vec!["-U", "-r", "-m"]
    }
}

fn can_unshare() -> bool {
    let ok = Command::new("unshare")
        .args(unshare_args())
        .args(["sh", "-c", "true"])
        .stderr(Stdio::null())
        .status();
    match ok {
        Ok(s) if s.success() => true,
        Ok(s) => {
            runtime_tests::skip(&format!("unshare {:?} fails here ({s})", unshare_args()));
            false
        }
        Err(e) => {
            tool_missing(&format!("unshare (util-linux): {e}"));
            false
        }
    }
}

/// Runs the image with the cache on a fresh tmpfs of `opts`, and reports
/// hpcc's output plus what the tmpfs held afterwards (it goes with the
/// mount namespace).
fn run_on_tmpfs(env: &Env, opts: &str, img: &Path) -> (Output, String, String) {
    let script = r#"
        # mode=0700: hpcc refuses a cache that others may write (tmpfs is 1777).
        mount -t tmpfs -o "$1,mode=0700" none "$2" || { echo "MOUNT FAILED"; exit 90; }
        HPCC_CACHE_DIR=$2 "$3" run -q "$4" -- /bin/true
        rc=$?
        echo "images=[$(ls -A "$2/images" 2>/dev/null | tr '\n' ' ')]"
        echo "tmp=[$(ls -A "$2/tmp" 2>/dev/null | tr '\n' ' ')]"
        exit $rc
    "#;
    let before = env.snapshot();
    let o = Command::new("unshare")
        .args(unshare_args())
        .args(["sh", "-c", script, "sh", opts])
        .arg(env.cache())
        .arg(runtime_tests::hpcc_bin())
        .arg(img)
        .current_dir("/")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    sane(env, &before, &o, "full disk");
    let out = stdout(&o);
    assert!(
        !out.contains("MOUNT FAILED"),
        "mounting the tmpfs: {}",
        stderr(&o)
    );
    let field = |k: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=[")))
            .and_then(|l| l.strip_suffix(']'))
            .unwrap_or_else(|| panic!("no {k}= in {out}"))
            .trim()
            .to_string()
    };
    let (images, tmp) = (field("images"), field("tmp"));
    (o, images, tmp)
}

#[test]
fn a_full_disk_fails_in_one_line_and_leaves_no_partial_image() {
    if !can_unshare() {
        return;
    }
    // Out of bytes: 64 MiB of data on a 16 MiB cache (not zeros: those
    // are written as holes and take no space).
    let env = Env::new("enospc");
    let blobs = base_and(&[Entry::File("fill".into(), vec![0xa5; 64 << 20], 0o644)]);
    let img = env.oci("full", &imagefix::oci_files_of(&blobs));
    let (o, images, tmp) = run_on_tmpfs(&env, "size=16m", &img);
    let e = stderr(&o);
    eprintln!("full disk: {}", e.trim());
    assert!(!o.status.success(), "a 64 MiB file fit on 16 MiB");
    let lines: Vec<&str> = e.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one error line: {e}");
    assert!(lines[0].starts_with("hpcc: "), "{e}");
    assert!(
        lines[0].contains("No space left on device"),
        "names the problem: {e}"
    );
    assert!(
        lines[0].contains("fill") && lines[0].contains("layer 2"),
        "names the entry: {e}"
    );
    assert_eq!(images, "", "no image entry after a full disk");
    assert_eq!(tmp, "", "no half-made unpack after a full disk");

    // Out of inodes: 2000 empty files on a tmpfs with 300.
    let env = Env::new("enospc-ino");
    let many: Vec<Entry> = (0..2000).map(|i| file(&format!("f{i}"), "")).collect();
    let blobs = base_and(&many);
    let img = env.oci("full", &imagefix::oci_files_of(&blobs));
    let (o, images, tmp) = run_on_tmpfs(&env, "size=64m,nr_inodes=300", &img);
    let e = stderr(&o);
    eprintln!("out of inodes: {}", e.trim());
    assert!(!o.status.success(), "2000 files fit in 300 inodes");
    let lines: Vec<&str> = e.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one error line: {e}");
    assert!(
        lines[0].contains("No space left on device"),
        "names the problem: {e}"
    );
    assert!(lines[0].contains("layer 2"), "names the layer: {e}");
    assert_eq!(images, "", "no image entry after running out of inodes");
    assert_eq!(tmp, "", "no half-made unpack after running out of inodes");
}
