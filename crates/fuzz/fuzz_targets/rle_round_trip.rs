//! cargo-fuzz entry point; the body is [`mobilesam_fuzz::rle_round_trip::run`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mobilesam_fuzz::rle_round_trip::run(data));
