//! Automatic mask generation ("segment everything"): the reference
//! `SamAutomaticMaskGenerator` (`mobile_sam/automatic_mask_generator.py`, `utils/amg.py`)
//! with the same parameters, defaults and semantics; for SAM 2.1, sam2's
//! `SAM2AutomaticMaskGenerator` (the same steps, with SAM 2's preprocessing and upscale, and
//! `pred_iou_thresh` 0.8 by default: [`AmgParams::for_family`]).
//!
//! Per crop (with `crop_n_layers == 0` the only crop is the whole image): encode the crop,
//! decode a regular grid of single foreground points `points_per_batch` at a time (one
//! batched decoder call per batch, three masks per point), upscale every mask's logits to
//! the crop's resolution, keep masks whose predicted IoU is `> pred_iou_thresh` and whose
//! stability score is `>= stability_score_thresh`, threshold at 0, drop masks whose box
//! touches a crop edge that is not an image edge, then greedy box NMS (torchvision's `nms`)
//! by predicted IoU. Crops are merged with another NMS that prefers smaller crops; with
//! `min_mask_region_area > 0`, small holes and islands (8-connected, as OpenCV's
//! `connectedComponentsWithStats(mask, 8)`) are removed and NMS is run once more.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::embedding::Embedding;
use crate::error::{ModelError, Result};
use crate::family::Family;
use crate::masks::{upscale_logits, upscale_stretched_logits, BinaryMask, Rle, MASK_THRESHOLD};
use crate::prompt::{ObjectPrompt, Point};
use crate::sam::Sam;

/// The generator's parameters; [`Default`] gives the reference defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct AmgParams {
    /// Points sampled along one side of the image (points_per_side^2 in all).
    pub points_per_side: usize,
    /// Points decoded together in one batched decoder call.
    pub points_per_batch: usize,
    /// Keep masks whose predicted IoU is above this (0 disables the filter).
    pub pred_iou_thresh: f32,
    /// Keep masks whose stability score is at least this (0 disables the filter).
    pub stability_score_thresh: f32,
    /// The logit offset of the stability score's two thresholds.
    pub stability_score_offset: f32,
    /// Box IoU above which NMS drops a mask within one crop.
    pub box_nms_thresh: f32,
    /// Crop layers; layer i has (2^i)^2 crops.
    pub crop_n_layers: usize,
    /// Box IoU above which NMS drops a mask across crops.
    pub crop_nms_thresh: f32,
    /// Crop overlap in the first crop layer, as a fraction of the image's short side.
    pub crop_overlap_ratio: f64,
    /// Layer n samples points_per_side / factor^n points per side.
    pub crop_n_points_downscale_factor: usize,
    /// With a value > 0, holes and islands smaller than this many pixels are removed.
    pub min_mask_region_area: usize,
}

impl Default for AmgParams {
    fn default() -> Self {
        Self {
            points_per_side: 32,
            points_per_batch: 64,
            pred_iou_thresh: 0.88,
            stability_score_thresh: 0.95,
            stability_score_offset: 1.0,
            box_nms_thresh: 0.7,
            crop_n_layers: 0,
            crop_nms_thresh: 0.7,
            crop_overlap_ratio: 512.0 / 1500.0,
            crop_n_points_downscale_factor: 1,
            min_mask_region_area: 0,
        }
    }
}

impl AmgParams {
    /// SAM 2's `SAM2AutomaticMaskGenerator` keeps masks whose predicted IoU is above 0.8;
    /// `SamAutomaticMaskGenerator` above 0.88.
    pub const SAM2_PRED_IOU_THRESH: f32 = 0.8;

    /// The reference generator's defaults for a checkpoint of `family`: [`Default`], with
    /// [`AmgParams::SAM2_PRED_IOU_THRESH`] for SAM 2.1.
    pub fn for_family(family: &Family) -> Self {
        match family {
            Family::Sam2(_) => Self {
                pred_iou_thresh: Self::SAM2_PRED_IOU_THRESH,
                ..Self::default()
            },
            _ => Self::default(),
        }
    }

    /// Checks the parameters the reference would reject or divide by.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ModelError::InvalidParams(m));
        if self.points_per_side == 0 {
            return bad("points_per_side must be at least 1".into());
        }
        if self.points_per_batch == 0 {
            return bad("points_per_batch must be at least 1".into());
        }
        if self.crop_n_points_downscale_factor == 0 {
            return bad("crop_n_points_downscale_factor must be at least 1".into());
        }
        if self.crop_n_layers > 8 {
            return bad(format!("crop_n_layers {} is over 8", self.crop_n_layers));
        }
        for (name, v) in [
            ("pred_iou_thresh", self.pred_iou_thresh),
            ("stability_score_thresh", self.stability_score_thresh),
            ("stability_score_offset", self.stability_score_offset),
            ("box_nms_thresh", self.box_nms_thresh),
            ("crop_nms_thresh", self.crop_nms_thresh),
        ] {
            if !v.is_finite() {
                return bad(format!("{name} must be a finite number"));
            }
        }
        if !self.crop_overlap_ratio.is_finite() || self.crop_overlap_ratio < 0.0 {
            return bad("crop_overlap_ratio must be a finite number >= 0".into());
        }
        Ok(())
    }
}

/// One generated mask, with the reference's record fields.
#[derive(Debug, Clone)]
pub struct AmgMask {
    /// COCO compressed RLE over the whole image.
    pub segmentation: Rle,
    /// Foreground pixels.
    pub area: u64,
    /// `[x, y, w, h]` with the reference's convention: `w = x_max - x_min` (inclusive
    /// pixel coordinates, so one less than the pixel count of a row).
    pub bbox: [i64; 4],
    /// The model's predicted IoU.
    pub predicted_iou: f32,
    /// The grid point that produced the mask, in image pixels.
    pub point_coords: [f64; 2],
    /// The stability score.
    pub stability_score: f32,
    /// The crop the mask came from, `[x, y, w, h]`.
    pub crop_box: [i64; 4],
}

/// A mask during generation: its box in image coordinates `[x0, y0, x1, y1]` (inclusive).
#[derive(Debug, Clone)]
struct Candidate {
    mask: MaskStore,
    bbox: [i64; 4],
    predicted_iou: f32,
    point: [f64; 2],
    stability_score: f32,
    crop_box: [i64; 4],
}

/// Masks kept compressed between the steps, full image size.
#[derive(Debug, Clone)]
struct MaskStore {
    rle: Rle,
    area: u64,
}

/// What the generator segments.
#[derive(Debug, Clone, Copy)]
pub enum AmgSource<'a> {
    /// An image: every crop (the whole image first) is encoded.
    Image(&'a image::RgbImage),
    /// The whole image's embedding, e.g. a cached session's. Only the whole-image crop can
    /// be used (`crop_n_layers` 0): the other crops need the image's pixels.
    Embedding(&'a Embedding),
}

/// A finished generation.
#[derive(Debug, Clone)]
pub struct AmgRun {
    /// The masks, in the reference's output order.
    pub masks: Vec<AmgMask>,
    /// Time spent in the image encoder (zero when an embedding was given).
    pub encode_time: Duration,
}

/// Generates masks for the whole image, as `SamAutomaticMaskGenerator.generate`, in the
/// reference's output order.
pub fn generate(sam: &Sam, image: &image::RgbImage, params: &AmgParams) -> Result<Vec<AmgMask>> {
    let run = generate_with(sam, AmgSource::Image(image), params, &mut || {
        ControlFlow::Continue(())
    })?;
    Ok(run.map(|r| r.masks).unwrap_or_default())
}

/// As [`generate`], from an image or an embedding, asking `between_steps` before every
/// crop's encode and every batch of points whether to go on (a caller can stop a
/// generation nobody waits for, or serve other work in between). Returns `None` when
/// `between_steps` said stop.
///
/// No mask is final before the end: within a crop, NMS over all its batches decides which
/// masks stay; across crops, another NMS prefers masks of smaller (later) crops; and
/// `min_mask_region_area` edits and re-filters every mask at the very end.
pub fn generate_with(
    sam: &Sam,
    source: AmgSource<'_>,
    params: &AmgParams,
    between_steps: &mut dyn FnMut() -> ControlFlow<()>,
) -> Result<Option<AmgRun>> {
    params.validate()?;
    let (h, w) = match source {
        AmgSource::Image(image) => (image.height() as usize, image.width() as usize),
        AmgSource::Embedding(embedding) => {
            if params.crop_n_layers > 0 {
                return Err(ModelError::InvalidParams(
                    "crop_n_layers > 0 encodes crops of the image, so it needs the image \
                     itself, not only its embedding"
                        .into(),
                ));
            }
            embedding.original_size
        }
    };
    if w == 0 || h == 0 {
        return Err(ModelError::ImageDecode("the image is empty".into()));
    }
    let mut encode_time = Duration::ZERO;
    let (crop_boxes, layer_idxs) =
        generate_crop_boxes((h, w), params.crop_n_layers, params.crop_overlap_ratio);
    let grids: Vec<Vec<[f64; 2]>> = (0..=params.crop_n_layers)
        .map(|i| {
            let n = params.points_per_side / params.crop_n_points_downscale_factor.pow(i as u32);
            build_point_grid(n)
        })
        .collect();
    let mut data: Vec<Candidate> = Vec::new();
    for (crop_box, &layer) in crop_boxes.iter().zip(&layer_idxs) {
        if between_steps().is_break() {
            return Ok(None);
        }
        let encoded;
        let embedding = match source {
            AmgSource::Embedding(embedding) => embedding,
            AmgSource::Image(image) => {
                let start = Instant::now();
                encoded = embed_crop(sam, image, *crop_box)?;
                encode_time += start.elapsed();
                &encoded
            }
        };
        let found = process_crop(
            sam,
            embedding,
            *crop_box,
            &grids[layer],
            (h, w),
            params,
            between_steps,
        )?;
        let Some(found) = found else {
            return Ok(None);
        };
        data.extend(found);
    }
    if crop_boxes.len() > 1 {
        let boxes: Vec<[i64; 4]> = data.iter().map(|c| c.bbox).collect();
        let scores: Vec<f32> = data
            .iter()
            .map(|c| {
                let b = c.crop_box;
                1.0 / ((b[2] - b[0]) * (b[3] - b[1])) as f32
            })
            .collect();
        let keep = nms(&boxes, &scores, params.crop_nms_thresh);
        data = take(data, &keep);
    }
    if params.min_mask_region_area > 0 {
        data = postprocess_small_regions(
            data,
            params.min_mask_region_area,
            params.box_nms_thresh.max(params.crop_nms_thresh),
        )?;
    }
    let masks = data
        .into_iter()
        .map(|c| AmgMask {
            segmentation: c.mask.rle,
            area: c.mask.area,
            bbox: xyxy_to_xywh(c.bbox),
            predicted_iou: c.predicted_iou,
            point_coords: c.point,
            stability_score: c.stability_score,
            crop_box: xyxy_to_xywh(c.crop_box),
        })
        .collect();
    Ok(Some(AmgRun { masks, encode_time }))
}

fn xyxy_to_xywh(b: [i64; 4]) -> [i64; 4] {
    [b[0], b[1], b[2] - b[0], b[3] - b[1]]
}

fn take<T>(items: Vec<T>, keep: &[usize]) -> Vec<T> {
    let mut slots: Vec<Option<T>> = items.into_iter().map(Some).collect();
    keep.iter().filter_map(|&i| slots[i].take()).collect()
}

/// Encodes one crop of the image (the whole image for the first crop).
fn embed_crop(sam: &Sam, image: &image::RgbImage, crop_box: [i64; 4]) -> Result<Embedding> {
    let [x0, y0, x1, y1] = crop_box;
    let (cw, ch) = ((x1 - x0) as u32, (y1 - y0) as u32);
    let full = x0 == 0 && y0 == 0 && cw == image.width() && ch == image.height();
    if full {
        return sam.embed(image);
    }
    let cropped = image::imageops::crop_imm(image, x0 as u32, y0 as u32, cw, ch).to_image();
    sam.embed(&cropped)
}

/// The masks of one crop after its NMS, or `None` when `between_steps` said stop.
fn process_crop(
    sam: &Sam,
    embedding: &Embedding,
    crop_box: [i64; 4],
    grid: &[[f64; 2]],
    orig_size: (usize, usize),
    params: &AmgParams,
    between_steps: &mut dyn FnMut() -> ControlFlow<()>,
) -> Result<Option<Vec<Candidate>>> {
    let [x0, y0, x1, y1] = crop_box;
    let (cw, ch) = ((x1 - x0) as u32, (y1 - y0) as u32);
    let points: Vec<[f64; 2]> = grid
        .iter()
        .map(|p| [p[0] * f64::from(cw), p[1] * f64::from(ch)])
        .collect();
    let mut data = Vec::new();
    for (index, batch) in points.chunks(params.points_per_batch).enumerate() {
        // The crop's first step was asked before its encode.
        if index > 0 && between_steps().is_break() {
            return Ok(None);
        }
        let objects: Vec<ObjectPrompt> = batch
            .iter()
            .map(|p| ObjectPrompt {
                points: vec![Point {
                    x: p[0] as f32,
                    y: p[1] as f32,
                    label: 1,
                }],
                bbox: None,
                mask_input: None,
            })
            .collect();
        let raw = sam.decode_raw(embedding, &objects, true)?;
        let mut jobs = Vec::new();
        for (object, point) in raw.into_iter().zip(batch) {
            for (logits, score) in object.low_res_logits.into_iter().zip(object.scores) {
                // The predicted-IoU filter comes first, so rejected masks are never upscaled.
                // `>` is false for NaN: such masks are dropped, as by the reference.
                let above = score > params.pred_iou_thresh;
                if params.pred_iou_thresh > 0.0 && !above {
                    continue;
                }
                jobs.push((logits, score, *point));
            }
        }
        let results: Vec<Option<Candidate>> = jobs
            .into_par_iter()
            .map(|(logits, score, point)| {
                process_mask(
                    &logits, score, point, embedding, crop_box, orig_size, params,
                )
            })
            .collect::<Result<_>>()?;
        data.extend(results.into_iter().flatten());
    }
    let boxes: Vec<[i64; 4]> = data.iter().map(|c| c.bbox).collect();
    let scores: Vec<f32> = data.iter().map(|c| c.predicted_iou).collect();
    let keep = nms(&boxes, &scores, params.box_nms_thresh);
    let mut data = take(data, &keep);
    for c in &mut data {
        c.bbox = [
            c.bbox[0] + x0,
            c.bbox[1] + y0,
            c.bbox[2] + x0,
            c.bbox[3] + y0,
        ];
        c.point = [c.point[0] + x0 as f64, c.point[1] + y0 as f64];
    }
    Ok(Some(data))
}

/// One mask of one grid point: stability filter, threshold, box, crop-edge filter, RLE.
/// The box stays in crop coordinates (the reference uncrops it after the crop's NMS).
fn process_mask(
    logits: &[f32],
    score: f32,
    point: [f64; 2],
    embedding: &Embedding,
    crop_box: [i64; 4],
    orig_size: (usize, usize),
    params: &AmgParams,
) -> Result<Option<Candidate>> {
    let (ch, cw) = embedding.original_size;
    let full = if embedding.high_res().is_some() {
        upscale_stretched_logits(logits, embedding.original_size)?
    } else {
        upscale_logits(logits, embedding.input_size, embedding.original_size)?
    };
    let stability = stability_score(&full, MASK_THRESHOLD, params.stability_score_offset);
    let stable = stability >= params.stability_score_thresh;
    if params.stability_score_thresh > 0.0 && !stable {
        return Ok(None);
    }
    let mask = BinaryMask::from_logits(&full, ch, cw);
    drop(full);
    let bbox = mask_to_box(&mask);
    let (oh, ow) = orig_size;
    if is_box_near_crop_edge(bbox, crop_box, [0, 0, ow as i64, oh as i64]) {
        return Ok(None);
    }
    let mask = uncrop_mask(mask, crop_box, oh, ow);
    Ok(Some(Candidate {
        mask: MaskStore {
            area: mask.area(),
            rle: mask.to_rle(),
        },
        bbox,
        predicted_iou: score,
        point,
        stability_score: stability,
        crop_box,
    }))
}

/// `calculate_stability_score`: the IoU of the masks thresholded at `threshold + offset`
/// and `threshold - offset` (NaN when both are empty, which no threshold keeps).
pub fn stability_score(logits: &[f32], threshold: f32, offset: f32) -> f32 {
    crate::masks::StabilityCounts::of(logits, threshold, offset).ratio()
}

/// `batched_mask_to_box` for one mask: `[x_min, y_min, x_max, y_max]` (inclusive), all
/// zeros when empty.
fn mask_to_box(mask: &BinaryMask) -> [i64; 4] {
    let b = mask.bbox();
    if b[2] == 0.0 {
        return [0; 4];
    }
    let (x, y, w, h) = (b[0] as i64, b[1] as i64, b[2] as i64, b[3] as i64);
    [x, y, x + w - 1, y + h - 1]
}

/// `is_box_near_crop_edge` for one box in crop coordinates.
fn is_box_near_crop_edge(bbox: [i64; 4], crop_box: [i64; 4], orig_box: [i64; 4]) -> bool {
    let offset = [crop_box[0], crop_box[1], crop_box[0], crop_box[1]];
    (0..4).any(|i| {
        let b = (bbox[i] + offset[i]) as f32;
        let near_crop = (b - crop_box[i] as f32).abs() <= 20.0;
        let near_image = (b - orig_box[i] as f32).abs() <= 20.0;
        near_crop && !near_image
    })
}

/// Pads a crop's mask to the whole image.
fn uncrop_mask(mask: BinaryMask, crop_box: [i64; 4], oh: usize, ow: usize) -> BinaryMask {
    let [x0, y0, _, _] = crop_box;
    if mask.height == oh && mask.width == ow {
        return mask;
    }
    let mut data = vec![0u8; oh * ow];
    for y in 0..mask.height {
        let dst = (y + y0 as usize) * ow + x0 as usize;
        data[dst..dst + mask.width]
            .copy_from_slice(&mask.data[y * mask.width..(y + 1) * mask.width]);
    }
    BinaryMask {
        height: oh,
        width: ow,
        data,
    }
}

/// `build_point_grid`: `n x n` points evenly spaced in `[0, 1]^2` (numpy's `linspace`),
/// row by row.
pub fn build_point_grid(n: usize) -> Vec<[f64; 2]> {
    if n == 0 {
        return Vec::new();
    }
    let offset = 1.0 / (2 * n) as f64;
    let (start, stop) = (offset, 1.0 - offset);
    let side: Vec<f64> = if n == 1 {
        vec![start]
    } else {
        let step = (stop - start) / (n - 1) as f64;
        let mut v: Vec<f64> = (0..n).map(|i| i as f64 * step + start).collect();
        v[n - 1] = stop;
        v
    };
    let mut points = Vec::with_capacity(n * n);
    for &y in &side {
        for &x in &side {
            points.push([x, y]);
        }
    }
    points
}

/// `generate_crop_boxes`: `[x0, y0, x1, y1]` crops and their layers.
pub fn generate_crop_boxes(
    im_size: (usize, usize),
    n_layers: usize,
    overlap_ratio: f64,
) -> (Vec<[i64; 4]>, Vec<usize>) {
    let (im_h, im_w) = (im_size.0 as i64, im_size.1 as i64);
    let short_side = im_h.min(im_w);
    let mut boxes = vec![[0, 0, im_w, im_h]];
    let mut layers = vec![0];
    let crop_len = |orig: i64, n: i64, overlap: i64| -> i64 {
        ((overlap * (n - 1) + orig) as f64 / n as f64).ceil() as i64
    };
    for i_layer in 0..n_layers {
        let n = 1i64 << (i_layer + 1);
        let overlap = (overlap_ratio * short_side as f64 * (2.0 / n as f64)) as i64;
        let crop_w = crop_len(im_w, n, overlap);
        let crop_h = crop_len(im_h, n, overlap);
        let xs: Vec<i64> = (0..n).map(|i| (crop_w - overlap) * i).collect();
        let ys: Vec<i64> = (0..n).map(|i| (crop_h - overlap) * i).collect();
        for &x0 in &xs {
            for &y0 in &ys {
                boxes.push([x0, y0, (x0 + crop_w).min(im_w), (y0 + crop_h).min(im_h)]);
                layers.push(i_layer + 1);
            }
        }
    }
    (boxes, layers)
}

/// Greedy box NMS as torchvision's CPU `nms`: visit boxes by descending score (stable for
/// ties), drop every later box whose IoU with a kept one is above `iou_threshold`. Returns
/// the kept indices in visiting order.
pub fn nms(boxes: &[[i64; 4]], scores: &[f32], iou_threshold: f32) -> Vec<usize> {
    let mut order: Vec<usize> = (0..boxes.len()).collect();
    order.sort_by(|&a, &b| {
        scores[b]
            .partial_cmp(&scores[a])
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let fb: Vec<[f32; 4]> = boxes
        .iter()
        .map(|b| [b[0] as f32, b[1] as f32, b[2] as f32, b[3] as f32])
        .collect();
    let area = |b: &[f32; 4]| (b[2] - b[0]) * (b[3] - b[1]);
    let mut suppressed = vec![false; boxes.len()];
    let mut keep = Vec::new();
    for (pos, &i) in order.iter().enumerate() {
        if suppressed[i] {
            continue;
        }
        keep.push(i);
        let bi = fb[i];
        let ai = area(&bi);
        for &j in &order[pos + 1..] {
            if suppressed[j] {
                continue;
            }
            let bj = fb[j];
            let w = (bi[2].min(bj[2]) - bi[0].max(bj[0])).max(0.0);
            let h = (bi[3].min(bj[3]) - bi[1].max(bj[1])).max(0.0);
            let inter = w * h;
            let iou = inter / (ai + area(&bj) - inter);
            if iou > iou_threshold {
                suppressed[j] = true;
            }
        }
    }
    keep
}

/// `postprocess_small_regions`: fills small holes and removes small islands, then NMS
/// (unchanged masks first) drops new duplicates.
fn postprocess_small_regions(
    data: Vec<Candidate>,
    min_area: usize,
    nms_thresh: f32,
) -> Result<Vec<Candidate>> {
    if data.is_empty() {
        return Ok(data);
    }
    let processed: Vec<(BinaryMask, bool)> = data
        .par_iter()
        .map(|c| {
            let mask = BinaryMask::from_rle(&c.mask.rle)?;
            let (mask, changed_holes) = remove_small_regions(mask, min_area, true);
            let (mask, changed_islands) = remove_small_regions(mask, min_area, false);
            Ok((mask, changed_holes || changed_islands))
        })
        .collect::<Result<_>>()?;
    let boxes: Vec<[i64; 4]> = processed.iter().map(|(m, _)| mask_to_box(m)).collect();
    let scores: Vec<f32> = processed
        .iter()
        .map(|(_, changed)| if *changed { 0.0 } else { 1.0 })
        .collect();
    let keep = nms(&boxes, &scores, nms_thresh);
    let mut data = data;
    let mut processed: Vec<Option<(BinaryMask, bool)>> = processed.into_iter().map(Some).collect();
    for &i in &keep {
        if let Some((mask, true)) = processed[i].take() {
            data[i].mask = MaskStore {
                area: mask.area(),
                rle: mask.to_rle(),
            };
            data[i].bbox = boxes[i];
        }
    }
    Ok(take(data, &keep))
}

/// `remove_small_regions`: with `holes`, fills background components (8-connected) under
/// `area_thresh` pixels; otherwise removes foreground components under it, keeping the
/// largest if all are small. Returns the mask and whether anything changed.
pub fn remove_small_regions(
    mask: BinaryMask,
    area_thresh: usize,
    holes: bool,
) -> (BinaryMask, bool) {
    let (h, w) = (mask.height, mask.width);
    let working: Vec<u8> = mask
        .data
        .iter()
        .map(|&v| u8::from((v != 0) != holes))
        .collect();
    let (labels, sizes) = crate::masks::polygon::components(&working, h, w);
    // sizes[k] is the size of label k + 1.
    let small: Vec<bool> = sizes.iter().map(|&s| s < area_thresh as u64).collect();
    if !small.iter().any(|&s| s) {
        return (mask, false);
    }
    // fill[l] for labels 0..=n: whether the output is foreground there.
    let n = sizes.len();
    let mut fill = vec![false; n + 1];
    if holes {
        fill[0] = true;
        fill[1..].copy_from_slice(&small);
    } else {
        let mut any = false;
        for k in 0..n {
            fill[k + 1] = !small[k];
            any |= !small[k];
        }
        if !any {
            let mut best = 0;
            for k in 1..n {
                if sizes[k] > sizes[best] {
                    best = k;
                }
            }
            fill[best + 1] = true;
        }
    }
    let data = labels.iter().map(|&l| u8::from(fill[l as usize])).collect();
    (
        BinaryMask {
            height: h,
            width: w,
            data,
        },
        true,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sam2_defaults_differ_only_in_the_iou_threshold() {
        assert_eq!(
            AmgParams::for_family(&Family::MobileSam),
            AmgParams::default()
        );
        let config = crate::hiera_config::HieraConfig {
            size: crate::hiera_config::HieraSize::Tiny,
            width: 96,
            stages: [1, 2, 7, 2],
            heads: 1,
            global_blocks: vec![5, 7, 9],
            window_spec: [8, 4, 14, 7],
            pos_embed_size: (7, 7),
            neck_dim: 256,
        };
        let sam2 = AmgParams::for_family(&Family::Sam2(config));
        assert_eq!(sam2.pred_iou_thresh, 0.8);
        assert_eq!(
            AmgParams {
                pred_iou_thresh: 0.88,
                ..sam2
            },
            AmgParams::default()
        );
    }

    #[test]
    fn point_grid_matches_numpy() {
        let g = build_point_grid(4);
        assert_eq!(g.len(), 16);
        assert_eq!(g[0], [0.125, 0.125]);
        assert_eq!(g[1], [0.375, 0.125]);
        assert_eq!(g[15], [0.875, 0.875]);
    }

    #[test]
    fn crop_boxes_match_reference() {
        // generate_crop_boxes((300, 451), 1, 512 / 1500)
        let (boxes, layers) = generate_crop_boxes((300, 451), 1, 512.0 / 1500.0);
        assert_eq!(
            boxes,
            vec![
                [0, 0, 451, 300],
                [0, 0, 277, 201],
                [0, 99, 277, 300],
                [175, 0, 451, 201],
                [175, 99, 451, 300]
            ]
        );
        assert_eq!(layers, vec![0, 1, 1, 1, 1]);
    }

    #[test]
    fn nms_suppresses_overlaps_by_score() {
        let boxes = [[0, 0, 10, 10], [0, 0, 10, 9], [20, 20, 30, 30]];
        let keep = nms(&boxes, &[0.5, 0.9, 0.7], 0.7);
        assert_eq!(keep, vec![1, 2]);
        // Ties keep input order.
        let keep = nms(&boxes, &[1.0, 1.0, 1.0], 0.95);
        assert_eq!(keep, vec![0, 1, 2]);
    }

    #[test]
    fn small_regions_are_removed() {
        // A 6x6 square with a 1-pixel hole, plus a 1-pixel island.
        let (h, w) = (10, 10);
        let mut data = vec![0u8; h * w];
        for y in 1..7 {
            for x in 1..7 {
                data[y * w + x] = 1;
            }
        }
        data[3 * w + 3] = 0;
        data[9 * w + 9] = 1;
        let mask = BinaryMask {
            height: h,
            width: w,
            data,
        };
        let (filled, changed) = remove_small_regions(mask, 4, true);
        assert!(changed);
        assert_eq!(filled.area(), 37);
        let (clean, changed) = remove_small_regions(filled, 4, false);
        assert!(changed);
        assert_eq!(clean.area(), 36);
        assert_eq!(clean.data[9 * w + 9], 0);
    }
}
