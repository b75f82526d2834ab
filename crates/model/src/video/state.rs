//! [`TrackerState`]: what one object's tracker keeps between frames, as plain host data
//! (serialisable, for a store outside the process).
//!
//! `SAM2VideoPredictor` keeps every frame's output. A later frame reads only: every
//! conditioning (prompted) frame's memory and pointer; the memories of the `num_maskmem - 1`
//! frames before it in the direction of travel; the pointers of the
//! `max_obj_ptrs_in_encoder - 1` frames before it. So the state keeps the conditioning
//! frames, and of the other frames only a window behind the last tracked one: memory
//! features (and low-resolution logits, the mask input of a correction) for `num_maskmem`
//! frames (the last one included, so that a correction on it sees what the reference
//! sees), pointers for `max_obj_ptrs_in_encoder` frames. Everything older is dropped: its
//! result went back to the caller when it was tracked. The state is flat in the clip's
//! length; the tracked frames are kept as spans.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Which way frames are visited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Direction {
    /// Increasing frame indices.
    #[default]
    Forward,
    /// Decreasing frame indices (`reverse=True`).
    Reverse,
}

impl Direction {
    /// +1 forward, -1 reverse.
    pub fn sign(self) -> i64 {
        match self {
            Direction::Forward => 1,
            Direction::Reverse => -1,
        }
    }
}

/// One frame's output for the object, with what later frames read of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameMemory {
    /// `maskmem_features` (mem_dim x 64 x 64) as bfloat16 bits; `None` once the frame left
    /// the memory window (its pointer may still be read).
    pub features: Option<Vec<u16>>,
    /// The object pointer (D values).
    pub obj_ptr: Vec<f32>,
    /// The object-score logit.
    pub object_score_logit: f32,
    /// The chosen mask's 256x256 logits; `None` outside the memory window.
    pub low_res_logits: Option<Vec<f32>>,
}

impl FrameMemory {
    /// Bytes of the values held.
    pub fn bytes(&self) -> usize {
        self.features.as_ref().map_or(0, |f| f.len() * 2)
            + self.obj_ptr.len() * 4
            + self.low_res_logits.as_ref().map_or(0, |l| l.len() * 4)
            + 4
    }
}

/// Consecutive frames visited by tracking, and the direction they were visited in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    /// First frame.
    pub start: usize,
    /// Last frame (inclusive).
    pub end: usize,
    /// The direction of the last visit.
    pub direction: Direction,
}

/// One object's tracking state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrackerState {
    /// Conditioning frames (prompted), by frame index; never dropped.
    pub cond: BTreeMap<usize, FrameMemory>,
    /// Prompts not yet seen by tracking (`temp_output_dict`): they join `cond` at the next
    /// tracked frame, as `propagate_in_video_preflight` merges them.
    pub pending: BTreeMap<usize, FrameMemory>,
    /// The other frames inside the window behind `last`.
    pub non_cond: BTreeMap<usize, FrameMemory>,
    /// Frames visited by tracking (`frames_tracked_per_obj`).
    pub tracked: Vec<Span>,
    /// The last tracked frame and its direction.
    pub last: Option<(usize, Direction)>,
}

impl TrackerState {
    /// The direction frame `frame` was last tracked in, `None` if it never was.
    pub fn tracked_direction(&self, frame: usize) -> Option<Direction> {
        self.tracked
            .iter()
            .find(|s| s.start <= frame && frame <= s.end)
            .map(|s| s.direction)
    }

    /// Records that `frame` was tracked in `direction`.
    pub fn mark_tracked(&mut self, frame: usize, direction: Direction) {
        let mut spans = std::mem::take(&mut self.tracked);
        let mut out: Vec<Span> = Vec::with_capacity(spans.len() + 2);
        for s in spans.drain(..) {
            if frame < s.start || frame > s.end {
                out.push(s);
                continue;
            }
            if s.start < frame {
                out.push(Span {
                    end: frame - 1,
                    ..s
                });
            }
            if frame < s.end {
                out.push(Span {
                    start: frame + 1,
                    ..s
                });
            }
        }
        out.push(Span {
            start: frame,
            end: frame,
            direction,
        });
        out.sort_by_key(|s| s.start);
        let mut merged: Vec<Span> = Vec::with_capacity(out.len());
        for s in out {
            match merged.last_mut() {
                Some(m) if m.direction == s.direction && m.end + 1 == s.start => m.end = s.end,
                _ => merged.push(s),
            }
        }
        self.tracked = merged;
    }

    /// `propagate_in_video_preflight`: pending prompts become conditioning frames, which
    /// leave the non-conditioning outputs.
    pub fn merge_pending(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        for (frame, out) in pending {
            self.non_cond.remove(&frame);
            self.cond.insert(frame, out);
        }
    }

    /// Drops what no later frame can read once `head` was tracked in `direction`: memory
    /// features and logits of non-conditioning frames more than `num_maskmem - 1` frames
    /// behind it, pointers more than `max_ptrs - 1` behind it, and everything ahead of it.
    pub fn evict(
        &mut self,
        head: usize,
        direction: Direction,
        num_maskmem: usize,
        max_ptrs: usize,
    ) {
        let sign = direction.sign();
        self.non_cond.retain(|&frame, out| {
            let behind = (head as i64 - frame as i64) * sign;
            if behind < 0 || behind >= max_ptrs.max(num_maskmem) as i64 {
                return false;
            }
            if behind >= num_maskmem as i64 {
                out.features = None;
                out.low_res_logits = None;
            }
            true
        });
    }

    /// Bytes of the values held (features, pointers, logits).
    pub fn bytes(&self) -> usize {
        self.cond
            .values()
            .chain(self.pending.values())
            .chain(self.non_cond.values())
            .map(FrameMemory::bytes)
            .sum::<usize>()
            + self.tracked.len() * std::mem::size_of::<Span>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory(features: usize) -> FrameMemory {
        FrameMemory {
            features: Some(vec![0; features]),
            obj_ptr: vec![0.0; 8],
            object_score_logit: 1.0,
            low_res_logits: Some(vec![0.0; 16]),
        }
    }

    #[test]
    fn spans_merge_and_split() {
        let mut s = TrackerState::default();
        for f in 0..10 {
            s.mark_tracked(f, Direction::Forward);
        }
        assert_eq!(s.tracked.len(), 1);
        s.mark_tracked(4, Direction::Reverse);
        assert_eq!(s.tracked.len(), 3);
        assert_eq!(s.tracked_direction(4), Some(Direction::Reverse));
        assert_eq!(s.tracked_direction(5), Some(Direction::Forward));
        assert_eq!(s.tracked_direction(10), None);
    }

    #[test]
    fn the_window_stays_flat_over_a_long_clip() {
        let (num_maskmem, max_ptrs) = (7, 16);
        let mut s = TrackerState::default();
        s.cond.insert(0, memory(64));
        s.mark_tracked(0, Direction::Forward);
        let mut sizes = Vec::new();
        for f in 1..50 {
            s.non_cond.insert(f, memory(64));
            s.mark_tracked(f, Direction::Forward);
            s.evict(f, Direction::Forward, num_maskmem, max_ptrs);
            sizes.push(s.bytes());
            let with_features = s.non_cond.values().filter(|m| m.features.is_some()).count();
            assert!(with_features <= num_maskmem);
            assert!(s.non_cond.len() <= max_ptrs);
        }
        assert_eq!(s.tracked.len(), 1);
        // flat once the pointer window is full
        assert!(sizes[20..].iter().all(|&b| b == sizes[20]));
        // reverse: frames ahead (older pass) are dropped
        s.evict(30, Direction::Reverse, num_maskmem, max_ptrs);
        assert!(s.non_cond.keys().all(|&f| f >= 30));
    }
}
