//! The fuzzer's bytes are a layer tar, applied (unprivileged) to a fresh
//! rootfs directory, then applied again over the result (so whiteouts,
//! opaque directories and replacements meet existing files). Whatever the
//! layer holds, nothing may change outside the rootfs: its parent holds
//! only the rootfs, a sentinel file and a sentinel directory, all as they
//! were.
#![no_main]

#[path = "common/scratch.rs"]
mod scratch;

use hpcc::fuzzing::{remove_tree, Applier};
use libfuzzer_sys::fuzz_target;
use scratch::remove_stale;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const SENTINEL: &[u8] = b"outside the rootfs\n";

struct Scratch {
    base: PathBuf,
    /// (dev, ino, mode, nlink, size, mtime) of the sentinel file.
    file: (u64, u64, u32, u64, u64, i64),
}

fn stat(p: &Path) -> (u64, u64, u32, u64, u64, i64) {
    let m = std::fs::symlink_metadata(p).expect("sentinel");
    (m.dev(), m.ino(), m.mode(), m.nlink(), m.size(), m.mtime())
}

fn scratch() -> &'static Scratch {
    static S: OnceLock<Scratch> = OnceLock::new();
    S.get_or_init(|| {
        // A tiny GNU sparse entry may declare gigabytes of holes, which
        // the applier writes out as zeros (see the README's fuzzing notes);
        // cap every file so such an input fails with EFBIG instead of
        // filling the tmpfs.
        // SAFETY: ignoring SIGXFSZ installs no handler code; setrlimit
        // takes a valid pointer.
        unsafe {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let lim = libc::rlimit {
                rlim_cur: 16 << 20,
                rlim_max: 16 << 20,
            };
            assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &lim), 0);
        }
        let tmp = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        remove_stale(&tmp, "fuzzscratch-apply.");
        let base = tmp.join(format!("fuzzscratch-apply.{}", std::process::id()));
        let _ = remove_tree(&base);
        std::fs::create_dir_all(base.join("outside")).expect("scratch dir");
        std::fs::write(base.join("sentinel"), SENTINEL).expect("sentinel");
        std::fs::write(base.join("outside/file"), SENTINEL).expect("sentinel");
        Scratch {
            file: stat(&base.join("sentinel")),
            base,
        }
    })
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("listing")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fuzz_target!(|data: &[u8]| {
    let s = scratch();
    let root = s.base.join("rootfs");
    std::fs::create_dir(&root).expect("fresh rootfs");
    for _ in 0..2 {
        let mut a = Applier::new(&root, false).expect("opening the rootfs");
        if a.apply_layer(std::io::Cursor::new(data)).is_ok() {
            let _ = a.finish();
        }
    }
    assert_eq!(names(&s.base), ["outside", "rootfs", "sentinel"]);
    assert_eq!(names(&s.base.join("outside")), ["file"]);
    assert_eq!(stat(&s.base.join("sentinel")), s.file, "sentinel changed");
    assert_eq!(
        std::fs::read(s.base.join("sentinel")).expect("sentinel"),
        SENTINEL
    );
    assert_eq!(
        std::fs::read(s.base.join("outside/file")).expect("sentinel"),
        SENTINEL
    );
    assert!(std::fs::symlink_metadata(&root).expect("rootfs").is_dir());
    remove_tree(&root).expect("removing the rootfs");
});
