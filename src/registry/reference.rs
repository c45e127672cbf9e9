//! Image references as Docker spells them: `[REGISTRY/]REPO[:TAG][@DIGEST]`,
//! with `docker://` in front on hpcc's command line.
//!
//! As in Docker, the first path component is a registry only when it
//! looks like a host (it has a `.` or a `:`, or is `localhost`); otherwise
//! the name is on Docker Hub, where a one-component name lives under
//! `library/`. No tag and no digest means `:latest`.

use crate::image::digest::Digest;
use anyhow::{anyhow, bail, Result};

/// Docker Hub's name in references, and the host its API answers on.
pub const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_API: &str = "registry-1.docker.io";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// host[:port], as written (Docker Hub normalised to docker.io).
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl Reference {
    /// Parses REF, with or without `docker://`. Errors name the reference.
    pub fn parse(input: &str) -> Result<Reference> {
        parse(input).map_err(|e| anyhow!("{input}: not an image reference: {e}"))
    }

    /// The host (and port) to send API requests to.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// What the manifest endpoint is asked for: the digest when there is
    /// one (it pins the content), else the tag.
    pub fn manifest_key(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".into(),
        }
    }

    /// `registry/repo:tag`, without the digest: the name people use.
    pub fn name(&self) -> String {
        match &self.tag {
            Some(t) => format!("{}/{}:{t}", self.registry, self.repository),
            None => format!("{}/{}", self.registry, self.repository),
        }
    }

    /// The same repository pinned to a digest.
    pub fn pinned(&self, d: &Digest) -> String {
        format!("{}/{}@{d}", self.registry, self.repository)
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

fn parse(input: &str) -> Result<Reference> {
    let s = input
        .strip_prefix(crate::image::REGISTRY_PREFIX)
        .unwrap_or(input);
    if s.is_empty() {
        bail!("it is empty");
    }
    if s.len() > 512 {
        bail!("it is over 512 characters");
    }
    let (name_tag, digest) = match s.split_once('@') {
        Some((n, d)) => (n, Some(Digest::parse(d)?)),
        None => (s, None),
    };
    // A tag is after the last ':' only when no '/' follows it; otherwise
    // that ':' is a registry's port.
    let (name, tag) = match name_tag.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, Some(t)),
        _ => (name_tag, None),
    };
    if let Some(t) = tag {
        check_tag(t)?;
    }
    let (registry, repo) = match name.split_once('/') {
        Some((first, rest)) if looks_like_host(first) => (first.to_string(), rest.to_string()),
        _ => (DOCKER_HUB.to_string(), name.to_string()),
    };
    if registry != DOCKER_HUB {
        check_host(&registry)?;
    }
    let repository = if registry == DOCKER_HUB && !repo.contains('/') {
        format!("library/{repo}")
    } else {
        repo
    };
    check_repository(&repository)?;
    let tag = match (tag, &digest) {
        (Some(t), _) => Some(t.to_string()),
        (None, Some(_)) => None,
        (None, None) => Some("latest".to_string()),
    };
    Ok(Reference {
        registry,
        repository,
        tag,
        digest,
    })
}

fn looks_like_host(first: &str) -> bool {
    first.contains('.') || first.contains(':') || first == "localhost"
}

fn check_host(host: &str) -> Result<()> {
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (host, None),
    };
    let name_ok = !name.is_empty()
        && name
            .split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    if !name_ok {
        bail!("registry {host:?} is not a host name");
    }
    if let Some(p) = port {
        if p.parse::<u16>().map_or(true, |p| p == 0) {
            bail!("registry {host:?} has a bad port {p:?}");
        }
    }
    Ok(())
}

/// Components of lowercase letters and digits, joined by `.`, `_`, `__`
/// or runs of `-` (the distribution spec's grammar).
fn check_repository(repo: &str) -> Result<()> {
    let component_ok = |c: &str| {
        let b = c.as_bytes();
        let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
        !b.is_empty()
            && alnum(b[0])
            && alnum(b[b.len() - 1])
            && b.iter()
                .all(|&x| alnum(x) || matches!(x, b'.' | b'_' | b'-'))
            && !c.contains("..")
            && !c.contains("___")
            && !c.contains("._")
            && !c.contains("_.")
    };
    if repo.is_empty() || !repo.split('/').all(component_ok) {
        bail!("repository {repo:?} must be lowercase letters, digits and separators (. _ -), in components joined by /");
    }
    Ok(())
}

fn check_tag(tag: &str) -> Result<()> {
    let b = tag.as_bytes();
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    if b.is_empty()
        || b.len() > 128
        || !word(b[0])
        || !b.iter().all(|&x| word(x) || x == b'.' || x == b'-')
    {
        bail!("tag {tag:?} must be 1 to 128 letters, digits, _ . or -, not starting with . or -");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Reference {
        Reference::parse(s).unwrap()
    }

    #[test]
    fn short_names_are_docker_hub_library_images() {
        let r = p("docker://ubuntu");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("docker.io", "library/ubuntu", Some("latest"))
        );
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(r.to_string(), "docker.io/library/ubuntu:latest");
        let r = p("ubuntu:22.04");
        assert_eq!(r.tag.as_deref(), Some("22.04"));
        let r = p("docker://nvidia/cuda:12.4.1-base-ubuntu22.04");
        assert_eq!(r.repository, "nvidia/cuda");
        assert_eq!(r.registry, "docker.io");
    }

    #[test]
    fn a_host_with_a_dot_colon_or_localhost_is_a_registry() {
        let r = p("docker://localhost:5000/busybox:1.36");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("localhost:5000", "busybox", Some("1.36"))
        );
        assert_eq!(r.api_host(), "localhost:5000");
        let r = p("localhost/busybox");
        assert_eq!(r.registry, "localhost");
        let r = p("ghcr.io/org/team/app");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("ghcr.io", "org/team/app")
        );
        // A port without a tag: the ':' belongs to the host.
        let r = p("127.0.0.1:5000/a/b");
        assert_eq!(
            (r.registry.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000", Some("latest"))
        );
    }

    #[test]
    fn digests_pin_and_replace_the_default_tag() {
        let d = Digest::of_bytes(b"m");
        let r = p(&format!("docker://localhost:5000/busybox@{d}"));
        assert_eq!(r.digest.as_ref(), Some(&d));
        assert_eq!(r.tag, None);
        assert_eq!(r.manifest_key(), d.to_string());
        let r = p(&format!("busybox:1@{d}"));
        assert_eq!(r.tag.as_deref(), Some("1"));
        assert_eq!(r.manifest_key(), d.to_string());
        assert_eq!(r.to_string(), format!("docker.io/library/busybox:1@{d}"));
        assert_eq!(r.pinned(&d), format!("docker.io/library/busybox@{d}"));
    }

    #[test]
    fn malformed_references_are_refused_by_name() {
        for bad in [
            "docker://",
            "docker://Ubuntu",
            "docker://ubuntu:",
            "docker://ubuntu:-x",
            "docker://ubuntu@sha256:123",
            "docker://ubuntu@md5:0123",
            "docker://host:99999/x",
            "docker://host:0/x",
            "docker://a..b.com/x",
            "docker://localhost:5000/",
            "docker://localhost:5000/a//b",
            "docker://x/../y",
            "docker://bad name",
        ] {
            let e = Reference::parse(bad).unwrap_err().to_string();
            assert!(
                e.starts_with(bad) && e.contains("not an image reference"),
                "{bad}: {e}"
            );
        }
        let long = format!("docker://{}", "a".repeat(600));
        assert!(Reference::parse(&long).is_err());
    }
}
