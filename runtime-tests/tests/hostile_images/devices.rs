//! Device nodes and FIFOs: made as such by root, empty files with one
//! warning otherwise.

use std::os::unix::fs::{FileTypeExt, MetadataExt};

use runtime_tests::{is_root, stderr};

use crate::checks::contained;
use crate::env::Env;
use crate::imagefix::{self, Entry};

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
