//! The CDI specs of this host: every `*.json`, `*.yaml` and `*.yml` file
//! in the spec directories, and the devices they define by qualified name
//! (`nvidia.com/gpu=0`). As the CDI spec says, a later directory has the
//! higher priority (its definition of a device wins), and two files of one
//! directory that define the same device conflict: that is an error.

use super::spec::{Device, SpecFile};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Where specs are read from when the site config names no other place,
/// lowest priority first (the CDI default).
pub const DEFAULT_DIRS: [&str; 2] = ["/etc/cdi", "/var/run/cdi"];

/// A device as a spec defines it, with the spec it came from.
#[derive(Debug, Clone)]
pub struct Found<'a> {
    pub spec: &'a LoadedSpec,
    pub device: &'a Device,
}

#[derive(Debug, Clone)]
pub struct LoadedSpec {
    pub path: PathBuf,
    pub spec: SpecFile,
    /// Index of its directory in the search list (higher wins).
    pub priority: usize,
}

#[derive(Debug, Default)]
pub struct Registry {
    pub specs: Vec<LoadedSpec>,
    /// Qualified name → (spec index, device index).
    devices: BTreeMap<String, (usize, usize)>,
}

impl Registry {
    /// Reads every spec in `dirs`. A missing directory is skipped; an
    /// unreadable or malformed file, or a conflict, is an error naming it.
    pub fn load(dirs: &[PathBuf]) -> Result<Registry> {
        let mut files = Vec::new();
        for (priority, dir) in dirs.iter().enumerate() {
            let rd = match std::fs::read_dir(dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(anyhow!("CDI spec directory {}: {e}", dir.display())),
            };
            let mut names: Vec<PathBuf> = rd
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.extension()
                        .is_some_and(|e| e == "json" || e == "yaml" || e == "yml")
                })
                .collect();
            names.sort();
            for path in names {
                if path.is_file() {
                    files.push((priority, path));
                }
            }
        }
        let mut specs = Vec::new();
        for (priority, path) in files {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("CDI spec {}", path.display()))?;
            let spec = SpecFile::parse(&path, &text)?;
            specs.push(LoadedSpec {
                path,
                spec,
                priority,
            });
        }
        Registry::from_specs(specs)
    }

    /// Indexes `specs` (in load order) by qualified device name.
    pub fn from_specs(specs: Vec<LoadedSpec>) -> Result<Registry> {
        let mut devices: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for (si, s) in specs.iter().enumerate() {
            for (di, d) in s.spec.devices.iter().enumerate() {
                let name = format!("{}={}", s.spec.kind, d.name);
                if let Some(&(other, _)) = devices.get(&name) {
                    let o = &specs[other];
                    if o.priority == s.priority {
                        bail!(
                            "CDI specs {} and {} both define {name}",
                            o.path.display(),
                            s.path.display()
                        );
                    }
                    crate::debug!(
                        "CDI: {name} from {} overrides {}",
                        s.path.display(),
                        o.path.display()
                    );
                }
                devices.insert(name, (si, di));
            }
        }
        Ok(Registry { specs, devices })
    }

    /// Whether any spec defines devices of `kind`.
    pub fn has_kind(&self, kind: &str) -> bool {
        self.specs.iter().any(|s| s.spec.kind == kind)
    }

    /// The devices a qualified name stands for. `KIND=all` is every device
    /// of the kind when no spec defines a device called `all` itself
    /// (nvidia-ctk does; others may not).
    pub fn resolve(&self, qualified: &str) -> Result<Vec<Found<'_>>> {
        let (kind, name) = parse_qualified(qualified)?;
        if let Some(&(si, di)) = self.devices.get(qualified) {
            let spec = &self.specs[si];
            return Ok(vec![Found {
                spec,
                device: &spec.spec.devices[di],
            }]);
        }
        if name == "all" {
            let all: Vec<Found<'_>> = self
                .devices
                .iter()
                .filter(|(q, _)| q.split_once('=').is_some_and(|(k, _)| k == kind))
                .map(|(_, &(si, di))| Found {
                    spec: &self.specs[si],
                    device: &self.specs[si].spec.devices[di],
                })
                .collect();
            if !all.is_empty() {
                return Ok(all);
            }
        }
        if !self.has_kind(kind) {
            bail!("--device {qualified}: no CDI spec defines devices of kind {kind} (looked in the CDI spec directories)");
        }
        let known: Vec<&str> = self
            .devices
            .keys()
            .filter_map(|q| q.strip_prefix(kind)?.strip_prefix('='))
            .collect();
        bail!(
            "--device {qualified}: the CDI specs define no device {name:?} of kind {kind} (they define: {})",
            known.join(", ")
        )
    }
}

/// `vendor.com/class=name` → (kind, name).
pub fn parse_qualified(q: &str) -> Result<(&str, &str)> {
    match q.split_once('=') {
        Some((kind, name)) if kind.contains('/') && !name.is_empty() => {
            super::spec::check_device_name(name).map_err(|e| anyhow!("--device {q}: {e}"))?;
            Ok((kind, name))
        }
        _ => bail!(
            "--device {q:?}: expected a CDI name like nvidia.com/gpu=0, or a host device path"
        ),
    }
}

/// The spec directories: the site's, else the CDI defaults.
pub fn dirs(site_dirs: &[String]) -> Vec<PathBuf> {
    if site_dirs.is_empty() {
        DEFAULT_DIRS.iter().map(PathBuf::from).collect()
    } else {
        site_dirs.iter().map(PathBuf::from).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn spec(path: &str, priority: usize, kind: &str, names: &[&str]) -> LoadedSpec {
        let devices: Vec<String> = names.iter().map(|n| format!("{{name: \"{n}\"}}")).collect();
        let text = format!(
            "cdiVersion: 0.6.0\nkind: {kind}\ndevices: [{}]\n",
            devices.join(", ")
        );
        LoadedSpec {
            path: path.into(),
            spec: SpecFile::parse(Path::new(path), &text).unwrap(),
            priority,
        }
    }

    #[test]
    fn devices_resolve_by_qualified_name() {
        let r = Registry::from_specs(vec![
            spec("/etc/cdi/nv.yaml", 0, "nvidia.com/gpu", &["0", "1"]),
            spec("/etc/cdi/amd.yaml", 0, "amd.com/gpu", &["0"]),
        ])
        .unwrap();
        let f = r.resolve("nvidia.com/gpu=1").unwrap();
        assert_eq!(f[0].device.name, "1");
        let all: Vec<&str> = r
            .resolve("nvidia.com/gpu=all")
            .unwrap()
            .iter()
            .map(|f| f.device.name.as_str())
            .collect();
        assert_eq!(all, ["0", "1"], "all of one kind, none of another");
        let e = r.resolve("nvidia.com/gpu=7").unwrap_err().to_string();
        assert!(e.contains("nvidia.com/gpu=7") && e.contains("0, 1"), "{e}");
        let e = r.resolve("intel.com/gpu=0").unwrap_err().to_string();
        assert!(e.contains("intel.com/gpu"), "{e}");
        for bad in [
            "nvidia.com/gpu",
            "gpu=0",
            "nvidia.com/gpu=",
            "nvidia.com/gpu=a b",
        ] {
            assert!(r.resolve(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_device_named_all_is_used_as_defined() {
        let r = Registry::from_specs(vec![spec("/a.yaml", 0, "v.com/c", &["0", "all"])]).unwrap();
        let f = r.resolve("v.com/c=all").unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].device.name, "all");
    }

    #[test]
    fn conflicts_in_one_directory_fail_and_a_later_directory_wins() {
        let e = Registry::from_specs(vec![
            spec("/etc/cdi/a.yaml", 0, "v.com/c", &["0"]),
            spec("/etc/cdi/b.yaml", 0, "v.com/c", &["0"]),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("/etc/cdi/a.yaml")
                && e.contains("/etc/cdi/b.yaml")
                && e.contains("v.com/c=0"),
            "{e}"
        );
        let r = Registry::from_specs(vec![
            spec("/etc/cdi/a.yaml", 0, "v.com/c", &["0"]),
            spec("/var/run/cdi/b.yaml", 1, "v.com/c", &["0"]),
        ])
        .unwrap();
        let f = r.resolve("v.com/c=0").unwrap();
        assert_eq!(f[0].spec.path, Path::new("/var/run/cdi/b.yaml"));
    }

    #[test]
    fn specs_are_read_from_their_directories() {
        let d = std::env::temp_dir().join(format!("hpcc-cdi-reg-{}", std::process::id()));
        let (low, high) = (d.join("etc"), d.join("run"));
        std::fs::create_dir_all(&low).unwrap();
        std::fs::create_dir_all(&high).unwrap();
        std::fs::write(
            low.join("a.yaml"),
            "cdiVersion: 0.6.0\nkind: v.com/c\ndevices: [{name: \"0\"}]\n",
        )
        .unwrap();
        std::fs::write(
            high.join("b.json"),
            r#"{"cdiVersion":"0.6.0","kind":"v.com/c","devices":[{"name":"1"}]}"#,
        )
        .unwrap();
        std::fs::write(high.join("notes.txt"), "not a spec").unwrap();
        let r = Registry::load(&[low.clone(), high.clone(), d.join("missing")]).unwrap();
        assert_eq!(r.resolve("v.com/c=all").unwrap().len(), 2);
        std::fs::write(
            high.join("c.yml"),
            "cdiVersion: 0.6.0\nkind: v.com/c\ndevices: [{name: \"1\"}]\n",
        )
        .unwrap();
        let e = Registry::load(&[low, high.clone()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("b.json") && e.contains("c.yml"), "{e}");
        std::fs::write(high.join("c.yml"), "cdiVersion: 9\n").unwrap();
        let e = format!("{:#}", Registry::load(&[high]).unwrap_err());
        assert!(e.contains("c.yml") && e.contains("cdiVersion"), "{e}");
        std::fs::remove_dir_all(d).unwrap();
    }
}
