//! `mobilesam generate`: automatic mask generation ("segment everything"), the reference
//! `SamAutomaticMaskGenerator` (SAM 2.1: `SAM2AutomaticMaskGenerator`) with output_mode
//! "coco_rle", printed or written as JSON.

use std::path::PathBuf;

use anyhow::{Context, Result};
use mobilesam_model::amg::{self, AmgMask, AmgParams};
use mobilesam_model::masks::Rle;
use mobilesam_model::Family;
use serde::Serialize;

use crate::image_args::ImageArgs;
use crate::model_args::ModelArgs;
use crate::output;

/// Flags of `mobilesam generate`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Output: {\"width\":W,\"height\":H,\"masks\":[{\"segmentation\":{\"size\":[H,W],
\"counts\":\"...\"},\"area\":N,\"bbox\":[x,y,w,h],\"predicted_iou\":P,\"point_coords\":[[x,y]],
\"stability_score\":S,\"crop_box\":[x,y,w,h]}]}, the reference SamAutomaticMaskGenerator's
records and order (bbox and crop_box as the reference: w = x_max - x_min)."
)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,

    #[command(flatten)]
    pub image: ImageArgs,

    /// Points sampled along one side of the image (points_per_side^2 in all).
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub points_per_side: usize,

    /// Points decoded together in one batched decoder call.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub points_per_batch: usize,

    /// Keep masks whose predicted IoU is above this (0 disables the filter) [default: 0.88;
    /// 0.8 for SAM 2.1, as SAM2AutomaticMaskGenerator]
    #[arg(long, value_name = "X")]
    pub pred_iou_thresh: Option<f32>,

    /// Keep masks whose stability score is at least this (0 disables the filter).
    #[arg(long, value_name = "X", default_value_t = 0.95)]
    pub stability_score_thresh: f32,

    /// Logit offset of the stability score's two thresholds.
    #[arg(long, value_name = "X", default_value_t = 1.0)]
    pub stability_score_offset: f32,

    /// Box IoU above which NMS drops a duplicate mask within a crop.
    #[arg(long, value_name = "X", default_value_t = 0.7)]
    pub box_nms_thresh: f32,

    /// Crop layers: layer i runs the model again on (2^i)^2 overlapping crops.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub crop_n_layers: usize,

    /// Box IoU above which NMS drops a duplicate mask across crops.
    #[arg(long, value_name = "X", default_value_t = 0.7)]
    pub crop_nms_thresh: f32,

    /// Crop overlap in the first crop layer, as a fraction of the image's short side.
    #[arg(long, value_name = "X", default_value_t = 512.0 / 1500.0)]
    pub crop_overlap_ratio: f64,

    /// Crop layer n samples points_per_side / factor^n points per side.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub crop_n_points_downscale_factor: usize,

    /// Remove holes and islands smaller than this many pixels (0: keep masks as they are).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub min_mask_region_area: usize,

    /// Write the JSON to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Indent the JSON output.
    #[arg(long)]
    pub pretty: bool,
}

impl GenerateArgs {
    /// The parameters, unset ones at the reference generator's defaults for `family`.
    fn params(&self, family: &Family) -> AmgParams {
        AmgParams {
            points_per_side: self.points_per_side,
            points_per_batch: self.points_per_batch,
            pred_iou_thresh: self
                .pred_iou_thresh
                .unwrap_or(AmgParams::for_family(family).pred_iou_thresh),
            stability_score_thresh: self.stability_score_thresh,
            stability_score_offset: self.stability_score_offset,
            box_nms_thresh: self.box_nms_thresh,
            crop_n_layers: self.crop_n_layers,
            crop_nms_thresh: self.crop_nms_thresh,
            crop_overlap_ratio: self.crop_overlap_ratio,
            crop_n_points_downscale_factor: self.crop_n_points_downscale_factor,
            min_mask_region_area: self.min_mask_region_area,
        }
    }
}

/// The whole output.
#[derive(Debug, Serialize)]
struct GenerateOutput {
    width: usize,
    height: usize,
    masks: Vec<MaskRecord>,
}

/// One mask, with the reference record's fields.
#[derive(Debug, Serialize)]
struct MaskRecord {
    segmentation: Rle,
    area: u64,
    bbox: [i64; 4],
    predicted_iou: f32,
    point_coords: [[f64; 2]; 1],
    stability_score: f32,
    crop_box: [i64; 4],
}

impl From<AmgMask> for MaskRecord {
    fn from(m: AmgMask) -> Self {
        Self {
            segmentation: m.segmentation,
            area: m.area,
            bbox: m.bbox,
            predicted_iou: m.predicted_iou,
            point_coords: [m.point_coords],
            stability_score: m.stability_score,
            crop_box: m.crop_box,
        }
    }
}

/// Generates the masks and prints (or writes) the JSON.
pub fn run(args: GenerateArgs) -> Result<()> {
    // Checked before the model loads; only an unset `--pred-iou-thresh` depends on it.
    let check = |params: &AmgParams| {
        params
            .validate()
            .map_err(|e| anyhow::anyhow!("{e}"))
            .context("invalid generator parameters")
    };
    check(&args.params(&Family::MobileSam))?;
    let sam = args.model.load()?;
    let params = args.params(sam.family());
    check(&params)?;
    let image = args.image.read()?;
    let (width, height) = (image.width() as usize, image.height() as usize);
    let masks = amg::generate(&sam, &image, &params).context("mask generation failed")?;
    let result = GenerateOutput {
        width,
        height,
        masks: masks.into_iter().map(MaskRecord::from).collect(),
    };
    let json = if args.pretty {
        serde_json::to_string_pretty(&result)
    } else {
        serde_json::to_string(&result)
    }?;
    match &args.output {
        Some(path) => std::fs::write(path, format!("{json}\n"))
            .with_context(|| format!("cannot write {}", path.display())),
        None => output::print_line(&json),
    }
}
