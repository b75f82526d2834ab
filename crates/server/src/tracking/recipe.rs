//! The tracking recipe, from one frame to the next (docs/tracking.md):
//! the new frame is decoded with the previous mask's tight box, scaled by the ratio of the
//! frame sizes, and the previous mask's low-resolution logits as `mask_input`, for one
//! mask (no multimask). An empty mask loses the object; the optional thresholds may lose
//! it earlier. Pure functions: no locks, no jobs.

use mobilesam_model::{BoxPrompt, MaskOutput, ObjectPrompt};

/// What a session keeps of a followed object: its last mask.
#[derive(Debug, Clone, PartialEq)]
pub struct Track {
    /// The mask's 256x256 low-resolution logits, row-major.
    pub logits: Vec<f32>,
    /// The mask's tight box as corners: x1, y1, x2 = x1 + width, y2 = y1 + height.
    pub bbox: [f32; 4],
    /// (height, width) of the frame the mask belongs to.
    pub frame: (usize, usize),
    /// Foreground pixels of the mask.
    pub area: u64,
    /// The prompt that started (or last corrected) the track asked for
    /// `return_polygons`: the follow-ups' masks carry their polygons too.
    pub return_polygons: bool,
}

/// A tracked object's state.
#[derive(Debug, Clone, PartialEq)]
pub enum ObjectState {
    /// Followed: the last mask.
    Tracked(Track),
    /// Lost: not followed until it is prompted again.
    Lost,
}

impl ObjectState {
    /// The state a decoded mask gives: LOST when it is empty. The mask must carry its
    /// low-resolution logits. `return_polygons`: the follow-ups' masks carry polygons.
    pub fn from_mask(mask: &MaskOutput, frame: (usize, usize), return_polygons: bool) -> Self {
        match &mask.low_res_logits {
            Some(logits) if mask.area > 0 => {
                let [x, y, w, h] = mask.bbox;
                Self::Tracked(Track {
                    logits: logits.clone(),
                    bbox: [x, y, x + w, y + h],
                    frame,
                    area: mask.area,
                    return_polygons,
                })
            }
            _ => Self::Lost,
        }
    }

    /// Bytes this state holds (the logits of a followed object).
    pub fn size_bytes(&self) -> u64 {
        match self {
            Self::Tracked(track) => (track.logits.len() * std::mem::size_of::<f32>()) as u64,
            Self::Lost => 0,
        }
    }
}

/// The optional thresholds that lose an object before its mask is empty.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Thresholds {
    /// Lost below this predicted IoU.
    pub min_score: Option<f32>,
    /// Lost when the area grows or shrinks by more than this factor.
    pub max_area_change: Option<f32>,
}

/// The prompt that follows `track` onto a frame of `frame` = (height, width) pixels.
pub fn follow_prompt(track: &Track, frame: (usize, usize)) -> ObjectPrompt {
    let sx = frame.1 as f32 / track.frame.1 as f32;
    let sy = frame.0 as f32 / track.frame.0 as f32;
    let [x1, y1, x2, y2] = track.bbox;
    ObjectPrompt {
        points: Vec::new(),
        bbox: Some(BoxPrompt {
            x1: x1 * sx,
            y1: y1 * sy,
            x2: x2 * sx,
            y2: y2 * sy,
        }),
        mask_input: Some(track.logits.clone()),
    }
}

/// The state after following `previous` to `mask` (decoded on a frame of `frame`).
pub fn next_state(
    previous: &Track,
    mask: &MaskOutput,
    frame: (usize, usize),
    thresholds: Thresholds,
) -> ObjectState {
    if thresholds.min_score.is_some_and(|min| mask.score < min) {
        return ObjectState::Lost;
    }
    if let Some(factor) = thresholds.max_area_change {
        // Areas compared per pixel of their frames, so a resized frame is no change.
        let density = |area: u64, (h, w): (usize, usize)| area as f64 / (h * w).max(1) as f64;
        let before = density(previous.area, previous.frame);
        let after = density(mask.area, frame);
        let factor = f64::from(factor);
        if after > before * factor || after * factor < before {
            return ObjectState::Lost;
        }
    }
    ObjectState::from_mask(mask, frame, previous.return_polygons)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mobilesam_model::masks::Rle;

    fn mask(score: f32, area: u64, bbox: [f32; 4]) -> MaskOutput {
        MaskOutput {
            score,
            area,
            bbox,
            rle: Rle {
                size: [10, 20],
                counts: String::new(),
            },
            stability_score: 0.9,
            low_res_logits: Some(vec![0.5; 4]),
            polygons: None,
        }
    }

    fn track() -> Track {
        Track {
            logits: vec![1.0; 4],
            bbox: [10.0, 20.0, 30.0, 60.0],
            frame: (100, 200),
            area: 400,
            return_polygons: false,
        }
    }

    #[test]
    fn the_box_is_scaled_by_the_frame_size_ratio() {
        let same = follow_prompt(&track(), (100, 200));
        let b = same.bbox.expect("box");
        assert_eq!([b.x1, b.y1, b.x2, b.y2], [10.0, 20.0, 30.0, 60.0]);
        assert_eq!(same.mask_input.as_deref(), Some(&[1.0f32; 4][..]));
        assert!(same.points.is_empty());
        let b = follow_prompt(&track(), (50, 300)).bbox.expect("box");
        assert_eq!([b.x1, b.y1, b.x2, b.y2], [15.0, 10.0, 45.0, 30.0]);
    }

    #[test]
    fn a_mask_becomes_a_track_with_corner_box_or_is_lost_when_empty() {
        let state = ObjectState::from_mask(&mask(0.9, 12, [3.0, 4.0, 5.0, 6.0]), (10, 20), true);
        let ObjectState::Tracked(t) = &state else {
            panic!("not tracked: {state:?}");
        };
        assert_eq!(t.bbox, [3.0, 4.0, 8.0, 10.0]);
        assert_eq!((t.frame, t.area, t.return_polygons), ((10, 20), 12, true));
        assert_eq!(state.size_bytes(), 16);
        let empty = ObjectState::from_mask(&mask(0.9, 0, [0.0; 4]), (10, 20), true);
        assert_eq!(empty, ObjectState::Lost);
        assert_eq!(empty.size_bytes(), 0);
    }

    #[test]
    fn the_polygons_wish_follows_the_track() {
        let asked = Track {
            return_polygons: true,
            ..track()
        };
        let next = next_state(
            &asked,
            &mask(0.9, 400, [1.0, 1.0, 20.0, 20.0]),
            (100, 200),
            Thresholds::default(),
        );
        assert!(matches!(next, ObjectState::Tracked(t) if t.return_polygons));
        let next = next_state(
            &track(),
            &mask(0.9, 400, [1.0, 1.0, 20.0, 20.0]),
            (100, 200),
            Thresholds::default(),
        );
        assert!(matches!(next, ObjectState::Tracked(t) if !t.return_polygons));
    }

    #[test]
    fn thresholds_lose_objects_only_when_set() {
        let low = mask(0.2, 400, [1.0, 1.0, 20.0, 20.0]);
        let off = Thresholds::default();
        assert!(matches!(
            next_state(&track(), &low, (100, 200), off),
            ObjectState::Tracked(_)
        ));
        let min_score = Thresholds {
            min_score: Some(0.5),
            ..off
        };
        assert_eq!(
            next_state(&track(), &low, (100, 200), min_score),
            ObjectState::Lost
        );
        let area = Thresholds {
            max_area_change: Some(2.0),
            ..off
        };
        let grown = mask(0.9, 801, [1.0, 1.0, 20.0, 20.0]);
        let shrunk = mask(0.9, 199, [1.0, 1.0, 20.0, 20.0]);
        let doubled = mask(0.9, 800, [1.0, 1.0, 20.0, 20.0]);
        assert_eq!(
            next_state(&track(), &grown, (100, 200), area),
            ObjectState::Lost
        );
        assert_eq!(
            next_state(&track(), &shrunk, (100, 200), area),
            ObjectState::Lost
        );
        assert!(matches!(
            next_state(&track(), &doubled, (100, 200), area),
            ObjectState::Tracked(_)
        ));
        // Four times the pixels on a frame twice as large each way: the same share.
        let resized = mask(0.9, 1600, [1.0, 1.0, 40.0, 40.0]);
        assert!(matches!(
            next_state(&track(), &resized, (200, 400), area),
            ObjectState::Tracked(_)
        ));
    }
}
