//! What hpcc does where the kernel lacks a newer call, observed for real:
//! this file runs in every pass, and `make test` runs it once more with
//! HPCC_TEST_ENOSYS=openat2,mount_setattr,close_range (see
//! runtime-tests/src/enosys.rs), where each assertion checks the fallback
//! was the path taken. The hostile-image and CVE suites run in that pass
//! too, so every guarantee they check holds on the fallbacks.

mod imagefix;

use runtime_tests::{injected_enosys, is_root, sh, skip, TestEnv};
use std::fs;
use std::process::Command;

fn injected(name: &str) -> bool {
    injected_enosys().iter().any(|n| n == name)
}

/// An image run with --debug; its stderr.
fn debug_image_run(env: &TestEnv, args: &[&str]) -> String {
    // The shared fixture, not a script of the source tree, which the test
    // user may not be able to read (CI clones under a mode-700 home).
    let tar = env.path("img.tar");
    let img = imagefix::Image::new(vec![imagefix::base_layer()], "fallback:latest");
    imagefix::write_docker_archive(&tar, &[&img]);
    let out = Command::new(runtime_tests::hpcc_bin())
        .args(["--debug", "run", "-q"])
        .arg(&tar)
        .args(args)
        .env("HPCC_CACHE_DIR", env.path("cache"))
        .current_dir("/")
        .output()
        .expect("hpcc");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "hpcc run failed: {err}");
    err
}

#[test]
fn paths_in_an_image_resolve_without_openat2() {
    let env = TestEnv::new("fb-openat2");
    let err = debug_image_run(&env, &["--", "/bin/sh", "-c", "echo resolved"]);
    let said = err.contains("openat2 is not available");
    if injected("openat2") {
        assert!(said, "the walk by hand was not taken:\n{err}");
    } else {
        assert!(
            !said,
            "openat2 works here, yet the fallback was taken:\n{err}"
        );
    }
}

#[test]
fn rro_makes_every_submount_read_only_with_or_without_mount_setattr() {
    if !is_root() {
        skip("needs root to mount a tmpfs under the bind source on the host");
        return;
    }
    let env = TestEnv::new("fb-rro");
    let src = env.path("src");
    fs::create_dir_all(src.join("sub")).expect("src");
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(src.join("sub"))
        .status()
        .expect("mount");
    assert!(st.success(), "mounting the submount");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _guard = Unmount(src.join("sub"));
    let script = "touch /data/top 2>/dev/null && echo top-writable; \
                  touch /data/sub/x 2>/dev/null && echo sub-writable; echo checked";
    let mut bundle = env.bundle(&sh(script));
    let src_s = src.to_str().expect("path").to_string();
    bundle.edit(|c| {
        c["mounts"].as_array_mut().expect("mounts").push(
            serde_json::json!({"destination": "/data", "type": "bind", "source": src_s,
                                     "options": ["rbind", "rro"]}),
        );
    });
    let id = env.id("rro");
    let out = env.hpcc(&["--debug", "run", "--bundle", bundle.path(), &id]);
    out.ok();
    assert_eq!(
        out.stdout, "checked\n",
        "both the mount and its submount are read-only\n{out}"
    );
    let said = out.stderr.contains("mount_setattr is not available");
    assert_eq!(
        said,
        injected("mount_setattr"),
        "which way rro was made\n{out}"
    );
}
