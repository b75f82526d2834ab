//! [`ObjectTracker`]: one object tracked through a video, frame by frame, with
//! `SAM2VideoPredictor`'s arithmetic (sam2 1.1.0, `add_all_frames_to_correct_as_cond` on,
//! `fill_hole_area` 0). Objects are independent, as in 1.1.0: one tracker each.
//!
//! The reference call sequence maps onto it as: `add_new_points_or_box(frame, obj)` ->
//! [`ObjectTracker::add_prompt`]; `propagate_in_video(start, reverse)` -> one
//! [`ObjectTracker::track_in`] (or [`ObjectTracker::track`]) per frame, in the order the
//! reference visits them, the start frame included.

use super::model::{MemoryFrame, VideoModel};
use super::state::{Direction, FrameMemory, TrackerState};
use crate::embedding::Embedding;
use crate::error::{ModelError, Result};
use crate::image::IMAGE_SIZE;
use crate::prompt::{ObjectPrompt, LOW_RES_MASK_SIZE};
use crate::prompt_encoder::ScaledPrompt;

use super::model::MAX_OBJ_PTRS;

/// The clamp of a previous mask fed back as mask input (`add_new_points_or_box`).
const MASK_INPUT_CLAMP: f32 = 32.0;

/// One object's result on one frame.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameResult {
    /// The frame.
    pub frame: usize,
    /// The mask's 256x256 logits, row-major, over the whole frame (stretched, as SAM 2
    /// frames the image); [`super::NO_OBJECT_LOGIT`] everywhere when the object is absent.
    /// The mask at video resolution is their bilinear upscale thresholded at 0
    /// ([`crate::masks::upscale_stretched_logits`]).
    pub low_res_logits: Vec<f32>,
    /// The object-score logit: > 0 present, otherwise occluded / absent.
    pub object_score_logit: f32,
    /// Whether the frame is a conditioning (prompted) frame.
    pub conditioning: bool,
}

/// One object's tracker: its [`TrackerState`] and the clip's length, if known.
#[derive(Debug, Clone, Default)]
pub struct ObjectTracker {
    state: TrackerState,
    num_frames: Option<usize>,
}

impl ObjectTracker {
    /// A tracker for a clip of `num_frames` frames. sam2 reads the clip's length to bound
    /// and normalise the object-pointer distances (`min(num_frames, 16)`); a stream of
    /// unknown length passes `None`, which equals any clip of 16 frames or more.
    pub fn new(num_frames: Option<usize>) -> Self {
        Self {
            state: TrackerState::default(),
            num_frames,
        }
    }

    /// A tracker resumed from a stored state.
    pub fn from_state(state: TrackerState, num_frames: Option<usize>) -> Self {
        Self { state, num_frames }
    }

    /// The state, to store.
    pub fn state(&self) -> &TrackerState {
        &self.state
    }

    fn max_ptrs(&self) -> usize {
        self.num_frames
            .map_or(MAX_OBJ_PTRS, |n| n.min(MAX_OBJ_PTRS))
    }

    /// `add_new_points_or_box` (clearing the frame's old points): `prompt` (points and/or a
    /// box, in pixels of the frame) on `frame`, whose encoded image is `embedding`. On a
    /// frame already tracked, the frame's previous logits are the mask input and the
    /// memory of earlier frames conditions it; the frame becomes a conditioning frame at
    /// the next tracked frame. `prompt.mask_input` is not read.
    pub fn add_prompt(
        &mut self,
        model: &VideoModel,
        frame: usize,
        prompt: &ObjectPrompt,
        embedding: &Embedding,
    ) -> Result<FrameResult> {
        prompt.validate()?;
        let features = model.image_features(embedding)?;
        let tracked = self.state.tracked_direction(frame);
        let is_init = tracked.is_none();
        let direction = tracked.unwrap_or_default();
        let previous = self
            .state
            .pending
            .get(&frame)
            .or_else(|| self.state.cond.get(&frame))
            .or_else(|| self.state.non_cond.get(&frame))
            .and_then(|m| m.low_res_logits.as_ref())
            .map(|l| {
                l.iter()
                    .map(|v| v.clamp(-MASK_INPUT_CLAMP, MASK_INPUT_CLAMP))
                    .collect::<Vec<f32>>()
            });
        let scaled = scale_prompt(prompt, embedding.original_size);
        let num_points = scaled.points.len() + if scaled.bbox.is_some() { 2 } else { 0 };
        let multimask = num_points <= 1;
        let pix_feat = if is_init {
            model.without_memory(&features)?
        } else {
            self.conditioned(model, &features, frame, direction)?
        };
        let out = model.heads(&pix_feat, embedding, Some(&scaled), previous, multimask)?;
        let features_mem =
            model.encode_memory(&features, &out.low_res_logits, out.object_score_logit, true)?;
        self.state.pending.insert(
            frame,
            FrameMemory {
                features: Some(features_mem),
                obj_ptr: out.obj_ptr,
                object_score_logit: out.object_score_logit,
                low_res_logits: Some(out.low_res_logits.clone()),
            },
        );
        Ok(FrameResult {
            frame,
            low_res_logits: out.low_res_logits,
            object_score_logit: out.object_score_logit,
            conditioning: true,
        })
    }

    /// [`ObjectTracker::track_in`] with the direction read from the previous tracked frame:
    /// reverse after a higher index, forward after a lower one, unchanged on the same frame
    /// (forward at first).
    pub fn track(
        &mut self,
        model: &VideoModel,
        frame: usize,
        embedding: &Embedding,
    ) -> Result<FrameResult> {
        let direction = match self.state.last {
            Some((last, _)) if frame < last => Direction::Reverse,
            Some((last, _)) if frame > last => Direction::Forward,
            Some((_, d)) => d,
            None => Direction::Forward,
        };
        self.track_in(model, frame, embedding, direction)
    }

    /// One frame of `propagate_in_video` in `direction`: a conditioning frame gives its
    /// prompted result back; any other frame is conditioned on the memory, decoded without
    /// prompts, and its memory encoded.
    pub fn track_in(
        &mut self,
        model: &VideoModel,
        frame: usize,
        embedding: &Embedding,
        direction: Direction,
    ) -> Result<FrameResult> {
        self.state.merge_pending();
        if self.state.cond.is_empty() {
            return Err(ModelError::InvalidPrompt(
                "the object has no prompt yet: add one before tracking".into(),
            ));
        }
        if let Some(n) = self.num_frames {
            if frame >= n {
                return Err(ModelError::InvalidParams(format!(
                    "frame {frame} is past the clip's {n} frames"
                )));
            }
        }
        let result = if let Some(cond) = self.state.cond.get(&frame) {
            FrameResult {
                frame,
                low_res_logits: cond
                    .low_res_logits
                    .clone()
                    .unwrap_or_else(|| vec![0.0; LOW_RES_MASK_SIZE * LOW_RES_MASK_SIZE]),
                object_score_logit: cond.object_score_logit,
                conditioning: true,
            }
        } else {
            let features = model.image_features(embedding)?;
            let pix_feat = self.conditioned(model, &features, frame, direction)?;
            let out = model.heads(&pix_feat, embedding, None, None, true)?;
            let memory = model.encode_memory(
                &features,
                &out.low_res_logits,
                out.object_score_logit,
                false,
            )?;
            self.state.non_cond.insert(
                frame,
                FrameMemory {
                    features: Some(memory),
                    obj_ptr: out.obj_ptr,
                    object_score_logit: out.object_score_logit,
                    low_res_logits: Some(out.low_res_logits.clone()),
                },
            );
            FrameResult {
                frame,
                low_res_logits: out.low_res_logits,
                object_score_logit: out.object_score_logit,
                conditioning: false,
            }
        };
        self.state.mark_tracked(frame, direction);
        self.state.last = Some((frame, direction));
        self.state
            .evict(frame, direction, model.num_maskmem(), self.max_ptrs());
        Ok(result)
    }

    /// `_prepare_memory_conditioned_features` for a frame that is not an initial
    /// conditioning frame.
    fn conditioned(
        &self,
        model: &VideoModel,
        features: &candle_core::Tensor,
        frame: usize,
        direction: Direction,
    ) -> Result<candle_core::Tensor> {
        let state = &self.state;
        if state.cond.is_empty() {
            return Err(ModelError::InvalidPrompt(
                "no conditioning frame to track from".into(),
            ));
        }
        let sign = direction.sign();
        let f = frame as i64;
        let num_maskmem = model.num_maskmem();
        let mut memories = Vec::new();
        for m in state.cond.values() {
            if let Some(features) = &m.features {
                memories.push(MemoryFrame { features, t_pos: 0 });
            }
        }
        for t_pos in 1..num_maskmem {
            let t_rel = (num_maskmem - t_pos) as i64;
            let prev = f - t_rel * sign;
            if prev < 0 {
                continue;
            }
            if let Some(features) = state
                .non_cond
                .get(&(prev as usize))
                .and_then(|m| m.features.as_deref())
            {
                memories.push(MemoryFrame { features, t_pos });
            }
        }
        let max_ptrs = self.max_ptrs();
        let mut ptrs: Vec<(i64, &[f32])> = state
            .cond
            .iter()
            .filter(|(&t, _)| (t as i64 - f) * sign <= 0)
            .map(|(&t, m)| ((f - t as i64) * sign, m.obj_ptr.as_slice()))
            .collect();
        for t_diff in 1..max_ptrs as i64 {
            let t = f - t_diff * sign;
            if t < 0 || self.num_frames.is_some_and(|n| t >= n as i64) {
                break;
            }
            if let Some(m) = state.non_cond.get(&(t as usize)) {
                ptrs.push((t_diff, m.obj_ptr.as_slice()));
            }
        }
        model.condition(features, &memories, &ptrs, max_ptrs)
    }
}

/// Prompt coordinates from frame pixels to the 1024x1024 input (SAM 2 stretches the frame).
fn scale_prompt(prompt: &ObjectPrompt, (height, width): (usize, usize)) -> ScaledPrompt {
    let side = IMAGE_SIZE as f32;
    let sx = |x: f32| x / width as f32 * side;
    let sy = |y: f32| y / height as f32 * side;
    ScaledPrompt {
        points: prompt
            .points
            .iter()
            .map(|p| (sx(p.x), sy(p.y), p.label))
            .collect(),
        bbox: prompt
            .bbox
            .map(|b| [sx(b.x1), sy(b.y1), sx(b.x2), sy(b.y2)]),
        mask_input: None,
    }
}
