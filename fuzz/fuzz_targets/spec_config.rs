//! config.json bytes → parse (JSON, version, schema) → validate. Neither
//! may panic, and a Spec that parsed must survive a serialize/parse round
//! trip with the same verdict.
#![no_main]

use hpcc::fuzzing::{parse_config, validate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(spec) = parse_config(data) else {
        return;
    };
    let verdict = validate(&spec).is_ok();
    let text = serde_json::to_vec(&spec).expect("a parsed Spec serializes");
    let again = parse_config(&text).expect("a serialized Spec parses again");
    assert_eq!(
        validate(&again).is_ok(),
        verdict,
        "validate changed after a round trip"
    );
});
