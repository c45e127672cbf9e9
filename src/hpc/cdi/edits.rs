//! Turning the containerEdits of the chosen CDI devices into hpcc's
//! device plan: device nodes and mounts become binds, env is set, hooks
//! are kept for the launch to run, extra groups are added. A spec's own
//! (spec-wide) edits apply once, before the first of its devices.

use super::registry::Found;
use super::spec::ContainerEdits;
use crate::hpc::host_devices::{DevicePlan, OtherMount, StageHook};
use anyhow::{anyhow, Result};
use std::path::Path;

/// Adds the edits of `found` (in order) to `plan`. A device node missing on
/// this host is an error naming the spec, the device and the node; a hook
/// program missing on this host is skipped with a warning.
pub fn apply(found: &[Found<'_>], plan: &mut DevicePlan) -> Result<()> {
    let mut specs_done: Vec<&Path> = Vec::new();
    for f in found {
        let qualified = format!("{}={}", f.spec.spec.kind, f.device.name);
        let file = &f.spec.path;
        if !specs_done.contains(&file.as_path()) {
            specs_done.push(file);
            apply_edits(&f.spec.spec.container_edits, file, &qualified, plan)?;
        }
        apply_edits(&f.device.container_edits, file, &qualified, plan)?;
        if !plan.cdi_devices.contains(&qualified) {
            plan.cdi_devices.push(qualified);
        }
    }
    // Parents before children, whatever order the specs listed them in.
    plan.binds.sort_by_key(|b| b.container.components().count());
    plan.mounts
        .sort_by_key(|m| m.container.components().count());
    Ok(())
}

fn apply_edits(e: &ContainerEdits, file: &Path, device: &str, plan: &mut DevicePlan) -> Result<()> {
    let at = || format!("CDI spec {} (device {device})", file.display());
    for kv in &e.env {
        if let Some((k, v)) = kv.split_once('=') {
            plan.env.retain(|(key, _)| key != k);
            plan.env.push((k.to_string(), v.to_string()));
        }
    }
    for n in &e.device_nodes {
        let host = n.host_path.clone().unwrap_or_else(|| n.path.clone());
        if std::fs::metadata(&host).is_err() {
            return Err(anyhow!(
                "{}: device node {} does not exist on this host",
                at(),
                host.display()
            ));
        }
        if !plan.binds.iter().any(|b| b.container == n.path) {
            plan.bind(host, n.path.clone(), false);
        }
    }
    for m in &e.mounts {
        if std::fs::symlink_metadata(&m.host_path).is_err() && !is_pseudo_fs(m) {
            return Err(anyhow!(
                "{}: mount source {} does not exist on this host",
                at(),
                m.host_path.display()
            ));
        }
        let is_bind = m.typ.as_deref().is_none_or(|t| t == "bind" || t == "rbind")
            || m.options.iter().any(|o| o == "bind" || o == "rbind");
        if is_bind {
            if !plan.binds.iter().any(|b| b.container == m.container_path) {
                let readonly = m.options.iter().any(|o| o == "ro");
                // plan.bind takes the source's real path.
                plan.bind(m.host_path.clone(), m.container_path.clone(), readonly);
            }
        } else if !plan.mounts.iter().any(|o| o.container == m.container_path) {
            plan.mounts.push(OtherMount {
                source: m.host_path.clone(),
                container: m.container_path.clone(),
                typ: m.typ.clone().unwrap_or_default(),
                options: m.options.clone(),
            });
        }
    }
    for h in &e.hooks {
        if !h.path.is_file() {
            crate::logging::warn(&format!(
                "{}: {} hook {} does not exist on this host; not run",
                at(),
                h.hook_name,
                h.path.display()
            ));
            continue;
        }
        let mut b = oci_spec::runtime::HookBuilder::default()
            .path(h.path.clone())
            .args(h.args.clone())
            .env(h.env.clone());
        if let Some(t) = h.timeout.filter(|t| *t > 0) {
            b = b.timeout(t);
        }
        let hook = b
            .build()
            .map_err(|e| anyhow!("{}: hook {}: {e}", at(), h.path.display()))?;
        plan.hooks.push(StageHook {
            stage: h.hook_name.clone(),
            hook,
            from: file.to_path_buf(),
        });
    }
    for g in &e.additional_gids {
        if !plan.additional_gids.contains(g) {
            plan.additional_gids.push(*g);
        }
    }
    if e.intel_rdt.is_some() {
        crate::debug!("{}: intelRdt is a root-only QoS knob; not applied", at());
    }
    if !e.net_devices.is_empty() {
        // `hpcc run` shares the host's network namespace: the interfaces
        // are already in the container.
        crate::debug!("{}: netDevices are visible already (host network)", at());
    }
    Ok(())
}

/// A mount whose source is a filesystem name, not a path (tmpfs).
fn is_pseudo_fs(m: &super::spec::Mount) -> bool {
    m.typ
        .as_deref()
        .is_some_and(|t| t != "bind" && t != "rbind")
        && !m.host_path.is_absolute()
}

#[cfg(test)]
mod tests {
    use super::super::registry::{LoadedSpec, Registry};
    use super::super::spec::SpecFile;
    use super::*;
    use std::path::PathBuf;

    fn host_of(plan: &DevicePlan, container: &Path) -> Option<PathBuf> {
        plan.binds
            .iter()
            .find(|b| b.container == container)
            .map(|b| b.host.clone())
    }

    fn registry(dir: &Path, text: &str) -> Registry {
        let path = dir.join("spec.yaml");
        Registry::from_specs(vec![LoadedSpec {
            spec: SpecFile::parse(&path, text).unwrap(),
            path,
            priority: 0,
        }])
        .unwrap()
    }

    #[test]
    fn device_and_spec_edits_become_binds_env_hooks_and_groups() {
        let d = std::env::temp_dir().join(format!("hpcc-cdi-edits-{}", std::process::id()));
        std::fs::create_dir_all(d.join("lib")).unwrap();
        for f in ["card0", "card1", "ctl", "lib/libx.so.1", "hook"] {
            std::fs::write(d.join(f), "").unwrap();
        }
        let text = format!(
            r#"
cdiVersion: 0.7.0
kind: v.com/gpu
devices:
- name: "0"
  containerEdits:
    env: [GPU=0]
    deviceNodes: [{{path: /dev/card0, hostPath: {d}/card0}}]
- name: "1"
  containerEdits:
    env: [GPU=1]
    deviceNodes: [{{path: /dev/card1, hostPath: {d}/card1}}]
containerEdits:
  env: [VENDOR=v]
  deviceNodes: [{{path: /dev/ctl, hostPath: {d}/ctl}}]
  mounts:
  - {{hostPath: {d}/lib/libx.so.1, containerPath: /usr/lib/libx.so.1, options: [ro, nosuid, bind]}}
  - {{hostPath: {d}/lib, containerPath: /usr, options: [bind]}}
  - {{hostPath: tmpfs, containerPath: /scratch, type: tmpfs, options: [size=1m]}}
  hooks:
  - {{hookName: createContainer, path: {d}/hook, args: [hook, ldcache]}}
  - {{hookName: createContainer, path: /no/such/hook}}
  additionalGids: [44, 44]
"#,
            d = d.display()
        );
        let r = registry(&d, &text);
        let mut found = r.resolve("v.com/gpu=1").unwrap();
        found.extend(r.resolve("v.com/gpu=0").unwrap());
        let mut plan = DevicePlan::default();
        apply(&found, &mut plan).unwrap();
        let binds: Vec<(String, bool)> = plan
            .binds
            .iter()
            .map(|b| (b.container.display().to_string(), b.readonly))
            .collect();
        assert_eq!(
            binds,
            [
                ("/usr".to_string(), false),
                ("/dev/ctl".to_string(), false),
                ("/dev/card1".to_string(), false),
                ("/dev/card0".to_string(), false),
                ("/usr/lib/libx.so.1".to_string(), true),
            ],
            "spec-wide edits once, parents first"
        );
        assert_eq!(
            host_of(&plan, Path::new("/dev/card1")),
            Some(d.join("card1"))
        );
        assert_eq!(
            plan.env,
            [
                ("VENDOR".to_string(), "v".to_string()),
                ("GPU".to_string(), "0".to_string())
            ],
            "the later device's value wins"
        );
        assert_eq!(plan.mounts.len(), 1);
        assert_eq!(plan.mounts[0].typ, "tmpfs");
        assert_eq!(plan.hooks.len(), 1, "the missing hook program is skipped");
        assert_eq!(plan.hooks[0].stage, "createContainer");
        assert_eq!(plan.additional_gids, [44]);
        assert_eq!(plan.cdi_devices, ["v.com/gpu=1", "v.com/gpu=0"]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_device_node_missing_on_the_host_is_named() {
        let d = std::env::temp_dir().join(format!("hpcc-cdi-missing-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let r = registry(
            &d,
            "cdiVersion: 0.6.0\nkind: v.com/gpu\ndevices: [{name: \"3\", containerEdits: {deviceNodes: [{path: /dev/no-such-gpu3}]}}]\n",
        );
        let e = apply(
            &r.resolve("v.com/gpu=3").unwrap(),
            &mut DevicePlan::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("spec.yaml") && e.contains("v.com/gpu=3") && e.contains("/dev/no-such-gpu3"),
            "{e}"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
