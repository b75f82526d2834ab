//! Wire requests from the scenario's prompts and generate parameters. The nesting of
//! points, labels and boxes is the command line's (`mobilesam_model::prompt_json`, shared
//! with `mobilesam segment`); what a client library refuses (bad nesting, ids that are
//! missing, zero or repeated) is refused here too, before anything is sent.

use std::collections::HashSet;

use mobilesam_model::prompt_json;
use mobilesam_model::ObjectPrompt;
use mobilesam_proto::v1;
use serde_json::{Map, Value};

use super::scenario::PromptSpec;

/// The `Prompt` a scenario prompt sends, numbered `request_id`; the error is one line.
pub fn prompt(spec: &PromptSpec, request_id: u64) -> Result<v1::Prompt, String> {
    let objects = prompt_json::from_values(
        spec.points.as_ref(),
        spec.labels.as_ref(),
        spec.boxes.as_ref(),
    )
    .map_err(|e| e.to_string())?;
    let ids = object_ids(spec.object_ids.as_deref(), objects.len(), spec.track)?;
    Ok(v1::Prompt {
        request_id,
        objects: objects
            .iter()
            .zip(ids)
            .map(|(object, id)| wire_object(object, id))
            .collect(),
        multimask_output: spec.multimask,
        return_low_res_logits: false,
        supersede_pending: spec.supersede,
        track: spec.track,
        return_polygons: spec.polygons,
    })
}

/// One object on the wire: its points, its box, no mask input.
fn wire_object(object: &ObjectPrompt, object_id: u64) -> v1::ObjectPrompt {
    v1::ObjectPrompt {
        points: object
            .points
            .iter()
            .map(|p| v1::Point {
                x: p.x,
                y: p.y,
                label: p.label,
            })
            .collect(),
        r#box: object.bbox.map(|b| v1::Box {
            x1: b.x1,
            y1: b.y1,
            x2: b.x2,
            y2: b.y2,
        }),
        mask_input: Vec::new(),
        object_id,
    }
}

/// The object id of each of `count` objects: those given (one per object, distinct, from
/// 1 to 2^64-1), else 0 for every object (which `track` does not allow).
fn object_ids(ids: Option<&[Value]>, count: usize, track: bool) -> Result<Vec<u64>, String> {
    let Some(ids) = ids else {
        if track {
            return Err("track needs object_ids: one id per object".into());
        }
        return Ok(vec![0; count]);
    };
    if ids.len() != count {
        return Err(format!(
            "object_ids has {} ids for {count} object(s); give one id per object",
            ids.len()
        ));
    }
    let ids = ids
        .iter()
        .enumerate()
        .map(|(i, v)| match v.as_u64() {
            Some(id) if id > 0 => Ok(id),
            _ => Err(format!(
                "object_ids[{i}]: expected an integer from 1 to 2^64-1, found {v}"
            )),
        })
        .collect::<Result<Vec<u64>, String>>()?;
    if ids.iter().collect::<HashSet<_>>().len() != ids.len() {
        return Err(format!(
            "object_ids must be distinct within a prompt, found {ids:?}"
        ));
    }
    Ok(ids)
}

/// `GenerateParams` with exactly the fields given (by their proto names) set; `null`
/// leaves a field unset.
pub fn generate_params(params: &Map<String, Value>) -> Result<v1::GenerateParams, String> {
    let mut out = v1::GenerateParams::default();
    for (name, value) in params {
        if value.is_null() {
            continue;
        }
        let real = || real(name, value);
        let whole = || whole(name, value);
        let narrow = || {
            whole()
                .and_then(|v| u32::try_from(v).map_err(|_| format!("{name}: {v} is beyond 2^32-1")))
        };
        match name.as_str() {
            "points_per_side" => out.points_per_side = Some(narrow()?),
            "points_per_batch" => out.points_per_batch = Some(narrow()?),
            "pred_iou_thresh" => out.pred_iou_thresh = Some(real()?),
            "stability_score_thresh" => out.stability_score_thresh = Some(real()?),
            "stability_score_offset" => out.stability_score_offset = Some(real()?),
            "box_nms_thresh" => out.box_nms_thresh = Some(real()?),
            "crop_n_layers" => out.crop_n_layers = Some(narrow()?),
            "crop_nms_thresh" => out.crop_nms_thresh = Some(real()?),
            "crop_overlap_ratio" => out.crop_overlap_ratio = Some(real()?),
            "crop_n_points_downscale_factor" => {
                out.crop_n_points_downscale_factor = Some(narrow()?)
            }
            "min_mask_region_area" => out.min_mask_region_area = Some(whole()?),
            other => return Err(format!("unknown generate parameter {other:?}")),
        }
    }
    Ok(out)
}

/// A float field: any finite JSON number, as float32.
fn real(name: &str, value: &Value) -> Result<f32, String> {
    match value.as_f64() {
        Some(v) if v.is_finite() => Ok(v as f32),
        _ => Err(format!("{name}: expected a finite number, found {value}")),
    }
}

/// An integer field: a non-negative JSON integer.
fn whole(name: &str, value: &Value) -> Result<u64, String> {
    value
        .as_u64()
        .ok_or_else(|| format!("{name}: expected a non-negative integer, found {value}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(value: Value) -> PromptSpec {
        serde_json::from_value(value).expect("a prompt spec")
    }

    fn point(x: f32, y: f32, label: i32) -> v1::Point {
        v1::Point { x, y, label }
    }

    #[test]
    fn nesting_follows_the_command_line() {
        let one = prompt(&spec(json!({"points": [200, 150]})), 7).expect("valid");
        assert_eq!(one.request_id, 7);
        assert_eq!(one.objects.len(), 1);
        assert_eq!(one.objects[0].points, vec![point(200.0, 150.0, 1)]);

        let per_point = prompt(
            &spec(json!({"points": [[1, 2], [3, 4]], "labels": [1, 0], "multimask": true})),
            1,
        )
        .expect("valid");
        assert!(per_point.multimask_output);
        let points: Vec<_> = per_point.objects.iter().map(|o| o.points.clone()).collect();
        assert_eq!(
            points,
            vec![vec![point(1.0, 2.0, 1)], vec![point(3.0, 4.0, 0)]]
        );

        let grouped = prompt(
            &spec(
                json!({"points": [[[1, 2], [3, 4]], [[5, 6]]], "labels": [[1, 0], [1]],
                         "boxes": [[0, 0, 9, 9], [4, 4, 8, 8]], "track": true,
                         "object_ids": [1, 3], "polygons": true, "supersede": true}),
            ),
            2,
        )
        .expect("valid");
        assert!(grouped.track && grouped.return_polygons && grouped.supersede_pending);
        assert!(!grouped.return_low_res_logits);
        assert_eq!(grouped.objects[0].points.len(), 2);
        assert_eq!(grouped.objects[0].points[1].label, 0);
        assert_eq!(grouped.objects[1].object_id, 3);
        assert_eq!(
            grouped.objects[1].r#box,
            Some(v1::Box {
                x1: 4.0,
                y1: 4.0,
                x2: 8.0,
                y2: 8.0
            })
        );
        assert!(grouped.objects.iter().all(|o| o.mask_input.is_empty()));

        let boxed = prompt(&spec(json!({"boxes": [100, 60, 330, 260]})), 3).expect("valid");
        assert_eq!(boxed.objects.len(), 1);
        assert!(boxed.objects[0].points.is_empty());
        assert_eq!(boxed.objects[0].object_id, 0);
    }

    #[test]
    fn refuses_what_a_client_refuses() {
        let cases = [
            (json!({}), "no prompt"),
            (json!({"points": [[1, 2], [3, 4]], "labels": [1]}), "labels"),
            (
                json!({"points": [[1, 2]], "object_ids": [1, 2]}),
                "2 ids for 1 object",
            ),
            (
                json!({"points": [1, 2], "object_ids": [0]}),
                "object_ids[0]",
            ),
            (
                json!({"points": [[1, 2], [3, 4]], "object_ids": [5, 5]}),
                "distinct",
            ),
            (json!({"points": [1, 2], "track": true}), "track needs"),
        ];
        for (value, expected) in cases {
            let message = prompt(&spec(value), 1).expect_err("refused");
            assert!(message.contains(expected), "{message:?} lacks {expected:?}");
        }
    }

    #[test]
    fn generate_sets_exactly_the_fields_given() {
        let Value::Object(params) = json!({"points_per_side": 4, "pred_iou_thresh": 0, "stability_score_thresh": 0.5,
                   "box_nms_thresh": null})
        else {
            panic!("an object")
        };
        let p = generate_params(&params).expect("valid");
        assert_eq!(p.points_per_side, Some(4));
        assert_eq!(p.pred_iou_thresh, Some(0.0));
        assert_eq!(p.stability_score_thresh, Some(0.5));
        assert_eq!(p.box_nms_thresh, None);
        assert_eq!(p.points_per_batch, None);
        for (bad, expected) in [
            (json!({"points_per_sides": 4}), "unknown generate parameter"),
            (json!({"points_per_side": -1}), "non-negative integer"),
            (json!({"points_per_side": 1.5}), "non-negative integer"),
            (json!({"pred_iou_thresh": "x"}), "finite number"),
        ] {
            let Value::Object(params) = bad else {
                panic!("an object")
            };
            let message = generate_params(&params).expect_err("refused");
            assert!(message.contains(expected), "{message:?} lacks {expected:?}");
        }
    }
}
