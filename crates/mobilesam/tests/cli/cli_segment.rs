//! `mobilesam segment` and `mobilesam embed` on seeded weights: output schema, object
//! count and order for each prompt form, `--multimask`, the `.npy` file, and agreement
//! between the CLI, a saved embedding and the library.
//!
//! Encoding is slow on a CPU, so the image is encoded twice in all: once by `embed`
//! (shared through [`embedding`]) and once by a direct `segment`; every other run reuses
//! the saved embedding with `--embedding`.

use crate::cli_support;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::Device;
use cli_support::{arg, checkpoint, image, run, scratch, success, HEIGHT, WIDTH};
use mobilesam_model::masks::{BinaryMask, Rle};
use serde_json::Value;

/// Bytes of the embedding's values: 1 * 256 * 64 * 64 float32.
const EMBEDDING_BYTES: usize = 256 * 64 * 64 * 4;

/// The test image's embedding, written once by `mobilesam embed`.
fn embedding() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let path = scratch().join("embedding.npy");
        let part = scratch().join(format!("embedding.{}.part.npy", std::process::id()));
        let out = run(&[
            "embed",
            "--checkpoint",
            arg(checkpoint()),
            "--image",
            arg(image()),
            "--output",
            arg(&part),
        ]);
        success(&out);
        std::fs::rename(&part, &path).expect("rename embedding");
        path
    })
}

/// Runs `segment` on the test image with the saved embedding and `prompt` flags; returns
/// the parsed JSON after checking its schema.
fn segment(prompt: &[&str]) -> Value {
    let mut extra = vec!["--embedding", arg(embedding())];
    extra.extend_from_slice(prompt);
    segment_encoding(&extra)
}

/// Runs `segment` on the test image with `extra` flags (it encodes the image unless they
/// name an `--embedding`); returns the parsed JSON after checking its schema.
fn segment_encoding(extra: &[&str]) -> Value {
    let mut args = vec![
        "segment",
        "--checkpoint",
        arg(checkpoint()),
        "--image",
        arg(image()),
    ];
    args.extend_from_slice(extra);
    parse_checked(&success(&run(&args)))
}

/// Parses segment output and checks every field of the contract.
fn parse_checked(stdout: &str) -> Value {
    assert_eq!(stdout.lines().count(), 1, "one JSON line: {stdout}");
    let json: Value = serde_json::from_str(stdout).expect("stdout is JSON");
    let top: Vec<&str> = json
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(top, ["height", "objects", "width"]);
    assert_eq!(json["width"], WIDTH);
    assert_eq!(json["height"], HEIGHT);
    for object in json["objects"].as_array().expect("objects") {
        assert_eq!(object.as_object().expect("object").len(), 1);
        for mask in object["masks"].as_array().expect("masks") {
            check_mask(mask);
        }
    }
    json
}

/// One mask: score, area, bbox and an RLE that decodes to that area and bbox.
fn check_mask(mask: &Value) {
    let keys: Vec<&str> = mask
        .as_object()
        .expect("mask")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["area", "bbox", "rle", "score"]);
    assert!(mask["score"].is_number(), "{mask}");
    let area = mask["area"].as_u64().expect("area");
    let bbox: Vec<f64> = mask["bbox"]
        .as_array()
        .expect("bbox")
        .iter()
        .map(|v| v.as_f64().expect("bbox number"))
        .collect();
    assert_eq!(bbox.len(), 4);
    let rle: Rle = serde_json::from_value(mask["rle"].clone()).expect("rle");
    assert_eq!(rle.size, [HEIGHT, WIDTH]);
    let decoded = BinaryMask::from_rle(&rle).expect("rle decodes");
    assert_eq!(decoded.area(), area);
    let expected: Vec<f64> = decoded.bbox().iter().map(|v| f64::from(*v)).collect();
    assert_eq!(bbox, expected);
}

/// Number of masks of each object.
fn mask_counts(json: &Value) -> Vec<usize> {
    json["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .map(|o| o["masks"].as_array().expect("masks").len())
        .collect()
}

#[test]
fn embed_writes_a_float32_npy_of_the_embedding_shape() {
    let bytes = std::fs::read(embedding()).expect("read npy");
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let header_len = usize::from(u16::from_le_bytes([bytes[8], bytes[9]]));
    let data_start = 10 + header_len;
    assert_eq!(data_start % 64, 0, "data is 64-byte aligned");
    let header = std::str::from_utf8(&bytes[10..data_start]).expect("ascii header");
    assert_eq!(
        header.trim_end(),
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 256, 64, 64), }"
    );
    assert!(header.ends_with('\n'));
    assert_eq!(bytes.len(), data_start + EMBEDDING_BYTES);
    let values: Vec<f32> = bytes[data_start..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert!(values.iter().all(|v| v.is_finite()));
    assert!(values.iter().any(|v| *v != 0.0));
}

#[test]
fn each_prompt_form_gives_one_object_per_prompt() {
    let cases: [(&[&str], usize); 7] = [
        (&["--points", "[32, 24]"], 1),
        (&["--points", "[32, 24]", "--labels", "[1]"], 1),
        (
            &[
                "--points",
                "[[10, 10], [50, 30], [20, 40]]",
                "--labels",
                "[1, 0, 1]",
            ],
            3,
        ),
        (
            &[
                "--points",
                "[[[10, 10], [12, 12]], [[50, 30]]]",
                "--labels",
                "[[1, 0], [1]]",
            ],
            2,
        ),
        (&["--bboxes", "[5, 5, 40, 30]"], 1),
        (&["--bboxes", "[[5, 5, 40, 30], [20, 10, 60, 45]]"], 2),
        (
            &[
                "--points",
                "[[20, 20], [30, 30]]",
                "--bboxes",
                "[[5, 5, 40, 30], [20, 10, 60, 45]]",
            ],
            2,
        ),
    ];
    for (prompt, objects) in cases {
        let json = segment(prompt);
        assert_eq!(mask_counts(&json), vec![1; objects], "{prompt:?}");
    }
}

#[test]
fn multimask_gives_three_masks_per_object() {
    let json = segment(&["--points", "[[10, 10], [50, 30]]", "--multimask"]);
    assert_eq!(mask_counts(&json), vec![3, 3]);
}

#[test]
fn objects_come_out_in_prompt_order() {
    // Objects with different point counts are decoded in different batches.
    let forward = segment(&["--points", "[[[10, 10]], [[50, 30], [52, 33]], [[30, 20]]]"]);
    let reversed = segment(&["--points", "[[[30, 20]], [[50, 30], [52, 33]], [[10, 10]]]"]);
    let f = forward["objects"].as_array().expect("objects");
    let r = reversed["objects"].as_array().expect("objects");
    assert_eq!(f.len(), 3);
    assert_eq!(f[0], r[2]);
    assert_eq!(f[1], r[1]);
    assert_eq!(f[2], r[0]);
}

#[test]
fn cli_masks_match_the_library_in_model_order() {
    let json = segment(&[
        "--bboxes",
        "[[5, 5, 40, 30], [20, 10, 60, 45]]",
        "--multimask",
    ]);
    let ckpt = mobilesam_checkpoint::Checkpoint::load(checkpoint()).expect("checkpoint");
    let sam = mobilesam_model::Sam::from_checkpoint(&ckpt, &Device::Cpu).expect("model");
    let bytes = std::fs::read(embedding()).expect("read npy");
    let values: Vec<f32> = bytes[bytes.len() - EMBEDDING_BYTES..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let embedding = mobilesam_model::Embedding::from_host_f32(
        values,
        (HEIGHT as usize, WIDTH as usize),
        mobilesam_model::image::preprocess_shape(HEIGHT as usize, WIDTH as usize, 1024),
        &Device::Cpu,
    )
    .expect("embedding");
    let objects = [[5.0, 5.0, 40.0, 30.0], [20.0, 10.0, 60.0, 45.0]].map(|[x1, y1, x2, y2]| {
        mobilesam_model::ObjectPrompt {
            bbox: Some(mobilesam_model::BoxPrompt { x1, y1, x2, y2 }),
            ..Default::default()
        }
    });
    let options = mobilesam_model::DecodeOptions {
        multimask: true,
        return_low_res_logits: false,
        return_polygons: false,
    };
    let expected = sam.decode(&embedding, &objects, options).expect("decode");
    for (object, want) in json["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .zip(&expected)
    {
        let masks = object["masks"].as_array().expect("masks");
        assert_eq!(masks.len(), want.masks.len());
        for (mask, want) in masks.iter().zip(&want.masks) {
            let score = mask["score"].as_f64().expect("score");
            assert!(
                (score - f64::from(want.score)).abs() < 1e-6,
                "{score} vs {}",
                want.score
            );
            assert_eq!(mask["rle"]["counts"], want.rle.counts.as_str());
        }
    }
}

#[test]
fn saved_embedding_gives_the_same_masks_as_encoding() {
    let prompt = [
        "--points",
        "[[[20, 20], [45, 35]]]",
        "--labels",
        "[[1, 0]]",
        "--multimask",
    ];
    let direct = segment_encoding(&prompt);
    let reused = segment(&prompt);
    let pairs = direct["objects"][0]["masks"]
        .as_array()
        .expect("masks")
        .iter()
        .zip(reused["objects"][0]["masks"].as_array().expect("masks"));
    for (a, b) in pairs {
        let (sa, sb) = (
            a["score"].as_f64().expect("score"),
            b["score"].as_f64().expect("score"),
        );
        assert!((sa - sb).abs() < 1e-5, "{sa} vs {sb}");
        let ma = BinaryMask::from_rle(&serde_json::from_value(a["rle"].clone()).expect("rle"))
            .expect("mask");
        let mb = BinaryMask::from_rle(&serde_json::from_value(b["rle"].clone()).expect("rle"))
            .expect("mask");
        assert!(ma.iou(&mb) > 0.99, "IoU {}", ma.iou(&mb));
    }
}

#[test]
fn the_candle_backend_segments_like_the_fused_one() {
    let prompt = ["--points", "[[[20, 20], [45, 35]]]", "--labels", "[[1, 0]]"];
    let direct = |backend: &str| {
        let mut args = vec!["--backend", backend];
        args.extend_from_slice(&prompt);
        segment_encoding(&args)
    };
    let (fused, candle) = (direct("fused"), direct("candle"));
    let mask = |json: &Value| {
        let m = &json["objects"][0]["masks"][0];
        let rle: Rle = serde_json::from_value(m["rle"].clone()).expect("rle");
        (
            m["score"].as_f64().expect("score"),
            BinaryMask::from_rle(&rle).expect("mask"),
        )
    };
    let ((sa, ma), (sb, mb)) = (mask(&fused), mask(&candle));
    eprintln!("fused vs candle: score {sa} vs {sb}, IoU {}", ma.iou(&mb));
    assert!((sa - sb).abs() < 1e-3, "{sa} vs {sb}");
    assert!(ma.iou(&mb) > 0.99, "IoU {}", ma.iou(&mb));

    let out = run(&[
        "segment",
        "--image",
        arg(image()),
        "--points",
        "[1, 2]",
        "--backend",
        "onnx",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && !stderr.contains("panicked"),
        "{stderr}"
    );
    assert!(stderr.contains("unknown backend `onnx`"), "{stderr}");
}

/// `segment --checkpoint` on a SAM ViT checkpoint (the reduced seeded fixture of
/// `tests/fixtures/sam/`): the family is read from the file, and the masks are the
/// reference's (segment-anything 1.0's `SamPredictor` on the same weights and photo).
#[test]
fn segment_runs_a_sam_vit_checkpoint_as_the_reference_does() {
    use std::io::Read;

    let fixtures = cli_support::workspace().join("tests/fixtures");
    let checkpoint = fixtures.join("sam/sam_vit_r_seed0.pth");
    let photo = fixtures.join("images/coffee.png");
    let out = success(&run(&[
        "segment",
        "--checkpoint",
        arg(&checkpoint),
        "--image",
        arg(&photo),
        "--points",
        "[290, 145]",
        "--labels",
        "[1]",
        "--multimask",
    ]));
    let json: Value = serde_json::from_str(&out).expect("stdout is JSON");
    assert_eq!(
        (json["width"].as_u64(), json["height"].as_u64()),
        (Some(600), Some(400))
    );
    let ours = json["objects"][0]["masks"].as_array().expect("masks");

    let file = std::fs::File::open(fixtures.join("sam/reference/coffee.json.gz")).expect("fixture");
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .expect("gzip");
    let reference: Value = serde_json::from_str(&text).expect("fixture parses");
    let case = &reference["cases"][0];
    assert_eq!(case["name"], "point_multimask");
    let theirs = case["objects"][0]["masks"]
        .as_array()
        .expect("reference masks");
    assert_eq!(ours.len(), 3);
    assert_eq!(ours.len(), theirs.len());
    for (a, b) in ours.iter().zip(theirs) {
        let mask = |v: &Value| {
            let rle: Rle = serde_json::from_value(v["rle"].clone()).expect("rle");
            BinaryMask::from_rle(&rle).expect("rle decodes")
        };
        let iou = mask(a).iou(&mask(b));
        assert!(iou >= 0.99, "IoU {iou}");
        let (sa, sb) = (
            a["score"].as_f64().expect("score"),
            b["score"].as_f64().expect("score"),
        );
        assert!((sa - sb).abs() <= 5e-3, "score {sa} vs reference {sb}");
    }
}
