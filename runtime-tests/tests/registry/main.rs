//! `hpcc pull` and `hpcc run docker://` against registries that break the
//! rules: wrong digests, truncated and stalled blobs, oversized manifests,
//! redirect loops, 401, 404, 429 and dropped connections, and references
//! that do not parse. Each must end in one line naming the reference and
//! the cause, and leave nothing in the cache and no half-written `-o`
//! file. Also what a good registry must get right: Range resumes, Retry-
//! After, the bearer-token flow, credentials from an auth file, no token
//! sent to blob storage, one download for 16 simultaneous runs, and
//! warm and --offline starts that ask nothing. Runs as root and, via
//! integration/run-rootless.sh, as an unprivileged user.

mod fixture;
#[path = "../imagefix/mod.rs"]
mod imagefix;
mod mirrors;
mod protocol;
mod server;
mod sharing;

use fixture::*;
use imagefix::scratch::Scratch;
use server::{ok, status, Reply, Request, Server, TLS_PROBE};
use std::sync::Arc;

#[test]
fn a_good_registry_pulls_runs_and_writes_archives_and_layouts() {
    let img = Img::new();
    let i2 = img.clone();
    let srv = Server::start(move |r| i2.answer(r));
    let s = Scratch::new("reg-good");
    ran(
        &run(
            &s,
            &["run", &reference(&srv, ":latest"), "--", "echo", "hi"],
        ),
        "hi",
    );
    assert_eq!(s.images(), vec![img.config_hex()]);
    // Blobs have served once the image is unpacked.
    assert_eq!(
        imagefix::list(&s.cache().join("pulls")),
        Vec::<String>::new()
    );
    let out = run(&s, &["images", "--format", "json"]);
    let (listing, _) = text(&out);
    assert!(
        listing.contains(&format!("{}/{REPO}:latest", srv.host()))
            && listing.contains(&img.manifest_digest()),
        "{listing}"
    );

    let tar = s.dir.join("img.tar");
    let o = run(
        &s,
        &[
            "pull",
            "-q",
            "-o",
            tar.to_str().unwrap(),
            &reference(&srv, ""),
        ],
    );
    ran(&o, &img.manifest_digest());
    let layout = s.dir.join("layout");
    let o = run(
        &s,
        &[
            "pull",
            "-q",
            "--layout",
            layout.to_str().unwrap(),
            &reference(&srv, ""),
        ],
    );
    ran(&o, "written to");
    assert!(layout.join("oci-layout").is_file());
    for image in [&tar, &layout] {
        let s2 = Scratch::new("reg-good-file");
        ran(
            &run(
                &s2,
                &["run", image.to_str().unwrap(), "--", "cat", "/etc/passwd"],
            ),
            "root:x:0:0",
        );
        assert_eq!(s2.images(), vec![img.config_hex()], "{}", image.display());
    }
    // An output that exists is not overwritten by --layout.
    let o = run(
        &s,
        &[
            "pull",
            "--layout",
            layout.to_str().unwrap(),
            &reference(&srv, ""),
        ],
    );
    says(&o, &["already exists", layout.to_str().unwrap()]);
    assert!(layout.join("oci-layout").is_file());
}

#[test]
fn digests_start_warm_without_the_network_and_offline_uses_the_cache() {
    let img = Img::new();
    let i2 = img.clone();
    let srv = Server::start(move |r| i2.answer(r));
    let s = Scratch::new("reg-warm");
    let pinned = reference(&srv, &format!("@{}", img.manifest_digest()));
    ran(&run(&s, &["run", &pinned, "--", "echo", "one"]), "one");
    let asked = srv.requests().len();
    ran(&run(&s, &["run", &pinned, "--", "echo", "two"]), "two");
    assert_eq!(
        srv.requests().len(),
        asked,
        "a cached digest asked the registry"
    );
    // A tag asks for its manifest, once, and downloads nothing. (On a
    // loopback host the connection first tries TLS, as Docker's does for
    // an insecure registry; the probe sends no request.)
    ran(
        &run(
            &s,
            &["run", &reference(&srv, ":latest"), "--", "echo", "three"],
        ),
        "three",
    );
    let after: Vec<String> = srv.requests()[asked..].to_vec();
    assert_eq!(
        after,
        vec![
            TLS_PROBE.to_string(),
            format!("/v2/{REPO}/manifests/latest")
        ]
    );
    // --offline asks nothing at all, and refuses what is not cached.
    let before = srv.requests().len();
    ran(
        &run(
            &s,
            &[
                "run",
                "--offline",
                &reference(&srv, ":latest"),
                "--",
                "echo",
                "four",
            ],
        ),
        "four",
    );
    assert_eq!(srv.requests().len(), before);
    let o = run(
        &s,
        &["run", "--offline", &reference(&srv, ":other"), "--", "true"],
    );
    assert!(
        text(&o).1.contains("not in the cache, and --offline"),
        "{}",
        text(&o).1
    );
}

#[test]
fn a_dropped_connection_resumes_with_range_and_429_waits() {
    let img = Img::new();
    let i2 = img.clone();
    let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let throttled = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let layer = img.layer_digest();
    let srv = Server::start(move |r| {
        use std::sync::atomic::Ordering::SeqCst;
        if r.path.contains("/manifests/") && !throttled.swap(true, SeqCst) {
            return Reply::Full(429, vec![("Retry-After".into(), "1".into())], vec![]);
        }
        if r.path.ends_with(&layer) && r.range_start().is_none() && !cut.swap(true, SeqCst) {
            let half = i2.layer.len() / 2;
            return Reply::Cut(200, vec![], i2.layer[..half].to_vec(), i2.layer.len());
        }
        i2.answer(r)
    });
    let s = Scratch::new("reg-resume");
    ran(
        &run(
            &s,
            &["run", &reference(&srv, ":latest"), "--", "echo", "whole"],
        ),
        "whole",
    );
    let reqs = srv.requests();
    assert_eq!(srv.asked("/manifests/latest"), 2, "{reqs:?}");
    let half = img.layer.len() / 2;
    assert!(
        reqs.iter()
            .any(|r| r.ends_with(&format!("{} range={half}", img.layer_digest()))),
        "no resume from byte {half}: {reqs:?}"
    );
}

#[test]
fn wrong_digests_are_refused_and_leave_nothing() {
    let img = Img::new();
    // The layer's bytes differ from its digest.
    let i2 = img.clone();
    let layer = img.layer_digest();
    let srv = Server::start(move |r| {
        if r.path.ends_with(&layer) {
            let mut bad = i2.layer.clone();
            let n = bad.len();
            bad[n / 2] ^= 0xff;
            return ok("application/octet-stream", bad);
        }
        i2.answer(r)
    });
    let s = Scratch::new("reg-baddigest");
    let o = run(&s, &["run", &reference(&srv, ":latest"), "--", "true"]);
    refused(
        &s,
        &o,
        &[
            "docker://",
            "layer",
            &img.layer_digest()[7..19],
            "digest mismatch",
        ],
    );
    let tar = s.dir.join("out.tar");
    let o = run(
        &s,
        &[
            "pull",
            "-o",
            tar.to_str().unwrap(),
            &reference(&srv, ":latest"),
        ],
    );
    refused(&s, &o, &["digest mismatch"]);
    no_output(&s, "out.tar");

    // A manifest asked for by digest comes back as other bytes.
    let i3 = img.clone();
    let srv = Server::start(move |r| {
        if r.path.contains("/manifests/") {
            let mut m = i3.manifest.clone();
            m.push(b' ');
            return ok(OCI_MANIFEST, m);
        }
        i3.answer(r)
    });
    let s = Scratch::new("reg-badmanifest");
    let pinned = reference(&srv, &format!("@{}", img.manifest_digest()));
    let o = run(&s, &["run", &pinned, "--", "true"]);
    refused(
        &s,
        &o,
        &["manifest digest mismatch", &img.manifest_digest()],
    );

    // By tag: the Docker-Content-Digest header claims other bytes.
    let i4 = img.clone();
    let srv = Server::start(move |r| {
        if r.path.contains("/manifests/") {
            let claim = format!("sha256:{}", "0".repeat(64));
            return Reply::Full(
                200,
                vec![
                    ("Content-Type".into(), OCI_MANIFEST.into()),
                    ("Docker-Content-Digest".into(), claim),
                ],
                i4.manifest.clone(),
            );
        }
        i4.answer(r)
    });
    let s = Scratch::new("reg-badheader");
    let o = run(&s, &["run", &reference(&srv, ":latest"), "--", "true"]);
    refused(&s, &o, &["manifest digest mismatch", "the registry says"]);

    // The config blob's bytes differ from its digest.
    let i5 = img.clone();
    let config = img.config_hex();
    let srv = Server::start(move |r| {
        if r.path.ends_with(&config) {
            let mut bad = i5.config.clone();
            bad.push(b' ');
            return ok("application/octet-stream", bad);
        }
        i5.answer(r)
    });
    let s = Scratch::new("reg-badconfig");
    let r = reference(&srv, ":latest");
    let o = run(&s, &["run", &r, "--", "true"]);
    refused(&s, &o, &[&r, "config", "digest mismatch"]);
}

#[test]
fn truncated_oversized_looping_and_stalled_answers_are_refused() {
    let img = Img::new();
    let i2 = img.clone();
    let layer = img.layer_digest();
    // Every answer for the layer stops half-way.
    let srv = Server::start(move |r| {
        if r.path.ends_with(&layer) {
            let n = i2.layer.len();
            let from = r.range_start().unwrap_or(0);
            let end = (from + (n - from) / 2).max(from + 1).min(n);
            return Reply::Cut(
                if from > 0 { 206 } else { 200 },
                vec![(
                    "Content-Range".into(),
                    format!("bytes {from}-{}/{n}", n - 1),
                )],
                i2.layer[from..end].to_vec(),
                n - from,
            );
        }
        i2.answer(r)
    });
    let s = Scratch::new("reg-trunc");
    let tar = s.dir.join("t.tar");
    let o = run(
        &s,
        &[
            "pull",
            "-o",
            tar.to_str().unwrap(),
            &reference(&srv, ":latest"),
        ],
    );
    refused(&s, &o, &["truncated", "layer"]);
    no_output(&s, "t.tar");

    // A manifest over 4 MiB.
    let i3 = img.clone();
    let srv = Server::start(move |r| {
        if r.path.contains("/manifests/") {
            return ok(OCI_MANIFEST, vec![b' '; 5 << 20]);
        }
        i3.answer(r)
    });
    let s = Scratch::new("reg-big");
    let o = run(&s, &["run", &reference(&srv, ":latest"), "--", "true"]);
    refused(&s, &o, &["docker://", "over 4 MiB"]);

    // A blob that redirects to itself.
    let i4 = img.clone();
    let layer = img.layer_digest();
    let srv = Server::start(move |r| {
        if r.path.ends_with(&layer) {
            return Reply::Full(307, vec![("Location".into(), r.path.clone())], vec![]);
        }
        i4.answer(r)
    });
    let s = Scratch::new("reg-loop");
    let r = reference(&srv, ":latest");
    let o = run(&s, &["run", &r, "--", "true"]);
    refused(&s, &o, &[&r, "redirect loop", &srv.host()]);
    let tar = s.dir.join("loop.tar");
    let o = run(&s, &["pull", "-o", tar.to_str().unwrap(), &r]);
    refused(&s, &o, &[&r, "redirect loop"]);
    no_output(&s, "loop.tar");

    // A registry that never answers the manifest request.
    let srv = Server::start(move |r| {
        if r.path.contains("/manifests/") {
            return Reply::Stall;
        }
        status(404)
    });
    let s = Scratch::new("reg-stall");
    let r = reference(&srv, ":latest");
    let o = run(&s, &["run", &r, "--", "true"]);
    refused(&s, &o, &[&r, "stopped answering", "HPCC_REGISTRY_TIMEOUT"]);
    let tar = s.dir.join("stall.tar");
    let o = run(&s, &["pull", "-o", tar.to_str().unwrap(), &r]);
    refused(&s, &o, &[&r, "stopped answering"]);
    no_output(&s, "stall.tar");
}

#[test]
fn auth_failures_404_and_bad_references_name_the_cause() {
    let img = Img::new();
    // Basic auth; "alice:pw" in base64 is YWxpY2U6cHc=.
    let i2 = img.clone();
    let srv = Server::start(move |r| {
        if r.path.starts_with("/v2/") && r.header("authorization") != Some("Basic YWxpY2U6cHc=") {
            return Reply::Full(
                401,
                vec![("WWW-Authenticate".into(), "Basic realm=\"test\"".into())],
                vec![],
            );
        }
        i2.answer(r)
    });
    let s = Scratch::new("reg-basic");
    let r = reference(&srv, ":latest");
    let o = run(&s, &["run", &r, "--", "true"]);
    refused(&s, &o, &[&r, "wants a user name and password", "auth.json"]);
    let tar = s.dir.join("basic.tar");
    let o = run(&s, &["pull", "-o", tar.to_str().unwrap(), &r]);
    refused(&s, &o, &[&r, "wants a user name and password"]);
    no_output(&s, "basic.tar");
    let auth = format!(
        "{{\"auths\":{{\"{}\":{{\"auth\":\"YWxpY2U6d3Jvbmc=\"}}}}}}",
        srv.host()
    );
    std::fs::write(s.dir.join("auth.json"), auth).unwrap();
    let o = run(&s, &["run", &r, "--", "true"]);
    refused(&s, &o, &[&r, "access denied", "user alice"]);
    let auth = format!(
        "{{\"auths\":{{\"{}\":{{\"auth\":\"YWxpY2U6cHc=\"}}}}}}",
        srv.host()
    );
    std::fs::write(s.dir.join("auth.json"), auth).unwrap();
    ran(
        &run(
            &s,
            &["run", &reference(&srv, ":latest"), "--", "echo", "in"],
        ),
        "in",
    );

    // Unknown tag and unknown repository.
    let i3 = img.clone();
    let srv = Server::start(move |r| i3.answer(r));
    let s = Scratch::new("reg-404");
    let o = run(&s, &["run", &reference(&srv, ":nosuch"), "--", "true"]);
    refused(&s, &o, &["docker://", ":nosuch", "not found"]);
    let o = run(
        &s,
        &["pull", &format!("docker://{}/other/repo", srv.host())],
    );
    refused(&s, &o, &["other/repo", "not found"]);

    // References that do not parse, and image names that do not exist.
    for (arg, word) in [
        ("docker://Bad/Name", "not an image reference"),
        ("docker://x/y@sha256:123", "not an image reference"),
        ("docker://", "not an image reference"),
    ] {
        let o = run(&s, &["run", arg, "--", "true"]);
        refused(&s, &o, &[word]);
        let o = run(&s, &["pull", arg]);
        refused(&s, &o, &[word]);
    }
    for missing in ["missing.tar", "missing.tar.gz", "missing.oci"] {
        let o = run(&s, &["run", missing]);
        refused(&s, &o, &[missing, "no such image"]);
    }
}

#[test]
fn bearer_tokens_are_fetched_and_never_sent_to_blob_storage() {
    let img = Img::new();
    // Blob storage elsewhere: it must see no Authorization header.
    let i2 = img.clone();
    let storage = Server::start_on("127.0.0.2", move |r| {
        if r.header("authorization").is_some() {
            return status(400);
        }
        let d = r.path.trim_start_matches("/storage/");
        let mut fake = Request {
            path: format!("/v2/{REPO}/blobs/{d}"),
            headers: Default::default(),
        };
        fake.headers.extend(r.headers.clone());
        i2.answer(&fake)
    });
    let storage_port = storage.port;
    let i3 = img.clone();
    let port = Arc::new(std::sync::Mutex::new(0u16));
    let p2 = port.clone();
    let srv = Server::start(move |r| {
        let me = *p2.lock().unwrap();
        if r.path.starts_with("/token") {
            let ok_scope = r.path.contains("scope=repository%3At%2Fimg%3Apull")
                && r.path.contains("service=test");
            return if ok_scope {
                ok("application/json", b"{\"token\":\"T0K\"}".to_vec())
            } else {
                status(400)
            };
        }
        if r.header("authorization") != Some("Bearer T0K") {
            let ch = format!("Bearer realm=\"http://127.0.0.1:{me}/token\",service=\"test\",scope=\"repository:t/img:pull\"");
            return Reply::Full(401, vec![("WWW-Authenticate".into(), ch)], vec![]);
        }
        if let Some(d) = r.path.strip_prefix(&format!("/v2/{REPO}/blobs/")) {
            let loc = format!("http://127.0.0.2:{storage_port}/storage/{d}");
            return Reply::Full(307, vec![("Location".into(), loc)], vec![]);
        }
        i3.answer(r)
    });
    *port.lock().unwrap() = srv.port;
    let s = Scratch::new("reg-bearer");
    ran(
        &run(
            &s,
            &["run", &reference(&srv, ":latest"), "--", "echo", "tok"],
        ),
        "tok",
    );
    assert!(srv.asked("/token") >= 1);
    assert_eq!(storage.asked("/storage/"), 2, "{:?}", storage.requests());
}

#[test]
fn simultaneous_pulls_download_each_blob_once() {
    let img = Img::new();
    let i2 = img.clone();
    let srv = Server::start(move |r| {
        // Slow enough that the pulls overlap.
        std::thread::sleep(std::time::Duration::from_millis(50));
        i2.answer(r)
    });
    let s = Scratch::new("reg-many");
    let r = reference(&srv, ":latest");
    let kids: Vec<_> = (0..16)
        .map(|i| {
            hpcc(&s, &["run", "-q", &r, "--", "echo", &format!("rank{i}")])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, k) in kids.into_iter().enumerate() {
        ran(&k.wait_with_output().unwrap(), &format!("rank{i}"));
    }
    assert_eq!(srv.asked(&img.layer_digest()), 1, "{:?}", srv.requests());
    assert_eq!(srv.asked(&img.config_hex()), 1, "{:?}", srv.requests());
    assert_eq!(s.images(), vec![img.config_hex()]);
}

#[test]
fn records_name_the_pulled_digest_and_replay_exactly_that_image() {
    let img = Img::new();
    let i2 = img.clone();
    let srv = Server::start(move |r| i2.answer(r));
    let s = Scratch::new("reg-record");
    let rec = s.dir.join("run.json");
    let r = reference(&srv, ":latest");
    ran(
        &run(
            &s,
            &[
                "run",
                "--record",
                rec.to_str().unwrap(),
                &r,
                "--",
                "echo",
                "first",
            ],
        ),
        "first",
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&rec).unwrap()).unwrap();
    assert_eq!(
        v["image"]["reference"],
        format!("{}/{REPO}:latest", srv.host())
    );
    assert_eq!(v["image"]["manifest"], img.manifest_digest());
    assert_eq!(v["image"]["digest"], format!("sha256:{}", img.config_hex()));
    // The recorded command again, by digest: the tag is not asked for.
    let before = srv.asked("/manifests/latest");
    ran(
        &run(&s, &["run", "--from-record", rec.to_str().unwrap()]),
        "first",
    );
    ran(
        &run(
            &s,
            &[
                "run",
                "--from-record",
                rec.to_str().unwrap(),
                "--",
                "echo",
                "again",
            ],
        ),
        "again",
    );
    assert_eq!(srv.asked("/manifests/latest"), before);
    // What differs is said; another image is refused.
    let mut changed = v.clone();
    changed["host"]["kernel"] = "2.6.32-old".into();
    changed["hpcc"]["version"] = "0.0.1-old".into();
    changed["binds"] = serde_json::json!([{"source": "/gone", "destination": "/data"}]);
    std::fs::write(&rec, serde_json::to_vec(&changed).unwrap()).unwrap();
    let o = run(&s, &["run", "--from-record", rec.to_str().unwrap()]);
    ran(&o, "first");
    for said in [
        "kernel: recorded 2.6.32-old",
        "hpcc version: recorded 0.0.1-old",
        "binds: recorded [{\"destination\":\"/data\",\"source\":\"/gone\"}]",
    ] {
        assert!(
            text(&o).1.contains(said),
            "{said:?} missing: {}",
            text(&o).1
        );
    }
    changed["image"]["digest"] = format!("sha256:{}", "0".repeat(64)).into();
    std::fs::write(&rec, serde_json::to_vec(&changed).unwrap()).unwrap();
    let o = run(&s, &["run", "--from-record", rec.to_str().unwrap()]);
    assert!(
        !o.status.success() && text(&o).1.contains("refusing to run a different image"),
        "{}",
        text(&o).1
    );
}
