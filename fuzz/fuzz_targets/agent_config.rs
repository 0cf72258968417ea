#![no_main]
//! libFuzzer entry of `novanet_fuzzing::agent_config`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| novanet_fuzzing::agent_config(data));
