//! The server's image path: encoded bytes -> header check against the pixel limit ->
//! full decode -> Pillow-exact resize, normalization and padding into the encoder input.

use mobilesam_model::image::{decode_image, preprocess, IMAGE_SIZE};
use mobilesam_model::ModelError;

/// The pixel limit under test; small, so that headers claiming more are common and must be
/// refused before any pixel is decoded.
pub const MAX_PIXELS: u64 = 1 << 20;

/// Decodes and preprocesses `data` as a worker does for a `SetImage`.
pub fn run(data: &[u8]) {
    let image = match decode_image(data, MAX_PIXELS) {
        Ok(image) => image,
        Err(ModelError::ImageDecode(_) | ModelError::ImageTooLarge { .. }) => return,
        Err(other) => panic!("decode_image gave an unexpected error kind: {other}"),
    };
    let pixels = u64::from(image.width()) * u64::from(image.height());
    assert!(
        pixels > 0 && pixels <= MAX_PIXELS,
        "decoded {}x{} against a limit of {MAX_PIXELS}",
        image.width(),
        image.height()
    );
    match preprocess(&image) {
        Ok(input) => {
            assert_eq!(input.pixels.len(), 3 * IMAGE_SIZE * IMAGE_SIZE);
            let (h, w) = input.input_size;
            assert_eq!(h.max(w), IMAGE_SIZE, "long side of {h}x{w}");
            assert!(h > 0 && w > 0);
            assert!(input.pixels.iter().all(|v| v.is_finite()));
        }
        // Extreme aspect ratios round one side to zero pixels: refused, not a crash.
        Err(ModelError::ImageDecode(_)) => {}
        Err(other) => panic!("preprocess gave an unexpected error kind: {other}"),
    }
}
