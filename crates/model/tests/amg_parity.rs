//! Automatic mask generation against the reference `SamAutomaticMaskGenerator` on seeded
//! weights: `tests/fixtures/amg/make_amg_fixture.py` ran the reference on chelsea.png with
//! the parameters stored in each fixture (chosen so that enough masks survive with random
//! weights). Targets: the same mask count within 5%, every reference mask matched by a
//! distinct one of ours at IoU >= 0.95, with the same grid point and a close predicted IoU.

mod common;

use std::io::Read;

use mobilesam_model::amg::{generate, AmgParams};
use mobilesam_model::image::read_image;
use mobilesam_model::masks::{BinaryMask, Rle};
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    image: String,
    params: Params,
    width: usize,
    height: usize,
    masks: Vec<RefMask>,
}

#[derive(Deserialize)]
struct Params {
    points_per_side: usize,
    points_per_batch: usize,
    pred_iou_thresh: f32,
    stability_score_thresh: f32,
    stability_score_offset: f32,
    box_nms_thresh: f32,
    crop_n_layers: usize,
    crop_nms_thresh: f32,
    crop_overlap_ratio: f64,
    crop_n_points_downscale_factor: usize,
    min_mask_region_area: usize,
}

#[derive(Deserialize)]
struct RefMask {
    segmentation: Rle,
    area: u64,
    /// Integers, but written as floats after the reference's small-region step.
    bbox: [f64; 4],
    predicted_iou: f32,
    point_coords: Vec<[f64; 2]>,
    stability_score: f32,
    crop_box: [f64; 4],
}

fn load_fixture(name: &str) -> Fixture {
    let path = common::fixtures().join(format!("amg/{name}.json.gz"));
    let file = std::fs::File::open(&path).expect("fixture present");
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .expect("gzip");
    serde_json::from_str(&text).expect("fixture parses")
}

/// 16x16 grid, one crop (the whole image): 71 reference masks.
#[test]
fn chelsea_matches_the_reference_generator() {
    check_case("chelsea_amg", 20);
}

/// SAM 2.1 (the reduced fixture) against sam2 1.1.0's `SAM2AutomaticMaskGenerator`
/// (`tests/fixtures/sam2/make_sam2_amg_fixture.py`): 16x16 grid on coffee.png, 47 reference
/// masks.
#[test]
fn sam2_coffee_matches_the_reference_generator() {
    let checkpoint = mobilesam_checkpoint::Checkpoint::load(
        &common::fixtures().join("sam2/sam2.1_hiera_r_seed0.pt"),
    )
    .expect("checkpoint");
    let sam = mobilesam_model::Sam::from_checkpoint(&checkpoint, &candle_core::Device::Cpu)
        .expect("model builds");
    check_case_with(&sam, "sam2_coffee_amg", 20);
}

/// 8x8 grid, one crop layer (the image and 4 crops), crop NMS and small-region removal
/// (min_mask_region_area 30): 13 reference masks.
#[test]
fn chelsea_with_crops_and_small_regions_matches_the_reference() {
    check_case("chelsea_amg_crops", 10);
}

fn check_case(name: &str, min_masks: usize) {
    check_case_with(&common::seeded_sam(), name, min_masks);
}

fn check_case_with(sam: &mobilesam_model::Sam, name: &str, min_masks: usize) {
    let fixture = load_fixture(name);
    let p = &fixture.params;
    let params = AmgParams {
        points_per_side: p.points_per_side,
        points_per_batch: p.points_per_batch,
        pred_iou_thresh: p.pred_iou_thresh,
        stability_score_thresh: p.stability_score_thresh,
        stability_score_offset: p.stability_score_offset,
        box_nms_thresh: p.box_nms_thresh,
        crop_n_layers: p.crop_n_layers,
        crop_nms_thresh: p.crop_nms_thresh,
        crop_overlap_ratio: p.crop_overlap_ratio,
        crop_n_points_downscale_factor: p.crop_n_points_downscale_factor,
        min_mask_region_area: p.min_mask_region_area,
    };
    let image = read_image(
        &common::fixtures().join("images").join(&fixture.image),
        u64::MAX,
    )
    .expect("image");
    assert_eq!(
        (image.width() as usize, image.height() as usize),
        (fixture.width, fixture.height)
    );
    let start = std::time::Instant::now();
    let ours = generate(sam, &image, &params).expect("generate");
    eprintln!(
        "{name}: generated {} masks in {:.2?} (reference: {})",
        ours.len(),
        start.elapsed(),
        fixture.masks.len()
    );

    let n_ref = fixture.masks.len() as f64;
    assert!(
        fixture.masks.len() >= min_masks,
        "fixture has too few masks to be meaningful"
    );
    let diff = (ours.len() as f64 - n_ref).abs() / n_ref;
    assert!(
        diff <= 0.05,
        "mask count {} vs reference {} ({:.1}% off)",
        ours.len(),
        fixture.masks.len(),
        diff * 100.0
    );

    let our_masks: Vec<BinaryMask> = ours
        .iter()
        .map(|m| BinaryMask::from_rle(&m.segmentation).expect("our rle"))
        .collect();
    for (m, b) in ours.iter().zip(&our_masks) {
        assert_eq!(m.area, b.area(), "area matches the RLE");
        assert_eq!(
            m.segmentation.size,
            [fixture.height as u32, fixture.width as u32]
        );
    }

    let mut used = vec![false; ours.len()];
    let mut min_iou = f64::INFINITY;
    let mut max_score_diff = 0f32;
    let mut max_stability_diff = 0f32;
    for (r, reference) in fixture.masks.iter().enumerate() {
        let ref_mask = BinaryMask::from_rle(&reference.segmentation).expect("reference rle");
        assert_eq!(ref_mask.area(), reference.area);
        // Best unused match with the same grid point (one point gives up to three masks).
        let best = ours
            .iter()
            .enumerate()
            .filter(|(i, m)| {
                !used[*i]
                    && (m.point_coords[0] - reference.point_coords[0][0]).abs() < 1e-3
                    && (m.point_coords[1] - reference.point_coords[0][1]).abs() < 1e-3
            })
            .map(|(i, _)| (i, our_masks[i].iou(&ref_mask)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let Some((i, iou)) = best else {
            panic!(
                "reference mask {r} (point {:?}) has no match",
                reference.point_coords
            );
        };
        assert!(iou >= 0.95, "reference mask {r}: best IoU {iou:.4}");
        used[i] = true;
        min_iou = min_iou.min(iou);
        let m = &ours[i];
        max_score_diff = max_score_diff.max((m.predicted_iou - reference.predicted_iou).abs());
        max_stability_diff =
            max_stability_diff.max((m.stability_score - reference.stability_score).abs());
        assert_eq!(m.crop_box.map(|v| v as f64), reference.crop_box);
        for k in 0..4 {
            assert!(
                (m.bbox[k] as f64 - reference.bbox[k]).abs() <= 2.0,
                "reference mask {r}: bbox {:?} vs {:?}",
                m.bbox,
                reference.bbox
            );
        }
    }
    eprintln!(
        "{name}: matched {} reference masks: min IoU {min_iou:.5}, max |predicted_iou diff| \
         {max_score_diff:.2e}, max |stability diff| {max_stability_diff:.2e}",
        fixture.masks.len()
    );
    assert!(
        max_score_diff < 5e-3,
        "predicted IoU off by {max_score_diff}"
    );
}
