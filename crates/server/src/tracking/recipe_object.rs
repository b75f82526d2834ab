//! One object followed by the recipe (MobileSAM, SAM ViT): its result per frame index, the
//! result a new frame starts from, and which results keep their logits.
//!
//! A frame with a current result (computed since the object's last prompt) is answered
//! from it. Any other frame starts from the object's current result on the nearest frame
//! in the direction of travel (before it going forward, after it in reverse; else the
//! nearest the other way): a LOST start makes the frame LOST without a decode, a tracked
//! one is followed with the [recipe](super::recipe).
//!
//! Logits are 256 KiB per frame, so each object keeps them on three frames at most: its
//! last prompted frame, the last frame it was followed onto going forward, and the last
//! one going in reverse. Those are the frames a client streaming on, in either direction,
//! or coming back to its last click, starts from. Other results keep their mask (RLE, box,
//! scores) only; a frame started from one of them is decoded from the box alone.

use mobilesam_model::video::Direction;

use super::frames::FrameResults;
use super::recipe::{ObjectState, Track};

/// The frames whose results keep their logits.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Kept {
    prompt: Option<usize>,
    forward: Option<usize>,
    reverse: Option<usize>,
}

impl Kept {
    fn holds(&self, frame: usize) -> bool {
        [self.prompt, self.forward, self.reverse].contains(&Some(frame))
    }

    fn frames(&self) -> impl Iterator<Item = usize> {
        [self.prompt, self.forward, self.reverse]
            .into_iter()
            .flatten()
    }
}

/// What an object answers on a frame.
#[derive(Debug)]
pub enum Step<'a> {
    /// The frame has a current result: answered as stored, no decode.
    Stored(&'a ObjectState),
    /// Decoded with the recipe from `track`, the object's result on frame `from`.
    Follow {
        /// The start frame.
        from: usize,
        /// The object's mask there.
        track: &'a Track,
    },
    /// The start is LOST (or there is none): LOST here too, no decode.
    Lost,
}

/// One object followed by the recipe.
#[derive(Debug, Clone, Default)]
pub struct RecipeObject {
    results: FrameResults<ObjectState>,
    kept: Kept,
    /// The last prompt asked for `return_polygons`: the follow-ups' masks carry them too.
    pub return_polygons: bool,
}

impl RecipeObject {
    /// A prompt on `frame` with result `state` (its mask with logits): a new generation,
    /// so every other frame's result is stale.
    pub fn prompt(&mut self, frame: usize, state: ObjectState, return_polygons: bool) {
        self.results.new_generation();
        self.results.insert(frame, state);
        self.return_polygons = return_polygons;
        self.keep_logits(Kept {
            prompt: Some(frame),
            ..Kept::default()
        });
    }

    /// What the object answers on `frame`, reached travelling `direction`.
    pub fn step(&self, frame: usize, direction: Direction) -> Step<'_> {
        if let Some(stored) = self.results.current(frame) {
            return Step::Stored(stored);
        }
        match self.results.nearest_current(frame, direction) {
            Some((from, ObjectState::Tracked(track))) => Step::Follow { from, track },
            Some((_, ObjectState::Lost)) | None => Step::Lost,
        }
    }

    /// Keeps LOST as the result on `frame` (its start was LOST).
    pub fn lost(&mut self, frame: usize) {
        self.results.insert(frame, ObjectState::Lost);
    }

    /// Keeps `state`, the result decoded on `frame` from the one on frame `from` (LOST by
    /// the thresholds, or tracked with its logits). A tracked result keeps its logits as
    /// the last frame followed in its direction; the frame it replaces there drops them.
    pub fn followed(&mut self, frame: usize, from: usize, state: ObjectState) {
        let tracked = matches!(state, ObjectState::Tracked(_));
        self.results.insert(frame, state);
        if !tracked {
            return;
        }
        let mut kept = self.kept;
        if frame > from {
            kept.forward = Some(frame);
        } else {
            kept.reverse = Some(frame);
        }
        self.keep_logits(kept);
    }

    /// The current result on `frame`.
    pub fn current(&self, frame: usize) -> Option<&ObjectState> {
        self.results.current(frame)
    }

    /// The frames with a result (current or stale), ascending.
    pub fn frames(&self) -> impl Iterator<Item = usize> + '_ {
        self.results.frames()
    }

    /// The frames later frames start from, whose results must stay: the last prompted
    /// frame and the frames whose results keep logits.
    pub fn start_frames(&self) -> impl Iterator<Item = usize> {
        self.kept.frames()
    }

    /// Drops the result on `frame` (the session makes room under `--max-tracked-frames`).
    /// A frame of [`Self::start_frames`] loses its place there too.
    pub fn forget(&mut self, frame: usize) {
        self.results.remove(frame);
        let kept = &mut self.kept;
        for slot in [&mut kept.prompt, &mut kept.forward, &mut kept.reverse] {
            if *slot == Some(frame) {
                *slot = None;
            }
        }
    }

    /// Bytes held: every stored mask (RLE, polygons, kept logits).
    pub fn size_bytes(&self) -> u64 {
        self.results.values().map(|r| r.value.size_bytes()).sum()
    }

    /// The frames whose results keep logits now, ascending (for tests and checks).
    pub fn frames_with_logits(&self) -> Vec<usize> {
        self.results
            .frames()
            .filter(|&f| {
                self.results.get(f).is_some_and(|r| {
                    r.value
                        .track()
                        .is_some_and(|t| t.mask.low_res_logits.is_some())
                })
            })
            .collect()
    }

    /// Makes `kept` the frames with logits: the frames it no longer holds drop theirs.
    fn keep_logits(&mut self, kept: Kept) {
        let before = std::mem::replace(&mut self.kept, kept);
        for frame in before.frames().filter(|&f| !kept.holds(f)) {
            if let Some(stored) = self.results.get_mut(frame) {
                if let ObjectState::Tracked(track) = &mut stored.value {
                    track.mask.low_res_logits = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mobilesam_model::masks::Rle;
    use mobilesam_model::MaskOutput;

    /// A tracked state whose box's x is `x` (to tell frames apart), with logits.
    fn tracked(x: f32) -> ObjectState {
        ObjectState::from_mask(
            MaskOutput {
                score: 0.9,
                area: 10,
                bbox: [x, 0.0, 2.0, 5.0],
                rle: Rle {
                    size: [10, 20],
                    counts: "abc".into(),
                },
                stability_score: 0.9,
                low_res_logits: Some(vec![x; 4]),
                polygons: None,
            },
            (10, 20),
        )
    }

    /// The start frame of `frame`, `None` when stored, `Some(None)` when LOST.
    fn start(object: &RecipeObject, frame: usize, direction: Direction) -> Option<Option<usize>> {
        match object.step(frame, direction) {
            Step::Stored(_) => None,
            Step::Follow { from, .. } => Some(Some(from)),
            Step::Lost => Some(None),
        }
    }

    #[test]
    fn frames_start_from_the_nearest_current_result_the_way_of_travel() {
        let mut object = RecipeObject::default();
        object.prompt(0, tracked(0.0), false);
        // A jump: 0 -> 5 starts from 0.
        assert_eq!(start(&object, 5, Direction::Forward), Some(Some(0)));
        object.followed(5, 0, tracked(5.0));
        // Back to 3: from 5 in reverse, from 0 going forward.
        assert_eq!(start(&object, 3, Direction::Reverse), Some(Some(5)));
        assert_eq!(start(&object, 3, Direction::Forward), Some(Some(0)));
        object.followed(3, 5, tracked(3.0));
        // Revisits answer the stored result.
        assert!(matches!(
            object.step(5, Direction::Forward),
            Step::Stored(_)
        ));
        assert_eq!(start(&object, 3, Direction::Reverse), None);
        // A prompt on 3: 5 is stale, recomputed from 3; 0 too, from 3 (the other way).
        object.prompt(3, tracked(30.0), true);
        assert!(object.return_polygons);
        assert_eq!(start(&object, 5, Direction::Forward), Some(Some(3)));
        assert_eq!(start(&object, 0, Direction::Forward), Some(Some(3)));
        assert!(object.current(5).is_none() && object.current(3).is_some());
        assert_eq!(object.frames().collect::<Vec<_>>(), [0, 3, 5]);
    }

    #[test]
    fn a_lost_result_is_per_frame() {
        let mut object = RecipeObject::default();
        object.prompt(4, tracked(4.0), false);
        object.followed(5, 4, ObjectState::Lost);
        // Forward from the lost frame: lost, without a decode.
        assert_eq!(start(&object, 6, Direction::Forward), Some(None));
        object.lost(6);
        // Back before the loss: still followed.
        assert_eq!(start(&object, 3, Direction::Reverse), Some(Some(4)));
        assert!(matches!(object.current(5), Some(ObjectState::Lost)));
        // A prompt finds it again: lost frames are stale.
        object.prompt(6, tracked(6.0), false);
        assert_eq!(start(&object, 5, Direction::Reverse), Some(Some(6)));
    }

    #[test]
    fn logits_are_kept_on_the_prompted_frame_and_the_last_frame_each_way() {
        let mut object = RecipeObject::default();
        object.prompt(10, tracked(10.0), false);
        for f in 11..=13 {
            object.followed(f, f - 1, tracked(f as f32));
        }
        assert_eq!(object.frames_with_logits(), [10, 13]);
        for f in (7..=9).rev() {
            object.followed(f, f + 1, tracked(f as f32));
        }
        assert_eq!(object.frames_with_logits(), [7, 10, 13]);
        // A frame started from one without logits is followed by its box alone.
        match object.step(12, Direction::Reverse) {
            Step::Stored(state) => assert!(state
                .track()
                .is_some_and(|t| t.mask.low_res_logits.is_none())),
            other => panic!("frame 12 is stored: {other:?}"),
        }
        // A lost result keeps no logits and moves no slot.
        object.followed(14, 13, ObjectState::Lost);
        assert_eq!(object.frames_with_logits(), [7, 10, 13]);
        // A prompt keeps the prompted frame's only (the others are stale).
        object.prompt(12, tracked(12.0), false);
        assert_eq!(object.frames_with_logits(), [12]);
        // Re-prompting the same frame keeps it.
        object.prompt(12, tracked(12.5), false);
        assert_eq!(object.frames_with_logits(), [12]);
    }

    #[test]
    fn forgotten_frames_are_followed_again_from_the_kept_ones() {
        let mut object = RecipeObject::default();
        object.prompt(0, tracked(0.0), false);
        for f in 1..=3 {
            object.followed(f, f - 1, tracked(f as f32));
        }
        assert_eq!(object.start_frames().collect::<Vec<_>>(), [0, 3]);
        object.forget(1);
        object.forget(2);
        assert_eq!(object.frames().collect::<Vec<_>>(), [0, 3]);
        assert_eq!(start(&object, 4, Direction::Forward), Some(Some(3)));
        assert_eq!(start(&object, 2, Direction::Forward), Some(Some(0)));
        // A start frame forgotten leaves its slot.
        object.forget(3);
        assert_eq!(object.start_frames().collect::<Vec<_>>(), [0]);
        assert_eq!(object.frames_with_logits(), [0]);
    }

    #[test]
    fn size_counts_masks_and_kept_logits() {
        let mut object = RecipeObject::default();
        object.prompt(0, tracked(0.0), false);
        let one = object.size_bytes();
        let fixed = std::mem::size_of::<MaskOutput>() as u64;
        assert_eq!(one, 3 + 16 + fixed);
        object.followed(1, 0, tracked(1.0));
        object.followed(2, 1, tracked(2.0));
        // Frame 1 dropped its logits when frame 2 became the last one forward.
        assert_eq!(object.size_bytes(), 3 * (3 + fixed) + 2 * 16);
    }
}
