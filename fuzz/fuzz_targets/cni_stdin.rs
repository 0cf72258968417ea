#![no_main]
//! libFuzzer entry of `novanet_fuzzing::cni_stdin`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| novanet_fuzzing::cni_stdin(data));
