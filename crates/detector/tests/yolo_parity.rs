//! The YOLO detector against Ultralytics (`tests/fixtures/yolo`, made by
//! `make_yolo_fixtures.py` with the `ultralytics` package): seeded YOLOv8n, YOLO11n and
//! YOLO11m (C3k blocks) checkpoints saved by Ultralytics' own `model.save`, run on four
//! photos of different aspect ratios at two conf/iou settings and with a `classes`
//! filter. Same boxes in the same order with the same classes, coordinates within 0.5 px,
//! confidences within 1e-3. Also: the letterbox resize equals OpenCV's byte for byte.
//! (The mask contours of the same fixtures are the model crate's, `tests/mask_contours.rs`.)

// Fixture paths, as the checkpoint crate's tests have them.
#[path = "../../checkpoint/tests/common/mod.rs"]
mod common;

use candle_core::Device;
use mobilesam_detector::checkpoint::read_model_pickle;
use mobilesam_detector::letterbox::resize_linear_u8;
use mobilesam_detector::{DetectOptions, Detector};
use mobilesam_model::image::read_image;
use serde_json::Value;
use sha2::{Digest, Sha256};

fn yolo_dir() -> std::path::PathBuf {
    common::fixtures().join("yolo")
}

fn json(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(yolo_dir().join(name)).expect("fixture"))
        .expect("fixture parses")
}

fn options(setting: &Value) -> DetectOptions {
    DetectOptions {
        conf: setting["conf"].as_f64().expect("conf") as f32,
        iou: setting["iou"].as_f64().expect("iou") as f32,
        imgsz: 640,
        max_det: 300,
        classes: setting["classes"].as_array().map(|c| {
            c.iter()
                .map(|v| v.as_u64().expect("class") as usize)
                .collect()
        }),
    }
}

#[test]
fn detections_match_ultralytics_predict() {
    let expected = json("expected.json");
    let mut worst = (0f32, 0f32);
    let mut compared = 0;
    for (file, model) in expected["models"].as_object().expect("models") {
        let detector =
            Detector::load(&yolo_dir().join(file), &Device::Cpu).expect("checkpoint loads");
        assert!(
            detector.uses_cpu_kernels(),
            "{file}: every layer has a CPU kernel"
        );
        assert_eq!(detector.names().len(), 20);
        assert_eq!(detector.names()[0], "person");
        let settings = model["settings"].as_array().expect("settings");
        for (image_name, per_setting) in model["results"].as_object().expect("results") {
            let image = read_image(
                &common::fixtures().join("images").join(image_name),
                u64::MAX,
            )
            .expect("image");
            for (setting, want) in settings.iter().zip(per_setting.as_array().expect("rows")) {
                let got = detector.detect(&image, &options(setting)).expect("detects");
                let want = want.as_array().expect("boxes");
                let label = format!("{file} {image_name} {setting}");
                assert_eq!(got.len(), want.len(), "{label}: box count");
                for (g, w) in got.iter().zip(want) {
                    let w: Vec<f64> = w
                        .as_array()
                        .expect("row")
                        .iter()
                        .map(|v| v.as_f64().expect("number"))
                        .collect();
                    assert_eq!(g.class, w[5] as usize, "{label}: class");
                    for k in 0..4 {
                        let d = (g.bbox[k] - w[k] as f32).abs();
                        worst.0 = worst.0.max(d);
                        assert!(d <= 0.5, "{label}: coordinate {k}: {:?} vs {w:?}", g.bbox);
                    }
                    let d = (g.confidence - w[4] as f32).abs();
                    worst.1 = worst.1.max(d);
                    assert!(
                        d <= 1e-3,
                        "{label}: confidence {} vs {}",
                        g.confidence,
                        w[4]
                    );
                    compared += 1;
                }
            }
        }
    }
    eprintln!(
        "{compared} boxes compared; worst coordinate error {:.4} px, worst confidence error {:.2e}",
        worst.0, worst.1
    );
    assert!(compared > 100, "the fixtures hold real detections");
}

/// The candle path (what GPUs run) against the same reference, on one model and image;
/// the test above runs the CPU kernels.
#[test]
fn candle_path_matches_too() {
    let expected = json("expected.json");
    let model = &expected["models"]["yolo11n_w.pt"];
    let detector = Detector::load(&yolo_dir().join("yolo11n_w.pt"), &Device::Cpu)
        .expect("checkpoint loads")
        .without_cpu_kernels();
    assert!(!detector.uses_cpu_kernels());
    let image =
        read_image(&common::fixtures().join("images/chelsea.png"), u64::MAX).expect("image");
    let want = model["results"]["chelsea.png"][0]
        .as_array()
        .expect("boxes");
    let got = detector
        .detect(&image, &options(&model["settings"][0]))
        .expect("detects");
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.class, w[5].as_u64().expect("class") as usize);
        assert!((g.confidence - w[4].as_f64().expect("conf") as f32).abs() <= 1e-3);
        for k in 0..4 {
            assert!((g.bbox[k] - w[k].as_f64().expect("coordinate") as f32).abs() <= 0.5);
        }
    }
}

#[test]
fn letterbox_resize_equals_opencv() {
    for row in json("resize.json").as_array().expect("rows") {
        let name = row["image"].as_str().expect("image");
        let image =
            read_image(&common::fixtures().join("images").join(name), u64::MAX).expect("image");
        let size: Vec<usize> = row["size"]
            .as_array()
            .expect("size")
            .iter()
            .map(|v| v.as_u64().expect("dim") as usize)
            .collect();
        let out = resize_linear_u8(
            image.as_raw(),
            image.width() as usize,
            image.height() as usize,
            size[0],
            size[1],
        );
        let hash = format!("{:x}", Sha256::digest(&out));
        assert_eq!(
            hash,
            row["sha256"].as_str().expect("hash"),
            "{name} to {size:?}"
        );
    }
}

#[test]
fn hostile_checkpoints_are_errors() {
    let good = std::fs::read(yolo_dir().join("yolov8n_w.pt")).expect("fixture");
    // Not a zip, a truncated zip, a SAM state_dict.
    for (bytes, what) in [
        (b"garbage".to_vec(), "not an Ultralytics"),
        (good[..good.len() / 2].to_vec(), ""),
        (
            std::fs::read(common::fixtures().join("torch_save_small.pt")).expect("fixture"),
            "no `model` entry",
        ),
    ] {
        let err = Detector::from_bytes(&bytes, "x.pt", &Device::Cpu)
            .expect_err("refused")
            .to_string();
        assert!(err.contains(what), "{err}");
    }
    // The pickle itself, mutated: every result is an error or a model, never a panic.
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(&good[..])).expect("zip");
    // torch.save names the archive after the file.
    let name = "yolov8n_w/data.pkl";
    let mut pickle = Vec::new();
    std::io::Read::read_to_end(&mut zip.by_name(name).expect("entry"), &mut pickle).expect("read");
    let parsed = read_model_pickle(&pickle).expect("the fixture's pickle parses");
    assert_eq!(parsed.model.class, "DetectionModel");
    assert_eq!(parsed.layers.len(), 23, "YOLOv8: 22 layers and the head");
    let mut refused = 0;
    for i in (0..pickle.len()).step_by(97) {
        let mut bad = pickle.clone();
        bad[i] ^= 0x5a;
        refused += usize::from(read_model_pickle(&bad).is_err());
        let _ = read_model_pickle(&pickle[..i]);
    }
    assert!(refused > 0);
}

#[test]
fn a_head_that_disagrees_with_its_class_count_is_an_error() {
    // The fixture's Detect module says `nc` 20 (`X\x02\x00\x00\x00nc`, a memo, `K\x14`);
    // 21 no longer matches its class branches' 20 output channels.
    let good = std::fs::read(yolo_dir().join("yolov8n_w.pt")).expect("fixture");
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(&good[..])).expect("zip");
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).expect("entry");
        let name = entry.name().expect("entry name").to_string();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).expect("read");
        if name.ends_with("data.pkl") {
            let key = b"X\x02\x00\x00\x00nc";
            let at = bytes
                .windows(key.len())
                .position(|w| w == key)
                .expect("the Detect module's nc");
            // The key, a 5-byte memo put (`r` and a 4-byte index), then `K` and the value.
            let value = at + key.len() + 6;
            assert_eq!(&bytes[value - 1..=value], b"K\x14", "nc 20 where expected");
            bytes[value] = 21;
        }
        out.start_file(name, stored).expect("entry");
        std::io::Write::write_all(&mut out, &bytes).expect("write");
    }
    let bytes = out.finish().expect("zip").into_inner();
    let err = Detector::from_bytes(&bytes, "x.pt", &Device::Cpu)
        .and_then(|detector| {
            let image = read_image(&common::fixtures().join("images/coffee.png"), u64::MAX)?;
            detector.detect(&image, &DetectOptions::default())
        })
        .expect_err("refused")
        .to_string();
    assert!(err.contains("class channels"), "{err}");
}
