//! One CDI spec file (Container Device Interface, the format of
//! `nvidia-ctk cdi generate`, AMD's and Intel's generators, and the specs
//! podman, containerd and Docker read): parsed from JSON or YAML, then
//! checked the way the CDI reference library checks it, so that a bad
//! file is refused with its name and the field at fault.

use anyhow::{anyhow, bail, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The oldest and newest cdiVersion this reader knows (0.3.0 to 0.8.0).
const MIN_MINOR: u32 = 3;
const MAX_MINOR: u32 = 8;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct SpecFile {
    pub cdi_version: String,
    pub kind: String,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub devices: Vec<Device>,
    #[serde(default)]
    pub container_edits: ContainerEdits,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    pub name: String,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub container_edits: ContainerEdits,
}

#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContainerEdits {
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub device_nodes: Vec<DeviceNode>,
    #[serde(default)]
    pub hooks: Vec<Hook>,
    #[serde(default)]
    pub mounts: Vec<Mount>,
    #[serde(default, rename = "additionalGids", alias = "additionalGIDs")]
    pub additional_gids: Vec<u32>,
    #[serde(default)]
    pub intel_rdt: Option<serde_json::Value>,
    #[serde(default)]
    pub net_devices: Vec<NetDevice>,
}

#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeviceNode {
    pub path: PathBuf,
    #[serde(default)]
    pub host_path: Option<PathBuf>,
    #[serde(default, rename = "type")]
    pub typ: Option<String>,
    #[serde(default)]
    pub major: Option<i64>,
    #[serde(default)]
    pub minor: Option<i64>,
    #[serde(default)]
    pub file_mode: Option<u32>,
    #[serde(default)]
    pub permissions: Option<String>,
    #[serde(default)]
    pub uid: Option<u32>,
    #[serde(default)]
    pub gid: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Mount {
    pub host_path: PathBuf,
    pub container_path: PathBuf,
    #[serde(default)]
    pub options: Vec<String>,
    #[serde(default, rename = "type")]
    pub typ: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Hook {
    pub hook_name: String,
    pub path: PathBuf,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub timeout: Option<i64>,
}

#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NetDevice {
    pub host_interface_name: String,
    pub name: String,
}

/// The OCI hook points a CDI hook may name.
pub const HOOK_NAMES: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

impl SpecFile {
    /// Parses `text` (YAML, or JSON when `path` ends in .json) and checks
    /// it. Every error names `path` and, where there is one, the field.
    pub fn parse(path: &Path, text: &str) -> Result<SpecFile> {
        let file = path.display();
        let json = path.extension().is_some_and(|e| e == "json");
        // The version first: a spec of a later CDI may not fit our schema,
        // and then the version is what to report.
        let probe: Result<VersionProbe, String> = if json {
            serde_json::from_str(text).map_err(|e| e.to_string())
        } else {
            serde_norway::from_str(text).map_err(|e| e.to_string())
        };
        if let Ok(VersionProbe {
            cdi_version: Some(v),
        }) = probe
        {
            parse_version(&v.to_string()).map_err(|e| anyhow!("CDI spec {file}: {e}"))?;
        }
        let spec: SpecFile = if json {
            let de = &mut serde_json::Deserializer::from_str(text);
            serde_path_to_error::deserialize(de).map_err(|e| field_error(&file, e))?
        } else {
            let de = serde_norway::Deserializer::from_str(text);
            serde_path_to_error::deserialize(de).map_err(|e| field_error(&file, e))?
        };
        spec.check().map_err(|e| anyhow!("CDI spec {file}: {e}"))?;
        Ok(spec)
    }

    /// The vendor and class of `kind` (`nvidia.com/gpu`).
    pub fn vendor_class(&self) -> (&str, &str) {
        self.kind.split_once('/').unwrap_or((&self.kind, ""))
    }

    fn check(&self) -> Result<()> {
        let minor = parse_version(&self.cdi_version)?;
        check_kind(&self.kind)?;
        let needed = self.needed_minor();
        if minor < needed.0 {
            bail!(
                "cdiVersion {:?} is too old for {} (it needs 0.{}.0)",
                self.cdi_version,
                needed.1,
                needed.0
            );
        }
        if self.devices.is_empty() {
            bail!("devices: the spec names no device");
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, d) in self.devices.iter().enumerate() {
            check_device_name(&d.name).map_err(|e| anyhow!("devices[{i}].name: {e}"))?;
            if !seen.insert(d.name.as_str()) {
                bail!("devices[{i}].name: {:?} is defined twice", d.name);
            }
            check_edits(&d.container_edits, &format!("devices[{i}].containerEdits"))?;
        }
        check_edits(&self.container_edits, "containerEdits")
    }

    /// The lowest minor version whose schema has every field this spec
    /// uses, and the first such field (as the reference library decides).
    fn needed_minor(&self) -> (u32, &'static str) {
        let all_edits = std::iter::once(&self.container_edits)
            .chain(self.devices.iter().map(|d| &d.container_edits));
        let mut need = (MIN_MINOR, "");
        let mut want = |minor: u32, what: &'static str| {
            if minor > need.0 {
                need = (minor, what);
            }
        };
        if !self.annotations.is_empty() || self.devices.iter().any(|d| !d.annotations.is_empty()) {
            want(6, "annotations");
        }
        if self.devices.iter().any(|d| d.name.contains(':')) {
            // A colon in a device name (MIG "0:1") came with 0.5.0.
            want(5, "a device name with ':'");
        }
        for e in all_edits {
            if e.device_nodes.iter().any(|n| n.host_path.is_some()) {
                want(5, "deviceNodes[].hostPath");
            }
            if e.mounts.iter().any(|m| m.typ.is_some()) {
                want(4, "mounts[].type");
            }
            if e.intel_rdt.is_some() {
                want(5, "intelRdt");
            }
            if !e.additional_gids.is_empty() {
                want(7, "additionalGids");
            }
            if e.device_nodes.iter().any(|n| n.file_mode.is_some()) {
                want(7, "deviceNodes[].fileMode");
            }
            if !e.net_devices.is_empty() {
                want(8, "netDevices");
            }
        }
        need
    }
}

#[derive(Deserialize)]
struct VersionProbe {
    #[serde(rename = "cdiVersion")]
    cdi_version: Option<VersionValue>,
}

/// A version as written: "0.6.0", or a bare number by mistake.
#[derive(Deserialize)]
#[serde(untagged)]
enum VersionValue {
    Text(String),
    Number(f64),
}

impl std::fmt::Display for VersionValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VersionValue::Text(s) => f.write_str(s),
            VersionValue::Number(n) => write!(f, "{n}"),
        }
    }
}

fn field_error(
    file: &impl std::fmt::Display,
    e: serde_path_to_error::Error<impl std::fmt::Display>,
) -> anyhow::Error {
    let path = e.path().to_string();
    let inner = e.into_inner();
    if path == "." || path.is_empty() {
        anyhow!("CDI spec {file}: {inner}")
    } else {
        anyhow!("CDI spec {file}: {path}: {inner}")
    }
}

/// "0.3.0" ... "0.8.0" → the minor number.
fn parse_version(v: &str) -> Result<u32> {
    let bad = || {
        anyhow!("cdiVersion {v:?} is not one this hpcc reads (0.{MIN_MINOR}.0 to 0.{MAX_MINOR}.0)")
    };
    let mut parts = v.trim().trim_start_matches('v').split('.');
    let (Some("0"), Some(minor), rest) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    if rest.is_some_and(|p| p.parse::<u32>().is_err()) || parts.next().is_some() {
        return Err(bad());
    }
    match minor.parse::<u32>() {
        Ok(m) if (MIN_MINOR..=MAX_MINOR).contains(&m) => Ok(m),
        _ => Err(bad()),
    }
}

/// `vendor/class`: the vendor a domain-like name, the class a word.
fn check_kind(kind: &str) -> Result<()> {
    let Some((vendor, class)) = kind.split_once('/') else {
        bail!("kind {kind:?} must be vendor/class, like nvidia.com/gpu");
    };
    let edge_ok = |s: &str| {
        s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && s.chars().last().is_some_and(|c| c.is_ascii_alphanumeric())
    };
    if !edge_ok(vendor)
        || !vendor
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        bail!("kind {kind:?}: vendor {vendor:?} may hold only letters, digits, '-', '_' and '.', and must begin and end with a letter or digit");
    }
    if !class
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        || !edge_ok(class)
        || !class
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
    {
        bail!("kind {kind:?}: class {class:?} must begin with a letter and hold only letters, digits, '-' and '_'");
    }
    Ok(())
}

/// A device name: letters, digits, '-', '_', '.' and ':', beginning and
/// ending with a letter or digit ("0", "GPU-4f1...", "0:1", "all").
pub fn check_device_name(name: &str) -> Result<()> {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !edge(name.chars().next())
        || !edge(name.chars().last())
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
    {
        bail!("{name:?} is not a device name (letters, digits, '-', '_', '.' and ':', beginning and ending with a letter or digit)");
    }
    Ok(())
}

fn check_edits(e: &ContainerEdits, at: &str) -> Result<()> {
    for (i, kv) in e.env.iter().enumerate() {
        match kv.split_once('=') {
            Some((k, _)) if !k.is_empty() => {}
            _ => bail!("{at}.env[{i}]: {kv:?} is not KEY=VALUE"),
        }
    }
    for (i, n) in e.device_nodes.iter().enumerate() {
        if !n.path.is_absolute() {
            bail!(
                "{at}.deviceNodes[{i}].path: {:?} is not an absolute path",
                n.path
            );
        }
        if let Some(h) = n.host_path.as_ref().filter(|h| !h.is_absolute()) {
            bail!("{at}.deviceNodes[{i}].hostPath: {h:?} is not an absolute path");
        }
        if let Some(t) = n
            .typ
            .as_deref()
            .filter(|t| !["b", "c", "u", "p", ""].contains(t))
        {
            bail!("{at}.deviceNodes[{i}].type: {t:?} is not b, c, u or p");
        }
        if let Some(p) = n
            .permissions
            .as_deref()
            .filter(|p| !p.chars().all(|c| "rwm".contains(c)))
        {
            bail!("{at}.deviceNodes[{i}].permissions: {p:?} may hold only r, w and m");
        }
    }
    for (i, m) in e.mounts.iter().enumerate() {
        if !m.container_path.is_absolute() {
            bail!(
                "{at}.mounts[{i}].containerPath: {:?} is not an absolute path",
                m.container_path
            );
        }
        if m.host_path.as_os_str().is_empty() {
            bail!("{at}.mounts[{i}].hostPath is empty");
        }
    }
    for (i, h) in e.hooks.iter().enumerate() {
        if !HOOK_NAMES.contains(&h.hook_name.as_str()) {
            bail!(
                "{at}.hooks[{i}].hookName: {:?} is not one of {}",
                h.hook_name,
                HOOK_NAMES.join(", ")
            );
        }
        if !h.path.is_absolute() {
            bail!("{at}.hooks[{i}].path: {:?} is not an absolute path", h.path);
        }
    }
    for (i, d) in e.net_devices.iter().enumerate() {
        if d.host_interface_name.is_empty() || d.name.is_empty() {
            bail!("{at}.netDevices[{i}]: hostInterfaceName and name are both required");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NVIDIA_LIKE: &str = r#"---
cdiVersion: 0.5.0
kind: nvidia.com/gpu
devices:
- name: "0"
  containerEdits:
    deviceNodes:
    - path: /dev/nvidia0
- name: GPU-6f1c
  containerEdits:
    deviceNodes:
    - path: /dev/nvidia0
- name: all
  containerEdits:
    deviceNodes:
    - path: /dev/nvidia0
containerEdits:
  env:
  - NVIDIA_VISIBLE_DEVICES=void
  deviceNodes:
  - path: /dev/nvidiactl
    hostPath: /dev/nvidiactl
  hooks:
  - hookName: createContainer
    path: /usr/bin/nvidia-ctk
    args: [nvidia-ctk, hook, update-ldcache, --folder, /usr/lib/x86_64-linux-gnu]
  mounts:
  - hostPath: /usr/lib/x86_64-linux-gnu/libcuda.so.550.54.14
    containerPath: /usr/lib/x86_64-linux-gnu/libcuda.so.550.54.14
    options: [ro, nosuid, nodev, bind]
"#;

    fn parse(name: &str, text: &str) -> Result<SpecFile> {
        SpecFile::parse(Path::new(name), text)
    }

    fn err(name: &str, text: &str) -> String {
        format!("{:#}", parse(name, text).unwrap_err())
    }

    #[test]
    fn an_nvidia_ctk_spec_reads_in_yaml_and_json() {
        let s = parse("/etc/cdi/nvidia.yaml", NVIDIA_LIKE).unwrap();
        assert_eq!(s.vendor_class(), ("nvidia.com", "gpu"));
        assert_eq!(s.devices.len(), 3);
        assert_eq!(s.container_edits.hooks[0].hook_name, "createContainer");
        assert_eq!(s.container_edits.mounts[0].options[0], "ro");
        let json = r#"{"cdiVersion":"0.3.0","kind":"vendor.com/dev","devices":[{"name":"a","containerEdits":{"env":["A=1"]}}]}"#;
        let s = parse("/var/run/cdi/v.json", json).unwrap();
        assert_eq!(s.devices[0].container_edits.env, vec!["A=1".to_string()]);
    }

    #[test]
    fn every_version_from_0_3_to_0_8_is_read_and_no_other() {
        for m in 3..=8 {
            let text = format!("cdiVersion: 0.{m}.0\nkind: a.com/b\ndevices: [{{name: x}}]\n");
            parse("s.yaml", &text).unwrap();
        }
        for v in ["0.2.0", "0.9.0", "1.0.0", "x", "0.8.0.1", ""] {
            let text = format!("cdiVersion: \"{v}\"\nkind: a.com/b\ndevices: [{{name: x}}]\n");
            let e = err("/etc/cdi/s.yaml", &text);
            assert!(
                e.contains("/etc/cdi/s.yaml") && e.contains("cdiVersion"),
                "{e}"
            );
        }
    }

    #[test]
    fn a_field_newer_than_the_version_is_refused() {
        let text = "cdiVersion: 0.3.0\nkind: a.com/b\ndevices:\n- name: x\n  containerEdits:\n    deviceNodes:\n    - {path: /dev/x, hostPath: /dev/y}\n";
        let e = err("s.yaml", text);
        assert!(e.contains("hostPath") && e.contains("0.5.0"), "{e}");
        let text = "cdiVersion: 0.6.0\nkind: a.com/b\ndevices:\n- name: x\n  containerEdits:\n    additionalGids: [44]\n";
        assert!(err("s.yaml", text).contains("additionalGids"));
    }

    #[test]
    fn malformed_specs_name_the_file_and_the_field() {
        let cases = [
            ("cdiVersion: 0.6.0\nkind: gpu\ndevices: [{name: x}]\n", "kind"),
            ("cdiVersion: 0.6.0\nkind: a.com/b\ndevices: []\n", "devices"),
            ("cdiVersion: 0.6.0\nkind: a.com/b\ndevices: [{name: -x}]\n", "devices[0].name"),
            ("cdiVersion: 0.6.0\nkind: a.com/b\ndevices: [{name: x}, {name: x}]\n", "defined twice"),
            ("cdiVersion: 0.6.0\nkind: a.com/b\ndevices: [{name: x, containerEdits: {env: [NOEQUALS]}}]\n", "devices[0].containerEdits.env[0]"),
            ("cdiVersion: 0.6.0\nkind: a.com/b\ndevices: [{name: x, containerEdits: {deviceNodes: [{path: dev/x}]}}]\n", "deviceNodes[0].path"),
            ("cdiVersion: 0.6.0\nkind: a.com/b\ndevices: [{name: x, containerEdits: {deviceNodes: [{path: /dev/x, major: many}]}}]\n", "devices[0].containerEdits.deviceNodes[0].major"),
            ("cdiVersion: 0.6.0\nkind: a.com/b\ndevices: [{name: x}]\ncontainerEdits: {hooks: [{hookName: later, path: /bin/true}]}\n", "containerEdits.hooks[0].hookName"),
            ("cdiVersion: 0.6.0\nkind: a.com/b\ndevices: [{name: x}]\ncontainerEdits: {mounts: [{hostPath: /a, containerPath: b}]}\n", "containerPath"),
            ("cdiVersion: 0.6.0\nkind: a.com/b\n", "devices"),
            (": : :\n", "s.yaml"),
        ];
        for (text, field) in cases {
            let e = err("/etc/cdi/s.yaml", text);
            assert!(
                e.contains("/etc/cdi/s.yaml") && e.contains(field),
                "{field}: {e}"
            );
            assert!(!e.contains('\n'), "one line: {e}");
        }
        let e = err("/etc/cdi/s.json", "{\"cdiVersion\": 3}");
        assert!(e.contains("cdiVersion"), "{e}");
    }

    #[test]
    fn device_names() {
        for ok in ["0", "all", "GPU-6f1c-22", "0:1", "a.b_c"] {
            check_device_name(ok).unwrap();
        }
        for bad in ["", "-0", "0-", "a b", "a/b", "a=b"] {
            assert!(check_device_name(bad).is_err(), "{bad}");
        }
    }
}
