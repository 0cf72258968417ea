#![no_main]
//! libFuzzer entry of `novanet_fuzzing::bgp_update`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| novanet_fuzzing::bgp_update(data));
