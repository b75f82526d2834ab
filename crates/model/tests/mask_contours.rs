//! Mask contours against OpenCV and Ultralytics (`tests/fixtures/yolo/segments.json`, made
//! by `make_yolo_fixtures.py`): `findContours(RETR_EXTERNAL, CHAIN_APPROX_SIMPLE)` point for
//! point, and `masks2segments`' join of the regions.

mod common;

use mobilesam_model::masks::contours::{external_contours, mask_segments};
use mobilesam_model::masks::polygon::Vertex;
use serde_json::Value;

fn json(name: &str) -> Value {
    let path = common::fixtures().join("yolo").join(name);
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("fixture parses")
}

#[test]
fn contours_equal_opencv_and_masks2segments() {
    let fixture = json("segments.json");
    let (h, w) = (
        fixture["height"].as_u64().expect("h") as usize,
        fixture["width"].as_u64().expect("w") as usize,
    );
    let mut mask = Vec::with_capacity(h * w);
    for (i, run) in fixture["row_major_runs"]
        .as_array()
        .expect("runs")
        .iter()
        .enumerate()
    {
        mask.extend(std::iter::repeat_n(
            (i % 2) as u8,
            run.as_u64().expect("run") as usize,
        ));
    }
    assert_eq!(mask.len(), h * w);
    let points = |v: &Value| -> Vec<Vertex> {
        v.as_array()
            .expect("points")
            .iter()
            .map(|p| [p[0].as_f64().expect("x"), p[1].as_f64().expect("y")])
            .collect()
    };
    let want: Vec<Vec<Vertex>> = fixture["contours"]
        .as_array()
        .expect("contours")
        .iter()
        .map(points)
        .collect();
    assert!(want.len() >= 3, "the mask has several regions");
    assert_eq!(external_contours(&mask, h, w), want);
    assert_eq!(
        mask_segments(&mask, h, w),
        points(&fixture["masks2segments"])
    );
}
