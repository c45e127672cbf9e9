//! Which ranks share one container: those of one job step on one node
//! running the same image with the same options. The group is derived from
//! what the launcher sets, so users need no flag.

use std::collections::HashMap;

/// A group of ranks on this node, and how many of them to expect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGroup {
    /// Abstract unix socket name the ranks meet on (no file is created).
    pub socket_name: String,
    /// Ranks on this node, when the launcher says.
    pub local_size: Option<u32>,
    /// Which launcher the group came from, for messages and --record.
    pub launcher: String,
}

#[derive(Debug, Clone, Default)]
pub struct JoinRequest {
    /// --join: join even without a launcher (with --join-tag).
    pub force: bool,
    /// --no-join.
    pub disable: bool,
    pub tag: Option<String>,
}

/// (launcher, job identity, local rank count) from the environment.
pub fn launcher_job(
    env: &HashMap<String, String>,
    ppid: u32,
) -> Option<(String, String, Option<u32>)> {
    let get = |k: &str| env.get(k).filter(|v| !v.is_empty()).cloned();
    let num = |k: &str| get(k).and_then(|v| v.parse::<u32>().ok());
    if let Some(job) = get("OMPI_MCA_ess_base_jobid").or_else(|| get("OMPI_MCA_orte_ess_jobid")) {
        return Some(("openmpi".into(), job, num("OMPI_COMM_WORLD_LOCAL_SIZE")));
    }
    if let Some(job) = get("SLURM_JOB_ID") {
        if let Some(step) = get("SLURM_STEP_ID").or_else(|| get("SLURM_STEPID")) {
            let size = slurm_local_tasks(
                get("SLURM_STEP_TASKS_PER_NODE").as_deref(),
                num("SLURM_NODEID"),
            );
            return Some(("slurm".into(), format!("{job}.{step}"), size));
        }
    }
    if let Some(ns) = get("PMIX_NAMESPACE") {
        return Some(("pmix".into(), ns, num("PMIX_LOCAL_SIZE")));
    }
    if let Some(n) = num("MPI_LOCALNRANKS") {
        // MPICH's hydra: every rank on a node is a child of one proxy.
        return Some(("hydra".into(), format!("proxy-{ppid}"), Some(n)));
    }
    None
}

/// Tasks on node `node` from Slurm's "2(x3),1" notation.
pub fn slurm_local_tasks(per_node: Option<&str>, node: Option<u32>) -> Option<u32> {
    let (spec, node) = (per_node?, node?);
    let mut index = 0u32;
    for part in spec.split(',') {
        let (count, times) = match part.split_once("(x") {
            Some((c, t)) => (
                c.parse::<u32>().ok()?,
                t.trim_end_matches(')').parse::<u32>().ok()?,
            ),
            None => (part.parse::<u32>().ok()?, 1),
        };
        let end = index.checked_add(times)?;
        if node < end {
            return Some(count);
        }
        index = end;
    }
    None
}

/// The group this rank belongs to, or None to run alone. `fingerprint`
/// covers everything that shapes the container (image, mounts, maps), so
/// ranks that asked for different containers never share one.
pub fn group(
    req: &JoinRequest,
    env: &HashMap<String, String>,
    ppid: u32,
    uid: u32,
    host: &str,
    fingerprint: &str,
) -> Option<JoinGroup> {
    if req.disable {
        return None;
    }
    let (launcher, job, local_size) = match (&req.tag, launcher_job(env, ppid)) {
        (Some(tag), found) => (
            "tag".to_string(),
            tag.clone(),
            found.and_then(|(_, _, n)| n),
        ),
        (None, Some(found)) => found,
        (None, None) if req.force => ("parent".to_string(), format!("ppid-{ppid}"), None),
        (None, None) => return None,
    };
    if local_size == Some(1) && !req.force {
        return None;
    }
    let key = crate::image::digest::Digest::of_bytes(
        format!("{uid}\0{host}\0{launcher}\0{job}\0{fingerprint}").as_bytes(),
    );
    Some(JoinGroup {
        socket_name: format!("hpcc-join-{uid}-{}", &key.hex()[..32]),
        local_size,
        launcher,
    })
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
    fn launchers_are_recognised() {
        let ompi = env(&[
            ("OMPI_MCA_ess_base_jobid", "17"),
            ("OMPI_COMM_WORLD_LOCAL_SIZE", "4"),
            ("PMIX_NAMESPACE", "17"),
        ]);
        assert_eq!(
            launcher_job(&ompi, 9),
            Some(("openmpi".into(), "17".into(), Some(4)))
        );
        let slurm = env(&[
            ("SLURM_JOB_ID", "5"),
            ("SLURM_STEP_ID", "0"),
            ("SLURM_STEP_TASKS_PER_NODE", "2(x2),1"),
            ("SLURM_NODEID", "2"),
        ]);
        assert_eq!(
            launcher_job(&slurm, 9),
            Some(("slurm".into(), "5.0".into(), Some(1)))
        );
        let hydra = env(&[("MPI_LOCALNRANKS", "2"), ("PMI_RANK", "1")]);
        assert_eq!(
            launcher_job(&hydra, 42),
            Some(("hydra".into(), "proxy-42".into(), Some(2)))
        );
        assert_eq!(launcher_job(&env(&[("HOME", "/h")]), 1), None);
    }

    #[test]
    fn slurm_task_notation() {
        assert_eq!(slurm_local_tasks(Some("4"), Some(0)), Some(4));
        assert_eq!(slurm_local_tasks(Some("2(x3),1"), Some(2)), Some(2));
        assert_eq!(slurm_local_tasks(Some("2(x3),1"), Some(3)), Some(1));
        assert_eq!(slurm_local_tasks(Some("2(x3),1"), Some(4)), None);
        assert_eq!(slurm_local_tasks(Some("x"), Some(0)), None);
    }

    #[test]
    fn groups_differ_by_job_and_options() {
        let ompi = env(&[
            ("OMPI_MCA_ess_base_jobid", "17"),
            ("OMPI_COMM_WORLD_LOCAL_SIZE", "2"),
        ]);
        let req = JoinRequest::default();
        let a = group(&req, &ompi, 1, 1000, "n1", "img-A").unwrap();
        assert_eq!(
            a,
            group(&req, &ompi, 2, 1000, "n1", "img-A").unwrap(),
            "ppid does not matter for Open MPI"
        );
        assert_ne!(
            a.socket_name,
            group(&req, &ompi, 1, 1000, "n1", "img-B")
                .unwrap()
                .socket_name
        );
        assert_ne!(
            a.socket_name,
            group(&req, &ompi, 1, 1001, "n1", "img-A")
                .unwrap()
                .socket_name
        );
        assert!(group(
            &JoinRequest {
                disable: true,
                ..req.clone()
            },
            &ompi,
            1,
            1000,
            "n1",
            "x"
        )
        .is_none());
        let single = env(&[
            ("OMPI_MCA_ess_base_jobid", "17"),
            ("OMPI_COMM_WORLD_LOCAL_SIZE", "1"),
        ]);
        assert!(group(&req, &single, 1, 1000, "n1", "x").is_none());
        assert!(group(&req, &HashMap::new(), 1, 1000, "n1", "x").is_none());
        let tagged = JoinRequest {
            tag: Some("t".into()),
            ..Default::default()
        };
        assert_eq!(
            group(&tagged, &HashMap::new(), 1, 1000, "n1", "x")
                .unwrap()
                .launcher,
            "tag"
        );
    }
}
