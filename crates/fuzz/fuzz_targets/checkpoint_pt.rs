//! cargo-fuzz entry point; the body is [`mobilesam_fuzz::checkpoint::run`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mobilesam_fuzz::checkpoint::run(data));
