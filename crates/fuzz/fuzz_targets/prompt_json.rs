//! cargo-fuzz entry point; the body is [`mobilesam_fuzz::prompt_json::run`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mobilesam_fuzz::prompt_json::run(data));
