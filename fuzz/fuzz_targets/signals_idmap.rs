//! The first byte picks the parser:
//! even: the rest is a signal name for parse_signal; whatever it accepts
//!       must parse again from its canonical name and from its number.
//! odd:  bytes 1..5 are our own id, byte 5 says privileged, the rest is a
//!       JSON list of uid/gid mappings (or, when it is not JSON, raw
//!       12-byte container/host/size triples); map_text, helper_args and
//!       choose_writer must agree with the maps.
#![no_main]

use hpcc::fuzzing::{choose_writer, helper_args, map_text, parse_signal, Writer};
use libfuzzer_sys::fuzz_target;
use oci_spec::runtime::{LinuxIdMapping, LinuxIdMappingBuilder};

fn signal(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    let Ok(sig) = parse_signal(&s) else {
        return;
    };
    assert_eq!(parse_signal(sig.as_str()).ok(), Some(sig), "{s:?}");
    assert_eq!(
        parse_signal(&(sig as i32).to_string()).ok(),
        Some(sig),
        "{s:?}"
    );
    let short = sig.as_str().trim_start_matches("SIG").to_ascii_lowercase();
    assert_eq!(parse_signal(&short).ok(), Some(sig), "{s:?}");
}

fn idmaps(data: &[u8]) {
    if data.len() < 5 {
        return;
    }
    let own = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
    let privileged = data[4] & 1 == 1;
    let rest = &data[5..];
    let maps: Vec<LinuxIdMapping> = match serde_json::from_slice(rest) {
        Ok(m) => m,
        Err(_) => rest
            .chunks_exact(12)
            .map(|c| {
                let n = |i: usize| u32::from_le_bytes([c[i], c[i + 1], c[i + 2], c[i + 3]]);
                LinuxIdMappingBuilder::default()
                    .container_id(n(0))
                    .host_id(n(4))
                    .size(n(8))
                    .build()
                    .expect("all fields are set")
            })
            .collect(),
    };
    let triple = |m: &LinuxIdMapping| [m.container_id(), m.host_id(), m.size()];
    let text = map_text(&maps);
    let parsed: Vec<[u32; 3]> = text
        .lines()
        .map(|l| {
            let v: Vec<u32> = l.split(' ').map(|n| n.parse().expect("a number")).collect();
            [v[0], v[1], v[2]]
        })
        .collect();
    assert_eq!(parsed, maps.iter().map(triple).collect::<Vec<_>>());
    let args = helper_args(4242, &maps);
    assert_eq!(args.len(), 1 + 3 * maps.len());
    assert_eq!(args[0], "4242");
    for (chunk, m) in args[1..].chunks(3).zip(&maps) {
        assert_eq!(chunk, triple(m).map(|n| n.to_string()));
    }
    let only_self = maps.len() == 1 && maps[0].host_id() == own && maps[0].size() == 1;
    let want = if privileged || only_self {
        Writer::Direct
    } else {
        Writer::Helper
    };
    assert_eq!(choose_writer(&maps, own, privileged), want);
}

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((sel, rest)) if sel & 1 == 0 => signal(rest),
        Some((_, rest)) => idmaps(rest),
        None => {}
    }
});
