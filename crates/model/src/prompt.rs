//! Prompts in original-image pixel coordinates, and the rules that make one valid.

use crate::error::{ModelError, Result};

/// Side of the square low-resolution mask logits (`mask_input`, `low_res_logits`).
pub const LOW_RES_MASK_SIZE: usize = 256;

/// One clicked point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Column, in pixels of the original image.
    pub x: f32,
    /// Row, in pixels of the original image.
    pub y: f32,
    /// 1 foreground, 0 background.
    pub label: i32,
}

/// A box prompt, corners in pixels of the original image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoxPrompt {
    /// Left.
    pub x1: f32,
    /// Top.
    pub y1: f32,
    /// Right (> x1).
    pub x2: f32,
    /// Bottom (> y1).
    pub y2: f32,
}

/// Everything said about one object: points, a box, a previous mask; at least one of
/// points or box.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObjectPrompt {
    /// Clicked points, in order.
    pub points: Vec<Point>,
    /// An optional box.
    pub bbox: Option<BoxPrompt>,
    /// Optional 256x256 low-resolution logits from an earlier prediction, row-major.
    pub mask_input: Option<Vec<f32>>,
}

impl ObjectPrompt {
    /// Checks every rule; the error names the offending value.
    pub fn validate(&self) -> Result<()> {
        if self.points.is_empty() && self.bbox.is_none() {
            return Err(ModelError::InvalidPrompt(
                "an object needs at least one point or a box".into(),
            ));
        }
        for (i, p) in self.points.iter().enumerate() {
            if !p.x.is_finite() || !p.y.is_finite() {
                return Err(ModelError::InvalidPrompt(format!(
                    "point {i} has a non-finite coordinate ({}, {})",
                    p.x, p.y
                )));
            }
            if p.label != 0 && p.label != 1 {
                return Err(ModelError::InvalidPrompt(format!(
                    "point {i} has label {}; labels are 1 (foreground) or 0 (background)",
                    p.label
                )));
            }
        }
        if let Some(b) = &self.bbox {
            if ![b.x1, b.y1, b.x2, b.y2].iter().all(|v| v.is_finite()) {
                return Err(ModelError::InvalidPrompt(format!(
                    "box [{}, {}, {}, {}] has a non-finite coordinate",
                    b.x1, b.y1, b.x2, b.y2
                )));
            }
            if b.x2 <= b.x1 || b.y2 <= b.y1 {
                return Err(ModelError::InvalidPrompt(format!(
                    "box [{}, {}, {}, {}] must have x2 > x1 and y2 > y1",
                    b.x1, b.y1, b.x2, b.y2
                )));
            }
        }
        if let Some(m) = &self.mask_input {
            let want = LOW_RES_MASK_SIZE * LOW_RES_MASK_SIZE;
            if m.len() != want {
                return Err(ModelError::InvalidPrompt(format!(
                    "mask_input has {} values; it must be {LOW_RES_MASK_SIZE}x{LOW_RES_MASK_SIZE} = {want} float32 logits",
                    m.len()
                )));
            }
            if m.iter().any(|v| !v.is_finite()) {
                return Err(ModelError::InvalidPrompt(
                    "mask_input has a non-finite value".into(),
                ));
            }
        }
        Ok(())
    }

    /// The shape that decides which objects can share a batch: number of points, box or
    /// not, mask or not.
    pub fn batch_key(&self) -> (usize, bool, bool) {
        (
            self.points.len(),
            self.bbox.is_some(),
            self.mask_input.is_some(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(x: f32, y: f32, label: i32) -> Point {
        Point { x, y, label }
    }

    #[test]
    fn accepts_points_or_box() {
        let p = ObjectPrompt {
            points: vec![point(1.0, 2.0, 1)],
            ..Default::default()
        };
        assert!(p.validate().is_ok());
        let b = ObjectPrompt {
            bbox: Some(BoxPrompt {
                x1: 0.0,
                y1: 0.0,
                x2: 1.0,
                y2: 1.0,
            }),
            ..Default::default()
        };
        assert!(b.validate().is_ok());
    }

    #[test]
    fn rejects_each_bad_input() {
        let empty = ObjectPrompt::default();
        assert!(empty
            .validate()
            .unwrap_err()
            .to_string()
            .contains("at least one"));
        let label = ObjectPrompt {
            points: vec![point(1.0, 2.0, 2)],
            ..Default::default()
        };
        assert!(label
            .validate()
            .unwrap_err()
            .to_string()
            .contains("label 2"));
        let nan = ObjectPrompt {
            points: vec![point(f32::NAN, 2.0, 1)],
            ..Default::default()
        };
        assert!(nan
            .validate()
            .unwrap_err()
            .to_string()
            .contains("non-finite"));
        let inverted = ObjectPrompt {
            bbox: Some(BoxPrompt {
                x1: 5.0,
                y1: 0.0,
                x2: 1.0,
                y2: 1.0,
            }),
            ..Default::default()
        };
        assert!(inverted
            .validate()
            .unwrap_err()
            .to_string()
            .contains("x2 > x1"));
        let mask = ObjectPrompt {
            points: vec![point(1.0, 2.0, 1)],
            mask_input: Some(vec![0.0; 10]),
            ..Default::default()
        };
        assert!(mask.validate().unwrap_err().to_string().contains("256x256"));
    }
}
