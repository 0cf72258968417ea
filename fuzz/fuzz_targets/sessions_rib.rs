#![no_main]
//! libFuzzer entry of `novanet_fuzzing::sessions_rib`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| novanet_fuzzing::sessions_rib(data));
