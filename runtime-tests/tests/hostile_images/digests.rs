//! Tampering and digests: layers, configs and manifests whose bytes do
//! not match their digests, and truncated, missing or garbage blobs.

use crate::checks::{base_and, blob_hex, file, refused};
use crate::env::Env;
use crate::imagefix::{self, Blob, Entry};

#[test]
fn digest_mismatches_are_refused_after_or_before_unpacking() {
    // A docker-archive layer whose bytes differ from the config's diff_id
    // (no blob digests there: only the diff_id catches it, after the layer
    // was applied).
    let env = Env::new("dig-docker");
    let marker = vec![b'M'; 4096];
    let img = env.docker(
        "d",
        vec![imagefix::layer(&[Entry::File(
            "marker".into(),
            marker.clone(),
            0o644,
        )])],
    );
    let mut data = std::fs::read(&img).unwrap();
    let at = data
        .windows(marker.len())
        .position(|w| w == &marker[..])
        .unwrap();
    data[at + 100] = b'N';
    std::fs::write(&img, &data).unwrap();
    refused(
        &env,
        &img,
        &["digest mismatch", "layer 2", "layer.tar"],
        "docker layer vs diff_id",
    );

    // An OCI layer blob swapped for another valid layer under the same
    // name: it applies cleanly; only the digest refuses it.
    let env = Env::new("dig-layer");
    let blobs = base_and(&[file("good", "good\n")]);
    let mut files = imagefix::oci_files_of(&blobs);
    let evil = Blob::gzip(&imagefix::layer(&[file("evil", "evil\n")]));
    let name = format!("blobs/sha256/{}", blob_hex(&blobs[1]));
    files.iter_mut().find(|(n, _)| *n == name).unwrap().1 = evil.data;
    let img = env.oci("o", &files);
    refused(
        &env,
        &img,
        &["digest mismatch", "layer 2", &blob_hex(&blobs[1])[..12]],
        "swapped OCI layer",
    );

    // The config blob's bytes differ from its digest.
    let env = Env::new("dig-config");
    let blobs = base_and(&[file("x", "x\n")]);
    let config = imagefix::config_for(&blobs);
    let config_hex = imagefix::sha256_hex(&config);
    let mut files = imagefix::oci_files_of(&blobs);
    let name = format!("blobs/sha256/{config_hex}");
    let doc = &mut files.iter_mut().find(|(n, _)| *n == name).unwrap().1;
    *doc = String::from_utf8(doc.clone())
        .unwrap()
        .replace("/bin/sh", "/bin/xx")
        .into_bytes();
    let img = env.oci("o", &files);
    refused(
        &env,
        &img,
        &["config", &config_hex[..12]],
        "tampered config blob",
    );

    // The manifest blob's bytes differ from the index's digest.
    let env = Env::new("dig-manifest");
    let blobs = base_and(&[file("x", "x\n")]);
    let config = imagefix::config_for(&blobs);
    let manifest = imagefix::manifest_for(&blobs, &config);
    let manifest_hex = imagefix::sha256_hex(&manifest);
    let mut files = imagefix::oci_files_of(&blobs);
    let name = format!("blobs/sha256/{manifest_hex}");
    files
        .iter_mut()
        .find(|(n, _)| *n == name)
        .unwrap()
        .1
        .push(b' ');
    let img = env.oci("o", &files);
    refused(
        &env,
        &img,
        &["manifest", &manifest_hex[..12]],
        "tampered manifest blob",
    );
}

#[test]
fn truncated_missing_and_garbage_blobs_are_refused() {
    let full = imagefix::layer(&[Entry::File(
        "big".into(),
        (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect(),
        0o644,
    )]);
    let gz = Blob::gzip(&full);
    // Truncated, with the manifest naming the truncated bytes: the digest
    // holds, the gzip stream ends early.
    let env = Env::new("trunc");
    let cut = Blob {
        data: gz.data[..gz.data.len() / 2].to_vec(),
        diff_id: gz.diff_id.clone(),
    };
    let blobs = vec![Blob::gzip(&imagefix::base_layer()), cut];
    let img = env.oci("t", &imagefix::oci_files_of(&blobs));
    refused(
        &env,
        &img,
        &["layer 2", &blob_hex(&blobs[1])[..12]],
        "truncated gzip",
    );

    // Truncated, with the manifest naming the full blob.
    let env = Env::new("trunc2");
    let blobs = vec![Blob::gzip(&imagefix::base_layer()), gz];
    let mut files = imagefix::oci_files_of(&blobs);
    let name = format!("blobs/sha256/{}", blob_hex(&blobs[1]));
    files
        .iter_mut()
        .find(|(n, _)| *n == name)
        .unwrap()
        .1
        .truncate(blobs[1].data.len() / 2);
    let img = env.oci("t", &files);
    refused(&env, &img, &["layer 2"], "truncated gzip, full digest");

    // Not compressed and not a tar.
    let env = Env::new("garbage");
    let junk: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + 3) as u8).collect();
    let blobs = vec![
        Blob::gzip(&imagefix::base_layer()),
        Blob {
            diff_id: format!("sha256:{}", imagefix::sha256_hex(&junk)),
            data: junk,
        },
    ];
    let img = env.oci("g", &imagefix::oci_files_of(&blobs));
    refused(&env, &img, &["layer 2"], "a layer that is no tar");

    // Missing blobs: a layer, the config, the manifest.
    let blobs = base_and(&[file("x", "x\n")]);
    let config = imagefix::config_for(&blobs);
    let manifest = imagefix::manifest_for(&blobs, &config);
    for (what, hex) in [
        ("missing layer blob", blob_hex(&blobs[1])),
        ("missing config blob", imagefix::sha256_hex(&config)),
        ("missing manifest blob", imagefix::sha256_hex(&manifest)),
    ] {
        let env = Env::new("missing");
        let files: Vec<_> = imagefix::oci_files_of(&blobs)
            .into_iter()
            .filter(|(n, _)| !n.ends_with(&hex))
            .collect();
        let img = env.oci("m", &files);
        refused(&env, &img, &["missing", &hex[..12]], what);
        // The same in an OCI layout directory.
        let layout = env.dir.join("layout");
        for (n, d) in &files {
            let p = layout.join(n);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, d).unwrap();
        }
        refused(&env, &layout, &[&hex[..12]], &format!("{what} (layout)"));
    }

    // A docker archive cut short in the middle of a layer.
    let env = Env::new("cut-docker");
    let img = env.docker("d", vec![imagefix::layer(&[file("x", "x\n")])]);
    let data = std::fs::read(&img).unwrap();
    std::fs::write(&img, &data[..data.len() / 2]).unwrap();
    refused(&env, &img, &["d.tar"], "truncated docker archive");
}
