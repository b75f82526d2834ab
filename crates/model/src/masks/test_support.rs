//! Test helpers shared by the upscale and RLE tests: the fixtures of
//! `make_preprocess_fixtures.py`.

use serde_json::Value;

pub(super) fn load_json(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/preprocess")
        .join(name);
    let text = std::fs::read_to_string(path).expect("fixture");
    serde_json::from_str(&text).expect("fixture json")
}

pub(super) fn num(v: &Value) -> usize {
    v.as_u64().expect("number") as usize
}

pub(super) fn pair(v: &Value) -> (usize, usize) {
    (num(&v[0]), num(&v[1]))
}

/// `lowbias32` integer hash, as in make_preprocess_fixtures.py.
pub(super) fn lowbias32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^= x >> 16;
    x
}
