#![no_main]
//! libFuzzer entry of `novanet_fuzzing::bfd_packet`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| novanet_fuzzing::bfd_packet(data));
