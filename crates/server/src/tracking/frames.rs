//! An object's results kept per frame index (`SetImage.frame_index`), each stamped with the
//! object's generation: the number of prompts it had when the result was computed. A
//! prompt starts a new generation, so results computed before it are stale: a revisited
//! frame with a current result is answered from it, a stale one is computed again.
//!
//! Also the rules every tracker reads the clip with: the direction of travel, the nearest
//! current result a new frame starts from, and the bound on the frames a session keeps
//! ([`make_room`]: refused for a clip the client numbers, the oldest frames dropped for a
//! live stream the server numbers).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use mobilesam_model::video::Direction;
use mobilesam_model::MaskOutput;

use crate::error::RequestError;

/// A result with the generation it was computed in.
#[derive(Debug, Clone, PartialEq)]
pub struct Stamped<T> {
    /// The object's generation when the result was computed.
    pub generation: u64,
    /// The result.
    pub value: T,
}

/// One object's results by frame index, and its generation.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameResults<T> {
    generation: u64,
    results: BTreeMap<usize, Stamped<T>>,
}

impl<T> Default for FrameResults<T> {
    fn default() -> Self {
        Self {
            generation: 0,
            results: BTreeMap::new(),
        }
    }
}

impl<T> FrameResults<T> {
    /// The generation new results are stamped with.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// A prompt: every result stored so far becomes stale.
    pub fn new_generation(&mut self) {
        self.generation += 1;
    }

    /// Stores `value` as the current result on `frame` (replacing what was there).
    pub fn insert(&mut self, frame: usize, value: T) {
        let stamped = Stamped {
            generation: self.generation,
            value,
        };
        self.results.insert(frame, stamped);
    }

    /// The result on `frame`, current or stale.
    pub fn get(&self, frame: usize) -> Option<&Stamped<T>> {
        self.results.get(&frame)
    }

    /// The result on `frame`, current or stale, to change in place.
    pub fn get_mut(&mut self, frame: usize) -> Option<&mut Stamped<T>> {
        self.results.get_mut(&frame)
    }

    /// The result on `frame` when it is current (no prompt since it was computed).
    pub fn current(&self, frame: usize) -> Option<&T> {
        self.results
            .get(&frame)
            .filter(|r| r.generation == self.generation)
            .map(|r| &r.value)
    }

    /// The nearest frame to `frame` (itself excluded) with a current result, looking the
    /// way `direction` travels from: before `frame` going forward, after it in reverse;
    /// else the nearest the other way. `None` when no other frame has a current result.
    pub fn nearest_current(&self, frame: usize, direction: Direction) -> Option<(usize, &T)> {
        let generation = self.generation;
        let before = || {
            self.results
                .range(..frame)
                .rev()
                .find(|(_, r)| r.generation == generation)
        };
        let after = || {
            self.results
                .range((Bound::Excluded(frame), Bound::Unbounded))
                .find(|(_, r)| r.generation == generation)
        };
        let found = match direction {
            Direction::Forward => before().or_else(after),
            Direction::Reverse => after().or_else(before),
        };
        found.map(|(&f, r)| (f, &r.value))
    }

    /// Drops the result on `frame` (current or stale); `None` when there was none.
    pub fn remove(&mut self, frame: usize) -> Option<Stamped<T>> {
        self.results.remove(&frame)
    }

    /// The frames with a result (current or stale), ascending.
    pub fn frames(&self) -> impl Iterator<Item = usize> + '_ {
        self.results.keys().copied()
    }

    /// Every stored result (current or stale), by ascending frame.
    pub fn values(&self) -> impl Iterator<Item = &Stamped<T>> + '_ {
        self.results.values()
    }

    /// Number of frames with a result.
    pub fn len(&self) -> usize {
        self.results.len()
    }

    /// Whether no frame has a result.
    pub fn is_empty(&self) -> bool {
        self.results.is_empty()
    }
}

/// A frame of a session's clip, as its `SetImage` numbered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameIndex {
    /// Its index: `SetImage.frame_index`, else the one after the session's previous image.
    pub index: i64,
    /// The server assigned the index (the client sent no `frame_index`): a live stream,
    /// which never comes back to a frame, so the bound drops old frames ([`make_room`]).
    pub assigned: bool,
}

/// The direction of travel onto `frame` from the session's previous frame: reverse when
/// the index decreases, forward otherwise (and for a session's first frame).
pub fn travel(previous: Option<usize>, frame: usize) -> Direction {
    match previous {
        Some(previous) if frame < previous => Direction::Reverse,
        _ => Direction::Forward,
    }
}

/// The frame index as a key of the stores (validated as 0 or more on the wire).
pub fn frame_of(frame_index: i64) -> Result<usize, RequestError> {
    usize::try_from(frame_index).map_err(|_| {
        RequestError::InvalidArgument(format!("frame_index must be 0 or more, not {frame_index}"))
    })
}

/// RESOURCE_EXHAUSTED when a result on `frame` would make a session that holds results
/// for the frames `stored` hold them for more than `max` (`--max-tracked-frames`) frames.
fn check_bound(stored: &BTreeSet<usize>, frame: usize, max: usize) -> Result<(), RequestError> {
    if stored.contains(&frame) || stored.len() < max {
        return Ok(());
    }
    Err(RequestError::ResourceExhausted(format!(
        "the session holds tracking results for {} frames; at most {max} are allowed \
         (--max-tracked-frames): untrack objects or track in a new session",
        stored.len()
    )))
}

/// Room for a result on `frame` in a session that holds results for the frames `stored`,
/// at most `max` (`--max-tracked-frames`): the frames whose results the caller drops from
/// every object first (none while the session is under the bound or `frame` is stored).
///
/// At the bound, a frame whose index the client gave (`SetImage.frame_index`: a clip it
/// may come back to) is refused as [`check_bound`] does. A frame whose index the server
/// assigned (`frame_assigned`: a live stream, each frame the one after the last) never is:
/// the oldest frames (lowest indexes) make room, except the `protected` ones, which the
/// trackers still start from. When those alone fill the bound, they are all kept and the
/// session holds one frame more than them.
pub fn make_room(
    stored: &BTreeSet<usize>,
    protected: &BTreeSet<usize>,
    frame: usize,
    max: usize,
    frame_assigned: bool,
) -> Result<Vec<usize>, RequestError> {
    if !frame_assigned {
        check_bound(stored, frame, max)?;
        return Ok(Vec::new());
    }
    if stored.contains(&frame) {
        return Ok(Vec::new());
    }
    // Leave `max - 1` frames, so that `frame` makes `max`.
    let over = (stored.len() + 1).saturating_sub(max);
    Ok(stored
        .iter()
        .copied()
        .filter(|f| !protected.contains(f))
        .take(over)
        .collect())
}

/// Bytes a stored mask holds: its RLE counts, polygon vertices and low-resolution logits
/// (where kept), plus the fixed part.
pub fn mask_bytes(mask: &MaskOutput) -> u64 {
    let polygons: usize = mask.polygons.as_ref().map_or(0, |regions| {
        regions
            .iter()
            .map(|r| r.outline.len() + r.holes.iter().map(Vec::len).sum::<usize>())
            .sum::<usize>()
            * 8
    });
    let logits = mask
        .low_res_logits
        .as_ref()
        .map_or(0, |l| l.len() * std::mem::size_of::<f32>());
    (mask.rle.counts.len() + polygons + logits + std::mem::size_of::<MaskOutput>()) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    /// Results on `frames`, then a prompt, then results on `current`.
    fn store(stale: &[usize], current: &[usize]) -> FrameResults<usize> {
        let mut results = FrameResults::default();
        stale.iter().for_each(|&f| results.insert(f, f));
        results.new_generation();
        current.iter().for_each(|&f| results.insert(f, f + 100));
        results
    }

    #[test]
    fn results_are_current_until_the_next_prompt() {
        let mut results = store(&[], &[3]);
        assert_eq!(results.current(3), Some(&103));
        assert_eq!(results.current(4), None);
        results.new_generation();
        assert_eq!(results.current(3), None);
        assert_eq!(results.get(3).map(|r| r.generation), Some(1));
        results.insert(3, 7);
        assert_eq!(results.current(3), Some(&7));
        assert_eq!((results.len(), results.generation()), (1, 2));
    }

    #[test]
    fn the_start_is_the_nearest_current_frame_the_way_of_travel() {
        let results = store(&[4, 6], &[0, 2, 8, 10]);
        let start = |f, d| results.nearest_current(f, d).map(|(frame, _)| frame);
        // Stale frames 4 and 6 are skipped.
        assert_eq!(start(7, Direction::Forward), Some(2));
        assert_eq!(start(7, Direction::Reverse), Some(8));
        assert_eq!(start(5, Direction::Forward), Some(2));
        // The frame itself is not its own start.
        assert_eq!(start(8, Direction::Forward), Some(2));
        assert_eq!(start(8, Direction::Reverse), Some(10));
        // Nothing that way: the nearest the other way.
        assert_eq!(start(0, Direction::Forward), Some(2));
        assert_eq!(start(12, Direction::Reverse), Some(10));
        assert_eq!(
            results.nearest_current(12, Direction::Forward),
            Some((10, &110))
        );
        let lonely = store(&[1, 2], &[5]);
        assert_eq!(lonely.nearest_current(5, Direction::Forward), None);
        assert_eq!(
            FrameResults::<u8>::default().nearest_current(0, Direction::Reverse),
            None
        );
    }

    #[test]
    fn travel_reads_the_previous_frame() {
        assert_eq!(travel(None, 4), Direction::Forward);
        assert_eq!(travel(Some(2), 4), Direction::Forward);
        assert_eq!(travel(Some(4), 4), Direction::Forward);
        assert_eq!(travel(Some(5), 4), Direction::Reverse);
    }

    #[test]
    fn the_bound_counts_distinct_frames_and_spares_stored_ones() {
        let stored: BTreeSet<usize> = [0, 1, 2].into();
        assert!(check_bound(&stored, 5, 4).is_ok());
        assert!(check_bound(&stored, 1, 3).is_ok());
        let over = check_bound(&stored, 5, 3).unwrap_err();
        assert_eq!(over.code(), Code::ResourceExhausted);
        assert!(over.to_string().contains("--max-tracked-frames"));
    }

    #[test]
    fn a_given_frame_index_is_refused_at_the_bound() {
        let stored: BTreeSet<usize> = [0, 1, 2].into();
        let none = BTreeSet::new();
        assert_eq!(make_room(&stored, &none, 5, 4, false).ok(), Some(vec![]));
        assert_eq!(make_room(&stored, &none, 2, 3, false).ok(), Some(vec![]));
        let over = make_room(&stored, &none, 5, 3, false).unwrap_err();
        assert_eq!(over.code(), Code::ResourceExhausted);
        assert!(over.to_string().contains("--max-tracked-frames"));
    }

    #[test]
    fn an_assigned_frame_index_drops_the_oldest_frames_to_stay_at_the_bound() {
        let none = BTreeSet::new();
        let mut stored = BTreeSet::new();
        for frame in 0..10 {
            let dropped = make_room(&stored, &none, frame, 3, true).expect("never refused");
            dropped.iter().for_each(|f| {
                stored.remove(f);
            });
            stored.insert(frame);
            assert!(stored.len() <= 3, "frame {frame}: {stored:?}");
        }
        assert_eq!(stored, [7, 8, 9].into());
        // Under the bound, or a stored frame: nothing dropped.
        assert_eq!(make_room(&stored, &none, 8, 3, true).ok(), Some(vec![]));
        assert_eq!(make_room(&stored, &none, 10, 4, true).ok(), Some(vec![]));
        // A bound lowered below what is held (a session loaded from the store): back to it.
        let held: BTreeSet<usize> = (0..6).collect();
        assert_eq!(
            make_room(&held, &none, 6, 3, true).ok(),
            Some(vec![0, 1, 2, 3])
        );
    }

    #[test]
    fn protected_frames_are_never_dropped() {
        // The last prompted frame 1 and the frames 4 and 5 the trackers start from stay.
        let stored: BTreeSet<usize> = [1, 2, 3, 4, 5].into();
        let protected: BTreeSet<usize> = [1, 4, 5].into();
        let dropped = make_room(&stored, &protected, 6, 4, true).expect("room");
        assert_eq!(dropped, [2, 3]);
        // When the protected frames alone fill the bound, every other one goes and they
        // are kept: the session holds them and the new frame.
        let dropped = make_room(&stored, &protected, 6, 2, true).expect("room");
        assert_eq!(dropped, [2, 3]);
        let all: BTreeSet<usize> = [1, 4, 5].into();
        assert_eq!(make_room(&all, &all, 6, 3, true).ok(), Some(vec![]));
    }

    #[test]
    fn removed_results_are_gone() {
        let mut results = store(&[], &[1, 2]);
        assert_eq!(results.remove(1).map(|r| r.value), Some(101));
        assert_eq!(results.remove(1), None);
        assert_eq!(results.frames().collect::<Vec<_>>(), [2]);
    }

    #[test]
    fn negative_frames_are_refused() {
        assert_eq!(frame_of(7).ok(), Some(7));
        assert_eq!(frame_of(-1).unwrap_err().code(), Code::InvalidArgument);
    }
}
