//! Entry names: names that climb (in any entry kind and layer), absolute
//! names, control characters, and names at and past NAME_MAX and
//! PATH_MAX.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use runtime_tests::{stderr, stdout};

use crate::checks::{contained, file, raw, read, refused, TO_TEST_DIR};
use crate::env::Env;
use crate::imagefix::{self, Blob, Entry};

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
