//! Mirrors from the site config: each is tried in order before the
//! registry itself, and a mirror that fails passes the pull on.

use crate::fixture::*;
use crate::imagefix::scratch::Scratch;
use crate::server::{status, Server};

/// A port that refuses connections: bound, then let go.
fn dead_host() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("127.0.0.1:{port}")
}

fn site(s: &Scratch, registry: &str, mirrors: &[String]) {
    let list: Vec<String> = mirrors.iter().map(|m| format!("{m:?}")).collect();
    std::fs::write(
        s.dir.join("site.toml"),
        format!("[registry_mirrors]\n{registry:?} = [{}]\n", list.join(", ")),
    )
    .unwrap();
}

/// The registry (`registry.invalid`, which no resolver knows) is never
/// reached: a refusing mirror and a mirror without the image pass the
/// pull on to the next mirror, which serves it.
#[test]
fn mirrors_are_tried_in_order_before_the_registry() {
    let img = Img::new();
    let i2 = img.clone();
    let good = Server::start(move |r| i2.answer(r));
    let empty = Server::start(|_| status(404));
    let s = Scratch::new("reg-mirrors");
    let registry = "registry.invalid:5000";
    site(&s, registry, &[dead_host(), empty.host(), good.host()]);
    let r = format!("docker://{registry}/t/img:latest");
    ran(
        &run(&s, &["run", "-q", &r, "--", "echo", "mirrored"]),
        "mirrored",
    );
    assert!(
        empty.asked("/manifests/latest") >= 1,
        "{:?}",
        empty.requests()
    );
    assert!(
        good.asked(&img.layer_digest()) == 1,
        "{:?}",
        good.requests()
    );
    let o = run(&s, &["images", "--format", "json"]);
    assert!(
        text(&o).0.contains(&format!("{registry}/t/img:latest")),
        "{:?}",
        text(&o)
    );

    // Every host fails: the line names the reference and what the
    // registry itself (the last asked) said, and nothing is left.
    let s = Scratch::new("reg-mirrors-down");
    site(&s, registry, &[dead_host(), empty.host()]);
    let o = run(&s, &["pull", &r]);
    refused(&s, &o, &[&r, "registry.invalid"]);
}
