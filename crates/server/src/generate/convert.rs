//! Generated masks and summaries to wire messages.

use mobilesam_model::amg::AmgMask;
use mobilesam_proto::v1;

use super::Generated;

/// One mask as a `GeneratedMask`. `mask.bbox` follows `Mask`'s convention (the tight box
/// as corners, `x2 = x + width in pixels`), which is the generator's `bbox` `[x, y, w, h]`
/// (with `w = x_max - x_min`) as `x1 = x, x2 = x + w + 1`; zeros for an empty mask.
/// `crop_box` `[x, y, w, h]` becomes `x1 = x, x2 = x + w`.
pub fn generated_mask(request_id: u64, m: AmgMask) -> v1::GeneratedMask {
    let [x, y, w, h] = m.bbox.map(|v| v as f32);
    let bbox = if m.area == 0 {
        v1::Box::default()
    } else {
        v1::Box {
            x1: x,
            y1: y,
            x2: x + w + 1.0,
            y2: y + h + 1.0,
        }
    };
    let [cx, cy, cw, ch] = m.crop_box.map(|v| v as f32);
    v1::GeneratedMask {
        request_id,
        mask: Some(v1::Mask {
            score: m.predicted_iou,
            area: m.area,
            bbox: Some(bbox),
            rle: Some(v1::Rle {
                size: m.segmentation.size.to_vec(),
                counts: m.segmentation.counts,
            }),
            low_res_logits: Vec::new(),
            stability_score: m.stability_score,
            polygons: Vec::new(),
        }),
        stability_score: m.stability_score,
        point: Some(v1::Point {
            x: m.point_coords[0] as f32,
            y: m.point_coords[1] as f32,
            label: 1,
        }),
        crop_box: Some(v1::Box {
            x1: cx,
            y1: cy,
            x2: cx + cw,
            y2: cy + ch,
        }),
    }
}

/// The summary that ends a generation's answer.
pub fn summary(request_id: u64, generated: &Generated) -> v1::GenerateSummary {
    let narrow = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    v1::GenerateSummary {
        request_id,
        mask_count: narrow(generated.mask_count),
        width: narrow(generated.width),
        height: narrow(generated.height),
        encode_ms: generated.encode.as_secs_f64() * 1e3,
        generate_ms: generated.elapsed.as_secs_f64() * 1e3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mobilesam_model::masks::Rle;
    use std::time::Duration;

    fn amg_mask(area: u64, bbox: [i64; 4]) -> AmgMask {
        AmgMask {
            segmentation: Rle {
                size: [48, 64],
                counts: "xyz".into(),
            },
            area,
            bbox,
            predicted_iou: 0.75,
            point_coords: [4.0, 36.0],
            stability_score: 0.5,
            crop_box: [0, 0, 64, 48],
        }
    }

    #[test]
    fn mask_fields_and_box_conventions() {
        let g = generated_mask(7, amg_mask(12, [2, 3, 5, 1]));
        assert_eq!(g.request_id, 7);
        let mask = g.mask.expect("mask");
        assert_eq!((mask.score, mask.area), (0.75, 12));
        // x_max = 2 + 5 = 7 inclusive, so the box ends at pixel edge 8.
        assert_eq!(
            mask.bbox,
            Some(v1::Box {
                x1: 2.0,
                y1: 3.0,
                x2: 8.0,
                y2: 5.0
            })
        );
        let rle = mask.rle.expect("rle");
        assert_eq!((rle.size, rle.counts.as_str()), (vec![48, 64], "xyz"));
        assert_eq!(g.stability_score, 0.5);
        assert_eq!(
            g.point,
            Some(v1::Point {
                x: 4.0,
                y: 36.0,
                label: 1
            })
        );
        assert_eq!(
            g.crop_box,
            Some(v1::Box {
                x1: 0.0,
                y1: 0.0,
                x2: 64.0,
                y2: 48.0
            })
        );
        let empty = generated_mask(0, amg_mask(0, [0; 4]));
        assert_eq!(empty.mask.and_then(|m| m.bbox), Some(v1::Box::default()));
    }

    #[test]
    fn summary_fields() {
        let s = summary(
            3,
            &Generated {
                mask_count: 2,
                width: 64,
                height: 48,
                encode: Duration::from_millis(5),
                elapsed: Duration::from_millis(20),
            },
        );
        assert_eq!(
            (s.request_id, s.mask_count, s.width, s.height),
            (3, 2, 64, 48)
        );
        assert!((s.encode_ms - 5.0).abs() < 1e-9 && (s.generate_ms - 20.0).abs() < 1e-9);
    }
}
