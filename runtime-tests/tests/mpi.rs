//! Open MPI ranks under mpirun, each started as `hpcc run IMAGE -- ...`:
//! they must share one container per node (so CMA and 4 MiB messages
//! work), oversubscribe, and end cleanly when a rank dies. Needs mpirun and
//! the MPI test image (`make mpi-image`, path in HPCC_MPI_IMAGE).

use runtime_tests::{have, is_root, remove_tree};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The image and a cache dir, or None (with the reason printed) when the
/// prerequisites are missing and CI did not ask for them.
fn setup(tag: &str) -> Option<(PathBuf, PathBuf)> {
    let image = std::env::var_os("HPCC_MPI_IMAGE")
        .map(PathBuf::from)
        .filter(|p| p.is_file());
    let mpirun = have("mpirun");
    let why = match (&image, mpirun) {
        (Some(_), true) => None,
        (None, _) => Some("HPCC_MPI_IMAGE is not set to the MPI test image (make mpi-image)"),
        (_, false) => Some("mpirun is missing (apt-get install openmpi-bin)"),
    };
    if let Some(why) = why {
        runtime_tests::missing(&format!("mpi tests: {why}"));
        return None;
    }
    let cache = std::env::temp_dir().join(format!("hpcc-mpi-{tag}-{}", std::process::id()));
    Some((image?, cache))
}

/// Runs mpirun with a guard: a job that hangs is killed and fails the test.
fn mpirun(cache: &PathBuf, args: &[&str]) -> Output {
    let mut c = Command::new("mpirun");
    if is_root() {
        c.arg("--allow-run-as-root");
    }
    c.args(args)
        .env("HPCC_CACHE_DIR", cache)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = c.spawn().expect("mpirun");
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(out) => out.expect("mpirun output"),
        Err(_) => {
            // SAFETY: kill the hung mpirun we started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("mpirun {args:?} hung for 120 s");
        }
    }
}

/// Prints the mount namespace and keeps it alive a moment, so the ranks'
/// namespaces coexist: a freed namespace's inode number can be reused, and
/// two ranks run one after the other could otherwise show the same id.
const HOLD_NS: &str = "readlink /proc/self/ns/mnt; sleep 1";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn hpcc() -> String {
    runtime_tests::hpcc_bin().display().to_string()
}

#[test]
fn ranks_share_one_container_and_pass_4mib_messages() {
    let Some((image, cache)) = setup("share") else {
        return;
    };
    let img = image.to_str().unwrap();
    let h = hpcc();
    let out = mpirun(
        &cache,
        &["-np", "2", &h, "run", img, "--", "sh", "-c", HOLD_NS],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ids: std::collections::BTreeSet<String> =
        text(&out.stdout).lines().map(str::to_string).collect();
    assert_eq!(ids.len(), 1, "both ranks in one mount namespace: {ids:?}");
    let out = mpirun(
        &cache,
        &["-np", "2", &h, "run", img, "--", "pingpong", "10"],
    );
    let (so, se) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{so}\n{se}");
    assert!(
        so.contains("size=4194304 bandwidth_MBps=") && so.contains("pingpong done ranks=2"),
        "{so}"
    );
    assert!(
        !se.contains("CMA is not available"),
        "ranks were in separate user namespaces: {se}"
    );
    // The rendezvous leaves no file behind and its holder has exited.
    let shm: Vec<_> = std::fs::read_dir("/dev/shm")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("hpcc"))
        .collect();
    assert!(shm.is_empty(), "{shm:?}");
    remove_tree(&cache);
}

#[test]
fn four_ranks_on_two_cores_with_oversubscribe() {
    let Some((image, cache)) = setup("four") else {
        return;
    };
    let out = mpirun(
        &cache,
        &[
            "-np",
            "4",
            "--oversubscribe",
            &hpcc(),
            "run",
            image.to_str().unwrap(),
            "--",
            "pingpong",
            "5",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("pingpong done ranks=4"));
    remove_tree(&cache);
}

#[test]
fn no_join_gives_each_rank_its_own_container() {
    let Some((image, cache)) = setup("nojoin") else {
        return;
    };
    let out = mpirun(
        &cache,
        &[
            "-np",
            "2",
            &hpcc(),
            "run",
            "--no-join",
            image.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            HOLD_NS,
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ids: std::collections::BTreeSet<String> =
        text(&out.stdout).lines().map(str::to_string).collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    remove_tree(&cache);
}

#[test]
fn a_dying_rank_ends_the_job() {
    let Some((image, cache)) = setup("kill") else {
        return;
    };
    let started = Instant::now();
    let script = "if [ \"$OMPI_COMM_WORLD_RANK\" = 1 ]; then kill -9 $$; fi; exec sleep 60";
    let out = mpirun(
        &cache,
        &[
            "-np",
            "2",
            &hpcc(),
            "run",
            image.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            script,
        ],
    );
    assert!(!out.status.success(), "mpirun must report the dead rank");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the surviving rank was not ended"
    );
    remove_tree(&cache);
}

#[test]
fn the_images_own_mpirun_runs_ranks_inside_one_container() {
    let Some((image, cache)) = setup("inner") else {
        return;
    };
    let mut inner = vec!["mpirun", "-np", "2"];
    if is_root() {
        inner.push("--allow-run-as-root");
    }
    inner.extend(["pingpong", "5"]);
    let out = Command::new(hpcc())
        .args([
            "run",
            "-e",
            "OMPI_MCA_plm_rsh_agent=",
            image.to_str().unwrap(),
            "--",
        ])
        .args(&inner)
        .env("HPCC_CACHE_DIR", &cache)
        .current_dir("/")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("pingpong done ranks=2"));
    remove_tree(&cache);
}

/// MPICH ranks in separate user namespaces fail in MPI_Init (UCX cannot
/// open the other rank's shared memory); joined, they run.
#[test]
fn mpich_ranks_run_when_they_share_a_container() {
    let image = std::env::var_os("HPCC_MPICH_IMAGE")
        .map(PathBuf::from)
        .filter(|p| p.is_file());
    let hydra = Command::new("mpirun.mpich")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let Some(image) = image.filter(|_| hydra) else {
        let why =
            "HPCC_MPICH_IMAGE (make mpi-image) or mpirun.mpich (apt-get install mpich) is missing";
        runtime_tests::missing(why);
        return;
    };
    let cache = std::env::temp_dir().join(format!("hpcc-mpich-{}", std::process::id()));
    let out = Command::new("mpirun.mpich")
        .args([
            "-np",
            "2",
            &hpcc(),
            "run",
            image.to_str().unwrap(),
            "--",
            "pingpong",
            "10",
        ])
        .env("HPCC_CACHE_DIR", &cache)
        .current_dir("/")
        .stdin(Stdio::null())
        .output()
        .expect("mpirun.mpich");
    let so = text(&out.stdout);
    assert!(
        out.status.success() && so.contains("pingpong done ranks=2"),
        "{so}\n{}",
        text(&out.stderr)
    );
    remove_tree(&cache);
}
