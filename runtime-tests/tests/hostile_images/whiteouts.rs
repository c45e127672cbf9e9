//! Whiteouts and opaque markers never climb or follow symlinks out of the
//! rootfs; `.wh.` as a directory component is just a name.

use std::path::Path;

use crate::checks::{contained, file, link, raw, read, refused, REL_UP, TO_TEST_DIR};
use crate::env::Env;
use crate::imagefix::{self, Entry};

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
