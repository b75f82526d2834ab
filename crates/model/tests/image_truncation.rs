//! A cut image is refused wherever Pillow (the reference's decoder) refuses it: JPEG
//! (baseline, progressive, with restart markers), PNG, WebP (lossy, lossless), GIF, TIFF
//! (raw, LZW) and BMP written by Pillow, each cut at several offsets
//! (`tests/fixtures/make_truncated_images.py` recorded Pillow's verdicts).

mod common;

use mobilesam_model::image::decode_image;
use mobilesam_model::ModelError;
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    images: Vec<Image>,
}

#[derive(Deserialize)]
struct Image {
    file: String,
    width: u32,
    height: u32,
    cuts: Vec<Cut>,
}

#[derive(Deserialize)]
struct Cut {
    cut: usize,
    pillow_refuses: bool,
}

#[test]
fn cut_images_are_refused_where_pillow_refuses_them() {
    let dir = common::fixtures().join("truncation");
    let fixture: Fixture = serde_json::from_str(
        &std::fs::read_to_string(dir.join("truncation.json")).expect("truncation.json"),
    )
    .expect("parses");
    let mut wrong = Vec::new();
    let mut refused = 0;
    for image in &fixture.images {
        let bytes = std::fs::read(dir.join(&image.file)).expect("image present");
        let whole = decode_image(&bytes, 1 << 20)
            .unwrap_or_else(|e| panic!("{}: the whole image must decode: {e}", image.file));
        assert_eq!(
            whole.dimensions(),
            (image.width, image.height),
            "{}",
            image.file
        );
        for cut in &image.cuts {
            match (decode_image(&bytes[..cut.cut], 1 << 20), cut.pillow_refuses) {
                (Err(ModelError::ImageDecode(message)), true) => {
                    refused += 1;
                    assert!(!message.contains('\n'), "one line: {message}");
                }
                (Ok(_), false) => {}
                (got, _) => wrong.push(format!(
                    "{} cut at {} of {} bytes: Pillow refuses: {}, we: {:?}",
                    image.file,
                    cut.cut,
                    bytes.len(),
                    cut.pillow_refuses,
                    got.map(|i| i.dimensions())
                )),
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(
        refused >= 50,
        "only {refused} cuts refused: the fixture lost its cuts"
    );
}

#[test]
fn a_jpeg_cut_in_its_pixel_data_says_truncated() {
    let bytes = std::fs::read(common::fixtures().join("truncation/baseline.jpg")).expect("jpeg");
    let error = decode_image(&bytes[..bytes.len() / 2], 1 << 20).expect_err("refused");
    assert!(
        error.to_string().contains("image data is truncated"),
        "{error}"
    );
}
