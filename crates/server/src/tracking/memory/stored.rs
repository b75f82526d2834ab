//! The stored form of a session's memory tracking (docs/tracking.md, "State in the store"):
//! every [`MemoryObject`] of the session (its tracker's state, its generation, its results
//! per frame, the frame the next propagation starts from, whether it answers polygons), for
//! another replica to carry the session on.
//!
//! A fixed header (magic, format version) then the session in postcard. The layout is this
//! file's own mirror of the model's types, so a change in the model crate's serde derives
//! cannot change what is stored without a new format version here. A value that is not
//! ours (another magic, an unknown version, a checkpoint other than the served one, a
//! truncated or damaged payload) is refused: the session then has no stored state, never a
//! wrong one.

use std::collections::BTreeMap;

use mobilesam_model::masks::regions::Region;
use mobilesam_model::masks::Rle;
use mobilesam_model::video::state::Span;
use mobilesam_model::video::{Direction, FrameMemory, ObjectTracker, TrackerState};
use mobilesam_model::MaskOutput;
use serde::{Deserialize, Serialize};

use super::{MemoryObject, StoredResult};

/// First bytes of every stored tracking state.
pub const MAGIC: &[u8; 8] = b"MSAMTRK\0";
/// Version of the layout written.
pub const FORMAT_VERSION: u16 = 1;
/// Bytes before the payload: magic and version.
pub const HEADER_LEN: usize = MAGIC.len() + 2;

/// Why a stored tracking state was not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadTracks {
    /// Not written by this server, or by an unknown layout version.
    #[error("not a tracking state of this format")]
    Format,
    /// Written for another checkpoint.
    #[error("written by another model")]
    Model,
    /// The payload does not decode, or holds impossible values.
    #[error("damaged payload: {0}")]
    Payload(String),
}

/// Serialises the memory-tracked objects of a session served by the checkpoint whose
/// SHA-256 is `checkpoint_sha256`.
pub fn encode(checkpoint_sha256: &str, objects: &BTreeMap<u64, MemoryObject>) -> Vec<u8> {
    let session = SessionV1 {
        checkpoint_sha256: checkpoint_sha256.to_string(),
        objects: objects
            .iter()
            .map(|(&id, object)| ObjectV1::of(id, object))
            .collect(),
    };
    let mut out = Vec::with_capacity(HEADER_LEN + size_hint(objects));
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    // Serialising plain owned data into a Vec cannot fail; an empty payload is refused
    // by `decode` if it ever did.
    if let Ok(payload) = postcard::to_extend(&session, out) {
        return payload;
    }
    Vec::new()
}

/// The objects of a value written by [`encode`] for `checkpoint_sha256`.
pub fn decode(
    bytes: &[u8],
    checkpoint_sha256: &str,
) -> Result<BTreeMap<u64, MemoryObject>, BadTracks> {
    let payload = bytes
        .strip_prefix(MAGIC.as_slice())
        .ok_or(BadTracks::Format)?;
    let (version, payload) = payload.split_at_checked(2).ok_or(BadTracks::Format)?;
    if version != FORMAT_VERSION.to_le_bytes() {
        return Err(BadTracks::Format);
    }
    let session: SessionV1 =
        postcard::from_bytes(payload).map_err(|e| BadTracks::Payload(e.to_string()))?;
    if session.checkpoint_sha256 != checkpoint_sha256 {
        return Err(BadTracks::Model);
    }
    session
        .objects
        .into_iter()
        .map(|object| object.into_object())
        .collect()
}

/// Roughly the payload's bytes (the memory features dominate), to allocate once.
fn size_hint(objects: &BTreeMap<u64, MemoryObject>) -> usize {
    objects.values().map(|o| o.tracker.state().bytes()).sum()
}

#[derive(Serialize, Deserialize)]
struct SessionV1 {
    checkpoint_sha256: String,
    objects: Vec<ObjectV1>,
}

#[derive(Serialize, Deserialize)]
struct ObjectV1 {
    id: u64,
    generation: u64,
    start: Option<usize>,
    return_polygons: bool,
    tracker: TrackerV1,
    results: Vec<(usize, ResultV1)>,
}

impl ObjectV1 {
    fn of(id: u64, object: &MemoryObject) -> Self {
        Self {
            id,
            generation: object.generation,
            start: object.start,
            return_polygons: object.return_polygons,
            tracker: TrackerV1::of(object.tracker.state()),
            results: object
                .results
                .iter()
                .map(|(&frame, result)| (frame, ResultV1::of(result)))
                .collect(),
        }
    }

    fn into_object(self) -> Result<(u64, MemoryObject), BadTracks> {
        let results = self
            .results
            .into_iter()
            .map(|(frame, result)| (frame, result.into_result()))
            .collect();
        let object = MemoryObject {
            tracker: ObjectTracker::from_state(self.tracker.into_state()?, None),
            generation: self.generation,
            results,
            start: self.start,
            return_polygons: self.return_polygons,
        };
        Ok((self.id, object))
    }
}

#[derive(Serialize, Deserialize)]
struct TrackerV1 {
    cond: Vec<(usize, FrameV1)>,
    pending: Vec<(usize, FrameV1)>,
    non_cond: Vec<(usize, FrameV1)>,
    /// (first, last, reverse).
    tracked: Vec<(usize, usize, bool)>,
    /// (frame, reverse).
    last: Option<(usize, bool)>,
}

impl TrackerV1 {
    fn of(state: &TrackerState) -> Self {
        let frames = |map: &BTreeMap<usize, FrameMemory>| {
            map.iter()
                .map(|(&frame, memory)| (frame, FrameV1::of(memory)))
                .collect()
        };
        let TrackerState {
            cond,
            pending,
            non_cond,
            tracked,
            last,
        } = state;
        Self {
            cond: frames(cond),
            pending: frames(pending),
            non_cond: frames(non_cond),
            tracked: tracked
                .iter()
                .map(|s| (s.start, s.end, s.direction == Direction::Reverse))
                .collect(),
            last: last.map(|(frame, direction)| (frame, direction == Direction::Reverse)),
        }
    }

    fn into_state(self) -> Result<TrackerState, BadTracks> {
        let frames = |list: Vec<(usize, FrameV1)>| -> Result<BTreeMap<usize, FrameMemory>, _> {
            list.into_iter()
                .map(|(frame, memory)| Ok((frame, memory.into_memory()?)))
                .collect()
        };
        let tracked = self
            .tracked
            .into_iter()
            .map(|(start, end, reverse)| {
                if start > end {
                    return Err(BadTracks::Payload(format!(
                        "a tracked span from frame {start} to {end}"
                    )));
                }
                Ok(Span {
                    start,
                    end,
                    direction: direction(reverse),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(TrackerState {
            cond: frames(self.cond)?,
            pending: frames(self.pending)?,
            non_cond: frames(self.non_cond)?,
            tracked,
            last: self
                .last
                .map(|(frame, reverse)| (frame, direction(reverse))),
        })
    }
}

fn direction(reverse: bool) -> Direction {
    if reverse {
        Direction::Reverse
    } else {
        Direction::Forward
    }
}

#[derive(Serialize, Deserialize)]
struct FrameV1 {
    /// bfloat16 bits, little-endian: 2 bytes a value (postcard writes a `u16` as a varint
    /// of up to 3 bytes, and bf16 bits of negative values take all 3).
    features: Option<Vec<u8>>,
    obj_ptr: Vec<f32>,
    object_score_logit: f32,
    low_res_logits: Option<Vec<f32>>,
}

impl FrameV1 {
    fn of(memory: &FrameMemory) -> Self {
        Self {
            features: memory
                .features
                .as_ref()
                .map(|values| values.iter().flat_map(|v| v.to_le_bytes()).collect()),
            obj_ptr: memory.obj_ptr.clone(),
            object_score_logit: memory.object_score_logit,
            low_res_logits: memory.low_res_logits.clone(),
        }
    }

    fn into_memory(self) -> Result<FrameMemory, BadTracks> {
        let features = match self.features {
            Some(bytes) if bytes.len() % 2 != 0 => {
                return Err(BadTracks::Payload(format!(
                    "{} bytes of bfloat16 features",
                    bytes.len()
                )))
            }
            Some(bytes) => Some(
                bytes
                    .chunks_exact(2)
                    .map(|b| u16::from_le_bytes([b[0], b[1]]))
                    .collect(),
            ),
            None => None,
        };
        Ok(FrameMemory {
            features,
            obj_ptr: self.obj_ptr,
            object_score_logit: self.object_score_logit,
            low_res_logits: self.low_res_logits,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct ResultV1 {
    generation: u64,
    occluded: bool,
    score: f32,
    area: u64,
    bbox: [f32; 4],
    rle_size: [u32; 2],
    rle_counts: String,
    stability_score: f32,
    polygons: Option<Vec<RegionV1>>,
}

impl ResultV1 {
    fn of(result: &StoredResult) -> Self {
        let mask = &result.mask;
        Self {
            generation: result.generation,
            occluded: result.occluded,
            score: mask.score,
            area: mask.area,
            bbox: mask.bbox,
            rle_size: mask.rle.size,
            rle_counts: mask.rle.counts.clone(),
            stability_score: mask.stability_score,
            polygons: mask
                .polygons
                .as_ref()
                .map(|regions| regions.iter().map(RegionV1::of).collect()),
        }
    }

    fn into_result(self) -> StoredResult {
        StoredResult {
            generation: self.generation,
            occluded: self.occluded,
            mask: MaskOutput {
                score: self.score,
                area: self.area,
                bbox: self.bbox,
                rle: Rle {
                    size: self.rle_size,
                    counts: self.rle_counts,
                },
                stability_score: self.stability_score,
                low_res_logits: None,
                polygons: self
                    .polygons
                    .map(|regions| regions.into_iter().map(RegionV1::into_region).collect()),
            },
        }
    }
}

#[derive(Serialize, Deserialize)]
struct RegionV1 {
    area: u64,
    outline: Vec<[f64; 2]>,
    holes: Vec<Vec<[f64; 2]>>,
}

impl RegionV1 {
    fn of(region: &Region) -> Self {
        Self {
            area: region.area,
            outline: region.outline.clone(),
            holes: region.holes.clone(),
        }
    }

    fn into_region(self) -> Region {
        Region {
            area: self.area,
            outline: self.outline,
            holes: self.holes,
        }
    }
}

#[cfg(test)]
mod tests;
