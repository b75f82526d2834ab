//! Prompts from JSON, nested as Ultralytics' `SAM.predict(points=, labels=, bboxes=)`:
//!
//! - points `[x, y]`: one object with one point; `[[x, y], ...]`: one object per point;
//!   `[[[x, y], ...], ...]`: several points per object (objects may differ in count);
//! - labels nest like the points without the coordinate level (`[1]` or `1`, `[1, 0]`,
//!   `[[1, 0], ...]`); 1 is foreground, 0 background; omitted, every point is foreground;
//! - bboxes `[x1, y1, x2, y2]` (one object) or a list of them;
//! - points and boxes together pair up object by object, so their counts must match.
//!
//! Every error is one line and names the offending flag and position, e.g.
//! `--points[1][0]: expected a number, found string "NaN"`.

use serde_json::Value;

use crate::error::{ModelError, Result};
use crate::prompt::{BoxPrompt, ObjectPrompt, Point};

/// Returns early with an [`ModelError::InvalidPrompt`] built like `format!`.
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err(ModelError::InvalidPrompt(format!($($arg)*)))
    };
}

/// [`bail!`] unless the condition holds.
macro_rules! ensure {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            bail!($($arg)*);
        }
    };
}

/// The accepted shapes of `--points`, for error messages.
const POINT_FORMS: &str = "[x, y], [[x, y], ...] or [[[x, y], ...], ...]";

/// Parses the JSON texts of `--points`, `--labels` and `--bboxes` into validated objects,
/// in prompt order.
pub fn parse_prompts(
    points: Option<&str>,
    labels: Option<&str>,
    bboxes: Option<&str>,
) -> Result<Vec<ObjectPrompt>> {
    let points = points.map(|t| parse_json(t, "--points")).transpose()?;
    let labels = labels.map(|t| parse_json(t, "--labels")).transpose()?;
    let bboxes = bboxes.map(|t| parse_json(t, "--bboxes")).transpose()?;
    from_values(points.as_ref(), labels.as_ref(), bboxes.as_ref())
}

/// As [`parse_prompts`], from JSON values already parsed.
pub fn from_values(
    points: Option<&Value>,
    labels: Option<&Value>,
    bboxes: Option<&Value>,
) -> Result<Vec<ObjectPrompt>> {
    let point_objects = match points {
        Some(points) => Some(points_per_object(points, labels)?),
        None if labels.is_some() => bail!("--labels needs --points"),
        None => None,
    };
    let boxes = bboxes.map(parse_boxes).transpose()?;
    let objects: Vec<ObjectPrompt> = match (point_objects, boxes) {
        (None, None) => bail!(
            "no prompt: give --points and/or --bboxes (segmenting everything without a prompt is not supported)"
        ),
        (Some(points), None) => points
            .into_iter()
            .map(|points| ObjectPrompt {
                points,
                ..Default::default()
            })
            .collect(),
        (None, Some(boxes)) => boxes
            .into_iter()
            .map(|bbox| ObjectPrompt {
                bbox: Some(bbox),
                ..Default::default()
            })
            .collect(),
        (Some(points), Some(boxes)) => {
            ensure!(
                points.len() == boxes.len(),
                "--points gives {} object(s) but --bboxes gives {} box(es); points and boxes pair up object by object, so the counts must match",
                points.len(),
                boxes.len()
            );
            points
                .into_iter()
                .zip(boxes)
                .map(|(points, bbox)| ObjectPrompt {
                    points,
                    bbox: Some(bbox),
                    mask_input: None,
                })
                .collect()
        }
    };
    for (i, object) in objects.iter().enumerate() {
        object.validate().map_err(|e| match e {
            ModelError::InvalidPrompt(m) => ModelError::InvalidPrompt(format!("object {i}: {m}")),
            other => other,
        })?;
    }
    Ok(objects)
}

/// Parses one flag's JSON text.
fn parse_json(text: &str, flag: &str) -> Result<Value> {
    serde_json::from_str(text)
        .map_err(|e| ModelError::InvalidPrompt(format!("{flag} is not valid JSON ({e})")))
}

/// The points of each object, labelled from `labels` (all foreground when `None`).
fn points_per_object(points: &Value, labels: Option<&Value>) -> Result<Vec<Vec<Point>>> {
    let coords = point_coords(points)?;
    let nesting = depth(points);
    let labels = match labels {
        None => coords.iter().map(|obj| vec![1; obj.len()]).collect(),
        Some(labels) => point_labels(labels, nesting, &coords)?,
    };
    Ok(coords
        .into_iter()
        .zip(labels)
        .map(|(obj, labels)| {
            obj.into_iter()
                .zip(labels)
                .map(|([x, y], label)| Point { x, y, label })
                .collect()
        })
        .collect())
}

/// The `[x, y]` pairs of each object, by the nesting depth of `--points`.
fn point_coords(points: &Value) -> Result<Vec<Vec<[f32; 2]>>> {
    let items = list(points, "--points")?;
    ensure!(
        !items.is_empty(),
        "--points is empty; expected {POINT_FORMS}"
    );
    match depth(points) {
        1 => Ok(vec![vec![pair(points, "--points")?]]),
        2 => items
            .iter()
            .enumerate()
            .map(|(i, p)| Ok(vec![pair(p, &format!("--points[{i}]"))?]))
            .collect(),
        3 => items
            .iter()
            .enumerate()
            .map(|(i, obj)| {
                let path = format!("--points[{i}]");
                list(obj, &path)?
                    .iter()
                    .enumerate()
                    .map(|(j, p)| pair(p, &format!("{path}[{j}]")))
                    .collect()
            })
            .collect(),
        d => bail!("--points nests {d} lists deep; expected {POINT_FORMS}"),
    }
}

/// Labels shaped like `coords`, from `--labels` nested one level less than `--points`.
fn point_labels(labels: &Value, nesting: usize, coords: &[Vec<[f32; 2]>]) -> Result<Vec<Vec<i32>>> {
    match nesting {
        1 => {
            let value = match labels {
                Value::Array(items) if items.len() == 1 => &items[0],
                Value::Array(items) => bail!(
                    "--points is one point [x, y], so --labels must be one label like [1], found {} labels",
                    items.len()
                ),
                other => other,
            };
            Ok(vec![vec![label(value, "--labels[0]")?]])
        }
        2 => {
            let items = list(labels, "--labels")?;
            ensure!(
                depth(labels) == 1 && items.len() == coords.len(),
                "--points is a list of {} points (one object each), so --labels must be a flat list of {} labels like [1, 0]",
                coords.len(),
                coords.len()
            );
            items
                .iter()
                .enumerate()
                .map(|(i, v)| Ok(vec![label(v, &format!("--labels[{i}]"))?]))
                .collect()
        }
        _ => {
            let items = list(labels, "--labels")?;
            ensure!(
                items.len() == coords.len(),
                "--points has {} objects but --labels has {} entries; give one list of labels per object, like [[1, 0], [1]]",
                coords.len(),
                items.len()
            );
            items
                .iter()
                .zip(coords)
                .enumerate()
                .map(|(i, (obj, points))| {
                    let path = format!("--labels[{i}]");
                    let obj = list(obj, &path)?;
                    ensure!(
                        obj.len() == points.len(),
                        "{path} has {} labels for {} points",
                        obj.len(),
                        points.len()
                    );
                    obj.iter()
                        .enumerate()
                        .map(|(j, v)| label(v, &format!("{path}[{j}]")))
                        .collect()
                })
                .collect()
        }
    }
}

/// Boxes from `[x1, y1, x2, y2]` or a list of them.
fn parse_boxes(bboxes: &Value) -> Result<Vec<BoxPrompt>> {
    let items = list(bboxes, "--bboxes")?;
    ensure!(
        !items.is_empty(),
        "--bboxes is empty; expected [x1, y1, x2, y2] or [[x1, y1, x2, y2], ...]"
    );
    let one = |v: &Value, path: &str| -> Result<BoxPrompt> {
        let [x1, y1, x2, y2] = numbers::<4>(v, path, "[x1, y1, x2, y2]")?;
        Ok(BoxPrompt { x1, y1, x2, y2 })
    };
    match depth(bboxes) {
        1 => Ok(vec![one(bboxes, "--bboxes")?]),
        2 => items
            .iter()
            .enumerate()
            .map(|(i, b)| one(b, &format!("--bboxes[{i}]")))
            .collect(),
        d => bail!(
            "--bboxes nests {d} lists deep; expected [x1, y1, x2, y2] or [[x1, y1, x2, y2], ...]"
        ),
    }
}

/// One `[x, y]` point.
fn pair(v: &Value, path: &str) -> Result<[f32; 2]> {
    numbers::<2>(v, path, "[x, y]")
}

/// Exactly `N` numbers in a list.
fn numbers<const N: usize>(v: &Value, path: &str, form: &str) -> Result<[f32; N]> {
    let items = list(v, path)?;
    ensure!(
        items.len() == N,
        "{path}: expected {form}, found a list of {} values",
        items.len()
    );
    let mut out = [0.0; N];
    for (i, (slot, item)) in out.iter_mut().zip(items).enumerate() {
        *slot = number(item, &format!("{path}[{i}]"))?;
    }
    Ok(out)
}

/// A coordinate. Values beyond f32's range become infinite and are refused by validation.
fn number(v: &Value, path: &str) -> Result<f32> {
    match v.as_f64() {
        Some(x) => Ok(x as f32),
        None => bail!("{path}: expected a number, found {}", describe(v)),
    }
}

/// A label: an integer (or an integral float); 0 and 1 are checked by validation.
fn label(v: &Value, path: &str) -> Result<i32> {
    let integral = v
        .as_i64()
        .or_else(|| v.as_f64().filter(|x| x.fract() == 0.0).map(|x| x as i64));
    match integral.and_then(|i| i32::try_from(i).ok()) {
        Some(i) => Ok(i),
        None => bail!(
            "{path}: expected a label 1 (foreground) or 0 (background), found {}",
            describe(v)
        ),
    }
}

/// The items of a JSON list.
fn list<'a>(v: &'a Value, path: &str) -> Result<&'a [Value]> {
    match v {
        Value::Array(items) => Ok(items),
        other => bail!("{path}: expected a list, found {}", describe(other)),
    }
}

/// How many lists deep `v` nests (the deepest branch); 0 for a scalar.
fn depth(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// A short description of a JSON value for error messages.
fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string {}", Value::String(s.chars().take(40).collect())),
        Value::Array(items) => format!("a list of {} values", items.len()),
        Value::Object(_) => "an object".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(
        points: Option<&str>,
        labels: Option<&str>,
        bboxes: Option<&str>,
    ) -> Vec<ObjectPrompt> {
        parse_prompts(points, labels, bboxes).expect("valid prompt")
    }

    fn error(points: Option<&str>, labels: Option<&str>, bboxes: Option<&str>) -> String {
        format!(
            "{:#}",
            parse_prompts(points, labels, bboxes).expect_err("invalid prompt")
        )
    }

    fn p(x: f32, y: f32, label: i32) -> Point {
        Point { x, y, label }
    }

    #[test]
    fn single_point_is_one_object() {
        let objects = parse(Some("[10, 20.5]"), None, None);
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0].points, vec![p(10.0, 20.5, 1)]);
        assert_eq!(
            parse(Some("[1, 2]"), Some("[0]"), None)[0].points,
            vec![p(1.0, 2.0, 0)]
        );
        assert_eq!(
            parse(Some("[1, 2]"), Some("0"), None)[0].points,
            vec![p(1.0, 2.0, 0)]
        );
    }

    #[test]
    fn list_of_points_is_one_object_each() {
        let objects = parse(Some("[[1, 2], [3, 4], [5, 6]]"), Some("[1, 0, 1]"), None);
        let points: Vec<_> = objects.iter().map(|o| o.points.clone()).collect();
        assert_eq!(
            points,
            vec![
                vec![p(1.0, 2.0, 1)],
                vec![p(3.0, 4.0, 0)],
                vec![p(5.0, 6.0, 1)]
            ]
        );
    }

    #[test]
    fn nested_points_group_per_object() {
        let objects = parse(
            Some("[[[1, 2], [3, 4]], [[5, 6]]]"),
            Some("[[1, 0], [1]]"),
            None,
        );
        assert_eq!(objects.len(), 2);
        assert_eq!(objects[0].points, vec![p(1.0, 2.0, 1), p(3.0, 4.0, 0)]);
        assert_eq!(objects[1].points, vec![p(5.0, 6.0, 1)]);
        let defaulted = parse(Some("[[[1, 2], [3, 4]]]"), None, None);
        assert!(defaulted[0].points.iter().all(|pt| pt.label == 1));
    }

    #[test]
    fn boxes_alone_and_paired_with_points() {
        let one = parse(None, None, Some("[1, 2, 30, 40]"));
        assert_eq!(one.len(), 1);
        assert_eq!(
            one[0].bbox,
            Some(BoxPrompt {
                x1: 1.0,
                y1: 2.0,
                x2: 30.0,
                y2: 40.0
            })
        );
        let two = parse(None, None, Some("[[0, 0, 5, 5], [1, 1, 9, 9]]"));
        assert_eq!(two.len(), 2);
        let paired = parse(
            Some("[[2, 2], [4, 4]]"),
            None,
            Some("[[0, 0, 5, 5], [1, 1, 9, 9]]"),
        );
        assert_eq!(paired[1].points, vec![p(4.0, 4.0, 1)]);
        assert_eq!(paired[1].bbox.map(|b| b.x2), Some(9.0));
    }

    #[test]
    fn rejects_bad_prompts_with_one_line_messages() {
        let cases = [
            (error(None, None, None), "no prompt"),
            (
                error(Some("[1, 2"), None, None),
                "--points is not valid JSON",
            ),
            (
                error(Some("[\"NaN\", 2]"), None, None),
                "--points[0]: expected a number, found string \"NaN\"",
            ),
            (error(Some("[]"), None, None), "--points is empty"),
            (error(Some("[1, 2, 3]"), None, None), "expected [x, y]"),
            (
                error(Some("[[[[1, 2]]]]"), None, None),
                "nests 4 lists deep",
            ),
            (error(Some("[1, 2]"), Some("[2]"), None), "label 2"),
            (
                error(Some("[1, 2]"), Some("[0.5]"), None),
                "--labels[0]: expected a label",
            ),
            (
                error(Some("[[1, 2], [3, 4]]"), Some("[1]"), None),
                "flat list of 2 labels",
            ),
            (
                error(Some("[[[1, 2], [3, 4]]]"), Some("[[1]]"), None),
                "--labels[0] has 1 labels for 2 points",
            ),
            (
                error(Some("[[[1, 2]]]"), Some("[1, 0]"), None),
                "--points has 1 objects but --labels has 2",
            ),
            (error(None, Some("[1]"), None), "--labels needs --points"),
            (error(None, None, Some("[5, 0, 1, 1]")), "x2 > x1"),
            (error(None, None, Some("[0, 5, 1, 1]")), "y2 > y1"),
            (
                error(None, None, Some("[0, 0, 1]")),
                "expected [x1, y1, x2, y2]",
            ),
            (error(Some("[1e39, 2]"), None, None), "non-finite"),
            (
                error(Some("[[1, 2], [3, 4]]"), None, Some("[0, 0, 5, 5]")),
                "counts must match",
            ),
        ];
        for (message, expected) in cases {
            assert!(message.contains(expected), "{message:?} lacks {expected:?}");
            assert!(!message.contains('\n'), "{message:?}");
        }
    }
}
