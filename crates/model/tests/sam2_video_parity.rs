//! Numerical parity of the video tracker ([`mobilesam_model::video`]) with sam2 1.1.0's
//! `SAM2VideoPredictor` on the reduced seeded SAM 2.1 (`tests/fixtures/sam2/video/`, see its
//! README): every scenario's reference call sequence is replayed through
//! `ObjectTracker::add_prompt` / `track_in`, and each (frame, object) is compared: mask IoU
//! at video resolution, object-score logit, a 32x32 sample of the low-resolution logits.
//! The per-frame figures are printed (`cargo test --release --test sam2_video_parity --
//! --nocapture`). The full-size seeded Hiera-T against `fixtures/sam2/video/fullsize/`
//! (three scenarios, made by the fixture script's `--full-size`) is an ignored test:
//! `-- --ignored full_size`.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;

use candle_core::{Device, Tensor};
use mobilesam_checkpoint::Checkpoint;
use mobilesam_model::image::read_image;
use mobilesam_model::masks::{upscale_stretched_logits, BinaryMask, Rle};
use mobilesam_model::video::{Direction, FrameResult, ObjectTracker, VideoModel};
use mobilesam_model::{BoxPrompt, Embedding, ObjectPrompt, Point, Sam};
use serde::Deserialize;

const SIDE: usize = 1024;
/// Per-frame mask IoU the tracker must reach.
const MIN_IOU: f64 = 0.99;
/// Largest object-score difference allowed (logits are 10x the seeded head's; see README).
const MAX_SCORE_DIFF: f32 = 1e-3;
/// Largest difference of a sampled low-resolution logit.
const MAX_LOW_RES_DIFF: f32 = 1e-3;

#[derive(Deserialize)]
struct Reference {
    object_score_head: ScoreHead,
    clip: Clip,
    frame_checks: Vec<FrameCheck>,
    debug: Vec<DebugEntry>,
    scenarios: Vec<Scenario>,
    masks: Vec<MaskRecord>,
}

#[derive(Deserialize)]
struct ScoreHead {
    tensors: [String; 2],
    scale: f32,
    shift: f32,
}

#[derive(Deserialize)]
struct Clip {
    source: String,
    scale: usize,
    num_frames: usize,
    occluded_frame: usize,
}

#[derive(Deserialize)]
struct FrameCheck {
    frame: usize,
    byte_sum: u64,
    input_sub64: Vec<f32>,
}

#[derive(Deserialize)]
struct DebugEntry {
    name: String,
    shape: Vec<usize>,
}

#[derive(Deserialize)]
struct Scenario {
    name: String,
    steps: Vec<Step>,
}

#[derive(Deserialize)]
struct Step {
    call: String,
    frame: Option<usize>,
    obj_id: Option<u32>,
    points: Option<Vec<[f32; 2]>>,
    labels: Option<Vec<i32>>,
    #[serde(rename = "box")]
    bbox: Option<[f32; 4]>,
    result: Option<FrameRecord>,
    reverse: Option<bool>,
    frames: Option<Vec<FrameRecord>>,
}

#[derive(Deserialize)]
struct FrameRecord {
    frame: usize,
    objects: Vec<ObjectRecord>,
}

#[derive(Deserialize)]
struct ObjectRecord {
    obj_id: u32,
    #[serde(default)]
    absent: bool,
    object_score_logit: Option<f32>,
    low_res_index: Option<usize>,
    mask_index: Option<usize>,
}

#[derive(Deserialize)]
struct MaskRecord {
    rle: Rle,
}

fn video_dir() -> std::path::PathBuf {
    common::fixtures().join("sam2/video")
}

fn reference(dir: &std::path::Path) -> Reference {
    let mut text = String::new();
    flate2::read::GzDecoder::new(
        std::fs::File::open(dir.join("reference.json.gz")).expect("fixture"),
    )
    .read_to_string(&mut text)
    .expect("gzip");
    serde_json::from_str(&text).expect("fixture parses")
}

/// `ckpt` with the object-score head's last layer rescaled as the fixture script does:
/// weight x scale, (bias + shift) x scale.
fn rescaled(ckpt: &Checkpoint, head: &ScoreHead) -> Checkpoint {
    let mut tensors = std::collections::HashMap::new();
    for name in ckpt.names() {
        let shape = ckpt.shape(name).expect("shape").to_vec();
        let mut t: Tensor = ckpt.get(name, &shape).expect("tensor");
        if name == head.tensors[0] {
            t = (t * f64::from(head.scale)).expect("scale");
        } else if name == head.tensors[1] {
            t = ((t + f64::from(head.shift)).expect("shift") * f64::from(head.scale))
                .expect("scale");
        }
        tensors.insert(name.to_string(), t);
    }
    Checkpoint::from_tensors(tensors)
}

/// The clip's frame `t`, by the fixture's rule: the source photo upscaled by pixel
/// repetition, cropped at (300 + 8t, 60 + 5t); the occluded frame inverted.
fn frame(clip: &Clip, src: &image::RgbImage, t: usize) -> image::RgbImage {
    let (x0, y0) = (300 + 8 * t as u32, 60 + 5 * t as u32);
    let s = clip.scale as u32;
    image::RgbImage::from_fn(SIDE as u32, SIDE as u32, |x, y| {
        let mut p = *src.get_pixel((x + x0) / s, (y + y0) / s);
        if t == clip.occluded_frame {
            for c in &mut p.0 {
                *c = 255 - *c;
            }
        }
        p
    })
}

fn mask_of(logits: &[f32]) -> BinaryMask {
    let up = upscale_stretched_logits(logits, (SIDE, SIDE)).expect("upscale");
    BinaryMask::from_logits(&up, SIDE, SIDE)
}

fn sub8(logits: &[f32]) -> Vec<f32> {
    (0..32)
        .flat_map(|r| (0..32).map(move |c| logits[r * 8 * 256 + c * 8]))
        .collect()
}

struct Checker<'a> {
    reference: &'a Reference,
    lows: Vec<f32>,
    worst_iou: f64,
    worst_score: f32,
    worst_low_res: f32,
    lines: Vec<String>,
}

impl Checker<'_> {
    fn check(&mut self, scenario: &str, call: &str, ours: &FrameResult, rec: &ObjectRecord) {
        let reference_score = rec.object_score_logit.expect("score");
        let expected =
            BinaryMask::from_rle(&self.reference.masks[rec.mask_index.expect("mask")].rle)
                .expect("rle");
        let mask = mask_of(&ours.low_res_logits);
        let iou = mask.iou(&expected);
        let k = rec.low_res_index.expect("low res");
        let want = &self.lows[k * 1024..(k + 1) * 1024];
        let got = sub8(&ours.low_res_logits);
        let low_diff = got
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        let score_diff = (ours.object_score_logit - reference_score).abs();
        self.worst_iou = self.worst_iou.min(iou);
        self.worst_score = self.worst_score.max(score_diff);
        self.worst_low_res = self.worst_low_res.max(low_diff);
        self.lines.push(format!(
            "{scenario:22} {call:9} frame {:2} obj {} iou {iou:.5} score {:8.4} (ref {:8.4}) low-res max|d| {low_diff:.2e} area {}",
            ours.frame, rec.obj_id, ours.object_score_logit, reference_score, mask.area()
        ));
    }
}

struct Clipped {
    embeddings: Vec<Embedding>,
}

fn embed_clip(sam: &Sam, reference: &Reference) -> Clipped {
    let src = read_image(&common::fixtures().join(&reference.clip.source), 1 << 24)
        .expect("source photo");
    let embeddings = (0..reference.clip.num_frames)
        .map(|t| {
            let img = frame(&reference.clip, &src, t);
            let check: &FrameCheck = &reference.frame_checks[t];
            assert_eq!(check.frame, t);
            let sum: u64 = img.as_raw().iter().map(|&v| u64::from(v)).sum();
            assert_eq!(
                sum, check.byte_sum,
                "frame {t} differs from the fixture's rule"
            );
            let pre = sam.preprocess(&img).expect("preprocess");
            let sample: Vec<f32> = (0..3)
                .flat_map(|c| {
                    let pixels = &pre.pixels;
                    (0..16).flat_map(move |r| {
                        (0..16).map(move |col| pixels[(c * SIDE + r * 64) * SIDE + col * 64])
                    })
                })
                .collect();
            let d = sample
                .iter()
                .zip(&check.input_sub64)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(d < 1e-6, "frame {t}: model input differs by {d}");
            sam.embed(&img).expect("embed")
        })
        .collect();
    Clipped { embeddings }
}

fn prompt_of(step: &Step) -> ObjectPrompt {
    let points = match (&step.points, &step.labels) {
        (Some(p), Some(l)) => p
            .iter()
            .zip(l)
            .map(|(p, &label)| Point {
                x: p[0],
                y: p[1],
                label,
            })
            .collect(),
        _ => Vec::new(),
    };
    ObjectPrompt {
        points,
        bbox: step.bbox.map(|b| BoxPrompt {
            x1: b[0],
            y1: b[1],
            x2: b[2],
            y2: b[3],
        }),
        mask_input: None,
    }
}

/// One object as the server holds it: the tracker, and each frame's last result. An object
/// with no prompt since its last propagation keeps its results (its frames depend only on
/// the frames before them, unchanged) instead of being tracked again.
struct Object {
    tracker: ObjectTracker,
    results: BTreeMap<usize, FrameResult>,
    prompted: bool,
}

#[test]
fn tracker_matches_sam2_video_predictor() {
    let ckpt = Checkpoint::load(&common::fixtures().join("sam2/sam2.1_hiera_r_seed0.pt"))
        .expect("checkpoint");
    replay(&video_dir(), &ckpt);
}

/// The full-size seeded Hiera-T (rebuilt from its manifest) against the reference of the
/// fixture script's `--full-size` run; about 10 minutes in a release build.
#[test]
#[ignore]
fn full_size_hiera_tiny_tracks_as_sam2_video_predictor() {
    replay(
        &video_dir().join("fullsize"),
        &common::full_size::seeded("sam2.1_hiera_tiny"),
    );
}

/// Replays every scenario of the reference in `dir` on `base` (its object-score head
/// rescaled as the reference's) and checks each (frame, object).
fn replay(dir: &std::path::Path, base: &Checkpoint) {
    let reference = reference(dir);
    let ckpt = rescaled(base, &reference.object_score_head);
    let sam = Arc::new(Sam::from_checkpoint(&ckpt, &Device::Cpu).expect("model"));
    let model = VideoModel::load(&ckpt, sam.clone()).expect("video model");
    let clip = embed_clip(&sam, &reference);
    let (_, lows) = common::read_npy_f32(&dir.join("low_res_sub8.npy"));
    let mut checker = Checker {
        reference: &reference,
        lows,
        worst_iou: 1.0,
        worst_score: 0.0,
        worst_low_res: 0.0,
        lines: Vec::new(),
    };
    let mut summary = Vec::new();
    for scenario in &reference.scenarios {
        let (iou_before, score_before) = (checker.worst_iou, checker.worst_score);
        checker.worst_iou = 1.0;
        checker.worst_score = 0.0;
        let mut objects: BTreeMap<u32, Object> = BTreeMap::new();
        let mut occluded_seen = false;
        for step in &scenario.steps {
            if step.call == "add_new_points_or_box" {
                let (frame, id) = (step.frame.expect("frame"), step.obj_id.expect("obj"));
                let object = objects.entry(id).or_insert_with(|| Object {
                    tracker: ObjectTracker::new(Some(reference.clip.num_frames)),
                    results: BTreeMap::new(),
                    prompted: false,
                });
                let result = object
                    .tracker
                    .add_prompt(&model, frame, &prompt_of(step), &clip.embeddings[frame])
                    .expect("add_prompt");
                object.prompted = true;
                let rec = step.result.as_ref().expect("result");
                let o = rec.objects.iter().find(|o| o.obj_id == id).expect("object");
                checker.check(&scenario.name, "add", &result, o);
                continue;
            }
            let direction = if step.reverse == Some(true) {
                Direction::Reverse
            } else {
                Direction::Forward
            };
            for rec in step.frames.as_ref().expect("frames") {
                for o in &rec.objects {
                    if o.absent {
                        continue;
                    }
                    let object = objects.get_mut(&o.obj_id).expect("known object");
                    let result = if object.prompted {
                        let r = object
                            .tracker
                            .track_in(&model, rec.frame, &clip.embeddings[rec.frame], direction)
                            .expect("track");
                        object.results.insert(rec.frame, r.clone());
                        r
                    } else {
                        object
                            .results
                            .get(&rec.frame)
                            .cloned()
                            .expect("kept result")
                    };
                    occluded_seen |= result.object_score_logit < 0.0;
                    checker.check(&scenario.name, "propagate", &result, o);
                }
            }
            for object in objects.values_mut() {
                object.prompted = false;
            }
        }
        summary.push(format!(
            "{:22} min IoU {:.5}, max |score diff| {:.4}, an occluded frame: {}",
            scenario.name, checker.worst_iou, checker.worst_score, occluded_seen
        ));
        checker.worst_iou = checker.worst_iou.min(iou_before);
        checker.worst_score = checker.worst_score.max(score_before);
    }
    for line in &checker.lines {
        println!("{line}");
    }
    for line in &summary {
        println!("{line}");
    }
    if !reference.debug.is_empty() {
        debug_tensors(dir, &reference, &model, &clip);
    }
    assert!(
        checker.worst_iou >= MIN_IOU,
        "min IoU {} < {MIN_IOU}",
        checker.worst_iou
    );
    assert!(
        checker.worst_score <= MAX_SCORE_DIFF,
        "object score off by {}",
        checker.worst_score
    );
    assert!(
        checker.worst_low_res <= MAX_LOW_RES_DIFF,
        "low-res logits off by {}",
        checker.worst_low_res
    );
}

/// Scenario `forward`'s stored memories against the reference's (printed; a tool for when
/// a scenario disagrees).
fn debug_tensors(dir: &std::path::Path, reference: &Reference, model: &VideoModel, clip: &Clipped) {
    let (_, values) = common::read_npy_f32(&dir.join("debug_sub4.npy"));
    let forward = &reference.scenarios[0].steps;
    let mut tracker = ObjectTracker::new(Some(reference.clip.num_frames));
    tracker
        .add_prompt(model, 0, &prompt_of(&forward[0]), &clip.embeddings[0])
        .expect("add");
    tracker
        .track_in(model, 0, &clip.embeddings[0], Direction::Forward)
        .expect("track 0");
    tracker
        .track_in(model, 1, &clip.embeddings[1], Direction::Forward)
        .expect("track 1");
    let state = tracker.state();
    let sub4 = |bits: &[u16]| -> Vec<f32> {
        let c = bits.len() / 4096;
        (0..c)
            .flat_map(|ch| {
                (0..16).flat_map(move |r| {
                    (0..16).map(move |col| {
                        f32::from_bits(u32::from(bits[ch * 4096 + r * 4 * 64 + col * 4]) << 16)
                    })
                })
            })
            .collect()
    };
    let mut offset = 0;
    for entry in &reference.debug {
        let n: usize = entry.shape.iter().product();
        let want = &values[offset..offset + n];
        offset += n;
        let got = match entry.name.as_str() {
            "maskmem_features_frame0" => state.cond[&0].features.as_deref().map(sub4),
            "maskmem_features_frame1" => state.non_cond[&1].features.as_deref().map(sub4),
            _ => None,
        };
        if let Some(got) = got {
            println!(
                "debug {}: rel L2 {:.2e}",
                entry.name,
                common::relative_l2(&got, want)
            );
        }
    }
}
