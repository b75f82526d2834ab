//! cargo-fuzz entry point; the body is [`mobilesam_fuzz::yolo_pickle::run`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mobilesam_fuzz::yolo_pickle::run(data));
