//! `mobilesam detect` and `mobilesam annotate --det-model` with the seeded Ultralytics
//! checkpoints of `tests/fixtures/yolo` (whose parity with `YOLO.predict` the detector
//! crate's `yolo_parity` test proves): the JSON output, the one-command annotate equal to
//! detect -> detections file -> `annotate --detections`, COCO categories named from the
//! checkpoint, and clear one-line errors for bad checkpoints.

use crate::cli_support;

use std::path::{Path, PathBuf};

use cli_support::{arg, checkpoint, failure, run, success, temp_dir, workspace};
use serde_json::Value;

fn det_model() -> PathBuf {
    workspace().join("tests/fixtures/yolo/yolo11n_w.pt")
}

fn photo(name: &str) -> PathBuf {
    workspace().join("tests/fixtures/images").join(name)
}

/// Two photos of different aspect ratios in a fresh data folder.
fn data_dir(tmp: &Path) -> PathBuf {
    let data = tmp.join("data");
    std::fs::create_dir_all(&data).unwrap();
    for name in ["chelsea.png", "coffee.png"] {
        std::fs::copy(photo(name), data.join(name)).unwrap();
    }
    data
}

#[test]
fn detect_prints_boxes_with_names_as_predict_does() {
    let out = run(&[
        "detect",
        "--det-model",
        arg(&det_model()),
        "--image",
        arg(&photo("coffee.png")),
    ]);
    let doc: Value = serde_json::from_str(&success(&out)).expect("JSON");
    assert_eq!(doc["width"], 600);
    assert_eq!(doc["height"], 400);
    let detections = doc["detections"].as_array().unwrap();
    // The fixture's YOLO(...).predict count at the defaults (conf 0.25, iou 0.7).
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(workspace().join("tests/fixtures/yolo/expected.json")).unwrap(),
    )
    .unwrap();
    let want = &expected["models"]["yolo11n_w.pt"]["results"]["coffee.png"][0];
    assert_eq!(detections.len(), want.as_array().unwrap().len());
    assert!(!detections.is_empty());
    for d in detections {
        let b: Vec<f64> = d["box"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert!(
            b[0] <= b[2] && b[1] <= b[3] && b[2] <= 600.0 && b[3] <= 400.0,
            "{d}"
        );
        assert!(d["confidence"].as_f64().unwrap() > 0.25);
        assert!(!d["name"].as_str().unwrap().is_empty());
        assert!(d["class"].as_u64().unwrap() < 20);
    }
}

#[test]
fn annotate_with_det_model_equals_detect_then_annotate() {
    let tmp = temp_dir();
    let data = data_dir(tmp.path());
    let one = tmp.path().join("one");
    let out = run(&[
        "annotate",
        "--data",
        arg(&data),
        "--det-model",
        arg(&det_model()),
        "--checkpoint",
        arg(checkpoint()),
        "--output-dir",
        arg(&one),
    ]);
    success(&out);

    // Two steps: detections as a COCO file (auto_annotate's iou 0.45), then annotate.
    let out = run(&[
        "detect",
        "--det-model",
        arg(&det_model()),
        "--iou",
        "0.45",
        "--coco",
        "--image",
        arg(&data.join("chelsea.png")),
        arg(&data.join("coffee.png")),
    ]);
    let detections = tmp.path().join("detections.json");
    std::fs::write(&detections, success(&out)).unwrap();
    let two = tmp.path().join("two");
    let out = run(&[
        "annotate",
        "--data",
        arg(&data),
        "--detections",
        arg(&detections),
        "--checkpoint",
        arg(checkpoint()),
        "--output-dir",
        arg(&two),
    ]);
    success(&out);
    let mut lines = 0;
    for name in ["chelsea.txt", "coffee.txt"] {
        let a = std::fs::read_to_string(one.join(name)).unwrap();
        let b = std::fs::read_to_string(two.join(name)).unwrap();
        assert_eq!(a, b, "{name}");
        lines += a.lines().count();
    }
    assert!(lines > 0, "the detector found objects to label");

    // COCO: categories named from the checkpoint, every region its own polygon.
    let coco = tmp.path().join("coco");
    let out = run(&[
        "annotate",
        "--data",
        arg(&data),
        "--det-model",
        arg(&det_model()),
        "--checkpoint",
        arg(checkpoint()),
        "--format",
        "coco",
        "--output-dir",
        arg(&coco),
    ]);
    success(&out);
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(coco.join("annotations.json")).unwrap())
            .unwrap();
    let names = [
        "person",
        "bicycle",
        "car",
        "motorcycle",
        "airplane",
        "bus",
        "train",
        "truck",
        "boat",
        "traffic light",
        "fire hydrant",
        "stop sign",
        "parking meter",
        "bench",
        "bird",
        "cat",
        "dog",
        "horse",
        "sheep",
        "cow",
    ];
    for c in doc["categories"].as_array().unwrap() {
        assert_eq!(c["name"], names[c["id"].as_u64().unwrap() as usize]);
    }
    let annotations = doc["annotations"].as_array().unwrap();
    assert_eq!(annotations.len(), lines);
    for a in annotations {
        for polygon in a["segmentation"].as_array().unwrap() {
            assert!(polygon.as_array().unwrap().len() >= 6, "{a}");
        }
    }
}

#[test]
fn bad_detector_checkpoints_fail_in_one_line() {
    let tmp = temp_dir();
    let garbage = tmp.path().join("garbage.pt");
    std::fs::write(&garbage, b"not a checkpoint").unwrap();
    let image = photo("chelsea.png");
    failure(
        &run(&[
            "detect",
            "--det-model",
            arg(&garbage),
            "--image",
            arg(&image),
        ]),
        "not an Ultralytics .pt checkpoint",
    );
    // A MobileSAM-style plain state_dict has no model object.
    let state_dict = workspace().join("tests/fixtures/torch_save_small.pt");
    failure(
        &run(&[
            "detect",
            "--det-model",
            arg(&state_dict),
            "--image",
            arg(&image),
        ]),
        "no `model` entry",
    );
    failure(
        &run(&[
            "detect",
            "--det-model",
            arg(&det_model()),
            "--image",
            arg(&image),
            "--conf",
            "1.5",
        ]),
        "--conf must be in [0, 1]",
    );
    failure(
        &run(&[
            "annotate",
            "--data",
            arg(tmp.path()),
            "--det-model",
            arg(&garbage),
            "--checkpoint",
            arg(checkpoint()),
        ]),
        "cannot load the detector",
    );
}
