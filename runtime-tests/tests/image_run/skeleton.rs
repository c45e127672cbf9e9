//! The read-only root of `hpcc run`: the image under a skeleton that holds
//! the generated files and the mount points the image lacks, made once and
//! found again by later runs; and the private overlay wherever a skeleton
//! cannot serve (a writable root, a cache with no room for one).

use crate::common::*;
use crate::imagefix::list;
use runtime_tests::{ok, stdout};
use std::path::PathBuf;

/// The container's root line of /proc/self/mountinfo, and /etc/passwd.
const ROOT_AND_PASSWD: &str = "grep ' / / ' /proc/self/mountinfo; cat /etc/passwd";

fn image_dir(env: &Env) -> PathBuf {
    let dirs = env.images();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    env.cache().join("images").join(&dirs[0])
}

fn skeletons(env: &Env) -> Vec<String> {
    list(&image_dir(env).join("skeletons"))
}

#[test]
fn a_read_only_root_stacks_a_skeleton_made_once_over_the_image() {
    let env = Env::new("skeleton");
    let tar = docker_tar(&env);
    let t = tar.to_str().unwrap();
    let first = ok(&env.run(&["run", t, "--", ROOT_AND_PASSWD]));
    let dir = image_dir(&env);
    let me = runtime_tests::euid().to_string();
    assert!(
        first
            .lines()
            .any(|l| l.split(':').nth(2) == Some(me.as_str())),
        "the caller is in /etc/passwd: {first}"
    );
    if runtime_tests::forced_underlay() {
        // The underlay is its own root: no overlay, so no skeleton.
        assert!(!first.contains(" - overlay "), "{first}");
        assert!(!dir.join("skeletons").exists());
        return;
    }
    let made = skeletons(&env);
    assert_eq!(made.len(), 1, "one skeleton: {made:?}");
    let lower = format!(
        "lowerdir={}:{}",
        dir.join("skeletons").join(&made[0]).display(),
        dir.join("rootfs").display()
    );
    let root = first.lines().next().unwrap_or("");
    assert!(
        root.contains(" - overlay ") && root.contains(&lower) && !root.contains("upperdir"),
        "a read-only overlay of the skeleton and the image: {root}"
    );
    assert!(
        root.split(' ').nth(5).unwrap_or("").starts_with("ro"),
        "{root}"
    );
    // The next run finds it, and makes nothing.
    assert_eq!(ok(&env.run(&["run", t, "--", ROOT_AND_PASSWD])), first);
    assert_eq!(skeletons(&env), made);
    assert!(env.tmp_entries().is_empty(), "{:?}", env.tmp_entries());
    // A bind to a path the image lacks needs another mount point: another
    // skeleton beside the first, and still nothing in the image itself.
    // The skeleton's /data merges with the image's.
    let data = env.dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("f"), "bound\n").unwrap();
    let bind = format!("{}:/data/point", data.display());
    assert_eq!(
        ok(&env.run(&[
            "run",
            "--bind",
            &bind,
            t,
            "--",
            "cat /data/point/f /data/old.txt; ls /data"
        ])),
        "bound\nold\nhard.txt\nlink\nold.txt\npoint\n"
    );
    assert_eq!(skeletons(&env).len(), 2);
    assert!(!dir.join("rootfs/data/point").exists());
    assert!(!dir.join("rootfs/proc").exists() && !dir.join("rootfs/tmp").exists());
    // The image's own directories keep their mode under the skeleton's.
    assert_eq!(
        ok(&env.run(&["run", t, "--", "stat -c %a /etc /ro"])),
        "755\n555\n"
    );
    // --writable-tmpfs needs the private overlay's upper layer.
    let rw = ok(&env.run(&["run", "--writable-tmpfs", t, "--", ROOT_AND_PASSWD]));
    assert!(
        rw.lines().next().unwrap_or("").contains("upperdir="),
        "{rw}"
    );
    assert_eq!(skeletons(&env).len(), 2);
}

#[test]
fn without_room_for_a_skeleton_the_run_uses_a_private_overlay() {
    if runtime_tests::forced_underlay() {
        runtime_tests::skip("the underlay never makes a skeleton");
        return;
    }
    let env = Env::new("noskeleton");
    let tar = docker_tar(&env);
    let t = tar.to_str().unwrap();
    ok(&env.run(&["run", t, "--", "true"]));
    // Where the skeletons go, a file: as a full disk or a quota would,
    // it refuses every new one.
    let store = image_dir(&env).join("skeletons");
    std::fs::remove_dir_all(&store).unwrap();
    std::fs::write(&store, "").unwrap();
    let o = env.run(&["run", t, "--", ROOT_AND_PASSWD]);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.lines().next().unwrap_or("").contains("upperdir="),
        "{out}"
    );
    let me = runtime_tests::euid().to_string();
    assert!(out
        .lines()
        .any(|l| l.split(':').nth(2) == Some(me.as_str())));
    assert!(env.tmp_entries().is_empty(), "{:?}", env.tmp_entries());
    assert_eq!(std::fs::read(&store).unwrap(), b"");
}
