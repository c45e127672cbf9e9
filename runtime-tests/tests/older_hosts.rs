//! Hosts unlike the build machines: no HOME (a systemd service, a Slurm
//! prolog, cron), and hosts that forbid user namespaces. (Older kernels
//! are the underlay and ENOSYS passes of `make test`, and the VM guests.)

use runtime_tests::{ok, stderr, TempTree};
use std::path::{Path, PathBuf};
use std::process::Command;

mod imagefix;

/// A one-layer busybox image tar in `dir`. Made by the shared fixture,
/// not a script of the source tree: the test user may not be able to read
/// the checkout (CI clones under root's mode-700 home).
fn image(dir: &Path) -> PathBuf {
    let tar = dir.join("img.tar");
    let img = imagefix::Image::new(vec![imagefix::base_layer()], "older-hosts:latest")
        .with_config(serde_json::json!({"Env": ["PATH=/bin"], "Cmd": ["sh"]}));
    imagefix::write_docker_archive(&tar, &[&img]);
    tar
}

fn scratch(tag: &str) -> TempTree {
    let d = std::env::temp_dir().join(format!("hpcc-older-{tag}-{}", std::process::id()));
    runtime_tests::remove_tree(&d);
    std::fs::create_dir_all(&d).expect("scratch");
    TempTree(d)
}

#[test]
fn without_home_the_cache_comes_from_the_passwd_entry() {
    let t = scratch("nohome");
    let tar = image(&t.0);
    let tar = tar.to_str().expect("path");
    // Nothing but PATH: no HOME, no XDG_*, no HPCC_CACHE_DIR.
    let bare = |args: &[&str]| {
        Command::new(runtime_tests::hpcc_bin())
            .args(args)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .current_dir("/")
            .output()
            .expect("hpcc")
    };
    assert_eq!(
        ok(&bare(&["run", "-q", tar, "--", "echo", "no home"])),
        "no home\n"
    );
    let listed = ok(&bare(&["images"]));
    assert!(
        listed.contains("older-hosts:latest"),
        "images without HOME:\n{listed}"
    );
    // Gone again, so the home the passwd entry names is left as it was.
    let digest = listed
        .lines()
        .find(|l| l.contains("older-hosts:latest"))
        .and_then(|l| l.split_whitespace().next())
        .expect("digest")
        .to_string();
    ok(&bare(&["rmi", &digest]));
}

#[test]
fn a_host_that_allows_no_user_namespaces_is_named_with_its_fix() {
    let t = scratch("maxuserns");
    let tar = image(&t.0);
    let cache = t.0.join("cache");
    // In a user namespace of our own, root of it may set its own limit to
    // 0, as RHEL 7 ships it; hpcc inside then cannot make its own.
    let script = r#"echo 0 > /proc/sys/user/max_user_namespaces && exec "$0" run -q "$1" -- true"#;
    let o = Command::new("unshare")
        .args(["-U", "-r", "-m", "sh", "-c", script])
        .arg(runtime_tests::hpcc_bin())
        .arg(&tar)
        .env("HPCC_CACHE_DIR", &cache)
        .current_dir("/")
        .output()
        .expect("unshare");
    let e = stderr(&o);
    assert!(!o.status.success(), "ran without a user namespace: {e}");
    assert!(
        e.contains("user.max_user_namespaces = 0")
            && e.contains("sysctl -w user.max_user_namespaces="),
        "the message names the setting and its fix: {e}"
    );
    assert_eq!(
        e.lines().filter(|l| l.starts_with("hpcc: ")).count(),
        1,
        "one line: {e}"
    );
}
