//! The image index / manifest / config parsers, through the same
//! `Source` + `resolve` path `hpcc run IMAGE` takes.
//!
//! Input: optional header lines `@tar` (pack an oci/docker archive rather
//! than a layout directory) and `@want:REF` (the `@REF` to pick), then
//! documents separated by a line `--`. Document 0 is `manifest.json` when
//! it starts with `[`, else `index.json`; document N >= 1 is stored both as
//! `blobs/sha256/<its digest>` and as the member `N`. In document i, `@@N`
//! (N > i, one digit) becomes document N's `sha256:<hex>` and `##N` its
//! bare hex, so the fuzzer can write digests it cannot compute.
#![no_main]

#[path = "common/scratch.rs"]
mod scratch;

use hpcc::fuzzing::{resolve, Digest, Source};
use libfuzzer_sys::fuzz_target;
use scratch::remove_stale;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        remove_stale(&base, "fuzzscratch-manifest.");
        let d = base.join(format!("fuzzscratch-manifest.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("scratch dir");
        d
    })
}

fn replace(doc: &[u8], marker: &[u8; 2], n: u8, with: &[u8]) -> Vec<u8> {
    let pat = [marker[0], marker[1], b'0' + n];
    let mut out = Vec::with_capacity(doc.len());
    let mut i = 0;
    while i < doc.len() {
        if doc[i..].starts_with(&pat) {
            out.extend_from_slice(with);
            i += pat.len();
        } else {
            out.push(doc[i]);
            i += 1;
        }
    }
    out
}

fn split_docs(data: &[u8]) -> Vec<Vec<u8>> {
    let mut docs = Vec::new();
    let mut cur = Vec::new();
    for line in data.split_inclusive(|b| *b == b'\n') {
        if line == b"--\n" || line == b"--" {
            docs.push(std::mem::take(&mut cur));
        } else {
            cur.extend_from_slice(line);
        }
    }
    docs.push(cur);
    docs
}

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    let mut tar = false;
    let mut want: Option<String> = None;
    loop {
        if let Some(r) = rest.strip_prefix(b"@tar\n") {
            tar = true;
            rest = r;
        } else if let Some(r) = rest.strip_prefix(b"@want:") {
            let end = r.iter().position(|b| *b == b'\n').unwrap_or(r.len());
            want = Some(String::from_utf8_lossy(&r[..end]).into_owned());
            rest = &r[(end + 1).min(r.len())..];
        } else {
            break;
        }
    }
    let mut docs = split_docs(rest);
    docs.truncate(10);
    // Later documents first, so each one's digest is final when an
    // earlier one names it.
    let mut digests: Vec<Option<Digest>> = vec![None; docs.len()];
    for i in (0..docs.len()).rev() {
        for (n, d) in digests.iter().enumerate().skip(i + 1) {
            let d = d.as_ref().expect("computed");
            docs[i] = replace(&docs[i], b"@@", n as u8, d.to_string().as_bytes());
            docs[i] = replace(&docs[i], b"##", n as u8, d.hex().as_bytes());
        }
        digests[i] = Some(Digest::of_bytes(&docs[i]));
    }
    let first = if docs[0].trim_ascii_start().starts_with(b"[") {
        "manifest.json"
    } else {
        "index.json"
    };
    let mut members: Vec<(String, &[u8])> = vec![(first.to_string(), &docs[0])];
    for (i, doc) in docs.iter().enumerate().skip(1) {
        let d = digests[i].as_ref().expect("computed");
        members.push((format!("blobs/sha256/{}", d.hex()), doc));
        members.push((i.to_string(), doc));
    }
    members.push(("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#));

    let dir = scratch().join("image");
    let _ = std::fs::remove_dir_all(&dir);
    let path = if tar {
        let mut b = tar::Builder::new(Vec::new());
        for (name, body) in &members {
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, name, *body).expect("in-memory tar");
        }
        let bytes = b.into_inner().expect("in-memory tar");
        let p = scratch().join("image.tar");
        std::fs::write(&p, bytes).expect("writing the archive");
        p
    } else {
        std::fs::create_dir_all(dir.join("blobs/sha256")).expect("layout dir");
        for (name, body) in &members {
            std::fs::write(dir.join(name), body).expect("writing a layout file");
        }
        dir
    };
    let Ok(src) = Source::open(&path) else {
        return;
    };
    if let Ok(r) = resolve(&src, want.as_deref()) {
        assert_eq!(r.layers.len(), r.config.diff_ids().len());
        for l in &r.layers {
            assert!(!l.name.split('/').any(|c| c == ".."), "{}", l.name);
        }
    }
});
