//! The tracking recipe, from one frame to the next (docs/tracking.md):
//! the new frame is decoded with the start mask's tight box, scaled by the ratio of the
//! frame sizes, and the start mask's low-resolution logits as `mask_input` where they were
//! kept, for one mask (no multimask). An empty mask loses the object; the optional
//! thresholds may lose it earlier. Which frame is the start: [`super::RecipeObject`].
//! Pure functions: no locks, no jobs.

use mobilesam_model::{BoxPrompt, MaskOutput, ObjectPrompt};

use super::frames::mask_bytes;

/// A followed object's mask on one frame: what is answered, and what the next frame
/// starts from.
#[derive(Debug, Clone)]
pub struct Track {
    /// The mask as answered (score, area, box as `[x, y, w, h]`, RLE; polygons when the
    /// object asked for them). Its 256x256 `low_res_logits` are kept only on the frames
    /// the object is most likely to continue from ([`super::RecipeObject`]); elsewhere
    /// they are `None` and a frame started from this one is decoded from the box alone.
    pub mask: MaskOutput,
    /// (height, width) of the frame the mask belongs to.
    pub frame: (usize, usize),
}

impl Track {
    /// The mask's tight box as corners: x1, y1, x2 = x1 + width, y2 = y1 + height.
    pub fn corners(&self) -> [f32; 4] {
        let [x, y, w, h] = self.mask.bbox;
        [x, y, x + w, y + h]
    }
}

/// A tracked object's result on one frame.
#[derive(Debug, Clone)]
pub enum ObjectState {
    /// Followed: its mask on the frame.
    Tracked(Track),
    /// Lost: no mask, and the frames that start from this one are lost too until the
    /// object is prompted again.
    Lost,
}

impl ObjectState {
    /// The state a decoded mask on a frame of `frame` = (height, width) gives: LOST when
    /// it is empty or has no low-resolution logits (every tracking decode asks for them).
    pub fn from_mask(mask: MaskOutput, frame: (usize, usize)) -> Self {
        if mask.area > 0 && mask.low_res_logits.is_some() {
            Self::Tracked(Track { mask, frame })
        } else {
            Self::Lost
        }
    }

    /// Bytes this state holds (the mask's RLE, polygons and kept logits; a LOST state
    /// its own size).
    pub fn size_bytes(&self) -> u64 {
        match self {
            Self::Tracked(track) => mask_bytes(&track.mask),
            Self::Lost => std::mem::size_of::<Self>() as u64,
        }
    }

    /// The followed mask, `None` when lost.
    pub fn track(&self) -> Option<&Track> {
        match self {
            Self::Tracked(track) => Some(track),
            Self::Lost => None,
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

/// The prompt that follows `track` onto a frame of `frame` = (height, width) pixels: its
/// box, and its logits as `mask_input` where they were kept (else the box alone).
pub fn follow_prompt(track: &Track, frame: (usize, usize)) -> ObjectPrompt {
    let sx = frame.1 as f32 / track.frame.1 as f32;
    let sy = frame.0 as f32 / track.frame.0 as f32;
    let [x1, y1, x2, y2] = track.corners();
    ObjectPrompt {
        points: Vec::new(),
        bbox: Some(BoxPrompt {
            x1: x1 * sx,
            y1: y1 * sy,
            x2: x2 * sx,
            y2: y2 * sy,
        }),
        mask_input: track.mask.low_res_logits.clone(),
    }
}

/// The state after following `previous` to `mask` (decoded on a frame of `frame`).
pub fn next_state(
    previous: &Track,
    mask: MaskOutput,
    frame: (usize, usize),
    thresholds: Thresholds,
) -> ObjectState {
    if thresholds.min_score.is_some_and(|min| mask.score < min) {
        return ObjectState::Lost;
    }
    if let Some(factor) = thresholds.max_area_change {
        // Areas compared per pixel of their frames, so a resized frame is no change.
        let density = |area: u64, (h, w): (usize, usize)| area as f64 / (h * w).max(1) as f64;
        let before = density(previous.mask.area, previous.frame);
        let after = density(mask.area, frame);
        let factor = f64::from(factor);
        if after > before * factor || after * factor < before {
            return ObjectState::Lost;
        }
    }
    ObjectState::from_mask(mask, frame)
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
            mask: MaskOutput {
                low_res_logits: Some(vec![1.0; 4]),
                ..mask(0.9, 400, [10.0, 20.0, 20.0, 40.0])
            },
            frame: (100, 200),
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
    fn a_track_without_kept_logits_is_followed_by_its_box_alone() {
        let mut dropped = track();
        dropped.mask.low_res_logits = None;
        let prompt = follow_prompt(&dropped, (100, 200));
        assert!(prompt.mask_input.is_none());
        let b = prompt.bbox.expect("box");
        assert_eq!([b.x1, b.y1, b.x2, b.y2], [10.0, 20.0, 30.0, 60.0]);
    }

    #[test]
    fn a_mask_becomes_a_track_or_is_lost_when_empty() {
        let state = ObjectState::from_mask(mask(0.9, 12, [3.0, 4.0, 5.0, 6.0]), (10, 20));
        let Some(t) = state.track() else {
            panic!("not tracked: {state:?}");
        };
        assert_eq!(t.corners(), [3.0, 4.0, 8.0, 10.0]);
        assert_eq!((t.frame, t.mask.area), ((10, 20), 12));
        let fixed = std::mem::size_of::<MaskOutput>() as u64;
        assert_eq!(state.size_bytes(), 16 + fixed);
        let empty = ObjectState::from_mask(mask(0.9, 0, [0.0; 4]), (10, 20));
        assert!(matches!(empty, ObjectState::Lost));
        assert_eq!(
            empty.size_bytes(),
            std::mem::size_of::<ObjectState>() as u64
        );
        let no_logits = MaskOutput {
            low_res_logits: None,
            ..mask(0.9, 12, [3.0, 4.0, 5.0, 6.0])
        };
        assert!(ObjectState::from_mask(no_logits, (10, 20))
            .track()
            .is_none());
    }

    #[test]
    fn thresholds_lose_objects_only_when_set() {
        let low = || mask(0.2, 400, [1.0, 1.0, 20.0, 20.0]);
        let tracked = |state: ObjectState| state.track().is_some();
        let off = Thresholds::default();
        assert!(tracked(next_state(&track(), low(), (100, 200), off)));
        let min_score = Thresholds {
            min_score: Some(0.5),
            ..off
        };
        assert!(!tracked(next_state(&track(), low(), (100, 200), min_score)));
        let area = Thresholds {
            max_area_change: Some(2.0),
            ..off
        };
        let sized = |area: u64| mask(0.9, area, [1.0, 1.0, 20.0, 20.0]);
        assert!(!tracked(next_state(&track(), sized(801), (100, 200), area)));
        assert!(!tracked(next_state(&track(), sized(199), (100, 200), area)));
        assert!(tracked(next_state(&track(), sized(800), (100, 200), area)));
        // Four times the pixels on a frame twice as large each way: the same share.
        let resized = mask(0.9, 1600, [1.0, 1.0, 40.0, 40.0]);
        assert!(tracked(next_state(&track(), resized, (200, 400), area)));
    }
}
