//! `mobilesam generate` on seeded weights: the JSON schema of every mask record, `--output`,
//! and clean errors for bad parameters. (Parity with the reference generator is
//! crates/model/tests/amg_parity.rs.)

use crate::cli_support;

use cli_support::{arg, checkpoint, failure, image, run, success, temp_dir, HEIGHT, WIDTH};
use mobilesam_model::masks::{BinaryMask, Rle};
use serde_json::Value;

/// Small grid, no filters and no NMS suppression, so that random weights give masks.
const PERMISSIVE: [&str; 8] = [
    "--points-per-side",
    "3",
    "--pred-iou-thresh",
    "0",
    "--stability-score-thresh",
    "0",
    "--box-nms-thresh",
    "1.0",
];

fn check_schema(json: &Value) -> usize {
    assert_eq!(json["width"], WIDTH);
    assert_eq!(json["height"], HEIGHT);
    let masks = json["masks"].as_array().expect("masks array");
    for m in masks {
        let obj = m.as_object().expect("mask object");
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "area",
                "bbox",
                "crop_box",
                "point_coords",
                "predicted_iou",
                "segmentation",
                "stability_score"
            ]
        );
        let rle: Rle = serde_json::from_value(m["segmentation"].clone()).expect("rle");
        assert_eq!(rle.size, [HEIGHT, WIDTH]);
        let mask = BinaryMask::from_rle(&rle).expect("decodes");
        assert_eq!(m["area"].as_u64(), Some(mask.area()));
        let bbox: Vec<i64> = serde_json::from_value(m["bbox"].clone()).expect("bbox ints");
        assert_eq!(bbox.len(), 4);
        if mask.area() > 0 {
            let b = mask.bbox();
            // The reference's convention: w = x_max - x_min.
            assert_eq!(
                bbox,
                [b[0] as i64, b[1] as i64, b[2] as i64 - 1, b[3] as i64 - 1]
            );
        }
        let crop: Vec<i64> = serde_json::from_value(m["crop_box"].clone()).expect("crop ints");
        assert_eq!(crop, [0, 0, i64::from(WIDTH), i64::from(HEIGHT)]);
        let points = m["point_coords"].as_array().expect("points");
        assert_eq!(points.len(), 1);
        assert_eq!(points[0].as_array().map(Vec::len), Some(2));
        assert!(m["predicted_iou"].is_f64());
        // NaN (JSON null) for an empty mask, as 0/0 in the reference.
        if let Some(s) = m["stability_score"].as_f64() {
            assert!((0.0..=1.0).contains(&s));
        }
    }
    masks.len()
}

#[test]
fn generate_prints_reference_records_and_writes_output() {
    let dir = temp_dir();
    let out_path = dir.path().join("masks.json");
    let mut args = vec![
        "generate",
        "--checkpoint",
        arg(checkpoint()),
        "--image",
        arg(image()),
        "--output",
        arg(&out_path),
    ];
    args.extend_from_slice(&PERMISSIVE);
    let stdout = success(&run(&args));
    assert!(stdout.is_empty(), "with --output nothing goes to stdout");
    let text = std::fs::read_to_string(&out_path).expect("output written");
    let json: Value = serde_json::from_str(&text).expect("valid JSON");
    let n = check_schema(&json);
    // 9 points, 3 masks each, no filter, NMS at IoU > 1 suppresses nothing and with one
    // crop (the whole image) no box is near a crop edge: all 27 survive.
    assert_eq!(n, 27);
    // Sorted by predicted IoU, as the reference's NMS leaves them.
    let scores: Vec<f64> = json["masks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["predicted_iou"].as_f64().unwrap())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
}

#[test]
fn bad_parameters_are_clean_errors() {
    let out = run(&[
        "generate",
        "--checkpoint",
        arg(checkpoint()),
        "--image",
        arg(image()),
        "--points-per-side",
        "0",
    ]);
    failure(&out, "points_per_side");
    let out = run(&[
        "generate",
        "--checkpoint",
        arg(checkpoint()),
        "--image",
        arg(image()),
        "--points-per-batch",
        "0",
    ]);
    failure(&out, "points_per_batch");
}
