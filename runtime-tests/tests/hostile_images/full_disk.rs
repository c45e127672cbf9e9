//! A full disk, of bytes or of inodes: the unpack fails in one line and
//! leaves no partial image.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use runtime_tests::{is_root, stderr, stdout};

use crate::checks::{base_and, file, sane, tool_missing};
use crate::env::Env;
use crate::imagefix::{self, Entry};

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
