//! The read-only root of `hpcc run`: the image under a skeleton that holds
//! the generated files and the mount points the image lacks, made once and
//! found again by later runs, removed by `prune` once unused; and the
//! private overlay wherever a skeleton cannot serve (a writable root, a
//! cache with no room for one).

use crate::common::*;
use crate::imagefix::{self, list, Entry, Image};
use runtime_tests::{ok, stdout};
use std::io::BufRead;
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

/// What a root line says of the filesystem (after " - "), not the mount
/// and device numbers that differ from run to run.
fn root_fs(out: &str) -> &str {
    let line = out.lines().next().unwrap_or("");
    line.split_once(" - ").map_or(line, |(_, fs)| fs)
}

/// A scratch cache and the test image's tar; None, once the skip is
/// said, where the root is forced to an underlay (which has no skeleton).
fn overlay_env(tag: &str) -> Option<(Env, PathBuf)> {
    if runtime_tests::forced_underlay() {
        runtime_tests::skip("the underlay never makes a skeleton");
        return None;
    }
    let env = Env::new(tag);
    let tar = docker_tar(&env);
    Some((env, tar))
}

fn caller_in_passwd(out: &str) -> bool {
    let me = runtime_tests::euid().to_string();
    out.lines()
        .any(|l| l.split(':').nth(2) == Some(me.as_str()))
}

#[test]
fn a_read_only_root_stacks_a_skeleton_made_once_over_the_image() {
    let env = Env::new("skeleton");
    let tar = docker_tar(&env);
    let t = tar.to_str().unwrap();
    let first = ok(&env.run(&["run", t, "--", ROOT_AND_PASSWD]));
    let dir = image_dir(&env);
    assert!(caller_in_passwd(&first), "{first}");
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
    let root = root_fs(&first);
    assert!(
        root.starts_with("overlay ") && root.contains(&lower) && !root.contains("upperdir"),
        "a read-only overlay of the skeleton and the image: {root}"
    );
    assert!(root.contains(" ro,"), "{root}");
    // The next run finds it, and makes nothing.
    let again = ok(&env.run(&["run", t, "--", ROOT_AND_PASSWD]));
    assert_eq!(root_fs(&again), root);
    assert_eq!(
        again.lines().skip(1).collect::<Vec<_>>(),
        first.lines().skip(1).collect::<Vec<_>>()
    );
    assert_eq!(skeletons(&env), made);
    assert!(env.tmp_entries().is_empty(), "{:?}", env.tmp_entries());
    // A bind to a path the image lacks needs another mount point: another
    // skeleton beside the first, and still nothing in the image itself.
    // The skeleton's /data merges with the image's, and /ro, whose mode
    // the skeleton copies, stays 555; / is 755 as on any system.
    let data = env.dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("f"), "bound\n").unwrap();
    let binds = [
        format!("{}:/data/point", data.display()),
        format!("{}:/ro/point", data.display()),
    ];
    assert_eq!(
        ok(&env.run(&[
            "run",
            "--bind",
            &binds[0],
            "--bind",
            &binds[1],
            t,
            "--",
            "cat /data/point/f /data/old.txt; ls /data; stat -c %a / /ro /etc"
        ])),
        "bound\nold\nhard.txt\nlink\nold.txt\npoint\n755\n555\n755\n"
    );
    assert_eq!(skeletons(&env).len(), 2);
    assert!(!dir.join("rootfs/data/point").exists() && !dir.join("rootfs/ro/point").exists());
    assert!(!dir.join("rootfs/proc").exists() && !dir.join("rootfs/tmp").exists());
    // --writable-tmpfs needs the private overlay's upper layer.
    let rw = ok(&env.run(&["run", "--writable-tmpfs", t, "--", ROOT_AND_PASSWD]));
    assert!(root_fs(&rw).contains("upperdir="), "{rw}");
    assert_eq!(skeletons(&env).len(), 2);
}

#[test]
fn ranks_that_start_at_once_make_one_skeleton() {
    let Some((env, tar)) = overlay_env("skeleton-ranks") else {
        return;
    };
    let t = tar.to_str().unwrap();
    ok(&env.run(&["run", "--writable-tmpfs", t, "--", "true"]));
    assert!(!image_dir(&env).join("skeletons").exists());
    let ranks: Vec<_> = (0..8)
        .map(|_| env.cmd(&["run", t, "--", "cat /etc/group"]).output_async())
        .collect();
    for r in ranks {
        let o = r.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", runtime_tests::stderr(&o));
    }
    assert_eq!(skeletons(&env).len(), 1, "{:?}", skeletons(&env));
    assert!(env.mount_dir_leftovers().is_empty());
}

/// Spawning for the rank test: `Command::spawn` with piped output.
trait OutputAsync {
    fn output_async(self) -> std::process::Child;
}

impl OutputAsync for std::process::Command {
    fn output_async(mut self) -> std::process::Child {
        self.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("starting hpcc")
    }
}

#[test]
fn prune_removes_the_skeletons_no_container_uses() {
    let Some((env, tar)) = overlay_env("skeleton-prune") else {
        return;
    };
    let t = tar.to_str().unwrap();
    ok(&env.run(&["run", t, "--", "true"]));
    let bind = format!("{}:/elsewhere", env.dir.display());
    // A container that stays up, on a second skeleton.
    let mut up = env
        .cmd(&["run", "--bind", &bind, t, "--", "echo up; exec sleep 30"])
        .output_async();
    let mut line = String::new();
    std::io::BufReader::new(up.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "up\n");
    assert_eq!(skeletons(&env).len(), 2);
    let o = ok(&env.run(&["prune"]));
    assert!(o.contains("1 unused skeleton(s)"), "{o}");
    let left = skeletons(&env);
    assert_eq!(left.len(), 1);
    let _ = up.kill();
    let _ = up.wait();
    // The one it kept is the running container's: a run with its binds
    // finds it again.
    ok(&env.run(&["run", "--bind", &bind, t, "--", "true"]));
    assert_eq!(skeletons(&env), left);
    let o = ok(&env.run(&["prune"]));
    assert!(o.contains("1 unused skeleton(s)"), "{o}");
    assert!(skeletons(&env).is_empty());
    // The image itself stays (its archive is still there).
    assert_eq!(ok(&env.run(&["run", t, "--", "echo ok"])), "ok\n");
}

#[test]
fn an_image_symlink_is_replaced_by_the_generated_file() {
    // Ubuntu's /etc/resolv.conf points into /run, which the image lacks.
    let env = Env::new("skeleton-link");
    let layer = imagefix::layer(&[Entry::Symlink(
        "etc/resolv.conf".into(),
        "../run/systemd/resolve/stub-resolv.conf".into(),
    )]);
    let p = env.dir.join("link.tar");
    imagefix::write_docker_archive(
        &p,
        &[&Image::new(vec![imagefix::base_layer(), layer], "link:1")],
    );
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let inside = ok(&env.run(&[
        "run",
        p.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "cat /etc/resolv.conf; if test -L /etc/resolv.conf; then echo link; fi",
    ]));
    if host.is_empty() {
        runtime_tests::skip("this host has no /etc/resolv.conf to copy");
        return;
    }
    assert_eq!(inside, host);
    let link = image_dir(&env).join("rootfs/etc/resolv.conf");
    assert!(std::fs::symlink_metadata(link)
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn without_room_for_a_skeleton_the_run_uses_a_private_overlay() {
    let Some((env, tar)) = overlay_env("noskeleton") else {
        return;
    };
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
    assert!(root_fs(&out).contains("upperdir="), "{out}");
    assert!(caller_in_passwd(&out), "{out}");
    assert!(env.tmp_entries().is_empty(), "{:?}", env.tmp_entries());
    assert_eq!(std::fs::read(&store).unwrap(), b"");
}

#[test]
fn an_image_user_other_than_root_reaches_the_whole_root() {
    if !runtime_tests::is_root() {
        runtime_tests::skip("only real root runs as the image's USER");
        return;
    }
    let env = Env::new("skeleton-user");
    let image = Image::new(vec![imagefix::base_layer()], "user:1")
        .with_config(serde_json::json!({"User": "4321:4321", "Env": ["PATH=/bin"]}));
    let p = env.dir.join("user.tar");
    imagefix::write_docker_archive(&p, &[&image]);
    assert_eq!(
        ok(&env.run(&[
            "run",
            p.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            "id -u; cat /etc/passwd >/dev/null && ls / >/dev/null && echo reached"
        ])),
        "4321\nreached\n"
    );
}
