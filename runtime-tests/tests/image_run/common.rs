//! What the image tests share: the scratch Env, the test image and its
//! docker-archive tar, and the one-clear-error check.

use crate::imagefix::{self, Entry, Image};
use runtime_tests::{stderr, stdout};
use std::path::PathBuf;
use std::process::Output;

/// A scratch directory with its own image cache.
pub type Env = imagefix::scratch::Scratch;

#[track_caller]
pub fn fails_with(o: &Output, needles: &[&str]) {
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
pub fn test_image() -> Image {
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

pub fn docker_tar(env: &Env) -> PathBuf {
    let p = env.dir.join("docker.tar");
    imagefix::write_docker_archive(&p, &[&test_image()]);
    p
}
