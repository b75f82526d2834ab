//! Results to wire messages: masks, image-ready notices and errors. The unary RPCs answer
//! the messages themselves; the `Segment` stream wraps them with [`in_stream`].

use mobilesam_model::masks::regions::Region;
use mobilesam_model::{Embedding, MaskOutput};
use mobilesam_proto::v1;

use crate::error::RequestError;
use crate::lanes::jobs::Decoded;

/// The masks of one decoded prompt.
pub fn masks(request_id: u64, decoded: Decoded) -> v1::Masks {
    let objects = decoded
        .objects
        .into_iter()
        .map(|object| v1::ObjectMasks {
            masks: object.masks.into_iter().map(mask).collect(),
            ..Default::default()
        })
        .collect();
    v1::Masks {
        request_id,
        objects,
        decode_ms: decoded.elapsed.as_secs_f64() * 1e3,
    }
}

/// One mask. The box is the mask's tight `[x, y, w, h]` (pycocotools' `toBbox`) written
/// as corners: `x2 = x + w`, `y2 = y + h`.
/// One mask as its wire message.
pub fn mask(m: MaskOutput) -> v1::Mask {
    let [x, y, w, h] = m.bbox;
    v1::Mask {
        score: m.score,
        area: m.area,
        bbox: Some(v1::Box {
            x1: x,
            y1: y,
            x2: x + w,
            y2: y + h,
        }),
        rle: Some(v1::Rle {
            size: m.rle.size.to_vec(),
            counts: m.rle.counts,
        }),
        low_res_logits: m
            .low_res_logits
            .map(|logits| logits_to_bytes(&logits))
            .unwrap_or_default(),
        stability_score: m.stability_score,
        polygons: m.polygons.map(polygons).unwrap_or_default(),
    }
}

/// Regions as wire polygons: each region's outline, then the holes inside it.
fn polygons(regions: Vec<Region>) -> Vec<v1::Polygon> {
    regions
        .into_iter()
        .flat_map(|region| {
            std::iter::once((region.outline, false))
                .chain(region.holes.into_iter().map(|hole| (hole, true)))
        })
        .map(|(ring, hole)| v1::Polygon {
            points: ring
                .iter()
                .flat_map(|&[x, y]| [x as f32, y as f32])
                .collect(),
            hole,
        })
        .collect()
}

/// float32 values as little-endian bytes.
pub fn logits_to_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// The notice that the session's image is ready (its size and encode time).
pub fn image_ready(session_id: &str, embedding: &Embedding, encode_ms: f64) -> v1::ImageReady {
    let (height, width) = embedding.original_size;
    v1::ImageReady {
        session_id: session_id.to_string(),
        width: u32::try_from(width).unwrap_or(u32::MAX),
        height: u32::try_from(height).unwrap_or(u32::MAX),
        encode_ms,
        ..Default::default()
    }
}

/// A `SegmentResponse` carrying an error for `request_id` (0 for `SetImage`).
pub fn error(request_id: u64, error: &RequestError) -> v1::SegmentResponse {
    in_stream(v1::segment_response::Response::Error(v1::Error {
        request_id,
        code: error.code() as i32,
        message: error.to_string(),
    }))
}

/// One answer as a `Segment` stream message.
pub fn in_stream(response: v1::segment_response::Response) -> v1::SegmentResponse {
    v1::SegmentResponse {
        response: Some(response),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mobilesam_model::masks::Rle;
    use mobilesam_model::ObjectMasks;
    use std::time::Duration;

    #[test]
    fn masks_keep_order_and_fields() {
        let decoded = Decoded {
            objects: vec![ObjectMasks {
                masks: vec![MaskOutput {
                    score: 0.5,
                    area: 6,
                    bbox: [1.0, 2.0, 3.0, 2.0],
                    rle: Rle {
                        size: [4, 5],
                        counts: "abc".into(),
                    },
                    stability_score: 0.75,
                    low_res_logits: Some(vec![1.0, -2.0]),
                    polygons: Some(vec![Region {
                        area: 5,
                        outline: vec![[0.0, 0.0], [3.0, 0.0], [3.0, 3.0], [0.0, 3.0]],
                        holes: vec![vec![[1.0, 1.0], [1.0, 2.0], [2.0, 2.0], [2.0, 1.0]]],
                    }]),
                }],
            }],
            elapsed: Duration::from_millis(12),
        };
        let m = masks(9, decoded);
        assert_eq!(m.request_id, 9);
        assert!((m.decode_ms - 12.0).abs() < 1e-9);
        let mask = &m.objects[0].masks[0];
        assert_eq!(mask.area, 6);
        assert_eq!(mask.stability_score, 0.75);
        assert_eq!(
            mask.bbox,
            Some(v1::Box {
                x1: 1.0,
                y1: 2.0,
                x2: 4.0,
                y2: 4.0
            })
        );
        assert_eq!(mask.rle.as_ref().map(|r| r.size.clone()), Some(vec![4, 5]));
        assert_eq!(mask.low_res_logits.len(), 8);
        assert_eq!(&mask.low_res_logits[4..], &(-2.0f32).to_le_bytes());
        let outlines: Vec<(usize, bool)> = mask
            .polygons
            .iter()
            .map(|p| (p.points.len(), p.hole))
            .collect();
        assert_eq!(
            outlines,
            [(8, false), (8, true)],
            "the region, then its hole"
        );
        assert_eq!(mask.polygons[0].points[2..4], [3.0, 0.0]);
    }

    #[test]
    fn errors_carry_their_code() {
        let e = error(3, &RequestError::NotFound("gone".into()));
        let Some(v1::segment_response::Response::Error(e)) = e.response else {
            panic!("not an error");
        };
        assert_eq!((e.request_id, e.code, e.message.as_str()), (3, 5, "gone"));
    }
}
