#![no_main]
//! libFuzzer entry of `novanet_fuzzing::mrt`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| novanet_fuzzing::mrt(data));
