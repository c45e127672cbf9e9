//! CVE-2019-5736: a real attacker in the container tries to overwrite the
//! hpcc binary through /proc/N/exe while hpcc processes join it.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use runtime_tests::{TestEnv, WAIT_LIMIT};
use serde_json::json;

use crate::common::{no_crash, push_mount};
use crate::probe::{build_probe, install_probe};

fn sha256_of(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    let data = fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    format!("{:x}", Sha256::digest(&data))
}

/// CVE-2019-5736: a container process must not be able to overwrite the
/// runtime binary through /proc/N/exe of an hpcc process that joins it,
/// neither of the `exec` helper itself nor of hpcc re-run inside the
/// container through a `#!/proc/self/exe` script (the original exploit).
/// Runs against a copy of the binary, owned by the test user, so that a
/// successful attack destroys only the copy.
#[test]
fn cve_2019_5736_runtime_binary_cannot_be_overwritten() {
    let mut env = TestEnv::new("cve5736");
    let probe = build_probe(&env);
    let copy = env.path("hpcc-copy");
    fs::copy(&env.bin, &copy).expect("copying hpcc");
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).expect("chmod");
    let before = sha256_of(&copy);
    let real = env.bin.clone();
    env.bin = copy.clone();
    let mut bundle = env.bundle(&["/attack", "attack", "60", "/out/attack.log"]);
    install_probe(&probe, &bundle, "attack", 0o755);
    // The rootfs is read-only: the attacker's log goes to a bound folder.
    let outdir = env.path("attack-out");
    fs::create_dir(&outdir).expect("outdir");
    fs::set_permissions(&outdir, fs::Permissions::from_mode(0o777)).expect("chmod");
    push_mount(
        &mut bundle,
        json!({"destination": "/out", "type": "bind", "source": outdir, "options": ["rbind"]}),
    );
    fs::write(bundle.rootfs().join("bin/evil"), "#!/proc/self/exe\n").expect("evil");
    fs::set_permissions(
        bundle.rootfs().join("bin/evil"),
        fs::Permissions::from_mode(0o755),
    )
    .expect("chmod evil");
    let id = env.id("cve5736");
    let init = env.create_and_start(&bundle, &id);
    let rounds = 30;
    for i in 0..rounds {
        let prog = if i % 2 == 0 { "/bin/evil" } else { "/bin/true" };
        // A spawn failing with ETXTBSY means someone holds the binary open
        // for writing: the attacker. Retry; the hash check below decides.
        let mut tries = 0;
        let out = loop {
            match env.try_hpcc_in(&env.dir, &["--root", env.root_str(), "exec", &id, prog]) {
                Ok(out) => break Some(out),
                Err(e) if e.contains("Text file busy") && tries < 20 => {
                    say!("exec {i}: {e}");
                    tries += 1;
                    sleep(Duration::from_millis(10));
                }
                Err(e) => {
                    say!("exec {i}: {e}");
                    break None;
                }
            }
        };
        if let Some(out) = &out {
            no_crash(out);
        }
        // Give the attacker a moment with no hpcc running, when the binary
        // is not busy and a held handle could be reopened for writing.
        sleep(Duration::from_millis(30));
    }
    sleep(Duration::from_millis(300));
    fs::write(outdir.join("stop-attack"), "").expect("stop");
    let log = outdir.join("attack.log");
    let deadline = Instant::now() + WAIT_LIMIT;
    // The attacker creates its log, then writes it: wait for the words.
    while !fs::read_to_string(&log).is_ok_and(|t| t.contains("written"))
        && Instant::now() < deadline
    {
        sleep(Duration::from_millis(50));
    }
    let stats = fs::read_to_string(&log).unwrap_or_else(|e| format!("no attacker log: {e}"));
    say!(
        "CVE-2019-5736 attacker after {rounds} execs: {}",
        stats.trim()
    );
    let after = sha256_of(&copy);
    // Clean up with the real binary: the copy may be broken.
    let _ = Command::new(&real)
        .args(["--root", env.root_str(), "delete", "--force", &id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    init.assert_gone("the attacker");
    env.bin = real;
    assert_eq!(
        before,
        after,
        "the container overwrote the hpcc binary through /proc/N/exe ({})",
        stats.trim()
    );
    let seen: u64 = stats
        .split_whitespace()
        .skip_while(|w| *w != "seen")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        seen > 0,
        "the attacker never saw an hpcc process in the container, so the test proved nothing: {stats}"
    );
    env.assert_clean(&id, Some(&init), &bundle);
}

/// Which seal hpcc took, from its --debug line: as real root the private
/// read-only overlay of the binary's directory (no copy); where that is
/// refused (no fsopen, as the ENOSYS pass makes it, or no privilege, as
/// for a user whose copy of hpcc is writable) the sealed memfd copy. The
/// attacker test above runs on whichever path the pass takes.
#[test]
fn the_seal_is_the_private_overlay_as_root_and_the_memfd_copy_otherwise() {
    let mut env = TestEnv::new("seal-path");
    let copy = env.path("hpcc-copy");
    fs::copy(&env.bin, &copy).expect("copying hpcc");
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).expect("chmod");
    env.bin = copy;
    let bundle = env.bundle(&["/bin/true"]);
    let id = env.id("seal");
    let out = env.hpcc(&["--debug", "run", "-b", bundle.path(), &id]);
    let err = &out.stderr;
    assert!(out.status.success(), "{out}");
    let overlay = runtime_tests::is_root()
        && !runtime_tests::injected_enosys()
            .iter()
            .any(|c| c == "fsopen");
    let (want, not) = if overlay {
        ("private read-only overlay", "memfd")
    } else {
        ("sealed memfd copy", "running hpcc through")
    };
    assert!(
        err.contains(want) && !err.contains(not),
        "expected the {want} path: {err}"
    );
}
