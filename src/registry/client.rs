//! One repository on one registry, over the distribution API v2: requests
//! with the auth a 401 asks for, retries with backoff on 429, 5xx and
//! dropped connections (honouring `Retry-After`), and redirects followed
//! (the Authorization header only to the same host, so blob storage never
//! sees a registry token).

use super::auth::{self, Challenge, Credentials};
use super::reference::Reference;
use anyhow::{anyhow, bail, Context, Result};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use ureq::http::Response;
use ureq::Body;

/// How often a request is tried before its error stands.
const TRIES: u32 = 4;
/// Redirects followed before the chain counts as a loop.
const MAX_REDIRECTS: u32 = 5;
/// The longest wait between tries, whatever Retry-After says.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Settings from the site config and the command line.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Hosts (host or host:port) that may be spoken to over plain HTTP.
    pub insecure: Vec<String>,
    /// How long a connection may stay silent (`HPCC_REGISTRY_TIMEOUT`).
    pub timeout: Duration,
    /// Where to look for credentials.
    pub auth_files: Vec<PathBuf>,
    /// Base of the pauses between tries (tests shorten it).
    pub backoff: Duration,
}

impl ClientOptions {
    pub fn from_site(site: &crate::hpc::site::SiteConfig) -> Result<ClientOptions> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let timeout = match env("HPCC_REGISTRY_TIMEOUT") {
            Some(v) => Duration::from_secs_f64(
                v.parse::<f64>()
                    .ok()
                    .filter(|s| *s > 0.0 && *s < 86400.0)
                    .ok_or_else(|| anyhow!("HPCC_REGISTRY_TIMEOUT={v:?}: expected seconds"))?,
            ),
            None => Duration::from_secs(60),
        };
        Ok(ClientOptions {
            insecure: site.insecure_registries.clone(),
            timeout,
            auth_files: auth::auth_files(&env),
            backoff: Duration::from_millis(500).min(timeout / 4),
        })
    }
}

/// True when `host` may use plain HTTP: listed by the site, or this
/// machine's own loopback (a registry there cannot be intercepted).
pub fn is_insecure(host: &str, listed: &[String]) -> bool {
    let name = match host.rsplit_once(':') {
        Some((n, p)) if p.bytes().all(|b| b.is_ascii_digit()) => n,
        _ => host,
    };
    name == "localhost"
        || name.starts_with("127.")
        || name == "[::1]"
        || listed.iter().any(|l| l == host || l == name)
}

pub struct Client {
    agent: ureq::Agent,
    host: String,
    repository: String,
    insecure: bool,
    creds: Option<Credentials>,
    opts: ClientOptions,
    /// "https://host" or, for an insecure host without TLS, "http://host".
    base: OnceLock<String>,
    /// The Authorization header value the last challenge led to.
    authorization: Mutex<Option<String>>,
}

impl Client {
    /// A client for `r`'s repository on `host` (the registry or a mirror).
    pub fn new(r: &Reference, host: &str, opts: &ClientOptions) -> Result<Client> {
        let insecure = is_insecure(host, &opts.insecure);
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(system_roots()?)
            .unversioned_rustls_crypto_provider(Arc::new(crypto_provider()))
            .build();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(MAX_REDIRECTS)
            .redirect_auth_headers(ureq::config::RedirectAuthHeaders::SameHost)
            .timeout_connect(Some(opts.timeout))
            .timeout_recv_response(Some(opts.timeout))
            .timeout_per_read(Some(opts.timeout))
            .user_agent(format!("hpcc/{}", env!("CARGO_PKG_VERSION")))
            // Blobs are already compressed; manifests are small.
            .accept_encoding("")
            .tls_config(tls)
            .build()
            .new_agent();
        let creds = auth::lookup(&opts.auth_files, &r.registry)?;
        Ok(Client {
            agent,
            host: host.to_string(),
            repository: r.repository.clone(),
            insecure,
            creds,
            opts: opts.clone(),
            base: OnceLock::new(),
            authorization: Mutex::new(None),
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn timeout(&self) -> Duration {
        self.opts.timeout
    }

    /// The URL of an API path (`/v2/...`) for this repository.
    fn url(&self, path: &str) -> Result<String> {
        Ok(format!("{}{}", self.base()?, path))
    }

    /// HTTPS always, except that an insecure host whose port does not
    /// speak TLS is asked over HTTP (what Docker does for such hosts).
    fn base(&self) -> Result<&str> {
        if let Some(b) = self.base.get() {
            return Ok(b);
        }
        let https = format!("https://{}", self.host);
        let chosen = if !self.insecure {
            https
        } else {
            // Whatever stops the TLS handshake (a plain HTTP answer, a
            // closed connection) means HTTP; errors that would stop HTTP
            // too surface from the first real request.
            // A certificate that fails to verify is TLS all the same: say so.
            match self.agent.get(format!("{https}/v2/")).call() {
                Ok(_) => https,
                Err(e) if bad_certificate(&e) => {
                    return Err(describe(e, &self.host, self.opts.timeout));
                }
                Err(e) => {
                    crate::debug!("{https}: {e}; using plain HTTP (an insecure registry)");
                    format!("http://{}", self.host)
                }
            }
        };
        Ok(self.base.get_or_init(|| chosen))
    }

    pub fn manifest_path(&self, key: &str) -> String {
        format!("/v2/{}/manifests/{key}", self.repository)
    }

    pub fn blob_path(&self, digest: &crate::image::digest::Digest) -> String {
        format!("/v2/{}/blobs/{digest}", self.repository)
    }

    /// GET an API path, authenticating once when challenged, retrying
    /// what is worth retrying. Any answer that is not retried comes back,
    /// whatever its status; [`check_status`] turns errors into messages.
    pub fn get(&self, path: &str, accept: &[&str], from_byte: u64) -> Result<Response<Body>> {
        let url = self.url(path)?;
        self.call_retrying(&url, &self.host, true, || {
            let mut req = self.agent.get(&url);
            if !accept.is_empty() {
                req = req.header("Accept", accept.join(", "));
            }
            if from_byte > 0 {
                req = req.header("Range", format!("bytes={from_byte}-"));
            }
            if let Some(a) = self.current_authorization() {
                req = req.header("Authorization", a);
            }
            req
        })
    }

    /// Sends what `make` builds until the answer is not worth retrying:
    /// 429 and 5xx wait (for Retry-After, else a growing backoff), as do
    /// dropped connections. With `challenge`, one 401 is answered by
    /// authenticating, and `make` builds the request again with the new
    /// Authorization. Errors name `host`.
    fn call_retrying(
        &self,
        url: &str,
        host: &str,
        challenge: bool,
        make: impl Fn() -> ureq::RequestBuilder<ureq::typestate::WithoutBody>,
    ) -> Result<Response<Body>> {
        let mut challenged = !challenge;
        let mut tries = 0;
        loop {
            tries += 1;
            match make().call() {
                Ok(resp) if resp.status() == 401 && !challenged => {
                    challenged = true;
                    self.answer_challenge(&resp)?;
                }
                Ok(resp) if retryable_status(resp.status().as_u16()) && tries < TRIES => {
                    let wait = retry_after(&resp).unwrap_or_else(|| self.backoff(tries));
                    crate::debug!("{url}: HTTP {}; trying again in {wait:?}", resp.status());
                    std::thread::sleep(wait.min(MAX_BACKOFF));
                }
                Ok(resp) => return Ok(resp),
                Err(e) if retryable_error(&e) && tries < TRIES => {
                    crate::debug!("{url}: {e}; trying again");
                    std::thread::sleep(self.backoff(tries));
                }
                Err(e) => return Err(describe(e, host, self.opts.timeout)),
            }
        }
    }

    fn backoff(&self, tries: u32) -> Duration {
        (self.opts.backoff * 2u32.saturating_pow(tries.saturating_sub(1))).min(MAX_BACKOFF)
    }

    fn current_authorization(&self) -> Option<String> {
        self.authorization.lock().ok().and_then(|a| a.clone())
    }

    /// Works out the Authorization header a 401 asks for.
    fn answer_challenge(&self, resp: &Response<Body>) -> Result<()> {
        let header = resp
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| anyhow!("{}: access denied (HTTP 401 with no challenge)", self.host))?;
        let value = match auth::parse_challenge(header)? {
            Challenge::Basic => match &self.creds {
                Some(c) => c.basic_header(),
                None => bail!(
                    "{}: the registry wants a user name and password, and none is stored for it (looked in {})",
                    self.host,
                    self.files_looked_in()
                ),
            },
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => format!("Bearer {}", self.fetch_token(&realm, service, scope)?),
        };
        if let Ok(mut a) = self.authorization.lock() {
            *a = Some(value);
        }
        Ok(())
    }

    /// The anonymous (or, with stored credentials, authenticated) token
    /// flow of the distribution spec's token authentication.
    fn fetch_token(
        &self,
        realm: &str,
        service: Option<String>,
        scope: Option<String>,
    ) -> Result<String> {
        let scope = scope.unwrap_or_else(|| format!("repository:{}:pull", self.repository));
        let mut url = format!("{realm}?scope={}", encode(&scope));
        if let Some(s) = service {
            url.push_str(&format!("&service={}", encode(&s)));
        }
        let host = realm
            .split("://")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .unwrap_or(realm);
        if realm.starts_with("http://") && !is_insecure(host, &self.opts.insecure) {
            bail!("{}: the token realm {realm} is plain HTTP on a host not listed in insecure_registries; refusing to send credentials there", self.host);
        }
        let mut resp = self
            .call_retrying(&url, host, false, || {
                let req = self.agent.get(&url);
                match &self.creds {
                    Some(c) => req.header("Authorization", c.basic_header()),
                    None => req,
                }
            })
            .context("token server")?;
        let status = resp.status().as_u16();
        if status == 401 || status == 403 {
            match &self.creds {
                Some(c) => bail!(
                    "{}: the token server refused the credentials for user {} (from {})",
                    self.host,
                    c.user,
                    c.from.display()
                ),
                None => bail!(
                    "{}: the token server refused anonymous access; store credentials (podman login, or an auth file in {})",
                    self.host,
                    self.files_looked_in()
                ),
            }
        }
        if status != 200 {
            bail!("{}: the token server answered HTTP {status}", self.host);
        }
        let body = resp
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_vec()
            .map_err(|e| describe(e, host, self.opts.timeout))
            .context("token server")?;
        auth::token_from_response(&body).with_context(|| self.host.clone())
    }

    fn files_looked_in(&self) -> String {
        let names: Vec<String> = self
            .opts
            .auth_files
            .iter()
            .map(|f| f.display().to_string())
            .collect();
        if names.is_empty() {
            "no credential files: HOME is unset".into()
        } else {
            names.join(", ")
        }
    }

    /// Turns a status that is not success into one line naming the cause.
    pub fn check_status(&self, resp: &Response<Body>, what: &str) -> Result<()> {
        let status = resp.status().as_u16();
        match status {
            200..=299 => Ok(()),
            401 | 403 => match &self.creds {
                Some(c) => bail!(
                    "{what}: access denied (HTTP {status}) for user {} (credentials from {})",
                    c.user,
                    c.from.display()
                ),
                None => bail!(
                    "{what}: access denied (HTTP {status}); the registry wants credentials, and none is stored for {} (looked in {})",
                    self.host,
                    self.files_looked_in()
                ),
            },
            404 => bail!("{what}: not found (HTTP 404)"),
            s => bail!("{what}: the registry answered HTTP {s}"),
        }
    }
}

/// rustls on ring. rustls marks ring's provider deprecated because ring
/// has no post-quantum key exchange; aws-lc-rs has one but needs cmake and
/// a C++ toolchain for a static musl build, which a plain Rust install
/// lacks. Registries all speak the classical exchanges ring offers.
#[allow(deprecated)]
fn crypto_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

fn retryable_status(s: u16) -> bool {
    s == 429 || (500..600).contains(&s)
}

fn retryable_error(e: &ureq::Error) -> bool {
    matches!(
        e,
        ureq::Error::Io(_) | ureq::Error::ConnectionFailed | ureq::Error::Timeout(_)
    )
}

/// A TLS server whose certificate did not verify (rustls reports it
/// directly, or inside the I/O error of the handshake).
fn bad_certificate(e: &ureq::Error) -> bool {
    let is_cert = |r: &rustls::Error| matches!(r, rustls::Error::InvalidCertificate(_));
    match e {
        ureq::Error::Rustls(r) => is_cert(r),
        ureq::Error::Io(io) => bad_certificate_io(io),
        _ => false,
    }
}

fn bad_certificate_io(io: &std::io::Error) -> bool {
    io.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|r| matches!(r, rustls::Error::InvalidCertificate(_)))
}

/// `Retry-After` in seconds (the HTTP-date form is rare for registries
/// and falls back to our own backoff).
fn retry_after(resp: &Response<Body>) -> Option<Duration> {
    resp.headers()
        .get("retry-after")?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// One line for a transport error, naming the host.
pub fn describe(e: ureq::Error, host: &str, timeout: Duration) -> anyhow::Error {
    match e {
        ureq::Error::Timeout(_) => anyhow!(
            "{host}: the registry stopped answering (nothing for {}s; HPCC_REGISTRY_TIMEOUT sets the limit)",
            timeout.as_secs_f64()
        ),
        ureq::Error::TooManyRedirects => {
            anyhow!("{host}: redirect loop (more than {MAX_REDIRECTS} redirects)")
        }
        ureq::Error::HostNotFound => anyhow!("{host}: unknown host"),
        ureq::Error::Rustls(r) => anyhow!(
            "{host}: TLS: {r} (a registry with a private CA needs SSL_CERT_FILE pointing at it)"
        ),
        ureq::Error::Io(io) if bad_certificate_io(&io) => anyhow!(
            "{host}: TLS: {io} (a registry with a private CA needs SSL_CERT_FILE pointing at it)"
        ),
        ureq::Error::Io(io) => anyhow!("{host}: {io}"),
        other => anyhow!("{host}: {other}"),
    }
}

/// Percent-encoding for query values (unreserved characters pass).
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The CA bundle: `$SSL_CERT_FILE`, else the first system bundle found
/// (Debian, RHEL, SUSE, Alpine). Read by us rather than built in, so a
/// site's own CA works and hpcc carries no copy of Mozilla's list.
fn system_roots() -> Result<ureq::tls::RootCerts> {
    const BUNDLES: &[&str] = &[
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/ca-bundle.pem",
        "/etc/ssl/cert.pem",
    ];
    let explicit = std::env::var_os("SSL_CERT_FILE").filter(|v| !v.is_empty());
    let path = match &explicit {
        Some(p) => Some(PathBuf::from(p)),
        None => BUNDLES.iter().map(PathBuf::from).find(|p| p.is_file()),
    };
    let Some(path) = path else {
        crate::debug!("no CA bundle found; HTTPS registries cannot be verified");
        return Ok(ureq::tls::RootCerts::new_with_certs(&[]));
    };
    let pem = std::fs::read(&path).with_context(|| format!("CA bundle {}", path.display()))?;
    let certs: Vec<_> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect();
    if certs.is_empty() && explicit.is_some() {
        bail!("SSL_CERT_FILE {}: no certificates in it", path.display());
    }
    Ok(ureq::tls::RootCerts::new_with_certs(&certs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_listed_hosts_may_use_plain_http() {
        let listed = vec!["reg.site:5000".to_string(), "mirror.site".to_string()];
        for h in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "[::1]:80",
            "reg.site:5000",
            "mirror.site:443",
        ] {
            assert!(is_insecure(h, &listed), "{h}");
        }
        for h in [
            "reg.site",
            "reg.site:5001",
            "docker.io",
            "localhost.evil.com",
        ] {
            assert!(!is_insecure(h, &listed), "{h}");
        }
    }

    #[test]
    fn scopes_are_percent_encoded() {
        assert_eq!(
            encode("repository:a/b:pull,push"),
            "repository%3Aa%2Fb%3Apull%2Cpush"
        );
    }
}
