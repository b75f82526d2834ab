//! cargo-fuzz entry point; the body is [`mobilesam_fuzz::image_decode::run`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mobilesam_fuzz::image_decode::run(data));
