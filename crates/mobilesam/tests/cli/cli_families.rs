//! Every model command with the reduced SAM 2.1 fixture (`tests/fixtures/sam2/`): `info`,
//! `segment` (masks of the library), `embed` and `segment --embedding` (the high-resolution
//! features round-trip), `generate`, `bench` and `annotate`; and the one-line errors for an
//! embedding file written with another checkpoint.

use crate::cli_support;

use std::path::{Path, PathBuf};

use candle_core::Device;
use cli_support::{arg, checkpoint, failure, image, run, success, temp_dir};
use mobilesam_model::{BoxPrompt, DecodeOptions, ObjectPrompt, Point, Sam};
use serde_json::Value;

/// The reduced seeded SAM 2.1 checkpoint (prompt width 64).
fn sam2() -> PathBuf {
    cli_support::workspace().join("tests/fixtures/sam2/sam2.1_hiera_r_seed0.pt")
}

/// The reduced seeded SAM ViT checkpoint (prompt width 64).
fn sam_vit() -> PathBuf {
    cli_support::workspace().join("tests/fixtures/sam/sam_vit_r_seed0.pth")
}

/// The prompts of the segment tests: two points of one object, and a box.
const PROMPT: [&str; 6] = [
    "--points",
    "[[[20, 20], [45, 35]], [[30, 25]]]",
    "--labels",
    "[[1, 0], [1]]",
    "--bboxes",
    "[[5, 5, 40, 30], [20, 10, 60, 45]]",
];

fn segment_with(model: &Path, extra: &[&str]) -> Value {
    let mut args = vec![
        "segment",
        "--checkpoint",
        arg(model),
        "--image",
        arg(image()),
        "--multimask",
    ];
    args.extend_from_slice(&PROMPT);
    args.extend_from_slice(extra);
    let out = success(&run(&args));
    serde_json::from_str(&out).expect("stdout is JSON")
}

fn embed(model: &Path, output: &Path) -> String {
    let out = run(&[
        "embed",
        "--checkpoint",
        arg(model),
        "--image",
        arg(image()),
        "--output",
        arg(output),
    ]);
    success(&out);
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn info_reports_sam2_and_memory_tracking() {
    let out = success(&run(&["info", "--checkpoint", arg(&sam2()), "--json"]));
    let json: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(json["family"], "sam2.1_hiera");
    assert_eq!(json["memory_tracking"], true);
    let table = success(&run(&["info", "--checkpoint", arg(&sam2())]));
    assert!(table.contains("\nfamily: sam2.1_hiera ("), "{table}");
    assert!(table.contains("\nmemory tracking: yes\n"), "{table}");
    assert!(table.contains("SAM 2.1 summary: "), "{table}");
    for model in [sam_vit(), checkpoint().to_path_buf()] {
        let out = success(&run(&["info", "--checkpoint", arg(&model), "--json"]));
        let json: Value = serde_json::from_str(&out).expect("JSON");
        assert_eq!(json["memory_tracking"], false, "{out}");
        let table = success(&run(&["info", "--checkpoint", arg(&model)]));
        assert!(table.contains("\nmemory tracking: no\n"), "{table}");
    }
}

#[test]
fn segment_gives_the_library_masks_with_sam2() {
    let json = segment_with(&sam2(), &[]);
    let sam = Sam::load(&sam2(), &Device::Cpu).expect("model");
    let picture = mobilesam_model::image::read_image(image(), u64::MAX).expect("image");
    let embedding = sam.embed(&picture).expect("embed");
    assert!(embedding.high_res().is_some());
    let point = |x, y, label| Point { x, y, label };
    let objects = [
        ObjectPrompt {
            points: vec![point(20.0, 20.0, 1), point(45.0, 35.0, 0)],
            bbox: Some(BoxPrompt {
                x1: 5.0,
                y1: 5.0,
                x2: 40.0,
                y2: 30.0,
            }),
            mask_input: None,
        },
        ObjectPrompt {
            points: vec![point(30.0, 25.0, 1)],
            bbox: Some(BoxPrompt {
                x1: 20.0,
                y1: 10.0,
                x2: 60.0,
                y2: 45.0,
            }),
            mask_input: None,
        },
    ];
    let options = DecodeOptions {
        multimask: true,
        ..Default::default()
    };
    let expected = sam.decode(&embedding, &objects, options).expect("decode");
    let got = json["objects"].as_array().expect("objects");
    assert_eq!(got.len(), 2);
    for (object, want) in got.iter().zip(&expected) {
        let masks = object["masks"].as_array().expect("masks");
        assert_eq!(masks.len(), 3);
        for (mask, want) in masks.iter().zip(&want.masks) {
            let score = mask["score"].as_f64().expect("score");
            assert!((score - f64::from(want.score)).abs() < 1e-6, "{score}");
            assert_eq!(mask["rle"]["counts"], want.rle.counts.as_str());
        }
    }
}

#[test]
fn a_sam2_embedding_round_trips_through_its_files() {
    let dir = temp_dir();
    let file = dir.path().join("sam2.npy");
    let note = embed(&sam2(), &file);
    assert!(note.contains("[1, 64, 64, 64]"), "{note}");
    let s0 = dir.path().join("sam2.high_res_s0.npy");
    let s1 = dir.path().join("sam2.high_res_s1.npy");
    assert!(s0.exists() && s1.exists(), "{note}");
    let encoded = segment_with(&sam2(), &[]);
    let reused = segment_with(&sam2(), &["--embedding", arg(&file)]);
    assert_eq!(encoded, reused, "masks from the saved embedding");

    // Without its high-resolution features the embedding is refused, not misused.
    std::fs::remove_file(&s1).expect("remove s1");
    let model = sam2();
    let mut args = vec![
        "segment",
        "--checkpoint",
        arg(&model),
        "--image",
        arg(image()),
        "--embedding",
        arg(&file),
    ];
    args.extend_from_slice(&PROMPT[..4]);
    failure(&run(&args), "sam2.high_res_s1.npy");
    std::fs::remove_file(&s0).expect("remove s0");
    failure(&run(&args), "no SAM 2 high-resolution features");
}

#[test]
fn an_embedding_of_another_checkpoint_is_a_one_line_error() {
    let dir = temp_dir();
    // MobileSAM's embedding (256 channels) with the 64-wide SAM 2.1 checkpoint.
    let mobile = dir.path().join("mobile.npy");
    embed(checkpoint(), &mobile);
    let segment = |model: &Path, file: &Path| {
        run(&[
            "segment",
            "--checkpoint",
            arg(model),
            "--image",
            arg(image()),
            "--points",
            "[20, 20]",
            "--embedding",
            arg(file),
        ])
    };
    let message = failure(&segment(&sam2(), &mobile), "has 256 channels");
    assert!(message.contains("sam2.1_hiera"), "{message}");
    // SAM 2.1's (64 channels and high-resolution features) with the 64-wide SAM ViT.
    let sam2_file = dir.path().join("sam2.npy");
    embed(&sam2(), &sam2_file);
    let message = failure(
        &segment(&sam_vit(), &sam2_file),
        "written with a SAM 2.1 checkpoint",
    );
    assert!(message.contains("sam_vit"), "{message}");
    // Embedding the same path with SAM ViT replaces the whole set of files.
    embed(&sam_vit(), &sam2_file);
    assert!(!dir.path().join("sam2.high_res_s0.npy").exists());
    success(&segment(&sam_vit(), &sam2_file));
}

#[test]
fn generate_and_bench_run_with_sam2() {
    let out = success(&run(&[
        "generate",
        "--checkpoint",
        arg(&sam2()),
        "--image",
        arg(image()),
        "--points-per-side",
        "4",
        "--pred-iou-thresh",
        "0",
        "--stability-score-thresh",
        "0",
    ]));
    let json: Value = serde_json::from_str(&out).expect("JSON");
    let masks = json["masks"].as_array().expect("masks");
    assert!(!masks.is_empty(), "{out}");
    assert_eq!(json["width"], cli_support::WIDTH);

    let out = success(&run(&[
        "bench",
        "--checkpoint",
        arg(&sam2()),
        "--image",
        arg(image()),
        "--runs",
        "1",
        "--warmup",
        "0",
        "--json",
    ]));
    let last = out.lines().last().expect("summary line");
    let summary: Value = serde_json::from_str(last).expect("JSON");
    assert!(summary["encoder_ms"].as_f64().expect("encoder_ms") > 0.0);
    assert!(summary["decoder_ms"].as_f64().expect("decoder_ms") > 0.0);
}

#[test]
fn annotate_runs_with_sam2() {
    let fixtures = cli_support::workspace().join("tests/fixtures/annotate");
    let tmp = temp_dir();
    let data = tmp.path().join("images");
    std::fs::create_dir(&data).expect("mkdir");
    for name in ["a.png", "b.png"] {
        std::fs::copy(fixtures.join("images").join(name), data.join(name)).expect("copy");
    }
    let out = run(&[
        "annotate",
        "--data",
        arg(&data),
        "--detections",
        arg(&fixtures.join("detections")),
        "--checkpoint",
        arg(&sam2()),
    ]);
    success(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("annotated 2 images"), "{stderr}");
    let labels = tmp.path().join("labels");
    for name in ["a.txt", "b.txt"] {
        assert!(labels.join(name).exists(), "{name}: {stderr}");
    }

    // With the seeded YOLO detector instead of detection files.
    let photos = tmp.path().join("photos");
    std::fs::create_dir(&photos).expect("mkdir");
    let coffee = cli_support::workspace().join("tests/fixtures/images/coffee.png");
    std::fs::copy(coffee, photos.join("coffee.png")).expect("copy");
    let out_dir = tmp.path().join("detected");
    let out = run(&[
        "annotate",
        "--data",
        arg(&photos),
        "--det-model",
        arg(&cli_support::workspace().join("tests/fixtures/yolo/yolo11n_w.pt")),
        "--checkpoint",
        arg(&sam2()),
        "--output-dir",
        arg(&out_dir),
    ]);
    success(&out);
    let text = std::fs::read_to_string(out_dir.join("coffee.txt")).expect("labels");
    assert!(
        text.lines().count() > 0,
        "the detector's boxes are labelled"
    );
}
