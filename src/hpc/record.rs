//! `--record FILE`: what defines this run, so a result can be reproduced
//! years later: image and layer digests, hpcc's version, the kernel, the
//! binds, devices and CDI devices, the GPU driver, and the environment's keys (not its
//! values, which may hold secrets).
//!
//! Under a launcher every rank writes one, so the path may hold `%r` (the
//! rank), `%h` (the node's hostname) and `%j` (the job), as in
//! `--record /shared/job/run-%j-%r.json`: together the files say what ran
//! where, job-wide.

use super::node_join::{launcher_job, JoinGroup};
use super::HpcPlan;
use crate::image::cache::CachedImage;
use anyhow::{Context, Result};
use oci_spec::runtime::Spec;
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;

/// The loaded NVIDIA kernel module's version, else the version in the
/// name of the libcuda file that was bound (`libcuda.so.550.54.14`).
fn gpu_driver_version(found: &[String]) -> Option<String> {
    if let Ok(v) = std::fs::read_to_string("/sys/module/nvidia/version") {
        return Some(v.trim().to_string());
    }
    if let Some(line) = std::fs::read_to_string("/proc/driver/nvidia/version")
        .ok()
        .and_then(|t| t.lines().next().map(|l| l.trim().to_string()))
    {
        return Some(line);
    }
    found.iter().find_map(|f| libcuda_version(f))
}

fn libcuda_version(path: &str) -> Option<String> {
    let name = path.rsplit('/').next()?;
    let v = name.strip_prefix("libcuda.so.")?;
    // The soname's single number (libcuda.so.1) is not a driver version.
    (v.contains('.') && v.chars().all(|c| c.is_ascii_digit() || c == '.')).then(|| v.to_string())
}

/// The launcher's view of this process: rank and job, from whichever of
/// Slurm, Open MPI, PMIx or a PMI launcher (MPICH's hydra) started it.
#[derive(Debug, Default, PartialEq)]
pub struct RankInfo {
    pub rank: Option<String>,
    pub job: Option<String>,
}

impl RankInfo {
    /// The rank from the launcher that started this very process, first:
    /// under mpirun inside an sbatch job SLURM_PROCID is the task of the
    /// orted that spawned the rank, not its MPI rank. The job is the one
    /// the per-node join groups by (node_join::launcher_job), else a batch
    /// script's SLURM_JOB_ID; for MPICH's hydra, whose join group is
    /// per node, the job-wide PMI_KVSNAME.
    pub fn from_env(env: &HashMap<String, String>, ppid: u32) -> RankInfo {
        let get = |k: &str| env.get(k).filter(|v| !v.is_empty()).cloned();
        let rank = [
            "OMPI_COMM_WORLD_RANK",
            "PMIX_RANK",
            "SLURM_PROCID",
            "PMI_RANK",
        ]
        .iter()
        .find_map(|k| get(k));
        let job = match launcher_job(env, ppid) {
            Some((launcher, _, _)) if launcher == "hydra" => get("PMI_KVSNAME"),
            Some((_, job, _)) => Some(job),
            None => get("SLURM_JOB_ID"),
        };
        RankInfo { rank, job }
    }
}

/// Fills in `%r`, `%h`, `%j` and `%%`. A pattern a launcher cannot fill
/// (`%r` with no launcher) is an error: every rank would otherwise write
/// the same file.
pub fn expand_path(pattern: &Path, who: &RankInfo, host: &str) -> Result<std::path::PathBuf> {
    let text = pattern.to_string_lossy();
    if !text.contains('%') {
        return Ok(pattern.to_path_buf());
    }
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let (what, value) = match chars.next() {
            Some('r') => ("a rank", who.rank.as_deref()),
            Some('j') => ("a job", who.job.as_deref()),
            Some('h') => ("a hostname", Some(host)),
            Some('%') => ("", Some("%")),
            other => anyhow::bail!(
                "--record {}: unknown %{} (use %r, %h, %j or %%)",
                pattern.display(),
                other.map(String::from).unwrap_or_default()
            ),
        };
        match value {
            Some(v) => out.push_str(v),
            None => anyhow::bail!(
                "--record {}: no launcher gave this process {what} to fill it in",
                pattern.display()
            ),
        }
    }
    Ok(out.into())
}

/// Where the image came from, as the user named it.
pub struct ImageOrigin<'a> {
    /// A file's canonical path, or `docker://registry/repo[:tag]`.
    pub source: &'a str,
    /// The registry reference (`registry/repo:tag`), for pulled images.
    pub reference: Option<&'a str>,
    /// The manifest digest, where the image has one.
    pub manifest: Option<&'a str>,
}

/// The record of this run, as JSON.
pub fn document(
    img: &CachedImage,
    origin: &ImageOrigin,
    plan: &HpcPlan,
    spec: &Spec,
    group: Option<&JoinGroup>,
) -> serde_json::Value {
    let uts = nix::sys::utsname::uname().ok();
    let field = |f: fn(&nix::sys::utsname::UtsName) -> &std::ffi::OsStr| {
        uts.as_ref().map(|u| f(u).to_string_lossy().into_owned())
    };
    let env: HashMap<String, String> = std::env::vars().collect();
    let who = RankInfo::from_env(&env, std::os::unix::process::parent_id());
    let process = spec.process().as_ref();
    let mut env_keys: Vec<&str> = plan.env.iter().map(|(k, _)| k.as_str()).collect();
    env_keys.sort_unstable();
    json!({
        "recordVersion": 1,
        "time": crate::timefmt::now(),
        "hpcc": {"version": env!("CARGO_PKG_VERSION"), "commit": env!("HPCC_COMMIT")},
        "image": {
            "digest": img.digest.to_string(),
            "source": origin.source,
            "reference": origin.reference,
            "manifest": origin.manifest,
            "layers": img.config.diff_ids(),
            "architecture": img.config.architecture,
        },
        "host": {
            "hostname": field(|u| u.nodename()),
            "kernel": field(|u| u.release()),
            "machine": field(|u| u.machine()),
            "gpuDriver": gpu_driver_version(&plan.devices.found),
        },
        "user": {"uid": plan.identity.uid, "gid": plan.identity.gid, "name": plan.identity.name},
        "command": process.and_then(|p| p.args().clone()),
        "cwd": process.map(|p| p.cwd().display().to_string()),
        "binds": plan.binds.iter().map(|b| json!({"source": b.src, "destination": b.dst, "readonly": b.readonly})).collect::<Vec<_>>(),
        "devices": plan.devices.found,
        "cdiDevices": plan.devices.cdi_devices,
        "envKeys": env_keys,
        "rank": who.rank,
        "job": who.job,
        "join": group.map(|g| json!({"launcher": g.launcher, "localSize": g.local_size})),
    })
}

/// Writes `record` to `path`, its %r, %h and %j filled in.
pub fn write(path: &Path, record: &serde_json::Value) -> Result<()> {
    let host = nix::sys::utsname::uname()
        .map(|u| u.nodename().to_string_lossy().into_owned())
        .unwrap_or_default();
    let env: HashMap<String, String> = std::env::vars().collect();
    let who = RankInfo::from_env(&env, std::os::unix::process::parent_id());
    let path = expand_path(path, &who, &host)?;
    let text = serde_json::to_string_pretty(record)? + "\n";
    // Atomic: a job-wide record is read while other ranks still write.
    crate::fs::write_atomic(&path, text.as_bytes(), 0o644)
        .with_context(|| format!("--record {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(v: &[(&str, &str)]) -> HashMap<String, String> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn rank_and_job_come_from_whichever_launcher_started_us() {
        let slurm = RankInfo::from_env(
            &env(&[
                ("SLURM_PROCID", "5"),
                ("SLURM_JOB_ID", "12"),
                ("SLURM_STEP_ID", "0"),
                ("PMIX_RANK", "5"),
            ]),
            1,
        );
        assert_eq!(slurm.rank.as_deref(), Some("5"));
        assert_eq!(slurm.job.as_deref(), Some("12.0"));
        let ompi = RankInfo::from_env(
            &env(&[
                ("OMPI_COMM_WORLD_RANK", "3"),
                ("OMPI_MCA_ess_base_jobid", "4242"),
            ]),
            1,
        );
        assert_eq!(ompi.rank.as_deref(), Some("3"));
        assert_eq!(ompi.job.as_deref(), Some("4242"));
        assert_eq!(RankInfo::from_env(&env(&[]), 1), RankInfo::default());
        // A batch script: a job, no step, no rank.
        let batch = RankInfo::from_env(&env(&[("SLURM_JOB_ID", "12")]), 1);
        assert_eq!(batch.job.as_deref(), Some("12"));
        assert_eq!(batch.rank, None);
        // MPICH's hydra: the job-wide KVS name, not the per-node group.
        let hydra = RankInfo::from_env(
            &env(&[
                ("MPI_LOCALNRANKS", "2"),
                ("PMI_RANK", "3"),
                ("PMI_KVSNAME", "kvs_77_0"),
            ]),
            1,
        );
        assert_eq!(hydra.rank.as_deref(), Some("3"));
        assert_eq!(hydra.job.as_deref(), Some("kvs_77_0"));
    }

    #[test]
    fn under_mpirun_in_a_batch_job_the_mpi_rank_wins_over_slurms_task() {
        let who = RankInfo::from_env(
            &env(&[
                ("SLURM_JOB_ID", "12"),
                ("SLURM_STEP_ID", "1"),
                ("SLURM_PROCID", "1"),
                ("OMPI_COMM_WORLD_RANK", "5"),
                ("OMPI_MCA_ess_base_jobid", "4242"),
            ]),
            1,
        );
        assert_eq!(who.rank.as_deref(), Some("5"));
        assert_eq!(who.job.as_deref(), Some("4242"));
    }

    #[test]
    fn record_paths_take_rank_host_and_job() {
        let who = RankInfo {
            rank: Some("7".into()),
            job: Some("12.0".into()),
        };
        let p = expand_path(Path::new("/s/run-%j-%h-%r.json"), &who, "n2").unwrap();
        assert_eq!(p, Path::new("/s/run-12.0-n2-7.json"));
        let p = expand_path(Path::new("/s/100%%.json"), &who, "n2").unwrap();
        assert_eq!(p, Path::new("/s/100%.json"));
        let plain = expand_path(Path::new("/s/run.json"), &RankInfo::default(), "n2").unwrap();
        assert_eq!(plain, Path::new("/s/run.json"));
    }

    #[test]
    fn record_patterns_that_cannot_be_filled_are_refused() {
        let e = expand_path(Path::new("/s/run-%r.json"), &RankInfo::default(), "h").unwrap_err();
        assert!(
            e.to_string()
                .contains("no launcher gave this process a rank"),
            "{e}"
        );
        let who = RankInfo {
            rank: Some("1".into()),
            job: None,
        };
        let e = expand_path(Path::new("/s/run-%x.json"), &who, "h").unwrap_err();
        assert!(e.to_string().contains("unknown %x"), "{e}");
        assert!(expand_path(Path::new("/s/run-%"), &who, "h").is_err());
    }

    #[test]
    fn the_driver_version_is_read_from_the_libcuda_file_name() {
        assert_eq!(
            super::libcuda_version("/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.14").as_deref(),
            Some("550.54.14")
        );
        assert_eq!(super::libcuda_version("/usr/lib/libcuda.so.1"), None);
        assert_eq!(super::libcuda_version("/usr/lib/libcudart.so.12.4"), None);
    }
}
