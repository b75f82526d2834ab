//! COCO RLE both ways: masks encode and decode back to themselves, and arbitrary RLE
//! strings decode to a mask (which then round-trips) or are refused with `InvalidMask`.

use mobilesam_model::masks::{BinaryMask, Rle};
use mobilesam_model::ModelError;

/// Largest mask the arbitrary-RLE half accepts.
pub const MAX_PIXELS: u64 = 1 << 16;

/// The first byte picks the half: even, a mask built from the bytes is encoded and decoded;
/// odd, the rest is read as `height`, `width` (one byte each) and a counts string.
pub fn run(data: &[u8]) {
    match data.split_first() {
        Some((mode, rest)) if mode % 2 == 0 => mask_round_trip(rest),
        Some((_, rest)) => decode_arbitrary(rest),
        None => {}
    }
}

/// `height`, `width` (0..=40 each), then the pixels, one bit each, row-major; missing bits
/// are background.
fn mask_round_trip(data: &[u8]) {
    let [h, w, bits @ ..] = data else {
        return;
    };
    let (height, width) = (usize::from(h % 41), usize::from(w % 41));
    let data = (0..height * width)
        .map(|i| bits.get(i / 8).map_or(0, |byte| (byte >> (i % 8)) & 1))
        .collect();
    let mask = BinaryMask {
        height,
        width,
        data,
    };
    let rle = mask.to_rle();
    let decoded = BinaryMask::from_rle(&rle).expect("an encoded mask decodes");
    assert_eq!(decoded, mask, "round trip through {rle:?}");
}

fn decode_arbitrary(data: &[u8]) {
    let [h, w, counts @ ..] = data else {
        return;
    };
    let rle = Rle {
        size: [u32::from(*h), u32::from(*w)],
        counts: String::from_utf8_lossy(counts).into_owned(),
    };
    match BinaryMask::from_rle_with_limit(&rle, MAX_PIXELS) {
        Ok(mask) => {
            assert_eq!(
                (mask.height, mask.width),
                (usize::from(*h), usize::from(*w))
            );
            let again = BinaryMask::from_rle(&mask.to_rle()).expect("re-encoded mask decodes");
            assert_eq!(again, mask);
        }
        Err(ModelError::InvalidMask(_)) => {}
        Err(other) => panic!("from_rle gave an unexpected error kind: {other}"),
    }
}
