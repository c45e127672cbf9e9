//! Malformed documents (index.json, manifests, configs, docker
//! manifest.json): refused in one line that names the document.

use crate::checks::{base_and, file, refused};
use crate::env::Env;
use crate::imagefix;

#[test]
fn malformed_documents_are_refused_with_their_name() {
    let blobs = base_and(&[file("x", "x\n")]);
    let config = imagefix::config_for(&blobs);
    let manifest = imagefix::manifest_for(&blobs, &config);
    let index = imagefix::index_for(&manifest);
    let manifest_with = |m: serde_json::Value| -> Vec<u8> { serde_json::to_vec(&m).unwrap() };
    let m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let mut bad_config_digest = m.clone();
    bad_config_digest["config"]["digest"] = "sha256:../../../../etc/passwd".into();
    let mut md5 = m.clone();
    md5["layers"][1]["digest"] = "md5:d41d8cd98f00b204e9800998ecf8427e".into();

    let cfg: serde_json::Value = serde_json::from_slice(&config).unwrap();
    let mut short_ids = cfg.clone();
    short_ids["rootfs"]["diff_ids"] = serde_json::json!([blobs[0].diff_id]);

    // (what, config, manifest, index, needles)
    type DocCase<'a> = (&'a str, Vec<u8>, Vec<u8>, Option<Vec<u8>>, &'a [&'a str]);
    let cases: Vec<DocCase> = vec![
        (
            "index.json is not JSON",
            config.clone(),
            manifest.clone(),
            Some(b"{\"manifests\": [".to_vec()),
            &["index.json", "malformed"],
        ),
        (
            "index.json has the wrong shape",
            config.clone(),
            manifest.clone(),
            Some(br#"{"manifests": 5}"#.to_vec()),
            &["index.json", "malformed"],
        ),
        (
            "index.json lists nothing",
            config.clone(),
            manifest.clone(),
            Some(br#"{"schemaVersion": 2, "manifests": []}"#.to_vec()),
            &["no image"],
        ),
        (
            "index.json names a climbing digest",
            config.clone(),
            manifest.clone(),
            Some(
                br#"{"manifests": [{"digest": "sha256:../../../etc/passwd", "size": 1}]}"#.to_vec(),
            ),
            &["digest", "etc/passwd"],
        ),
        (
            "the manifest is not JSON",
            config.clone(),
            b"{\"config\": ".to_vec(),
            None,
            &["manifest", "malformed"],
        ),
        (
            "the manifest has the wrong shape",
            config.clone(),
            br#"{"config": "x", "layers": {}}"#.to_vec(),
            None,
            &["manifest", "malformed"],
        ),
        (
            "the manifest's config digest climbs",
            config.clone(),
            manifest_with(bad_config_digest),
            None,
            &["doc.tar", "manifest config", "etc/passwd"],
        ),
        (
            "the manifest's layer digest is md5",
            config.clone(),
            manifest_with(md5),
            None,
            &["doc.tar", "manifest layer 2", "md5"],
        ),
        (
            "the config is not JSON",
            b"{\"rootfs\": nope".to_vec(),
            Vec::new(),
            None,
            &["config", "malformed"],
        ),
        (
            "the config has too few diff_ids",
            serde_json::to_vec(&short_ids).unwrap(),
            Vec::new(),
            None,
            &["diff_ids"],
        ),
    ];
    for (what, config, manifest, index_override, needles) in cases {
        let env = Env::new("doc");
        // An empty manifest means: the right one for this config.
        let manifest = if manifest.is_empty() {
            imagefix::manifest_for(&blobs, &config)
        } else {
            manifest
        };
        let idx = index_override.unwrap_or_else(|| imagefix::index_for(&manifest));
        let files = imagefix::oci_parts(&blobs, &config, &manifest, &idx);
        let img = env.oci("doc", &files);
        refused(&env, &img, needles, what);
    }

    // A document too large to be real is refused before it is read whole.
    let env = Env::new("doc-big");
    let mut huge = index.clone();
    huge.extend(std::iter::repeat_n(b' ', 17 << 20));
    let files = imagefix::oci_parts(&blobs, &config, &manifest, &huge);
    let img = env.oci("doc", &files);
    refused(
        &env,
        &img,
        &["index.json", "too large"],
        "a 17 MB index.json",
    );

    // docker-archive manifest.json: not JSON, a missing layer, a climbing one.
    for (what, doc, needles) in [
        (
            "manifest.json is not JSON",
            "[{\"Config\":".to_string(),
            &["manifest.json", "malformed"][..],
        ),
        (
            "manifest.json names a missing layer",
            "[{\"Config\": \"CFG\", \"Layers\": [\"nope/layer.tar\"]}]".to_string(),
            &["nope/layer.tar", "missing"][..],
        ),
        (
            "manifest.json names a climbing layer",
            "[{\"Config\": \"CFG\", \"Layers\": [\"../../../etc/passwd\"]}]".to_string(),
            &["etc/passwd", "climbs out"][..],
        ),
    ] {
        let env = Env::new("doc-docker");
        let cfg = br#"{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000000"]}}"#.to_vec();
        let cfg_name = format!("{}.json", imagefix::sha256_hex(&cfg));
        let files = vec![
            (cfg_name.clone(), cfg),
            (
                "manifest.json".to_string(),
                doc.replace("CFG", &cfg_name).into_bytes(),
            ),
        ];
        let img = env.oci("docker", &files);
        refused(&env, &img, needles, what);
    }
}
