//! libFuzzer entry point; the check itself is `rampart_fuzz::number`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rampart_fuzz::number(data));
