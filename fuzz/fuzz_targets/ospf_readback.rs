#![no_main]
//! libFuzzer entry of `novanet_fuzzing::ospf_readback`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| novanet_fuzzing::ospf_readback(data));
