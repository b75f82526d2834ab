//! Prompts in Ultralytics' `SAM.predict(points=, labels=, bboxes=)` nesting, which its users
//! know:
//!
//! - points `[x, y]`: one object with one point; `[[x, y], ...]`: one object per point;
//!   `[[[x, y], ...], ...]`: several points per object;
//! - labels nest the same way (1 foreground, 0 background); omitted, every point is 1;
//! - bboxes `[x1, y1, x2, y2]` or a list of them;
//! - points and boxes together pair up object by object.

use serde_json::Value;

use crate::error::{ModelError, Result};
use crate::prompt::{BoxPrompt, ObjectPrompt, Point};

/// Parses the three JSON values into validated object prompts, in order.
pub fn parse_prompts(
    points: Option<&Value>,
    labels: Option<&Value>,
    bboxes: Option<&Value>,
) -> Result<Vec<ObjectPrompt>> {
    let point_groups = match points {
        Some(v) => Some(point_groups(v)?),
        None => None,
    };
    if labels.is_some() && point_groups.is_none() {
        return Err(invalid("labels were given without points"));
    }
    let boxes = match bboxes {
        Some(v) => Some(boxes(v)?),
        None => None,
    };
    let mut objects: Vec<ObjectPrompt> = match (&point_groups, &boxes) {
        (Some(groups), Some(boxes)) if groups.len() != boxes.len() => {
            return Err(invalid(&format!(
                "{} point object(s) and {} box(es): points and boxes pair up object by object",
                groups.len(),
                boxes.len()
            )))
        }
        (Some(groups), _) => groups
            .iter()
            .map(|g| ObjectPrompt {
                points: g.iter().map(|&(x, y)| Point { x, y, label: 1 }).collect(),
                ..Default::default()
            })
            .collect(),
        (None, Some(boxes)) => vec![ObjectPrompt::default(); boxes.len()],
        (None, None) => return Err(invalid("give --points and/or --bboxes")),
    };
    if let Some(boxes) = boxes {
        for (object, b) in objects.iter_mut().zip(boxes) {
            object.bbox = Some(b);
        }
    }
    if let (Some(labels), Some(groups)) = (labels, &point_groups) {
        let labels = label_groups(labels, groups)?;
        for (object, group) in objects.iter_mut().zip(labels) {
            for (point, label) in object.points.iter_mut().zip(group) {
                point.label = label;
            }
        }
    }
    for (i, object) in objects.iter().enumerate() {
        object.validate().map_err(|e| match e {
            ModelError::InvalidPrompt(m) => invalid(&format!("object {i}: {m}")),
            other => other,
        })?;
    }
    Ok(objects)
}

fn invalid(message: &str) -> ModelError {
    ModelError::InvalidPrompt(message.to_string())
}

/// A JSON number as f32; anything else is an error naming `what`.
fn number(v: &Value, what: &str) -> Result<f32> {
    let n = v
        .as_f64()
        .ok_or_else(|| invalid(&format!("{what} must be a number, got {v}")))?;
    Ok(n as f32)
}

/// Nesting depth of the first element chain: `1` for `[x, y]`, `2` for `[[x, y]]`, ...
fn depth(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.first().map_or(0, depth),
        _ => 0,
    }
}

fn array<'a>(v: &'a Value, what: &str) -> Result<&'a Vec<Value>> {
    v.as_array()
        .ok_or_else(|| invalid(&format!("{what} must be a list, got {v}")))
}

fn xy(v: &Value) -> Result<(f32, f32)> {
    let items = array(v, "a point")?;
    if items.len() != 2 {
        return Err(invalid(&format!("a point is [x, y], got {v}")));
    }
    Ok((number(&items[0], "x")?, number(&items[1], "y")?))
}

/// Points grouped by object.
fn point_groups(v: &Value) -> Result<Vec<Vec<(f32, f32)>>> {
    match depth(v) {
        1 => Ok(vec![vec![xy(v)?]]),
        2 => array(v, "points")?
            .iter()
            .map(|p| Ok(vec![xy(p)?]))
            .collect(),
        3 => array(v, "points")?
            .iter()
            .map(|group| {
                let group = array(group, "an object's points")?;
                if group.is_empty() {
                    return Err(invalid("an object has an empty list of points"));
                }
                group.iter().map(xy).collect()
            })
            .collect(),
        _ => Err(invalid(&format!(
            "points must be [x,y], [[x,y],...] or [[[x,y],...],...], got {v}"
        ))),
    }
}

fn label(v: &Value) -> Result<i32> {
    match v.as_i64() {
        Some(l) if l == 0 || l == 1 => Ok(l as i32),
        _ => Err(invalid(&format!(
            "label {v}: labels are 1 (foreground) or 0 (background)"
        ))),
    }
}

/// Labels nested like the points they belong to.
fn label_groups(v: &Value, groups: &[Vec<(f32, f32)>]) -> Result<Vec<Vec<i32>>> {
    let flat_points: usize = groups.iter().map(Vec::len).sum();
    let shape_error = || {
        invalid(&format!(
            "labels {v} do not pair with the points ({} object(s), {flat_points} point(s))",
            groups.len()
        ))
    };
    let labels: Vec<Vec<i32>> = match v {
        Value::Number(_) => vec![vec![label(v)?]],
        Value::Array(items) if depth(v) == 1 => {
            if groups.iter().all(|g| g.len() == 1) {
                items
                    .iter()
                    .map(|l| Ok(vec![label(l)?]))
                    .collect::<Result<_>>()?
            } else {
                vec![items.iter().map(label).collect::<Result<_>>()?]
            }
        }
        Value::Array(items) if depth(v) == 2 => items
            .iter()
            .map(|g| array(g, "labels")?.iter().map(label).collect())
            .collect::<Result<_>>()?,
        _ => return Err(shape_error()),
    };
    if labels.len() != groups.len() || labels.iter().zip(groups).any(|(l, g)| l.len() != g.len()) {
        return Err(shape_error());
    }
    Ok(labels)
}

fn boxes(v: &Value) -> Result<Vec<BoxPrompt>> {
    let one = |b: &Value| -> Result<BoxPrompt> {
        let items = array(b, "a box")?;
        if items.len() != 4 {
            return Err(invalid(&format!("a box is [x1, y1, x2, y2], got {b}")));
        }
        Ok(BoxPrompt {
            x1: number(&items[0], "x1")?,
            y1: number(&items[1], "y1")?,
            x2: number(&items[2], "x2")?,
            y2: number(&items[3], "y2")?,
        })
    };
    match depth(v) {
        1 => Ok(vec![one(v)?]),
        2 => array(v, "bboxes")?.iter().map(one).collect(),
        _ => Err(invalid(&format!(
            "bboxes must be [x1,y1,x2,y2] or a list of them, got {v}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(
        points: Option<Value>,
        labels: Option<Value>,
        bboxes: Option<Value>,
    ) -> Result<Vec<ObjectPrompt>> {
        parse_prompts(points.as_ref(), labels.as_ref(), bboxes.as_ref())
    }

    #[test]
    fn one_point_one_object() {
        let objects = parse(Some(json!([10, 20])), Some(json!([1])), None).unwrap();
        assert_eq!(objects.len(), 1);
        assert_eq!(
            objects[0].points,
            vec![Point {
                x: 10.0,
                y: 20.0,
                label: 1
            }]
        );
    }

    #[test]
    fn one_object_per_point() {
        let objects = parse(Some(json!([[1, 2], [3, 4]])), Some(json!([1, 0])), None).unwrap();
        assert_eq!(objects.len(), 2);
        assert_eq!(objects[1].points[0].label, 0);
    }

    #[test]
    fn several_points_per_object() {
        let objects = parse(
            Some(json!([[[1, 2], [3, 4]], [[5, 6], [7, 8]]])),
            Some(json!([[1, 0], [1, 1]])),
            None,
        )
        .unwrap();
        assert_eq!(objects.len(), 2);
        assert_eq!(objects[0].points.len(), 2);
        assert_eq!(objects[0].points[1].label, 0);
    }

    #[test]
    fn labels_default_to_foreground() {
        let objects = parse(Some(json!([[1, 2], [3, 4]])), None, None).unwrap();
        assert!(objects.iter().all(|o| o.points[0].label == 1));
    }

    #[test]
    fn boxes_alone_and_paired() {
        let objects = parse(None, None, Some(json!([0, 0, 10, 10]))).unwrap();
        assert_eq!(objects.len(), 1);
        assert!(objects[0].points.is_empty());
        let objects = parse(
            Some(json!([[1, 2], [3, 4]])),
            None,
            Some(json!([[0, 0, 10, 10], [5, 5, 9, 9]])),
        )
        .unwrap();
        assert_eq!(objects.len(), 2);
        assert_eq!(objects[1].bbox.unwrap().x1, 5.0);
        assert_eq!(objects[1].points[0].x, 3.0);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let cases = [
            (Some(json!([1, 2])), Some(json!([2])), None, "label 2"),
            (
                Some(json!([[1, 2], [3, 4]])),
                Some(json!([1])),
                None,
                "do not pair",
            ),
            (Some(json!([1, "a"])), None, None, "must be a number"),
            (None, None, Some(json!([5, 0, 1, 1])), "x2 > x1"),
            (
                Some(json!([[1, 2]])),
                None,
                Some(json!([[0, 0, 1, 1], [0, 0, 2, 2]])),
                "pair up",
            ),
            (None, None, None, "give --points"),
            (Some(json!([1, 2, 3])), None, None, "a point is [x, y]"),
            (Some(json!("x")), None, None, "points must be"),
        ];
        for (points, labels, bboxes, want) in cases {
            let err = parse(points, labels, bboxes).unwrap_err().to_string();
            assert!(err.contains(want), "{err} should contain {want}");
            assert!(!err.contains('\n'));
        }
    }
}
