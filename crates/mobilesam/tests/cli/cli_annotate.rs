//! `mobilesam annotate` on the small dataset of `tests/fixtures/annotate` (two PNGs, one
//! unreadable file, YOLO and COCO detections) with seeded weights: labels parse back, the
//! filtering follows Ultralytics, runs resume, and the polygons are those of the masks.
//!
//! The seeded weights give meaningless masks (scattered dots, many regions), so the
//! polygon check recomputes each box's mask with the library and compares the labels with
//! what Ultralytics makes of that mask: YOLO lines hold `masks2segments` (every region's
//! OpenCV contour, joined), COCO annotations every region's contour as its own polygon
//! (`mobilesam_model::masks::contours`, whose parity with OpenCV and Ultralytics the model
//! crate's `mask_contours` test proves on a fixture made by `ultralytics`).

use crate::cli_support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use candle_core::Device;
use cli_support::{arg, checkpoint, failure, run, seeded_checkpoint, success, temp_dir};
use mobilesam_model::masks::contours;
use mobilesam_model::masks::polygon::Vertex;
use mobilesam_model::masks::BinaryMask;
use mobilesam_model::{BoxPrompt, DecodeOptions, Embedding, ObjectPrompt, Sam};
use serde_json::Value;

fn fixtures() -> PathBuf {
    cli_support::workspace().join("tests/fixtures/annotate")
}

/// One image's expectations, see [`expected`].
type Expected = (&'static str, u32, u32, Vec<(i64, [f64; 4])>);

/// (file, width, height, YOLO detection lines kept with the defaults, most confident first:
/// (class, cx, cy, w, h)). The rest of the fixture lines are filtered out (NMS, conf).
fn expected() -> Vec<Expected> {
    vec![
        (
            "a.png",
            64,
            48,
            vec![
                (0, [0.28125, 0.375, 0.1875, 0.25]),
                (0, [0.53125, 0.4375, 0.3125, 0.625]),
                (2, [0.71875, 0.458333, 0.3125, 0.416667]),
                (3, [0.4375, 0.458333, 0.4375, 0.5]),
            ],
        ),
        (
            "b.png",
            48,
            64,
            vec![
                (1, [0.333333, 0.4375, 0.416667, 0.3125]),
                (2, [0.5, 0.1875, 0.25, 0.1875]),
            ],
        ),
    ]
}

/// The seeded model and the embeddings of the two fixture images, computed once.
fn model() -> &'static Mutex<(Sam, HashMap<String, Embedding>)> {
    static MODEL: OnceLock<Mutex<(Sam, HashMap<String, Embedding>)>> = OnceLock::new();
    MODEL.get_or_init(|| {
        let sam = Sam::from_checkpoint(&seeded_checkpoint(), &Device::Cpu).expect("model");
        let mut embeddings = HashMap::new();
        for (name, ..) in expected() {
            let path = fixtures().join("images").join(name);
            let image = mobilesam_model::image::read_image(&path, u64::MAX).expect("image");
            embeddings.insert(name.to_string(), sam.embed(&image).expect("embed"));
        }
        Mutex::new((sam, embeddings))
    })
}

/// The (class, mask) of each `(class, [x1, y1, x2, y2])` box of image `name`, computed
/// with the library; empty masks are left out, as the command leaves them out.
fn masks_for(name: &str, boxes: &[(i64, [f32; 4])]) -> Vec<(i64, BinaryMask)> {
    let guard = model().lock().unwrap();
    let (sam, embeddings) = &*guard;
    let prompts: Vec<ObjectPrompt> = boxes
        .iter()
        .map(|(_, [x1, y1, x2, y2])| ObjectPrompt {
            bbox: Some(BoxPrompt {
                x1: *x1,
                y1: *y1,
                x2: *x2,
                y2: *y2,
            }),
            ..ObjectPrompt::default()
        })
        .collect();
    let options = DecodeOptions {
        multimask: false,
        return_low_res_logits: false,
        return_polygons: false,
    };
    let decoded = sam
        .decode(&embeddings[name], &prompts, options)
        .expect("decode");
    boxes
        .iter()
        .zip(decoded)
        .map(|((class, _), o)| (*class, BinaryMask::from_rle(&o.masks[0].rle).unwrap()))
        .filter(|(_, m)| contours::mask_segments(&m.data, m.height, m.width).len() >= 3)
        .collect()
}

/// The reference masks of the YOLO detections kept with the defaults.
fn yolo_reference(name: &str) -> Vec<(i64, BinaryMask)> {
    let (_, width, height, dets) = expected().into_iter().find(|e| e.0 == name).unwrap();
    let (w, h) = (f64::from(width), f64::from(height));
    let boxes: Vec<(i64, [f32; 4])> = dets
        .iter()
        .map(|(class, [cx, cy, bw, bh])| {
            let b = [
                (cx - bw / 2.0) * w,
                (cy - bh / 2.0) * h,
                (cx + bw / 2.0) * w,
                (cy + bh / 2.0) * h,
            ];
            (*class, b.map(|v| v as f32))
        })
        .collect();
    masks_for(name, &boxes)
}

/// A copy of the fixture images in a fresh directory: `<tmp>/data`.
fn copy_images(tmp: &Path) -> PathBuf {
    let data = tmp.join("data");
    std::fs::create_dir_all(&data).unwrap();
    for entry in std::fs::read_dir(fixtures().join("images")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, data.join(path.file_name().unwrap())).unwrap();
    }
    data
}

/// Parses YOLO segmentation labels: (class, polygon in pixels) per line.
fn parse_labels(text: &str, width: u32, height: u32) -> Vec<(i64, Vec<Vertex>)> {
    text.lines()
        .map(|line| {
            let mut fields = line.split(' ');
            let class: i64 = fields.next().unwrap().parse().expect("class");
            let coords: Vec<f64> = fields.map(|v| v.parse().expect("coordinate")).collect();
            assert!(
                coords.len() >= 6 && coords.len().is_multiple_of(2),
                "{line}"
            );
            assert!(coords.iter().all(|v| (0.0..=1.0).contains(v)), "{line}");
            let polygon = coords
                .chunks(2)
                .map(|p| [p[0] * f64::from(width), p[1] * f64::from(height)])
                .collect();
            (class, polygon)
        })
        .collect()
}

/// The mask's contour points as Ultralytics writes them: every region joined (YOLO) or
/// each region with three points or more (COCO).
fn mask_polygons(mask: &BinaryMask, joined: bool) -> Vec<Vec<Vertex>> {
    if joined {
        vec![contours::mask_segments(&mask.data, mask.height, mask.width)]
    } else {
        let regions: Vec<Vec<Vertex>> =
            contours::external_contours(&mask.data, mask.height, mask.width)
                .into_iter()
                .filter(|r| r.len() >= 3)
                .collect();
        if regions.is_empty() {
            mask_polygons(mask, true)
        } else {
            regions
        }
    }
}

/// Each object's polygons against those of its reference mask, within `tolerance` pixels.
fn check_polygons(
    name: &str,
    objects: &[(i64, Vec<Vec<Vertex>>)],
    reference: &[(i64, BinaryMask)],
    joined: bool,
    tolerance: f64,
) {
    assert_eq!(objects.len(), reference.len(), "{name}: objects");
    for (i, ((class, polys), (ref_class, mask))) in objects.iter().zip(reference).enumerate() {
        assert_eq!(class, ref_class, "{name} object {i}: class");
        let want = mask_polygons(mask, joined);
        eprintln!(
            "{name} object {i}: {} polygon(s), {} points, mask area {}",
            polys.len(),
            polys.iter().map(Vec::len).sum::<usize>(),
            mask.area()
        );
        assert_eq!(polys.len(), want.len(), "{name} object {i}: polygons");
        for (got, want) in polys.iter().zip(&want) {
            assert_eq!(got.len(), want.len(), "{name} object {i}: points");
            for (g, w) in got.iter().zip(want) {
                assert!(
                    (g[0] - w[0]).abs() <= tolerance && (g[1] - w[1]).abs() <= tolerance,
                    "{name} object {i}: {g:?} vs {w:?}"
                );
            }
        }
    }
}

/// YOLO label lines as one joined polygon each.
fn joined(objects: Vec<(i64, Vec<Vertex>)>) -> Vec<(i64, Vec<Vec<Vertex>>)> {
    objects.into_iter().map(|(c, p)| (c, vec![p])).collect()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn yolo_labels_parse_back_match_masks_and_resume() {
    let tmp = temp_dir();
    let data = copy_images(tmp.path());
    let detections = fixtures().join("detections");
    let args = [
        "annotate",
        "--data",
        arg(&data),
        "--detections",
        arg(&detections),
        "--checkpoint",
        arg(checkpoint()),
    ];
    let out = run(&args);
    success(&out);
    let err = stderr(&out);
    assert!(
        err.contains("warning: skipping") && err.contains("broken.jpg"),
        "{err}"
    );
    assert!(
        err.contains("annotated 2 images, 5 objects; skipped 0 already labelled, 1 unreadable"),
        "{err}"
    );
    // Default output: `labels` beside the data folder; one file per readable image.
    let labels = tmp.path().join("labels");
    let mut files: Vec<String> = std::fs::read_dir(&labels)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files, ["a.txt", "b.txt"]);
    for (name, width, height, _) in expected() {
        let text = std::fs::read_to_string(labels.join(name.replace(".png", ".txt"))).unwrap();
        let objects = joined(parse_labels(&text, width, height));
        check_polygons(name, &objects, &yolo_reference(name), true, 64.0 * 1e-6);
    }
    let a_classes: Vec<i64> = parse_labels(
        &std::fs::read_to_string(labels.join("a.txt")).unwrap(),
        64,
        48,
    )
    .iter()
    .map(|o| o.0)
    .collect();
    assert_eq!(
        a_classes,
        [0, 0, 2],
        "NMS drops the duplicate, conf the weak box"
    );

    // Resume: labelled images are skipped, their files left alone.
    std::fs::write(labels.join("a.txt"), "sentinel\n").unwrap();
    let out = run(&args);
    success(&out);
    assert!(
        stderr(&out)
            .contains("annotated 0 images, 0 objects; skipped 2 already labelled, 1 unreadable"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(labels.join("a.txt")).unwrap(),
        "sentinel\n"
    );
    // --overwrite labels them again (and --workers 2 gives the same labels).
    let mut again = args.to_vec();
    again.extend(["--overwrite", "--workers", "2"]);
    let out = run(&again);
    success(&out);
    assert!(
        stderr(&out).contains("annotated 2 images, 5 objects"),
        "{}",
        stderr(&out)
    );
    let text = std::fs::read_to_string(labels.join("a.txt")).unwrap();
    check_polygons(
        "a.png",
        &joined(parse_labels(&text, 64, 48)),
        &yolo_reference("a.png"),
        true,
        64.0 * 1e-6,
    );
}

#[test]
fn coco_output_from_coco_detections_with_class_filter() {
    let tmp = temp_dir();
    let out_dir = tmp.path().join("out");
    let (images_dir, coco_json) = (
        fixtures().join("images"),
        fixtures().join("detections.json"),
    );
    let args = [
        "annotate",
        "--data",
        arg(&images_dir),
        "--detections",
        arg(&coco_json),
        "--checkpoint",
        arg(checkpoint()),
        "--format",
        "coco",
        "--classes",
        "0,2",
        "--output-dir",
        arg(&out_dir),
    ];
    let out = run(&args);
    success(&out);
    assert!(
        stderr(&out)
            .contains("annotated 2 images, 4 objects; skipped 0 already labelled, 1 unreadable"),
        "{}",
        stderr(&out)
    );
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("annotations.json")).unwrap())
            .unwrap();
    let images = doc["images"].as_array().unwrap();
    let names: Vec<&str> = images
        .iter()
        .map(|im| im["file_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a.png", "b.png"]);
    assert_eq!(images[1]["width"], 48);
    assert_eq!(images[1]["height"], 64);
    let categories: Vec<i64> = doc["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect();
    assert_eq!(categories, [0, 2]);
    for (image, name) in images.iter().zip(["a.png", "b.png"]) {
        let objects: Vec<(i64, Vec<Vec<Vertex>>)> = doc["annotations"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["image_id"] == image["id"])
            .map(|a| {
                assert_eq!(a["iscrowd"], 0);
                assert!(a["score"].as_f64().unwrap() > 0.25);
                assert_eq!(a["bbox"].as_array().unwrap().len(), 4);
                assert!(a["area"].as_u64().unwrap() > 0);
                let polys = a["segmentation"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|seg| {
                        seg.as_array()
                            .unwrap()
                            .chunks(2)
                            .map(|p| [p[0].as_f64().unwrap(), p[1].as_f64().unwrap()])
                            .collect()
                    })
                    .collect();
                (a["category_id"].as_i64().unwrap(), polys)
            })
            .collect();
        // The class filter keeps classes 0 and 2, most confident first (COCO pixel boxes).
        let boxes: &[(i64, [f32; 4])] = match name {
            "a.png" => &[
                (0, [12.0, 12.0, 24.0, 24.0]),
                (0, [24.0, 6.0, 44.0, 36.0]),
                (2, [36.0, 12.0, 56.0, 32.0]),
            ],
            _ => &[(2, [18.0, 6.0, 30.0, 18.0])],
        };
        check_polygons(name, &objects, &masks_for(name, boxes), false, 0.0);
    }
    // Resume: both images are in the document already.
    let out = run(&args);
    success(&out);
    assert!(
        stderr(&out).contains("annotated 0 images, 0 objects; skipped 2 already labelled"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_arguments_fail_in_one_line() {
    let tmp = temp_dir();
    let missing = tmp.path().join("missing");
    let detections = fixtures().join("detections");
    let base = ["annotate", "--checkpoint", arg(checkpoint())];
    let mut args = base.to_vec();
    args.extend(["--data", arg(&missing), "--detections", arg(&detections)]);
    failure(&run(&args), "is not a directory");
    let mut args = base.to_vec();
    args.extend(["--data", arg(tmp.path()), "--detections", arg(&missing)]);
    failure(&run(&args), "cannot read detections");
    let mut args = base.to_vec();
    args.extend([
        "--data",
        arg(tmp.path()),
        "--detections",
        arg(&detections),
        "--conf",
        "2",
    ]);
    failure(&run(&args), "--conf must be in [0, 1]");
}
