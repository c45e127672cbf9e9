//! Registry images in a shared cache: pulls of two images that share a
//! layer, at once, and `rmi docker://REF`.

use crate::fixture::*;
use crate::imagefix::scratch::Scratch;
use crate::imagefix::{self, Entry};
use crate::server::Server;
use std::process::Stdio;
use std::sync::Arc;

const OTHER: &str = "t/other";

/// The test image, and another on top of the same base layer as
/// `OTHER`, both served by one registry (`delay` before each answer).
fn two_images(delay_ms: u64) -> (Arc<Img>, Arc<Img>, Server) {
    let a = Img::new();
    let b = Img::layered(
        OTHER,
        &[imagefix::layer(&[Entry::File(
            "etc/other".into(),
            b"other\n".to_vec(),
            0o644,
        )])],
    );
    assert_eq!(a.layer, b.layer, "the images must share their base layer");
    let (a2, b2) = (a.clone(), b.clone());
    let srv = Server::start(move |r| {
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        if r.path.starts_with(&format!("/v2/{OTHER}/")) {
            b2.answer(r)
        } else {
            a2.answer(r)
        }
    });
    (a, b, srv)
}

/// Eight ranks of each of two images that share their base layer, all at
/// once: each pull keeps its blobs apart, so none removes a layer the
/// other still needs, and nothing is left once both are cached.
#[test]
fn images_sharing_a_layer_pull_at_once_without_spoiling_each_other() {
    // Slow enough that the pulls overlap.
    let (a, b, srv) = two_images(30);
    let s = Scratch::new("reg-share");
    let ra = reference(&srv, ":latest");
    let rb = format!("docker://{}/{OTHER}:latest", srv.host());
    let kids: Vec<_> = (0..16)
        .map(|i| {
            let (r, cmd) = if i % 2 == 0 {
                (&ra, "echo from-a".to_string())
            } else {
                (&rb, "cat /etc/other".to_string())
            };
            hpcc(&s, &["run", "-q", r, "--", "sh", "-c", &cmd])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, k) in kids.into_iter().enumerate() {
        ran(
            &k.wait_with_output().unwrap(),
            if i % 2 == 0 { "from-a" } else { "other" },
        );
    }
    let mut want = vec![a.config_hex(), b.config_hex()];
    want.sort();
    assert_eq!(s.images(), want);
    assert_eq!(
        imagefix::list(&s.cache().join("pulls")),
        Vec::<String>::new()
    );
}

/// `rmi docker://REF` removes what that reference pulled: by tag, or by
/// the manifest digest `images` shows; another image stays.
#[test]
fn rmi_takes_registry_references() {
    let (a, b, srv) = two_images(0);
    let s = Scratch::new("reg-rmi");
    let ra = reference(&srv, ":latest");
    let rb = format!("docker://{}/{OTHER}:latest", srv.host());
    for r in [&ra, &rb] {
        ran(&run(&s, &["pull", "-q", r]), "cached as");
    }
    let o = run(&s, &["rmi", &ra]);
    ran(&o, &a.config_hex());
    assert_eq!(s.images(), vec![b.config_hex()]);
    let o = run(&s, &["rmi", &ra]);
    says(&o, &[&ra, "not in the cache"]);
    assert_eq!(s.images(), vec![b.config_hex()]);
    let pinned = format!("docker://{}/{OTHER}@{}", srv.host(), b.manifest_digest());
    ran(&run(&s, &["rmi", &pinned]), &b.config_hex());
    assert_eq!(s.images(), Vec::<String>::new());
    says(
        &run(&s, &["rmi", "docker://no such"]),
        &["docker://no such"],
    );
}

/// What a killed pull leaves (its `.partial` download) is resumed by the
/// next pull of that image with a `Range` request; what nobody resumes,
/// `prune` clears.
#[test]
fn a_killed_pull_is_resumed_by_the_next_and_pruned_otherwise() {
    let img = Img::new();
    let i2 = img.clone();
    let srv = Server::start(move |r| i2.answer(r));
    let s = Scratch::new("reg-killed");
    let leave_partial = |config_hex: &str| {
        let dir = s
            .cache()
            .join("pulls")
            .join(config_hex)
            .join("blobs/sha256");
        std::fs::create_dir_all(&dir).unwrap();
        let half = &img.layer[..img.layer.len() / 2];
        let name = format!("{}.partial", &img.layer_digest()[7..]);
        std::fs::write(dir.join(name), half).unwrap();
        for p in [s.cache(), s.cache().join("pulls")] {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
    };
    leave_partial(&img.config_hex());
    ran(
        &run(&s, &["pull", "-q", &reference(&srv, ":latest")]),
        "cached as",
    );
    let half = img.layer.len() / 2;
    assert!(
        srv.requests()
            .iter()
            .any(|r| r.ends_with(&format!("{} range={half}", img.layer_digest()))),
        "{:?}",
        srv.requests()
    );
    assert_eq!(
        imagefix::list(&s.cache().join("pulls")),
        Vec::<String>::new()
    );
    leave_partial(&"0".repeat(64));
    let o = run(&s, &["prune"]);
    ran(&o, "1 unfinished unpack(s) or pull(s)");
    assert_eq!(
        imagefix::list(&s.cache().join("pulls")),
        Vec::<String>::new()
    );
}

/// `pull -o` of two images into one file at once (two pulls of one image
/// would take turns on the image's lock): each writes its own partial
/// file, both succeed, and the file left is whole. A partial that a killed
/// pull on this node left is removed by the next pull; one from another
/// node (sharing the filesystem) is not this node's to judge.
#[test]
fn pulls_to_one_output_file_never_mix() {
    let (img, other, srv) = two_images(30);
    let s = Scratch::new("reg-one-output");
    let out = s.dir.join("img.tar");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let killed = s
        .dir
        .join(format!(".img.tar.partial.{}.{}", host.trim(), i32::MAX));
    let elsewhere = s.dir.join(".img.tar.partial.another-node.1");
    std::fs::write(&killed, b"half").unwrap();
    std::fs::write(&elsewhere, b"half").unwrap();
    let refs = [
        (reference(&srv, ":latest"), img.manifest_digest()),
        (
            format!("docker://{}/{OTHER}:latest", srv.host()),
            other.manifest_digest(),
        ),
    ];
    let kids: Vec<_> = refs
        .iter()
        .map(|(r, _)| {
            hpcc(&s, &["pull", "-q", "-o", out.to_str().unwrap(), r])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (k, (_, digest)) in kids.into_iter().zip(&refs) {
        ran(&k.wait_with_output().unwrap(), digest);
    }
    assert!(!killed.exists(), "a dead pull's partial file was kept");
    assert!(
        elsewhere.exists(),
        "another node's partial file was removed"
    );
    let left: Vec<String> = imagefix::list(&s.dir)
        .into_iter()
        .filter(|n| n.starts_with(".img.tar.partial") && !n.contains("another-node"))
        .collect();
    assert_eq!(left, Vec::<String>::new());
    let s2 = Scratch::new("reg-one-output-run");
    ran(
        &run(&s2, &["run", out.to_str().unwrap(), "--", "echo", "whole"]),
        "whole",
    );
}
