//! Hard links never reach outside files: targets outside the rootfs are
//! refused, links to symlinks and files over links stay contained.

use std::os::unix::fs::MetadataExt;

use crate::checks::{contained, file, link, raw, read, refused, TO_TEST_DIR};
use crate::env::Env;
use crate::imagefix::{self, Entry};

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
