//! Layer semantics and formats: whiteouts, opaque directories, links and
//! modes as Docker applies them; docker-archive, oci-archive and OCI
//! layouts giving one tree and one cache entry (zstd layers of one frame
//! or of many, with skippable frames); archives with several
//! images or linked layers.

use crate::common::*;
use crate::imagefix::{self, Compression, Image};
use runtime_tests::{is_root, ok, stderr};

#[test]
fn layers_are_applied_like_docker() {
    let env = Env::new("layers");
    let tar = docker_tar(&env);
    let script = "ls /data; echo ---; ls /opq; echo ---; \
                  test $(stat -c %i /data/old.txt) = $(stat -c %i /data/hard.txt) && echo hardlinked; \
                  readlink /data/link; stat -c %a /ro /bin/suid; \
                  stat -c %F /devs/null0";
    let o = env.run(&["run", tar.to_str().unwrap(), "--", script]);
    let out = ok(&o);
    let expected_dev = if is_root() {
        "character special file"
    } else {
        "regular empty file"
    };
    assert_eq!(
        out,
        format!("hard.txt\nlink\nold.txt\n---\nupper.txt\n---\nhardlinked\nold.txt\n555\n4755\n{expected_dev}\n")
    );
    if !is_root() {
        assert!(
            stderr(&o).contains("device node"),
            "no placeholder warning: {}",
            stderr(&o)
        );
    }
}

#[test]
fn all_formats_give_the_same_tree_and_share_one_cache_entry() {
    let env = Env::new("formats");
    let img = test_image();
    let docker = env.dir.join("d.tar");
    let gz = env.dir.join("o-gz.tar");
    let zst = env.dir.join("o-zst.tar");
    let frames = env.dir.join("o-zst-frames.tar");
    let layout = env.dir.join("layout");
    imagefix::write_docker_archive(&docker, &[&img]);
    imagefix::write_oci_archive(&gz, &[&img], Compression::Gzip);
    imagefix::write_oci_archive(&zst, &[&img], Compression::Zstd);
    imagefix::write_oci_archive(&frames, &[&img], Compression::ZstdFrames);
    std::fs::create_dir_all(&layout).unwrap();
    imagefix::write_oci_layout(&layout, &[&img], Compression::Gzip);
    let script = "ls -lnR /data /opq /ro /bin | sed 's/  */ /g'";
    let formats = [&docker, &gz, &zst, &frames, &layout];
    // Each unpacked by itself (one cache would unpack only the first).
    let trees: Vec<String> = formats
        .iter()
        .map(|p| {
            let own = Env::new("formats-one");
            ok(&own.run(&["run", p.to_str().unwrap(), "--", script]))
        })
        .collect();
    assert!(trees[0].contains("old.txt"));
    for (t, p) in trees[1..].iter().zip(&formats[1..]) {
        assert_eq!(t, &trees[0], "{}", p.display());
    }
    for p in formats {
        ok(&env.run(&["run", p.to_str().unwrap(), "--", "true"]));
    }
    assert_eq!(
        env.images().len(),
        1,
        "one digest-keyed entry for one image"
    );
}

#[test]
fn archive_with_several_images_needs_a_reference() {
    let env = Env::new("refs");
    let a = Image::new(vec![imagefix::base_layer()], "app:one")
        .with_config(serde_json::json!({"Cmd": ["/bin/echo", "one"]}));
    let b = Image::new(vec![imagefix::base_layer()], "app:two")
        .with_config(serde_json::json!({"Cmd": ["/bin/echo", "two"]}));
    for (i, write) in [true, false].iter().enumerate() {
        let p = env.dir.join(format!("multi{i}.tar"));
        if *write {
            imagefix::write_docker_archive(&p, &[&a, &b]);
        } else {
            imagefix::write_oci_archive(&p, &[&a, &b], Compression::Gzip);
        }
        let ps = p.to_str().unwrap();
        fails_with(&env.run(&["run", ps]), &["app:one", "app:two", "@REF"]);
        assert_eq!(ok(&env.run(&["run", &format!("{ps}@app:two")])), "two\n");
        assert_eq!(ok(&env.run(&["run", &format!("{ps}:one")])), "one\n");
        fails_with(
            &env.run(&["run", &format!("{ps}@nope"), "--", "true"]),
            &["nope", "app:one", "app:two"],
        );
    }
}

#[test]
fn docker_archives_with_linked_layers_load() {
    // docker save stores a layer two images share once and symlinks the
    // second path to it.
    let env = Env::new("linked");
    let img = test_image();
    let p = env.dir.join("plain.tar");
    imagefix::write_docker_archive(&p, &[&img]);
    // Rebuild the archive with the first layer moved and linked back.
    let data = std::fs::read(&p).unwrap();
    let mut out = tar::Builder::new(std::fs::File::create(env.dir.join("linked.tar")).unwrap());
    for e in tar::Archive::new(&data[..]).entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut body).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        if name == "img0/l0/layer.tar" {
            h.set_size(body.len() as u64);
            out.append_data(&mut h, "shared/layer.tar", &body[..])
                .unwrap();
            let mut l = tar::Header::new_gnu();
            l.set_entry_type(tar::EntryType::Symlink);
            l.set_size(0);
            out.append_link(&mut l, &name, "../../shared/layer.tar")
                .unwrap();
        } else {
            h.set_size(body.len() as u64);
            out.append_data(&mut h, &name, &body[..]).unwrap();
        }
    }
    out.finish().unwrap();
    drop(out);
    let linked = env.dir.join("linked.tar");
    assert_eq!(
        ok(&env.run(&["run", linked.to_str().unwrap(), "--", "cat /data/old.txt"])),
        "old\n"
    );
}

#[test]
fn an_oci_layer_must_match_the_configs_diff_id() {
    // A forged image: the manifest's blob digests are right, but the config
    // (the cache key) claims other layer contents. Accepting it would let
    // it take the cache entry of the image whose config it copied.
    let env = Env::new("forged");
    let mut img = Image::new(vec![imagefix::base_layer()], "forged:1");
    img.claimed_diff_ids = Some(vec![format!("sha256:{}", "0".repeat(64))]);
    let p = env.dir.join("forged.tar");
    imagefix::write_oci_archive(&p, &[&img], Compression::Gzip);
    fails_with(
        &env.run(&["run", p.to_str().unwrap(), "--", "/bin/true"]),
        &["digest mismatch"],
    );
    assert!(env.images().is_empty() && env.tmp_entries().is_empty());
}
