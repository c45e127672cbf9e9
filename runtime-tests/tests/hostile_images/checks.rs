//! The verdicts on a hostile image: refused in one clear line with
//! nothing cached, or contained in the cache; in both cases no panic and
//! nothing changed outside the cache. Also the small builders the cases
//! share.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use runtime_tests::{stderr, stdout};

use crate::env::Env;
use crate::imagefix::{self, list, Blob, Entry};

/// A missing tool fails the test under HPCC_REQUIRE_CLIENTS=1; otherwise
/// the test says why it could not run.
pub fn tool_missing(why: &str) {
    runtime_tests::missing(&format!("hostile_images: cannot run: {why}"));
}

/// What a cache may hold at its top.
pub const CACHE_DIRS: &[&str] = &["images", "tmp", "refs", "locks", "mnt"];
/// What a cached image may hold.
pub const IMAGE_FILES: &[&str] = &[
    "rootfs",
    "config.json",
    "meta.json",
    "last-used",
    "skeletons",
];

/// The checks every case must pass, whatever hpcc made of it: no panic,
/// nothing changed outside the cache, the cache holds only its own
/// directories, and no unpack is left half-made.
#[track_caller]
pub fn sane(env: &Env, before: &BTreeMap<String, String>, o: &Output, what: &str) {
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
        env.mount_dir_leftovers().is_empty(),
        "{what}: the mount directory is not empty: {:?}",
        env.mount_dir_leftovers()
    );
}

/// Runs `hpcc run -q IMAGE -- ARGS` and checks it left everything sane.
///
/// A failure from openat2's EAGAIN (a rename or mount elsewhere on the host
/// raced a ".." walk) is a known bug owned by
/// `dotdot_symlinks_resolve_while_the_host_renames_files`; here it is
/// retried, loudly, so the other cases do not flake on it.
pub fn attempt(env: &Env, image: &Path, args: &[&str], what: &str) -> Output {
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
pub fn refused(env: &Env, image: &Path, needles: &[&str], what: &str) -> String {
    let images_before = env.images();
    let refs_before = list(&env.cache().join("refs"));
    let o = attempt(env, image, &["/bin/true"], what);
    check_refused(env, &o, needles, &images_before, &refs_before, what)
}

#[track_caller]
pub fn check_refused(
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
pub fn contained(env: &Env, image: &Path, args: &[&str], what: &str) -> (PathBuf, Output) {
    let o = attempt(env, image, args, what);
    let rootfs = check_contained(env, &o, what);
    (rootfs, o)
}

#[track_caller]
pub fn check_contained(env: &Env, o: &Output, what: &str) -> PathBuf {
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
pub fn refused_or_contained(
    env: &Env,
    image: &Path,
    needles: &[&str],
    what: &str,
) -> Option<PathBuf> {
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

pub fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub fn raw(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

pub fn file(name: &str, data: &str) -> Entry {
    Entry::File(name.into(), data.as_bytes().to_vec(), 0o644)
}

pub fn link(name: &str, target: &str) -> Entry {
    Entry::Symlink(name.into(), target.into())
}

/// "../" enough times to climb from `<cache>/tmp/<unpack>/rootfs` (or
/// `<cache>/images/<hex>/rootfs`) to the test directory.
pub const TO_TEST_DIR: &str = "../../../..";

/// A relative symlink target that climbs far past "/".
pub const REL_UP: &str = "../../../../../../../../../../..";

pub fn base_and(entries: &[Entry]) -> Vec<Blob> {
    vec![
        Blob::gzip(&imagefix::base_layer()),
        Blob::gzip(&imagefix::layer(entries)),
    ]
}

pub fn blob_hex(b: &Blob) -> String {
    imagefix::sha256_hex(&b.data)
}
