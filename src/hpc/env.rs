//! The container's environment: the host's, with the image's ENV winning
//! for the keys it sets, and the launcher's variables always from the host
//! so MPI and Slurm work inside.

use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;

/// Variables that belong to the launcher or the site, never to the image.
pub const LAUNCHER_PATTERNS: [&str; 13] = [
    "SLURM_*",
    "PMI_*",
    "PMIX_*",
    "OMPI_*",
    "PRTE_*",
    "HYDRA_*",
    "MPI_*",
    "UCX_*",
    "FI_*",
    "CUDA_VISIBLE_DEVICES",
    "NVIDIA_*",
    "ROCR_VISIBLE_DEVICES",
    "HPCC_JOIN_*",
];

pub struct EnvInputs<'a> {
    pub host: Vec<(String, String)>,
    pub image: &'a [String],
    pub site_patterns: &'a [String],
    /// `-e K=V` and `--env-file` lines, in order.
    pub explicit: Vec<(String, String)>,
    pub clean: bool,
}

fn split(kv: &str) -> Option<(String, String)> {
    let (k, v) = kv.split_once('=')?;
    (!k.is_empty()).then(|| (k.to_string(), v.to_string()))
}

pub fn is_launcher_var(key: &str, site: &[String]) -> bool {
    LAUNCHER_PATTERNS
        .iter()
        .any(|p| super::site::glob_match(p, key))
        || site.iter().any(|p| super::site::glob_match(p, key))
}

/// The final environment, in a stable order: image ENV first, then host
/// variables, then explicit ones, each key once.
pub fn compose(inp: &EnvInputs) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let set = |k: &str, v: &str, out: &mut Vec<(String, String)>| match out
        .iter_mut()
        .find(|(ok, _)| ok == k)
    {
        Some(e) => e.1 = v.to_string(),
        None => out.push((k.to_string(), v.to_string())),
    };
    for kv in inp.image {
        if let Some((k, v)) = split(kv) {
            set(&k, &v, &mut out);
        }
    }
    let image_keys: Vec<String> = out.iter().map(|(k, _)| k.clone()).collect();
    for (k, v) in &inp.host {
        let launcher = is_launcher_var(k, inp.site_patterns);
        if launcher || (!inp.clean && !image_keys.contains(k)) {
            set(k, v, &mut out);
        }
    }
    for (k, v) in &inp.explicit {
        set(k, v, &mut out);
    }
    out
}

/// `-e K=V`; a bare `-e K` takes K's value from the host, as docker does.
pub fn parse_assignment(s: &str) -> Result<(String, String)> {
    if let Some(kv) = split(s) {
        return Ok(kv);
    }
    if s.is_empty() || s.contains('=') {
        bail!("--env {s:?}: expected NAME=VALUE");
    }
    Ok((s.to_string(), std::env::var(s).unwrap_or_default()))
}

/// NAME=VALUE lines; blank lines and `#` comments are skipped.
pub fn read_env_file(path: &Path) -> Result<Vec<(String, String)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("--env-file {}", path.display()))?;
    text.lines()
        .enumerate()
        .map(|(i, l)| (i, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .map(|(i, l)| {
            let l = l.strip_prefix("export ").unwrap_or(l);
            split(l).ok_or_else(|| {
                anyhow!(
                    "--env-file {} line {}: expected NAME=VALUE",
                    path.display(),
                    i + 1
                )
            })
        })
        .collect()
}

/// Replaces LANG/LC_* values the image has no locale for with one it has,
/// so a thousand ranks do not each print "cannot change locale".
pub fn fix_locale(env: &mut [(String, String)], rootfs: &Path) {
    let locale_dir = rootfs.join("usr/lib/locale");
    let has_archive = locale_dir.join("locale-archive").exists();
    let fallback = if locale_dir.join("C.utf8").exists() || locale_dir.join("C.UTF-8").exists() {
        "C.UTF-8"
    } else {
        "C"
    };
    for (k, v) in env.iter_mut() {
        if !(k == "LANG" || k.starts_with("LC_")) {
            continue;
        }
        if v.is_empty() || matches!(v.as_str(), "C" | "POSIX" | "C.UTF-8" | "C.utf8") {
            continue;
        }
        if has_archive
            || locale_dir.join(normalize_locale(v)).exists()
            || locale_dir.join(v.as_str()).exists()
        {
            continue;
        }
        *v = fallback.to_string();
    }
}

/// glibc's directory name for a locale: "en_US.UTF-8" → "en_US.utf8".
fn normalize_locale(v: &str) -> String {
    match v.split_once('.') {
        Some((lang, cs)) => {
            let cs: String = cs
                .chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .collect::<String>()
                .to_lowercase();
            format!("{lang}.{cs}")
        }
        None => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn image_wins_except_for_launcher_vars() {
        let host = kv(&[
            ("PATH", "/host/bin"),
            ("HOME", "/home/u"),
            ("OMPI_COMM_WORLD_RANK", "3"),
            ("SLURM_JOB_ID", "9"),
            ("SITE_X", "1"),
        ]);
        let image = vec![
            "PATH=/usr/bin".to_string(),
            "OMPI_COMM_WORLD_RANK=0".to_string(),
            "APP=1".to_string(),
        ];
        let site = vec!["SITE_*".to_string()];
        let env = compose(&EnvInputs {
            host: host.clone(),
            image: &image,
            site_patterns: &site,
            explicit: kv(&[("APP", "2")]),
            clean: false,
        });
        let get = |k: &str| env.iter().find(|(ek, _)| ek == k).map(|(_, v)| v.as_str());
        assert_eq!(get("PATH"), Some("/usr/bin"));
        assert_eq!(get("HOME"), Some("/home/u"));
        assert_eq!(get("OMPI_COMM_WORLD_RANK"), Some("3"));
        assert_eq!(get("APP"), Some("2"));
        let clean = compose(&EnvInputs {
            host,
            image: &image,
            site_patterns: &site,
            explicit: vec![],
            clean: true,
        });
        let keys: Vec<&str> = clean.iter().map(|(k, _)| k.as_str()).collect();
        assert!(
            keys.contains(&"SLURM_JOB_ID") && keys.contains(&"SITE_X") && !keys.contains(&"HOME"),
            "{keys:?}"
        );
    }

    #[test]
    fn assignments_and_files() {
        assert_eq!(
            parse_assignment("A=b=c").unwrap(),
            ("A".into(), "b=c".into())
        );
        assert!(parse_assignment("=x").is_err());
        let f = std::env::temp_dir().join(format!("hpcc-envfile-{}", std::process::id()));
        std::fs::write(&f, "# c\nA=1\n\nexport B=two words\n").unwrap();
        assert_eq!(
            read_env_file(&f).unwrap(),
            kv(&[("A", "1"), ("B", "two words")])
        );
        std::fs::write(&f, "oops\n").unwrap();
        assert!(read_env_file(&f)
            .unwrap_err()
            .to_string()
            .contains("line 1"));
        std::fs::remove_file(f).unwrap();
    }

    #[test]
    fn unsatisfiable_locales_fall_back() {
        let d = std::env::temp_dir().join(format!("hpcc-locale-{}", std::process::id()));
        std::fs::create_dir_all(d.join("usr/lib/locale/C.utf8")).unwrap();
        let mut env = kv(&[
            ("LANG", "en_US.UTF-8"),
            ("LC_ALL", "C"),
            ("LC_CTYPE", "de_DE.UTF-8"),
        ]);
        std::fs::create_dir_all(d.join("usr/lib/locale/de_DE.utf8")).unwrap();
        fix_locale(&mut env, &d);
        assert_eq!(
            env,
            kv(&[
                ("LANG", "C.UTF-8"),
                ("LC_ALL", "C"),
                ("LC_CTYPE", "de_DE.UTF-8")
            ])
        );
        std::fs::remove_dir_all(d).unwrap();
    }
}
