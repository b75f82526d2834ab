//! `GenerateParams` to the model's [`AmgParams`]: unset fields take the reference
//! generator's defaults for the served family; every value is checked against a range that
//! keeps one request's work and memory bounded.

use mobilesam_model::amg::AmgParams;
use mobilesam_proto::v1;

use crate::error::RequestError;

/// Largest `points_per_side` (its square is the number of points per crop).
pub const MAX_POINTS_PER_SIDE: u32 = 128;
/// Largest `points_per_batch` (each point of a batch holds three 256x256 logit maps).
pub const MAX_POINTS_PER_BATCH: u32 = 256;
/// Largest `crop_n_layers` (layer i encodes 4^i crops: 1 + 4 + 16 + 64 at most).
pub const MAX_CROP_N_LAYERS: u32 = 3;
/// Largest `crop_n_points_downscale_factor`.
pub const MAX_DOWNSCALE_FACTOR: u32 = 16;

/// Checks `params` (`None`: every default) and converts them, unset fields from
/// `defaults` ([`AmgParams::for_family`]). `whole_image_only` is set when only the image's
/// embedding is at hand (a session), which rules out crop layers.
pub fn params(
    params: Option<&v1::GenerateParams>,
    whole_image_only: bool,
    defaults: &AmgParams,
) -> Result<AmgParams, RequestError> {
    let p = params.copied().unwrap_or_default();
    let d = defaults;
    let out = AmgParams {
        points_per_side: count(
            "points_per_side",
            p.points_per_side,
            d.points_per_side,
            MAX_POINTS_PER_SIDE,
        )?,
        points_per_batch: count(
            "points_per_batch",
            p.points_per_batch,
            d.points_per_batch,
            MAX_POINTS_PER_BATCH,
        )?,
        pred_iou_thresh: fraction("pred_iou_thresh", p.pred_iou_thresh, d.pred_iou_thresh)?,
        stability_score_thresh: fraction(
            "stability_score_thresh",
            p.stability_score_thresh,
            d.stability_score_thresh,
        )?,
        stability_score_offset: offset(p.stability_score_offset, d.stability_score_offset)?,
        box_nms_thresh: fraction("box_nms_thresh", p.box_nms_thresh, d.box_nms_thresh)?,
        crop_n_layers: crop_layers(p.crop_n_layers, whole_image_only)?,
        crop_nms_thresh: fraction("crop_nms_thresh", p.crop_nms_thresh, d.crop_nms_thresh)?,
        crop_overlap_ratio: overlap(p.crop_overlap_ratio, d.crop_overlap_ratio)?,
        crop_n_points_downscale_factor: count(
            "crop_n_points_downscale_factor",
            p.crop_n_points_downscale_factor,
            d.crop_n_points_downscale_factor,
            MAX_DOWNSCALE_FACTOR,
        )?,
        min_mask_region_area: region_area(p.min_mask_region_area)?,
    };
    // The model's own rules too, so the two can never disagree.
    out.validate()
        .map_err(|e| RequestError::InvalidArgument(e.to_string()))?;
    Ok(out)
}

fn invalid(message: String) -> RequestError {
    RequestError::InvalidArgument(format!("GenerateParams: {message}"))
}

/// A count in `1..=max`.
fn count(name: &str, value: Option<u32>, default: usize, max: u32) -> Result<usize, RequestError> {
    match value {
        None => Ok(default),
        Some(v) if (1..=max).contains(&v) => Ok(v as usize),
        Some(v) => Err(invalid(format!("{name} is {v}; it must be 1 to {max}"))),
    }
}

/// A threshold in `[0, 1]`.
fn fraction(name: &str, value: Option<f32>, default: f32) -> Result<f32, RequestError> {
    match value {
        None => Ok(default),
        Some(v) if (0.0..=1.0).contains(&v) => Ok(v),
        Some(v) => Err(invalid(format!("{name} is {v}; it must be 0 to 1"))),
    }
}

/// The stability score's logit offset: finite and `>= 0`.
fn offset(value: Option<f32>, default: f32) -> Result<f32, RequestError> {
    match value {
        None => Ok(default),
        Some(v) if v.is_finite() && v >= 0.0 => Ok(v),
        Some(v) => Err(invalid(format!(
            "stability_score_offset is {v}; it must be a finite number >= 0"
        ))),
    }
}

/// Crop overlap in `[0, 1)` of the short side.
fn overlap(value: Option<f32>, default: f64) -> Result<f64, RequestError> {
    match value {
        None => Ok(default),
        Some(v) if (0.0..1.0).contains(&v) => Ok(f64::from(v)),
        Some(v) => Err(invalid(format!(
            "crop_overlap_ratio is {v}; it must be at least 0 and less than 1"
        ))),
    }
}

fn crop_layers(value: Option<u32>, whole_image_only: bool) -> Result<usize, RequestError> {
    let layers = value.unwrap_or(0);
    if layers > MAX_CROP_N_LAYERS {
        return Err(invalid(format!(
            "crop_n_layers is {layers}; at most {MAX_CROP_N_LAYERS} are allowed"
        )));
    }
    if layers > 0 && whole_image_only {
        return Err(invalid(
            "crop_n_layers > 0 encodes crops of the image, and a session keeps only the \
             whole image's embedding: call GenerateMasks with the image bytes"
                .into(),
        ));
    }
    Ok(layers as usize)
}

fn region_area(value: Option<u64>) -> Result<usize, RequestError> {
    let area = value.unwrap_or(0);
    usize::try_from(area).map_err(|_| invalid(format!("min_mask_region_area {area} is too large")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn refused(p: v1::GenerateParams, whole_image_only: bool) -> String {
        let e = params(Some(&p), whole_image_only, &AmgParams::default()).unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        e.to_string()
    }

    #[test]
    fn unset_fields_take_the_families_defaults() {
        let sam2 = AmgParams {
            pred_iou_thresh: AmgParams::SAM2_PRED_IOU_THRESH,
            ..AmgParams::default()
        };
        assert_eq!(params(None, true, &sam2), Ok(sam2.clone()));
        let set = v1::GenerateParams {
            pred_iou_thresh: Some(0.5),
            ..Default::default()
        };
        assert_eq!(
            params(Some(&set), true, &sam2).map(|p| p.pred_iou_thresh),
            Ok(0.5)
        );
    }

    #[test]
    fn unset_fields_take_the_reference_defaults() {
        assert_eq!(
            params(None, true, &AmgParams::default()),
            Ok(AmgParams::default())
        );
        assert_eq!(
            params(
                Some(&v1::GenerateParams::default()),
                false,
                &AmgParams::default()
            ),
            Ok(AmgParams::default())
        );
        let set = v1::GenerateParams {
            points_per_side: Some(8),
            pred_iou_thresh: Some(0.0),
            crop_n_layers: Some(1),
            crop_overlap_ratio: Some(0.25),
            min_mask_region_area: Some(100),
            ..Default::default()
        };
        let p = params(Some(&set), false, &AmgParams::default()).expect("valid");
        assert_eq!(p.points_per_side, 8);
        assert_eq!(p.pred_iou_thresh, 0.0);
        assert_eq!(p.crop_n_layers, 1);
        assert_eq!(p.crop_overlap_ratio, 0.25);
        assert_eq!(p.min_mask_region_area, 100);
        assert_eq!(p.points_per_batch, 64);
        assert_eq!(p.stability_score_thresh, 0.95);
    }

    #[test]
    fn out_of_range_values_are_refused_by_name() {
        let cases = [
            (
                v1::GenerateParams {
                    points_per_side: Some(0),
                    ..Default::default()
                },
                "points_per_side is 0",
            ),
            (
                v1::GenerateParams {
                    points_per_side: Some(100_000),
                    ..Default::default()
                },
                "points_per_side is 100000",
            ),
            (
                v1::GenerateParams {
                    points_per_batch: Some(0),
                    ..Default::default()
                },
                "points_per_batch is 0",
            ),
            (
                v1::GenerateParams {
                    pred_iou_thresh: Some(f32::NAN),
                    ..Default::default()
                },
                "pred_iou_thresh is NaN",
            ),
            (
                v1::GenerateParams {
                    stability_score_thresh: Some(1.5),
                    ..Default::default()
                },
                "stability_score_thresh is 1.5",
            ),
            (
                v1::GenerateParams {
                    box_nms_thresh: Some(-0.1),
                    ..Default::default()
                },
                "box_nms_thresh is -0.1",
            ),
            (
                v1::GenerateParams {
                    stability_score_offset: Some(f32::INFINITY),
                    ..Default::default()
                },
                "stability_score_offset is inf",
            ),
            (
                v1::GenerateParams {
                    crop_overlap_ratio: Some(1.0),
                    ..Default::default()
                },
                "crop_overlap_ratio is 1",
            ),
            (
                v1::GenerateParams {
                    crop_n_layers: Some(9),
                    ..Default::default()
                },
                "crop_n_layers is 9",
            ),
            (
                v1::GenerateParams {
                    crop_n_points_downscale_factor: Some(0),
                    ..Default::default()
                },
                "crop_n_points_downscale_factor is 0",
            ),
        ];
        for (p, expected) in cases {
            let message = refused(p, false);
            assert!(message.contains(expected), "{message:?} lacks {expected:?}");
        }
    }

    #[test]
    fn crop_layers_need_the_image() {
        let p = v1::GenerateParams {
            crop_n_layers: Some(1),
            ..Default::default()
        };
        assert!(refused(p, true).contains("image bytes"));
        assert!(params(Some(&p), false, &AmgParams::default()).is_ok());
    }
}
