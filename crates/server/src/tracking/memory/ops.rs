//! Memory tracking's session operations: a prompt that starts or corrects objects on the
//! current frame, and the follow-up on a new frame (or a revisited one). Each change is
//! written to the store ([`super::persist`]); a session this replica has no state for is
//! read from there first.

use std::sync::Arc;

use mobilesam_model::video::{Direction, ObjectTracker};
use mobilesam_model::{Embedding, MaskOutput};
use mobilesam_proto::v1;

use super::persist::{existing_or_stored, save};
use super::{stored_frames, MemoryObject, StoredResult};
use crate::convert;
use crate::error::RequestError;
use crate::lanes;
use crate::lanes::jobs::Decoded;
use crate::lanes::video_job::{VideoObjectDone, VideoStep, VideoWork};
use crate::state::AppState;
use crate::tracking::answer::{decode, masks};
use crate::tracking::frames::{self, FrameIndex};
use crate::tracking::{record_size, Prompted, SessionTracks};

/// A prompt on frame `frame` of `session_id` (image `embedding`): objects of a
/// `track` prompt, and objects the session already tracks, are prompted in their
/// trackers (the frame becomes one of their conditioning frames); other objects are
/// decoded as usual.
pub async fn prompt(
    state: &AppState,
    session_id: &str,
    embedding: Arc<Embedding>,
    frame: FrameIndex,
    prompted: Prompted,
) -> Result<v1::Masks, RequestError> {
    let Prompted {
        request_id,
        track,
        ids,
        objects,
        options,
    } = prompted;
    // A session carried on from another replica brings its objects from the store.
    let existing = existing_or_stored(state, session_id).await;
    let shared = if track {
        Some(state.tracking.session(session_id))
    } else {
        existing
    };
    let Some(shared) = shared else {
        let decoded = decode(state, embedding, objects, options).await?;
        return Ok(masks(request_id, decoded, &ids, &[]));
    };
    let mut tracks = shared.lock().await;
    let updates: Vec<bool> = ids
        .iter()
        .map(|id| track || tracks.memory.contains_key(id))
        .collect();
    if track {
        tracks.check_capacity(&ids, state.tracking.config().max_tracked_objects)?;
    }
    let assigned = frame.assigned;
    let frame = frames::frame_of(frame.index)?;
    let mut work = Vec::new();
    let mut plain = Vec::new();
    for ((object, &id), &update) in objects.into_iter().zip(&ids).zip(&updates) {
        if update {
            let tracker = tracks
                .memory
                .get(&id)
                .map_or_else(|| ObjectTracker::new(None), |o| o.tracker.clone());
            work.push(VideoWork {
                tracker,
                step: VideoStep::Prompt(object),
                polygons: options.return_polygons,
            });
        } else {
            plain.push(object);
        }
    }
    let mut tracked = Vec::new();
    let mut elapsed = std::time::Duration::ZERO;
    if !work.is_empty() {
        let max = state.tracking.config().max_tracked_frames;
        make_room(&mut tracks, frame, max, assigned)?;
        let done = lanes::track_video(&state.queues, Arc::clone(&embedding), frame, work).await?;
        elapsed += done.elapsed;
        let updated = ids.iter().zip(&updates).filter(|(_, &u)| u);
        for ((&id, _), mut done) in updated.zip(done.objects) {
            if options.return_low_res_logits {
                done.mask.low_res_logits = Some(done.result.low_res_logits.clone());
            }
            let object = tracks.memory.entry(id).or_default();
            object.generation += 1;
            object.start = Some(frame);
            object.return_polygons = options.return_polygons;
            let stored = keep(object, frame, done);
            tracked.push(stored);
        }
        save(state, session_id, &shared, &tracks);
    }
    let mut decoded = if plain.is_empty() {
        Decoded {
            objects: Vec::new(),
            elapsed: std::time::Duration::ZERO,
        }
    } else {
        decode(state, Arc::clone(&embedding), plain, options).await?
    };
    decoded.elapsed += elapsed;
    // Back in prompt order: tracked objects from the tracker, the others from the decode.
    let mut plain_masks = decoded.objects.into_iter();
    let mut tracked_iter = tracked.into_iter();
    let mut objects = Vec::with_capacity(ids.len());
    let mut states = Vec::with_capacity(ids.len());
    for &update in &updates {
        if update {
            let (mask, state) = tracked_iter.next().ok_or_else(missing)?;
            objects.push(mobilesam_model::ObjectMasks { masks: vec![mask] });
            states.push(Some(state));
        } else {
            objects.push(plain_masks.next().ok_or_else(missing)?);
            states.push(None);
        }
    }
    record_size(state, session_id, &embedding, &tracks);
    let decoded = Decoded {
        objects,
        elapsed: decoded.elapsed,
    };
    Ok(masks(request_id, decoded, &ids, &states))
}

/// The follow-up on frame `frame` (image `embedding`) of `session_id`: every object
/// followed by memory tracking, with its current result on the frame when it has one,
/// else tracked there in one job. `None` when the session follows nothing this way.
pub async fn follow(
    state: &AppState,
    session_id: &str,
    embedding: &Arc<Embedding>,
    frame: FrameIndex,
) -> Result<Option<v1::Masks>, RequestError> {
    let Some(shared) = existing_or_stored(state, session_id).await else {
        return Ok(None);
    };
    let mut tracks = shared.lock().await;
    if tracks.memory.is_empty() {
        return Ok(None);
    }
    let assigned = frame.assigned;
    let frame = frames::frame_of(frame.index)?;
    let (ids, work): (Vec<u64>, Vec<VideoWork>) = tracks
        .memory
        .iter()
        .filter(|(_, object)| object.current(frame).is_none())
        .map(|(&id, object)| {
            let start = object.start.filter(|&s| s != frame).map(|s| {
                let direction = if frame > s {
                    Direction::Forward
                } else {
                    Direction::Reverse
                };
                (s, direction)
            });
            let work = VideoWork {
                tracker: object.tracker.clone(),
                step: VideoStep::Track { start },
                polygons: object.return_polygons,
            };
            (id, work)
        })
        .unzip();
    let mut decode_ms = 0.0;
    if !work.is_empty() {
        let max = state.tracking.config().max_tracked_frames;
        make_room(&mut tracks, frame, max, assigned)?;
        let done = lanes::track_video(&state.queues, Arc::clone(embedding), frame, work).await?;
        decode_ms = done.elapsed.as_secs_f64() * 1e3;
        for (id, done) in ids.into_iter().zip(done.objects) {
            if let Some(object) = tracks.memory.get_mut(&id) {
                object.start = None;
                keep(object, frame, done);
            }
        }
        save(state, session_id, &shared, &tracks);
    }
    let objects = tracks
        .memory
        .iter()
        .map(|(&id, object)| {
            let mut out = v1::ObjectMasks {
                object_id: id,
                ..v1::ObjectMasks::default()
            };
            if let Some(stored) = object.results.get(&frame) {
                out.masks = vec![convert::mask(stored.mask.clone())];
                out.set_state(stored.state());
            }
            out
        })
        .collect();
    record_size(state, session_id, embedding, &tracks);
    Ok(Some(v1::Masks {
        request_id: 0,
        objects,
        decode_ms,
    }))
}

/// Keeps a job's outcome for `object` on `frame`: its tracker, and the result (without
/// logits) under the object's generation. Returns the mask to answer and its state.
fn keep(
    object: &mut MemoryObject,
    frame: usize,
    done: VideoObjectDone,
) -> (MaskOutput, v1::TrackState) {
    let occluded = done.result.object_score_logit <= 0.0;
    object.tracker = done.tracker;
    let answered = done.mask;
    let stored = StoredResult {
        generation: object.generation,
        mask: MaskOutput {
            low_res_logits: None,
            ..answered.clone()
        },
        occluded,
    };
    let state = stored.state();
    object.results.insert(frame, stored);
    (answered, state)
}

/// Room for results on `frame` under `--max-tracked-frames` (`max`; see
/// [`frames::make_room`]): for a frame whose index the server `assigned`, the oldest
/// frames' results are dropped from every object, except the prompted frames the next
/// propagation starts from; for one the client gave, RESOURCE_EXHAUSTED at the bound.
fn make_room(
    tracks: &mut SessionTracks,
    frame: usize,
    max: usize,
    assigned: bool,
) -> Result<(), RequestError> {
    let stored = stored_frames(tracks.memory.values());
    let starts = tracks.memory.values().filter_map(|o| o.start).collect();
    let dropped = frames::make_room(&stored, &starts, frame, max, assigned)?;
    for object in tracks.memory.values_mut() {
        dropped.iter().for_each(|f| {
            object.results.remove(f);
        });
    }
    Ok(())
}

fn missing() -> RequestError {
    RequestError::Internal("a prompted object got no mask".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mobilesam_model::masks::Rle;
    use tonic::Code;

    fn stored(generation: u64) -> StoredResult {
        StoredResult {
            generation,
            mask: MaskOutput {
                score: 0.9,
                area: 0,
                bbox: [0.0; 4],
                rle: Rle {
                    size: [2, 2],
                    counts: "4".into(),
                },
                stability_score: 0.0,
                low_res_logits: None,
                polygons: None,
            },
            occluded: true,
        }
    }

    #[test]
    fn a_result_is_current_until_the_next_prompt() {
        let mut object = MemoryObject {
            generation: 1,
            ..MemoryObject::default()
        };
        object.results.insert(3, stored(1));
        assert!(object.current(3).is_some());
        assert!(object.current(4).is_none());
        object.generation = 2;
        assert!(object.current(3).is_none());
        assert_eq!(object.results[&3].state(), v1::TrackState::Occluded);
    }

    #[test]
    fn the_frame_bound_counts_distinct_frames_and_spares_stored_ones() {
        let mut tracks = SessionTracks::default();
        for id in [1, 2] {
            let mut object = MemoryObject::default();
            object.results.insert(0, stored(0));
            object.results.insert(id as usize, stored(0));
            tracks.memory.insert(id, object);
        }
        // frames 0, 1, 2
        assert!(make_room(&mut tracks, 5, 4, false).is_ok());
        assert!(make_room(&mut tracks, 1, 3, false).is_ok());
        let over = make_room(&mut tracks, 5, 3, false).unwrap_err();
        assert_eq!(over.code(), Code::ResourceExhausted);
        assert!(over.to_string().contains("--max-tracked-frames"));
        assert!(tracks.size_bytes() > 0);
        // A frame the server numbered drops the oldest, but not a prompted start (0).
        if let Some(object) = tracks.memory.get_mut(&1) {
            object.start = Some(0);
        }
        assert!(make_room(&mut tracks, 5, 3, true).is_ok());
        assert_eq!(stored_frames(tracks.memory.values()), [0, 2].into());
    }
}
