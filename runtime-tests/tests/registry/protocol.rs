//! The parts of the distribution protocol a well-behaved registry leans on:
//! layers fetched a few at a time, Retry-After and 5xx retries, Docker Hub
//! short names, Docker manifest lists and the refusal of schema 1.

use crate::fixture::*;
use crate::imagefix::scratch::Scratch;
use crate::imagefix::{self, sha256_hex, Entry};
use crate::server::{ok, Reply, Server};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// hpcc's fixed number of layer downloads at once (src/registry/pull.rs).
const PARALLEL: usize = 3;

/// Six layers, each answer held: the registry must see exactly PARALLEL
/// of them in flight at the peak, never fewer and never all at once.
#[test]
fn layers_download_a_few_at_a_time() {
    let more: Vec<Vec<u8>> = (1..6)
        .map(|i| {
            imagefix::layer(&[Entry::File(
                format!("layer{i}"),
                vec![b'0' + i as u8; 1000],
                0o644,
            )])
        })
        .collect();
    let img = Img::layered(REPO, &more);
    let layers: Vec<String> = std::iter::once(&img.layer)
        .chain(&img.more)
        .map(|l| sha256_hex(l))
        .collect();
    let (now, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (i2, n2, p2) = (img.clone(), now.clone(), peak.clone());
    let srv = Server::start(move |r| {
        if !layers.iter().any(|l| r.path.ends_with(l.as_str())) {
            return i2.answer(r);
        }
        let in_flight = n2.fetch_add(1, SeqCst) + 1;
        p2.fetch_max(in_flight, SeqCst);
        // Held until as many as hpcc should fetch at once are in flight
        // (never, if it fetches fewer: then 10 s), so a loaded machine
        // cannot stagger them apart.
        let held = Instant::now();
        while p2.load(SeqCst) < PARALLEL && held.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(50));
        n2.fetch_sub(1, SeqCst);
        i2.answer(r)
    });
    let s = Scratch::new("reg-parallel");
    ran(
        &run(
            &s,
            &["run", &reference(&srv, ":latest"), "--", "cat", "/layer5"],
        ),
        "55555",
    );
    assert_eq!(peak.load(SeqCst), PARALLEL, "{:?}", srv.requests());
}

/// A 429 with `Retry-After: 2` is asked again no sooner than 2 s later
/// (hpcc's own backoff here is 250 ms), and a 503 on a layer is retried.
#[test]
fn retry_after_is_waited_for_and_5xx_is_retried() {
    let img = Img::new();
    let i2 = img.clone();
    let layer = img.layer_digest();
    let asked_at = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let a2 = asked_at.clone();
    let (throttled, failed) = (AtomicBool::new(false), AtomicBool::new(false));
    let srv = Server::start(move |r| {
        if r.path.contains("/manifests/") {
            a2.lock().unwrap().push(Instant::now());
            if !throttled.swap(true, SeqCst) {
                return Reply::Full(429, vec![("Retry-After".into(), "2".into())], vec![]);
            }
        }
        if r.path.ends_with(&layer) && !failed.swap(true, SeqCst) {
            return crate::server::status(503);
        }
        i2.answer(r)
    });
    let s = Scratch::new("reg-retry");
    ran(
        &run(
            &s,
            &["run", &reference(&srv, ":latest"), "--", "echo", "patient"],
        ),
        "patient",
    );
    let times = asked_at.lock().unwrap().clone();
    assert_eq!(times.len(), 2, "{:?}", srv.requests());
    let waited = times[1] - times[0];
    assert!(
        waited >= Duration::from_millis(1900),
        "asked again after {waited:?}, not after Retry-After's 2 s"
    );
    assert_eq!(srv.asked(&img.layer_digest()), 2, "{:?}", srv.requests());
}

/// `docker://busybox` means docker.io's `library/busybox:latest`, as
/// Docker reads it. No test may reach Docker Hub, so the site sends
/// docker.io to a mirror of ours, which sees the library/ path.
#[test]
fn short_names_are_docker_hub_library_images() {
    let img = Img::layered("library/busybox", &[]);
    let i2 = img.clone();
    let srv = Server::start(move |r| i2.answer(r));
    let s = Scratch::new("reg-short");
    std::fs::write(
        s.dir.join("site.toml"),
        format!("[registry_mirrors]\n\"docker.io\" = [\"{}\"]\n", srv.host()),
    )
    .unwrap();
    ran(
        &run(&s, &["run", "-q", "docker://busybox", "--", "echo", "hub"]),
        "hub",
    );
    assert_eq!(
        srv.asked("/v2/library/busybox/manifests/latest"),
        1,
        "{:?}",
        srv.requests()
    );
    let o = run(&s, &["images", "--format", "json"]);
    assert!(
        text(&o).0.contains("docker.io/library/busybox:latest"),
        "{:?}",
        text(&o)
    );
}

/// The platform hpcc runs on, as an index names it.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    }
}

/// A tag that names a Docker manifest list: the entry for this host's
/// platform is fetched (by digest), the other is not. A Docker schema 1
/// manifest is refused by name.
#[test]
fn docker_manifest_lists_are_followed_and_schema_1_is_refused() {
    let img = Img::new();
    let other = format!("sha256:{}", "a".repeat(64));
    let other_arch = if host_arch() == "arm64" {
        "amd64"
    } else {
        "arm64"
    };
    let list = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
        "manifests": [
            {"mediaType": "application/vnd.docker.distribution.manifest.v2+json",
             "digest": other, "size": 500,
             "platform": {"architecture": other_arch, "os": "linux"}},
            {"mediaType": "application/vnd.docker.distribution.manifest.v2+json",
             "digest": img.manifest_digest(), "size": img.manifest.len(),
             "platform": {"architecture": host_arch(), "os": "linux"}},
        ]
    });
    let list = serde_json::to_vec(&list).unwrap();
    let i2 = img.clone();
    let srv = Server::start(move |r| {
        if r.path.ends_with("/manifests/latest") {
            return ok(
                "application/vnd.docker.distribution.manifest.list.v2+json",
                list.clone(),
            );
        }
        i2.answer(r)
    });
    let s = Scratch::new("reg-list");
    ran(
        &run(
            &s,
            &["run", &reference(&srv, ":latest"), "--", "echo", "listed"],
        ),
        "listed",
    );
    assert_eq!(srv.asked(&img.manifest_digest()), 1, "{:?}", srv.requests());
    assert_eq!(srv.asked(&other), 0, "{:?}", srv.requests());

    let srv = Server::start(|r| {
        if r.path.contains("/manifests/") {
            return ok(
                "application/vnd.docker.distribution.manifest.v1+prettyjws",
                br#"{"schemaVersion":1,"name":"t/img","tag":"old","fsLayers":[]}"#.to_vec(),
            );
        }
        crate::server::status(404)
    });
    let s = Scratch::new("reg-schema1");
    let r = reference(&srv, ":old");
    let o = run(&s, &["run", &r, "--", "true"]);
    refused(&s, &o, &[&r, "schema 1"]);
}

/// A name from /etc/hosts for a loopback address that is not spelled as
/// one (Debian's `127.0.1.1 HOSTNAME` line): a host hpcc must treat as
/// remote, which a test server can still listen on.
fn loopback_alias() -> Option<(String, String)> {
    let hosts = std::fs::read_to_string("/etc/hosts").ok()?;
    hosts.lines().find_map(|l| {
        let mut words = l.split('#').next()?.split_whitespace();
        let addr = words.next()?;
        if !addr.starts_with("127.") {
            return None;
        }
        words
            .find(|n| *n != "localhost" && !n.starts_with("localhost."))
            .map(|n| (addr.to_string(), n.to_string()))
    })
}

/// Plain HTTP only where the site allows it: a registry on a host that is
/// not loopback by name is spoken to over TLS only (the server sees a
/// handshake and no request), until the site lists it under
/// insecure_registries. A token realm on plain HTTP on such a host gets no
/// credentials.
#[test]
fn plain_http_only_for_hosts_the_site_lists() {
    let Some((addr, name)) = loopback_alias() else {
        runtime_tests::skip("/etc/hosts names no loopback address but localhost");
        return;
    };
    let img = Img::new();
    let i2 = img.clone();
    let srv = Server::start_on(&addr, move |r| i2.answer(r));
    let host = format!("{name}:{}", srv.port);
    let r = format!("docker://{host}/{REPO}:latest");
    let s = Scratch::new("reg-insecure");
    let o = run(&s, &["run", &r, "--", "true"]);
    refused(&s, &o, &[&r]);
    let reqs = srv.requests();
    assert!(
        !reqs.is_empty() && reqs.iter().all(|q| q == crate::server::TLS_PROBE),
        "spoke plain HTTP to a host the site did not list: {reqs:?}"
    );
    std::fs::write(
        s.dir.join("site.toml"),
        format!("insecure_registries = [\"{host}\"]\n"),
    )
    .unwrap();
    ran(&run(&s, &["run", &r, "--", "echo", "listed"]), "listed");

    // The registry is on loopback (plain HTTP is fine there) but sends
    // credentials to a realm on the unlisted host, over plain HTTP.
    let realm = format!("http://{host}/token");
    let i3 = img.clone();
    let reg = Server::start(move |q| {
        if q.header("authorization").is_none() {
            let ch = format!("Bearer realm=\"{realm}\",service=\"test\"");
            return Reply::Full(401, vec![("WWW-Authenticate".into(), ch)], vec![]);
        }
        i3.answer(q)
    });
    let s = Scratch::new("reg-realm");
    let auth = format!(
        "{{\"auths\":{{\"{}\":{{\"auth\":\"YWxpY2U6cHc=\"}}}}}}",
        reg.host()
    );
    std::fs::write(s.dir.join("auth.json"), auth).unwrap();
    let before = srv.requests().len();
    let o = run(&s, &["run", &reference(&reg, ":latest"), "--", "true"]);
    refused(&s, &o, &["token realm", "refusing to send credentials"]);
    assert_eq!(srv.requests().len(), before, "the realm was asked");
}
