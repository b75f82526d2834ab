//! The recipe's session operations (MobileSAM, SAM ViT): a prompt that starts or corrects
//! objects on the current frame, and the follow-up on a frame, new or revisited. Each
//! object's results are kept per frame index ([`RecipeObject`](super::RecipeObject)); the
//! direction of travel is read from the session's previous frame.

use std::sync::Arc;

use mobilesam_model::{DecodeOptions, Embedding, MaskOutput};
use mobilesam_proto::v1;

use super::answer::{decode, masks};
use super::frames::{frame_of, make_room, travel, FrameIndex};
use super::recipe::{self, ObjectState};
use super::recipe_object::{RecipeObject, Step};
use super::{record_size, Prompted, SessionTracks};
use crate::convert;
use crate::error::RequestError;
use crate::state::AppState;

/// A prompt on frame `frame` of `session_id` (image `embedding`): objects of a
/// `track` prompt, and objects the session already follows, take the result as theirs on
/// this frame (the highest-scoring mask; LOST when it is empty), which starts a new
/// generation of their results. Other objects are decoded as usual.
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
        mut options,
    } = prompted;
    let shared = if track {
        Some(state.tracking.session(session_id))
    } else {
        state.tracking.existing(session_id)
    };
    let Some(shared) = shared else {
        let decoded = decode(state, embedding, objects, options).await?;
        return Ok(masks(request_id, decoded, &ids, &[]));
    };
    let mut tracks = shared.lock().await;
    let updates: Vec<bool> = ids
        .iter()
        .map(|id| track || tracks.objects.contains_key(id))
        .collect();
    let config = state.tracking.config();
    if track {
        tracks.check_capacity(&ids, config.max_tracked_objects)?;
    }
    let updating = updates.iter().any(|&u| u);
    let bound = (config.max_tracked_frames, frame.assigned);
    let frame = frame_of(frame.index)?;
    if updating {
        make_room_for(&mut tracks, frame, bound, &[])?;
    }
    let logits_asked = options.return_low_res_logits;
    options.return_low_res_logits |= updating;
    let mut decoded = decode(state, Arc::clone(&embedding), objects, options).await?;
    let mut states = Vec::with_capacity(ids.len());
    for ((object, &id), &update) in decoded.objects.iter_mut().zip(&ids).zip(&updates) {
        if update {
            let result = best_mask(&object.masks).map_or(ObjectState::Lost, |mask| {
                ObjectState::from_mask(mask.clone(), embedding.original_size)
            });
            states.push(Some(wire_state(&result)));
            tracks
                .objects
                .entry(id)
                .or_default()
                .prompt(frame, result, options.return_polygons);
        } else {
            states.push(None);
        }
        if !logits_asked {
            object
                .masks
                .iter_mut()
                .for_each(|m| m.low_res_logits = None);
        }
    }
    if updating {
        tracks.previous_frame = Some(frame);
    }
    record_size(state, session_id, &embedding, &tracks);
    Ok(masks(request_id, decoded, &ids, &states))
}

/// The follow-up on frame `frame` (image `embedding`) of `session_id`: every object
/// followed by the recipe, with its current result on the frame when it has one (no
/// decode), else followed from its result on the nearest frame the way of travel (all
/// such objects in one decode job). `None` when the session follows nothing this way.
pub async fn follow(
    state: &AppState,
    session_id: &str,
    embedding: &Arc<Embedding>,
    frame: FrameIndex,
) -> Result<Option<v1::Masks>, RequestError> {
    let Some(shared) = state.tracking.existing(session_id) else {
        return Ok(None);
    };
    let mut tracks = shared.lock().await;
    if tracks.objects.is_empty() {
        return Ok(None);
    }
    let bound = (state.tracking.config().max_tracked_frames, frame.assigned);
    let frame = frame_of(frame.index)?;
    let size = embedding.original_size;
    let direction = travel(tracks.previous_frame, frame);
    tracks.previous_frame = Some(frame);
    let mut followed = Vec::new();
    let mut prompts = Vec::new();
    let mut lost = Vec::new();
    let mut polygons_asked = false;
    for (&id, object) in &tracks.objects {
        match object.step(frame, direction) {
            Step::Stored(_) => {}
            Step::Follow { from, track } => {
                followed.push((id, from));
                prompts.push(recipe::follow_prompt(track, size));
                polygons_asked |= object.return_polygons;
            }
            Step::Lost => lost.push(id),
        }
    }
    if !followed.is_empty() || !lost.is_empty() {
        let starts: Vec<usize> = followed.iter().map(|&(_, from)| from).collect();
        make_room_for(&mut tracks, frame, bound, &starts)?;
    }
    for id in lost {
        if let Some(object) = tracks.objects.get_mut(&id) {
            object.lost(frame);
        }
    }
    let mut decode_ms = 0.0;
    if !prompts.is_empty() {
        let options = DecodeOptions {
            multimask: false,
            return_low_res_logits: true,
            return_polygons: polygons_asked,
        };
        let decoded = decode(state, Arc::clone(embedding), prompts, options).await?;
        decode_ms = decoded.elapsed.as_secs_f64() * 1e3;
        if decoded.objects.len() != followed.len() {
            return Err(missing());
        }
        let thresholds = state.tracking.thresholds();
        for ((id, from), found) in followed.into_iter().zip(decoded.objects) {
            let mut mask = found.masks.into_iter().next().ok_or_else(missing)?;
            let Some(object) = tracks.objects.get_mut(&id) else {
                continue;
            };
            if !object.return_polygons {
                mask.polygons = None;
            }
            let next = match object.current(from).and_then(ObjectState::track) {
                Some(start) => recipe::next_state(start, mask, size, thresholds),
                None => ObjectState::Lost,
            };
            object.followed(frame, from, next);
        }
    }
    let objects = tracks
        .objects
        .iter()
        .map(|(&id, object)| {
            let result = object.current(frame).unwrap_or(&ObjectState::Lost);
            answer(id, result)
        })
        .collect();
    record_size(state, session_id, embedding, &tracks);
    Ok(Some(v1::Masks {
        request_id: 0,
        objects,
        decode_ms,
    }))
}

/// Room for results on `frame` under `--max-tracked-frames` (`max`; see [`make_room`]):
/// for a frame whose index the server assigned, the oldest frames' results are dropped from every object, except
/// the frames objects start from (theirs, and `starts`, this follow-up's).
fn make_room_for(
    tracks: &mut SessionTracks,
    frame: usize,
    (max, frame_assigned): (usize, bool),
    starts: &[usize],
) -> Result<(), RequestError> {
    let protected = tracks
        .objects
        .values()
        .flat_map(RecipeObject::start_frames)
        .chain(starts.iter().copied())
        .collect();
    let dropped = make_room(
        &tracks.recipe_frames(),
        &protected,
        frame,
        max,
        frame_assigned,
    )?;
    for object in tracks.objects.values_mut() {
        dropped.iter().for_each(|&f| object.forget(f));
    }
    Ok(())
}

/// The answer of object `id` on a frame: its mask without logits, or LOST with none.
fn answer(id: u64, result: &ObjectState) -> v1::ObjectMasks {
    let masks = match result.track() {
        Some(track) => vec![convert::mask(MaskOutput {
            low_res_logits: None,
            ..track.mask.clone()
        })],
        None => Vec::new(),
    };
    let mut out = v1::ObjectMasks {
        masks,
        object_id: id,
        ..v1::ObjectMasks::default()
    };
    out.set_state(wire_state(result));
    out
}

/// The highest-scoring mask (the first of equals, as the reference's argmax).
fn best_mask(masks: &[MaskOutput]) -> Option<&MaskOutput> {
    masks
        .iter()
        .reduce(|best, m| if m.score > best.score { m } else { best })
}

fn wire_state(state: &ObjectState) -> v1::TrackState {
    match state {
        ObjectState::Tracked(_) => v1::TrackState::Tracked,
        ObjectState::Lost => v1::TrackState::Lost,
    }
}

fn missing() -> RequestError {
    RequestError::Internal("a followed object got no mask".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mobilesam_model::masks::Rle;

    fn mask(score: f32, area: u64) -> MaskOutput {
        MaskOutput {
            score,
            area,
            bbox: [1.0, 2.0, 3.0, 4.0],
            rle: Rle {
                size: [10, 20],
                counts: "xyz".into(),
            },
            stability_score: 0.5,
            low_res_logits: Some(vec![0.0; 4]),
            polygons: None,
        }
    }

    #[test]
    fn the_best_mask_is_the_first_highest_score() {
        let masks = [mask(0.2, 1), mask(0.7, 2), mask(0.7, 3)];
        assert_eq!(best_mask(&masks).map(|m| m.area), Some(2));
        assert!(best_mask(&[]).is_none());
    }

    #[test]
    fn answers_carry_the_mask_without_logits_or_lost_without_one() {
        let tracked = ObjectState::from_mask(mask(0.9, 5), (10, 20));
        let out = answer(4, &tracked);
        assert_eq!((out.object_id, out.state()), (4, v1::TrackState::Tracked));
        assert_eq!(out.masks.len(), 1);
        assert!(out.masks[0].low_res_logits.is_empty());
        assert_eq!(out.masks[0].area, 5);
        let lost = answer(6, &ObjectState::Lost);
        assert_eq!(lost.state(), v1::TrackState::Lost);
        assert!(lost.masks.is_empty());
    }
}
