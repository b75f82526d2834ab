//! The full-size check shared by SAM ViT's and SAM 2.1's parity tests: a seeded checkpoint
//! of an official size rebuilt from its manifest (`tests/fixtures/sam/manifests/`), run on
//! `coffee.png` against `tests/fixtures/sam/fullsize_reference/` (made by
//! `make_fullsize.py`): embedding every 8th row and column, and each prompt case's masks
//! and scores.

use std::io::Read;

use mobilesam_model::image::read_image;
use mobilesam_model::masks::{BinaryMask, Rle};
use mobilesam_model::prompt_json::from_values;
use mobilesam_model::{DecodeOptions, Sam};
use serde_json::Value;

/// The seeded checkpoint of an official size, rebuilt from
/// `tests/fixtures/sam/manifests/<manifest>.json`.
pub fn seeded(manifest: &str) -> mobilesam_checkpoint::Checkpoint {
    let path = super::fixtures().join(format!("sam/manifests/{manifest}.json"));
    let text = std::fs::read_to_string(path).expect("manifest");
    mobilesam_checkpoint::seeded::Manifest::from_json(&text)
        .and_then(|m| m.generate())
        .expect("the manifest generates")
}

/// Checks the model of `manifest` (detected as `family`) against fixture `stem`.
pub fn check_on_coffee(manifest: &str, stem: &str, family: &str) {
    let dir = super::fixtures();
    let checkpoint = seeded(manifest);
    let sam = Sam::from_checkpoint(&checkpoint, &candle_core::Device::Cpu).expect("model builds");
    assert_eq!(sam.family().name(), family);
    let file = std::fs::File::open(dir.join(format!("sam/fullsize_reference/{stem}.json.gz")))
        .expect("fixture");
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .expect("gzip");
    let reference: Value = serde_json::from_str(&text).expect("fixture parses");
    let image = read_image(&dir.join("images/coffee.png"), u64::MAX).expect("image");
    let started = std::time::Instant::now();
    let embedding = sam.embed(&image).expect("embeds");
    let encode_ms = started.elapsed().as_secs_f64() * 1e3;
    let (shape, expected) =
        super::read_npy_f32(&dir.join(format!("sam/fullsize_reference/{stem}_embedding_sub8.npy")));
    assert_eq!(shape, vec![256, 8, 8]);
    let ours: Vec<f32> = sam
        .decoder_image_embedding(&embedding)
        .expect("features")
        .chunks_exact(64)
        .enumerate()
        .filter(|(row, _)| row % 8 == 0)
        .flat_map(|(_, row)| row.iter().step_by(8).copied().collect::<Vec<_>>())
        .collect();
    let embedding_error = super::relative_l2(&ours, &expected);
    let (mut min_iou, mut max_score_diff) = (1.0f64, 0.0f64);
    for case in reference["cases"].as_array().expect("cases") {
        // Each case is one object: its points (and labels) nest one level deeper in the
        // CLI's JSON convention, where a flat list of points is one object per point.
        let one_object = |key: &str| {
            let v = &case[key];
            (!v.is_null()).then(|| Value::Array(vec![v.clone()]))
        };
        let (points, labels, bboxes) = (
            one_object("points"),
            one_object("labels"),
            one_object("bboxes"),
        );
        let objects =
            from_values(points.as_ref(), labels.as_ref(), bboxes.as_ref()).expect("prompt");
        assert_eq!(objects.len(), 1);
        let options = DecodeOptions {
            multimask: case["multimask"].as_bool().expect("multimask"),
            ..DecodeOptions::default()
        };
        let result = sam.decode(&embedding, &objects, options).expect("decodes");
        let theirs = case["objects"][0]["masks"].as_array().expect("masks");
        assert_eq!(result[0].masks.len(), theirs.len());
        for (a, b) in result[0].masks.iter().zip(theirs) {
            let rle: Rle = serde_json::from_value(b["rle"].clone()).expect("rle");
            let iou = BinaryMask::from_rle(&a.rle)
                .expect("our rle")
                .iou(&BinaryMask::from_rle(&rle).expect("reference rle"));
            let diff = (f64::from(a.score) - b["score"].as_f64().expect("score")).abs();
            min_iou = min_iou.min(iou);
            max_score_diff = max_score_diff.max(diff);
        }
    }
    eprintln!(
        "parity {family} coffee: embedding rel L2 {embedding_error:.2e}, min IoU {min_iou:.6}, max score diff {max_score_diff:.2e}, encoder {encode_ms:.0} ms"
    );
    assert!(embedding_error <= 5e-3, "{embedding_error}");
    assert!(min_iou >= 0.99, "{min_iou}");
    assert!(max_score_diff <= 5e-3, "{max_score_diff}");
}
