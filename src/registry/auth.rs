//! Registry authentication: the `WWW-Authenticate` challenge a registry
//! answers 401 with, and the credentials users already keep for podman,
//! skopeo and Docker.
//!
//! Credential files, first match wins (podman's order, then Docker's):
//! `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`,
//! `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`. Each holds
//! `{"auths": {"HOST": {"auth": base64("user:password")}}}`.

use anyhow::{anyhow, bail, Result};
use base64::Engine as _;
use std::collections::HashMap;
use std::path::PathBuf;

/// What a 401 asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`.
/// Quoted values may hold commas (scopes do: `repository:x:pull,push`).
pub fn parse_challenge(header: &str) -> Result<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let params = parse_params(rest);
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Ok(Challenge::Basic),
        "bearer" => {
            let realm = params
                .get("realm")
                .cloned()
                .ok_or_else(|| anyhow!("the registry's Bearer challenge names no realm"))?;
            if !(realm.starts_with("https://") || realm.starts_with("http://")) {
                bail!("the registry's token realm {realm:?} is not an http(s) URL");
            }
            Ok(Challenge::Bearer {
                realm,
                service: params.get("service").cloned(),
                scope: params.get("scope").cloned(),
            })
        }
        _ => bail!("the registry asks for {scheme:?} authentication, which hpcc does not speak (Basic or Bearer)"),
    }
}

fn parse_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = s.trim_start();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let (value, after) = if let Some(q) = after.strip_prefix('"') {
            // Up to the closing quote, honouring backslash escapes.
            let mut v = String::new();
            let mut chars = q.char_indices();
            let mut end = q.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            v.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => v.push(c),
                }
            }
            (v, &q[end.min(q.len())..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        out.insert(key, value);
        rest = after.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

/// A user name and password for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
    /// The file they came from, for error messages.
    pub from: PathBuf,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({} from {})", self.user, self.from.display())
    }
}

impl Credentials {
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.user, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// The credential files to look in, in order, from the environment.
pub fn auth_files(env: &dyn Fn(&str) -> Option<String>) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Some(f) = env("REGISTRY_AUTH_FILE") {
        files.push(PathBuf::from(f));
    }
    if let Some(d) = env("XDG_RUNTIME_DIR") {
        files.push(PathBuf::from(d).join("containers/auth.json"));
    }
    match (env("DOCKER_CONFIG"), env("HOME")) {
        (Some(d), _) => files.push(PathBuf::from(d).join("config.json")),
        (None, Some(h)) => files.push(PathBuf::from(h).join(".docker/config.json")),
        (None, None) => {}
    }
    files
}

/// Credentials for `registry` from the first file that has an entry.
/// A file that is missing is skipped; one that is malformed is an error
/// naming it, since silently pulling anonymously would mislead.
pub fn lookup(files: &[PathBuf], registry: &str) -> Result<Option<Credentials>> {
    for f in files {
        let text = match std::fs::read(f) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => bail!("{}: {e}", f.display()),
        };
        if let Some((user, password)) =
            lookup_in(&text, registry).map_err(|e| anyhow!("{}: {e}", f.display()))?
        {
            return Ok(Some(Credentials {
                user,
                password,
                from: f.clone(),
            }));
        }
    }
    Ok(None)
}

/// The entry for `registry` in one auth file's text. Keys may be a bare
/// host, a URL (`https://host/v1/`), and Docker Hub goes by several names.
fn lookup_in(text: &[u8], registry: &str) -> Result<Option<(String, String)>> {
    #[derive(serde::Deserialize)]
    struct File {
        #[serde(default)]
        auths: HashMap<String, Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default)]
        auth: Option<String>,
        #[serde(default)]
        username: Option<String>,
        #[serde(default)]
        password: Option<String>,
    }
    let file: File =
        serde_json::from_slice(text).map_err(|e| anyhow!("malformed credentials file: {e}"))?;
    let wanted: Vec<&str> = if registry == super::reference::DOCKER_HUB {
        vec!["docker.io", "index.docker.io", "registry-1.docker.io"]
    } else {
        vec![registry]
    };
    let host_of = |key: &str| -> String {
        let k = key
            .strip_prefix("https://")
            .or_else(|| key.strip_prefix("http://"))
            .unwrap_or(key);
        k.split('/').next().unwrap_or(k).to_string()
    };
    for (key, entry) in &file.auths {
        if !wanted.contains(&host_of(key).as_str()) {
            continue;
        }
        if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|_| anyhow!("auths.{key}.auth is not base64"))?;
            let text = String::from_utf8(raw)
                .map_err(|_| anyhow!("auths.{key}.auth is not UTF-8 once decoded"))?;
            let (u, p) = text
                .split_once(':')
                .ok_or_else(|| anyhow!("auths.{key}.auth is not user:password"))?;
            return Ok(Some((u.to_string(), p.to_string())));
        }
        if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
            return Ok(Some((u.clone(), p.clone())));
        }
    }
    Ok(None)
}

/// The token in a token server's answer (`token`, or OAuth's `access_token`).
pub fn token_from_response(body: &[u8]) -> Result<String> {
    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(default)]
        token: Option<String>,
        #[serde(default)]
        access_token: Option<String>,
    }
    let a: Answer = serde_json::from_slice(body)
        .map_err(|e| anyhow!("the token server's answer is malformed: {e}"))?;
    a.token
        .or(a.access_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| anyhow!("the token server's answer holds no token"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges_keep_commas_inside_quotes() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="reg.example",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("reg.example".into()),
                scope: Some("repository:a/b:pull,push".into()),
            }
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry""#).unwrap(),
            Challenge::Basic
        );
        assert_eq!(
            parse_challenge(r#"bearer realm="http://127.0.0.1:9/t""#).unwrap(),
            Challenge::Bearer {
                realm: "http://127.0.0.1:9/t".into(),
                service: None,
                scope: None
            }
        );
        assert!(parse_challenge("Bearer service=\"x\"").is_err());
        assert!(parse_challenge("Bearer realm=\"file:///etc/passwd\"").is_err());
        assert!(parse_challenge("Negotiate abc")
            .unwrap_err()
            .to_string()
            .contains("Negotiate"));
    }

    #[test]
    fn credentials_come_from_auth_files_in_order() {
        let dir = std::env::temp_dir().join(format!("hpcc-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let podman = dir.join("auth.json");
        let docker = dir.join("config.json");
        // "alice:s3cret" and "bob:pw:with:colons"
        std::fs::write(
            &podman,
            r#"{"auths":{"localhost:5000":{"auth":"YWxpY2U6czNjcmV0"}}}"#,
        )
        .unwrap();
        std::fs::write(
            &docker,
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"Ym9iOnB3OndpdGg6Y29sb25z"},"localhost:5000":{"auth":"eDp5"}}}"#,
        )
        .unwrap();
        let files = vec![dir.join("missing.json"), podman.clone(), docker.clone()];
        let c = lookup(&files, "localhost:5000").unwrap().unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("alice", "s3cret"));
        assert_eq!(c.from, podman);
        assert_eq!(c.basic_header(), "Basic YWxpY2U6czNjcmV0");
        let c = lookup(&files, "docker.io").unwrap().unwrap();
        assert_eq!(
            (c.user.as_str(), c.password.as_str()),
            ("bob", "pw:with:colons")
        );
        assert!(lookup(&files, "other:1").unwrap().is_none());
        std::fs::write(&podman, "{not json").unwrap();
        let e = lookup(&files, "localhost:5000").unwrap_err().to_string();
        assert!(e.contains("auth.json") && e.contains("malformed"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn auth_files_follow_podman_then_docker() {
        let env = |k: &str| match k {
            "REGISTRY_AUTH_FILE" => Some("/a.json".to_string()),
            "XDG_RUNTIME_DIR" => Some("/run/user/7".to_string()),
            "HOME" => Some("/home/u".to_string()),
            _ => None,
        };
        assert_eq!(
            auth_files(&env),
            vec![
                PathBuf::from("/a.json"),
                PathBuf::from("/run/user/7/containers/auth.json"),
                PathBuf::from("/home/u/.docker/config.json")
            ]
        );
    }

    #[test]
    fn token_answers() {
        assert_eq!(
            token_from_response(br#"{"token":"abc","expires_in":60}"#).unwrap(),
            "abc"
        );
        assert_eq!(
            token_from_response(br#"{"access_token":"xyz"}"#).unwrap(),
            "xyz"
        );
        assert!(token_from_response(br#"{"token":""}"#).is_err());
        assert!(token_from_response(b"<html>").is_err());
    }
}
