//! linux.seccomp JSON → LinuxSeccomp → the stacked BPF filters. compile
//! must refuse what it cannot express, never panic.
#![no_main]

use hpcc::fuzzing::compile_seccomp;
use libfuzzer_sys::fuzz_target;
use oci_spec::runtime::LinuxSeccomp;

fuzz_target!(|data: &[u8]| {
    let Ok(profile) = serde_json::from_slice::<LinuxSeccomp>(data) else {
        return;
    };
    if let Ok(programs) = compile_seccomp(&profile) {
        assert!(
            !programs.is_empty() || !cfg!(target_arch = "x86_64"),
            "x86_64 always gets the x32 guard"
        );
        for p in &programs {
            assert!(!p.is_empty(), "an empty BPF program");
        }
    }
});
