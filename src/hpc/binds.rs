//! Host directories in the container: `-b SRC[:DST[:ro]]`, the defaults
//! ($HOME, /tmp for MPI session directories, /dev/shm) and the site's.

use super::site::{expand, SiteConfig};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub src: PathBuf,
    pub dst: PathBuf,
    pub readonly: bool,
}

/// `SRC[:DST[:ro|rw]]`; a relative SRC is taken from the current directory.
pub fn parse_bind(spec: &str) -> Result<Bind> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, dst, opt) = match parts.as_slice() {
        [s] => (*s, *s, None),
        [s, d] => (*s, *d, None),
        [s, d, o] => (*s, *d, Some(*o)),
        _ => bail!("--bind {spec:?}: expected SRC[:DST[:ro]]"),
    };
    let readonly = match opt {
        None | Some("rw") => false,
        Some("ro") => true,
        Some(o) => bail!("--bind {spec:?}: unknown option {o:?} (use ro or rw)"),
    };
    if src.is_empty() || dst.is_empty() {
        bail!("--bind {spec:?}: empty path");
    }
    let src = std::path::absolute(src).with_context(|| format!("--bind {spec:?}"))?;
    let dst = if parts.len() == 1 {
        src.clone()
    } else {
        PathBuf::from(dst)
    };
    if !dst.is_absolute() {
        bail!("--bind {spec:?}: the destination must be an absolute path");
    }
    Ok(Bind { src, dst, readonly })
}

/// Every bind for this run, later ones replacing earlier ones with the
/// same destination: defaults, then the site's, then the command line's.
pub fn plan(cli: &[Bind], site: &SiteConfig, home: Option<&Path>) -> Result<Vec<Bind>> {
    let mut out: Vec<Bind> = Vec::new();
    let push = |b: Bind, out: &mut Vec<Bind>| {
        out.retain(|o| o.dst != b.dst);
        out.push(b);
    };
    let defaults = home
        .into_iter()
        .filter(|h| *h != Path::new("/"))
        .chain([Path::new("/tmp"), Path::new("/dev/shm")]);
    for d in defaults {
        if d.is_dir() {
            push(
                Bind {
                    src: d.to_path_buf(),
                    dst: d.to_path_buf(),
                    readonly: false,
                },
                &mut out,
            );
        }
    }
    for b in &site.bind {
        let src = PathBuf::from(expand(&b.source));
        if !src.exists() {
            if b.optional {
                crate::debug!("site bind {} skipped: not present", src.display());
                continue;
            }
            bail!("site config bind source {} does not exist", src.display());
        }
        let dst = b
            .destination
            .as_deref()
            .map(|d| PathBuf::from(expand(d)))
            .unwrap_or_else(|| src.clone());
        push(
            Bind {
                src,
                dst,
                readonly: b.readonly,
            },
            &mut out,
        );
    }
    for b in cli {
        if !b.src.exists() {
            bail!("--bind source {} does not exist", b.src.display());
        }
        push(b.clone(), &mut out);
    }
    Ok(out)
}

/// Where the host's cwd appears in the container, if some bind shows it:
/// the longest bound source that contains it wins.
pub fn cwd_inside(binds: &[Bind], host_cwd: &Path) -> Option<PathBuf> {
    binds
        .iter()
        .filter_map(|b| {
            host_cwd
                .strip_prefix(&b.src)
                .ok()
                .map(|rel| (b.src.as_os_str().len(), b.dst.join(rel)))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, p)| p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bind_forms() {
        let b = parse_bind("/data").unwrap();
        assert_eq!(
            (b.src.as_path(), b.dst.as_path(), b.readonly),
            (Path::new("/data"), Path::new("/data"), false)
        );
        let b = parse_bind("/data:/in:ro").unwrap();
        assert_eq!((b.dst.as_path(), b.readonly), (Path::new("/in"), true));
        assert!(parse_bind("/a:/b:rx").is_err());
        assert!(parse_bind("/a:rel").is_err());
        assert!(parse_bind("/a:/b:ro:x").is_err());
    }

    #[test]
    fn later_binds_win_and_cwd_maps_through_the_longest_source() {
        let site = SiteConfig::default();
        let cli = vec![Bind {
            src: "/tmp".into(),
            dst: "/scratch".into(),
            readonly: true,
        }];
        let p = plan(&cli, &site, None).unwrap();
        assert!(p
            .iter()
            .any(|b| b.dst == Path::new("/scratch") && b.readonly));
        let binds = vec![
            Bind {
                src: "/home/u".into(),
                dst: "/home/u".into(),
                readonly: false,
            },
            Bind {
                src: "/home/u/proj".into(),
                dst: "/proj".into(),
                readonly: false,
            },
        ];
        assert_eq!(
            cwd_inside(&binds, Path::new("/home/u/proj/run1")),
            Some(PathBuf::from("/proj/run1"))
        );
        assert_eq!(
            cwd_inside(&binds, Path::new("/home/u/x")),
            Some(PathBuf::from("/home/u/x"))
        );
        assert_eq!(cwd_inside(&binds, Path::new("/opt")), None);
        let missing = vec![Bind {
            src: "/no/such".into(),
            dst: "/x".into(),
            readonly: false,
        }];
        assert!(plan(&missing, &site, None)
            .unwrap_err()
            .to_string()
            .contains("/no/such"));
    }
}
