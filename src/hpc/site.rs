//! The site config: what an admin (or a user, through $HPCC_CONFIG) sets
//! once per cluster. TOML at $HPCC_CONFIG, else /etc/hpcc/hpcc.toml; a
//! missing default file means an empty config.
//!
//! ```toml
//! cache_dir = "/scratch/$USER/hpcc"     # $USER and $HOME are expanded
//! env = ["MYSITE_*"]                    # always passed from the host
//! devices = ["/dev/hfi1_*"]             # bound in when present
//! gpu_libraries = ["libnvidia-foo.so"]  # extra driver libraries to bind
//! ib_libraries = ["/usr/lib64/libibverbs/libmlx5-rdmav34.so"]
//! dev_dir = "/dev"                      # where device discovery looks
//! ld_cache = "/etc/ld.so.cache"         # where driver libraries are found
//! image_root = "auto"                   # overlay, underlay, or auto ($HPCC_IMAGE_ROOT wins)
//! cdi_spec_dirs = ["/etc/cdi", "/var/run/cdi"]  # CDI specs, lowest priority first
//! nvidia_gpus_dir = "/proc/driver/nvidia/gpus"  # the driver's GPU list (UUIDs)
//! insecure_registries = ["registry.site:5000"]  # may use plain HTTP (loopback always may)
//! [registry_mirrors]                    # tried in order before the registry itself
//! "docker.io" = ["mirror.site:5000"]
//! [[bind]]
//! source = "/lustre"
//! destination = "/lustre"               # default: source
//! readonly = false
//! optional = true                       # skip silently when missing
//! ```

use anyhow::{anyhow, Context, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};

pub const DEFAULT_PATH: &str = "/etc/hpcc/hpcc.toml";

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    #[serde(default)]
    pub cache_dir: Option<String>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub devices: Vec<String>,
    #[serde(default)]
    pub gpu_libraries: Vec<String>,
    #[serde(default)]
    pub ib_libraries: Vec<String>,
    #[serde(default)]
    pub dev_dir: Option<PathBuf>,
    #[serde(default)]
    pub ld_cache: Option<PathBuf>,
    #[serde(default)]
    pub bind: Vec<SiteBind>,
    #[serde(default)]
    pub image_root: Option<String>,
    #[serde(default)]
    pub cdi_spec_dirs: Vec<String>,
    #[serde(default)]
    pub nvidia_gpus_dir: Option<PathBuf>,
    #[serde(default)]
    pub insecure_registries: Vec<String>,
    #[serde(default)]
    pub registry_mirrors: std::collections::HashMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteBind {
    pub source: String,
    #[serde(default)]
    pub destination: Option<String>,
    #[serde(default)]
    pub readonly: bool,
    #[serde(default)]
    pub optional: bool,
}

impl SiteConfig {
    /// Loads $HPCC_CONFIG (which must exist) or the default path (which
    /// may not).
    pub fn load() -> Result<SiteConfig> {
        match std::env::var_os("HPCC_CONFIG").filter(|v| !v.is_empty()) {
            Some(p) => SiteConfig::from_file(Path::new(&p)),
            None if Path::new(DEFAULT_PATH).exists() => {
                SiteConfig::from_file(Path::new(DEFAULT_PATH))
            }
            None => Ok(SiteConfig::default()),
        }
    }

    pub fn from_file(path: &Path) -> Result<SiteConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("site config {}", path.display()))?;
        SiteConfig::parse(&text).with_context(|| format!("site config {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<SiteConfig> {
        let cfg: SiteConfig = toml::from_str(text).map_err(|e| anyhow!("{}", e.message()))?;
        Ok(cfg)
    }

    pub fn cache_dir(&self) -> Option<PathBuf> {
        self.cache_dir.as_deref().map(|c| PathBuf::from(expand(c)))
    }

    pub fn dev_dir(&self) -> PathBuf {
        self.dev_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("/dev"))
    }

    /// How image mode builds its root: $HPCC_IMAGE_ROOT, else image_root,
    /// else auto (an overlay, or an underlay where the kernel refuses it).
    pub fn image_root(&self) -> Result<crate::rootfs::RootMethod> {
        use crate::rootfs::RootMethod;
        let (value, from) = match std::env::var("HPCC_IMAGE_ROOT")
            .ok()
            .filter(|v| !v.is_empty())
        {
            Some(v) => (v, "HPCC_IMAGE_ROOT"),
            None => (
                self.image_root.clone().unwrap_or_else(|| "auto".into()),
                "site config image_root",
            ),
        };
        match value.as_str() {
            "auto" => Ok(RootMethod::Auto),
            "overlay" => Ok(RootMethod::Overlay),
            "underlay" => Ok(RootMethod::Underlay),
            other => Err(anyhow!(
                "{from} {other:?}: expected auto, overlay or underlay"
            )),
        }
    }

    pub fn ld_cache(&self) -> PathBuf {
        self.ld_cache
            .clone()
            .unwrap_or_else(|| PathBuf::from("/etc/ld.so.cache"))
    }

    pub fn nvidia_gpus_dir(&self) -> PathBuf {
        self.nvidia_gpus_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(super::gpu_ids::DEFAULT_GPUS_DIR))
    }
}

/// Expands $USER and $HOME (and ${USER}, ${HOME}) from our environment,
/// else from the passwd entry: a Slurm prolog, cron or `srun --export=NONE`
/// may leave them unset, and a cache_dir of "/var/tmp/hpcc-" would then be
/// shared by every user of the node.
pub fn expand(s: &str) -> String {
    if !s.contains('$') {
        return s.to_string();
    }
    let uid = nix::unistd::geteuid();
    let user = std::cell::OnceCell::new();
    let passwd = || {
        user.get_or_init(|| nix::unistd::User::from_uid(uid).ok().flatten())
            .clone()
    };
    expand_with(s, |var| {
        let env = std::env::var(var).ok().filter(|v| !v.is_empty());
        env.unwrap_or_else(|| {
            let entry = passwd().map(|u| (u.name, u.dir));
            from_passwd(var, entry, uid.as_raw())
        })
    })
}

/// USER or HOME where the environment has none.
fn from_passwd(var: &str, entry: Option<(String, PathBuf)>, uid: u32) -> String {
    match (var, entry) {
        ("USER", Some((name, _))) => name,
        ("HOME", Some((_, dir))) => dir.display().to_string(),
        // No passwd entry (a uid from LDAP that is down): the number still
        // keeps users apart.
        ("USER", None) => uid.to_string(),
        _ => String::new(),
    }
}

/// The pure half of [`expand`]: `lookup` answers USER and HOME.
fn expand_with(s: &str, lookup: impl Fn(&str) -> String) -> String {
    let mut out = s.to_string();
    for var in ["USER", "HOME"] {
        if !out.contains(var) {
            continue;
        }
        let val = lookup(var);
        out = out
            .replace(&format!("${{{var}}}"), &val)
            .replace(&format!("${var}"), &val);
    }
    out
}

/// Shell-style matching of `*` and `?`, enough for variable and device
/// name patterns.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], t) || (!t.is_empty() && go(p, &t[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

/// The files matching a pattern whose directory part is literal
/// ("/dev/hfi1_*"), sorted.
pub fn glob_files(pattern: &str) -> Vec<PathBuf> {
    let p = Path::new(pattern);
    let (Some(dir), Some(name)) = (p.parent(), p.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_str().is_some_and(|n| glob_match(name, n)))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_and_home_are_expanded_in_both_spellings() {
        let look = |v: &str| {
            if v == "USER" {
                "ann".into()
            } else {
                "/home/ann".into()
            }
        };
        assert_eq!(
            expand_with("/var/tmp/hpcc-$USER", look),
            "/var/tmp/hpcc-ann"
        );
        assert_eq!(expand_with("${HOME}/c/${USER}x", look), "/home/ann/c/annx");
        assert_eq!(expand_with("/plain", |_| unreachable!()), "/plain");
    }

    #[test]
    fn an_unset_user_comes_from_passwd_or_the_uid() {
        let ann = || Some(("ann".to_string(), PathBuf::from("/home/ann")));
        assert_eq!(from_passwd("USER", ann(), 1000), "ann");
        assert_eq!(from_passwd("HOME", ann(), 1000), "/home/ann");
        assert_eq!(from_passwd("USER", None, 1000), "1000");
        assert_eq!(from_passwd("HOME", None, 1000), "");
    }

    #[test]
    fn parses_every_key_and_refuses_unknown_ones() {
        let c = SiteConfig::parse(
            r#"
            cache_dir = "/scratch/x"
            env = ["SITE_*"]
            devices = ["/dev/hfi1_*"]
            gpu_libraries = ["libfoo.so"]
            ib_libraries = ["/usr/lib/libmlx5.so"]
            dev_dir = "/tmp/dev"
            ld_cache = "/tmp/ld.so.cache"
            [[bind]]
            source = "/lustre"
            optional = true
            [[bind]]
            source = "/apps"
            destination = "/opt/apps"
            readonly = true
        "#,
        )
        .unwrap();
        assert_eq!(c.bind.len(), 2);
        assert!(c.bind[0].optional && c.bind[1].readonly);
        assert_eq!(c.bind[1].destination.as_deref(), Some("/opt/apps"));
        assert_eq!(c.dev_dir(), PathBuf::from("/tmp/dev"));
        let e = SiteConfig::parse("cache_dri = 1").unwrap_err().to_string();
        assert!(e.contains("cache_dri"), "{e}");
    }

    #[test]
    fn globs() {
        assert!(glob_match("SLURM_*", "SLURM_JOB_ID"));
        assert!(!glob_match("nvidia?", "nvidia10"));
        assert!(glob_match("nvidia?", "nvidia1"));
        assert!(!glob_match("OMPI_*", "XOMPI_A"));
        assert!(glob_match("*", ""));
    }
}
