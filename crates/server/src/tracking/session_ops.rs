//! Tracking's session operations, shared by the `Segment` stream and the unary RPCs: a
//! prompt that starts tracking or corrects objects, the follow-up on a new frame, and
//! untracking.

use std::collections::HashSet;
use std::sync::Arc;

use mobilesam_model::{DecodeOptions, Embedding, MaskOutput, ObjectPrompt};
use mobilesam_proto::v1;

use super::answer::{decode, masks};
use super::recipe::{self, ObjectState};
use super::{memory, record_size, Prompted, SessionTracks};
use crate::convert;
use crate::error::RequestError;
use crate::lanes::jobs::Decoded;
use crate::state::AppState;
use crate::validate;

/// Whether a prompt goes through tracking: it asks to track its objects, or names them
/// (their ids are echoed, and a tracked id prompted again is a correction).
pub fn wants_tracking(prompt: &v1::Prompt) -> bool {
    prompt.track || prompt.objects.iter().any(|o| o.object_id != 0)
}

/// A prompt with `track` set or object ids, on `embedding`, the current image of
/// `session_id`. Objects of a `track` prompt, and tracked objects prompted again, take
/// their result as their state: the highest-scoring mask (LOST when it is empty).
///
/// With a SAM 2.1 checkpoint the objects go to their memory trackers instead
/// ([`super::memory::prompt`]) on frame `frame_index`.
pub async fn prompt(
    state: &AppState,
    session_id: &str,
    embedding: Arc<Embedding>,
    frame_index: i64,
    message: &v1::Prompt,
) -> Result<v1::Masks, RequestError> {
    let (objects, mut options) = validate::prompt(message, state.limits)?;
    let ids: Vec<u64> = message.objects.iter().map(|o| o.object_id).collect();
    check_ids(&ids, message.track)?;
    if memory::in_use(state) {
        let prompted = Prompted {
            request_id: message.request_id,
            track: message.track,
            ids,
            objects,
            options,
        };
        return memory::prompt(state, session_id, embedding, frame_index, prompted).await;
    }
    let shared = if message.track {
        Some(state.tracking.session(session_id))
    } else {
        state.tracking.existing(session_id)
    };
    let Some(shared) = shared else {
        let decoded = decode(state, embedding, objects, options).await?;
        return Ok(masks(
            message.request_id,
            decoded,
            &ids,
            &vec![None; ids.len()],
        ));
    };
    let mut tracks = shared.lock().await;
    let updates: Vec<bool> = ids
        .iter()
        .map(|id| message.track || tracks.objects.contains_key(id))
        .collect();
    if message.track {
        tracks.check_capacity(&ids, state.tracking.config().max_tracked_objects)?;
    }
    let logits_asked = options.return_low_res_logits;
    options.return_low_res_logits |= updates.iter().any(|&u| u);
    let mut decoded = decode(state, Arc::clone(&embedding), objects, options).await?;
    let mut states = Vec::with_capacity(ids.len());
    for ((object, &id), &update) in decoded.objects.iter_mut().zip(&ids).zip(&updates) {
        if update {
            let new_state = best_mask(&object.masks).map_or(ObjectState::Lost, |mask| {
                ObjectState::from_mask(mask, embedding.original_size, options.return_polygons)
            });
            states.push(Some(wire_state(&new_state)));
            tracks.objects.insert(id, new_state);
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
    record_size(state, session_id, &embedding, &tracks);
    Ok(masks(message.request_id, decoded, &ids, &states))
}

/// The follow-up on a new frame (`embedding`, frame `frame_index`) of `session_id`: every
/// followed object is decoded with the recipe, in one job (with a SAM 2.1 checkpoint:
/// [`super::memory::follow`]). `None` when the session tracks nothing.
pub async fn follow(
    state: &AppState,
    session_id: &str,
    embedding: &Arc<Embedding>,
    frame_index: i64,
) -> Result<Option<v1::Masks>, RequestError> {
    if memory::in_use(state) {
        return memory::follow(state, session_id, embedding, frame_index).await;
    }
    let Some(shared) = state.tracking.existing(session_id) else {
        return Ok(None);
    };
    let mut tracks = shared.lock().await;
    if tracks.objects.is_empty() {
        return Ok(None);
    }
    let frame = embedding.original_size;
    let (followed, prompts): (Vec<u64>, Vec<ObjectPrompt>) = tracks
        .objects
        .iter()
        .filter_map(|(&id, object)| match object {
            ObjectState::Tracked(track) => Some((id, recipe::follow_prompt(track, frame))),
            ObjectState::Lost => None,
        })
        .unzip();
    let polygons_asked = tracks
        .objects
        .values()
        .any(|o| matches!(o, ObjectState::Tracked(t) if t.return_polygons));
    let mut decode_ms = 0.0;
    let mut found: Vec<(u64, MaskOutput)> = Vec::with_capacity(followed.len());
    if !prompts.is_empty() {
        let options = DecodeOptions {
            multimask: false,
            return_low_res_logits: true,
            return_polygons: polygons_asked,
        };
        let decoded = decode(state, Arc::clone(embedding), prompts, options).await?;
        decode_ms = decoded.elapsed.as_secs_f64() * 1e3;
        for (id, object) in followed.into_iter().zip(decoded.objects) {
            let Some(mask) = object.masks.into_iter().next() else {
                return Err(RequestError::Internal(
                    "a followed object got no mask".into(),
                ));
            };
            found.push((id, mask));
        }
    }
    let thresholds = state.tracking.thresholds();
    let mut answered = Vec::with_capacity(found.len());
    for (id, mut mask) in found {
        let (next, wants_polygons) = match tracks.objects.get(&id) {
            Some(ObjectState::Tracked(previous)) => (
                recipe::next_state(previous, &mask, frame, thresholds),
                previous.return_polygons,
            ),
            _ => (ObjectState::Lost, false),
        };
        if !wants_polygons {
            mask.polygons = None;
        }
        let kept = matches!(next, ObjectState::Tracked(_));
        tracks.objects.insert(id, next);
        mask.low_res_logits = None;
        answered.push((id, kept.then_some(mask)));
    }
    record_size(state, session_id, embedding, &tracks);
    Ok(Some(tracked_masks(&tracks, answered, decode_ms)))
}

/// Stops following `object_ids` of `session_id` (every object when empty); returns the
/// ids that were tracked, ascending.
pub async fn untrack(state: &AppState, session_id: &str, object_ids: &[u64]) -> Vec<u64> {
    let Some(shared) = memory::existing_or_stored(state, session_id).await else {
        return Vec::new();
    };
    let mut tracks = shared.lock().await;
    let removed: Vec<u64> = if object_ids.is_empty() {
        let mut all: Vec<u64> = tracks
            .objects
            .keys()
            .chain(tracks.memory.keys())
            .copied()
            .collect();
        all.sort_unstable();
        tracks.objects.clear();
        tracks.memory.clear();
        all
    } else {
        let mut removed: Vec<u64> = object_ids
            .iter()
            .filter(|id| {
                let recipe = tracks.objects.remove(id).is_some();
                tracks.memory.remove(id).is_some() || recipe
            })
            .copied()
            .collect();
        removed.sort_unstable();
        removed
    };
    if !removed.is_empty() {
        memory::save(state, session_id, &shared, &tracks);
    }
    if let Some(session) = state.sessions.get(session_id) {
        record_size(state, session_id, &session.embedding, &tracks);
    }
    removed
}

/// The unary `Predict` of a prompt that goes through tracking (see [`wants_tracking`]),
/// on the session's cached image.
pub async fn predict(
    state: &AppState,
    session_id: &str,
    message: &v1::Prompt,
) -> Result<v1::Masks, RequestError> {
    // A session this replica does not hold may be in the shared store.
    let opened = crate::sessions::resume(state, session_id.to_string()).await?;
    prompt(
        state,
        session_id,
        opened.embedding,
        opened.frame_index,
        message,
    )
    .await
}

/// Puts the follow-up's masks into an `ImageReady` answer.
pub fn attach(response: &mut v1::SegmentResponse, tracked: Option<v1::Masks>) {
    if let Some(v1::segment_response::Response::ImageReady(ready)) = &mut response.response {
        ready.tracked = tracked;
    }
}

/// The unary `Untrack` RPC: NOT_FOUND for a session that is neither cached nor tracking.
pub async fn untrack_rpc(
    state: &AppState,
    request: v1::UntrackRequest,
) -> Result<v1::UntrackResponse, RequestError> {
    if request.session_id.is_empty() {
        return Err(RequestError::InvalidArgument(
            "Untrack needs the session_id of an ImageReady".into(),
        ));
    }
    validate::check_session_id(&request.session_id)?;
    if state.tracking.existing(&request.session_id).is_none()
        && !state.sessions.contains(&request.session_id)
    {
        return Err(crate::sessions::session_not_found(&request.session_id));
    }
    let ids = request.untrack.map(|u| u.object_ids).unwrap_or_default();
    Ok(v1::UntrackResponse {
        object_ids: untrack(state, &request.session_id, &ids).await,
    })
}

/// Object ids must be nonzero with `track` (0 is "no id" on the wire) and distinct.
fn check_ids(ids: &[u64], track: bool) -> Result<(), RequestError> {
    if track {
        if let Some(i) = ids.iter().position(|&id| id == 0) {
            return Err(RequestError::InvalidArgument(format!(
                "object {i}: Prompt.track needs an object_id (nonzero) on every object"
            )));
        }
    }
    let mut seen = HashSet::new();
    for (i, &id) in ids.iter().enumerate() {
        if id != 0 && !seen.insert(id) {
            return Err(RequestError::InvalidArgument(format!(
                "object {i}: object_id {id} appears twice in one prompt"
            )));
        }
    }
    Ok(())
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

/// `ImageReady.tracked`: every tracked object, ascending id; followed ones with their
/// mask, lost ones without.
fn tracked_masks(
    tracks: &SessionTracks,
    mut answered: Vec<(u64, Option<MaskOutput>)>,
    decode_ms: f64,
) -> v1::Masks {
    let objects = tracks
        .objects
        .iter()
        .map(|(&id, object)| {
            let mask = answered
                .iter_mut()
                .find(|(answered_id, _)| *answered_id == id)
                .and_then(|(_, mask)| mask.take());
            let masks = match (object, mask) {
                (ObjectState::Tracked(_), Some(mask)) => {
                    let decoded = Decoded {
                        objects: vec![mobilesam_model::ObjectMasks { masks: vec![mask] }],
                        elapsed: std::time::Duration::ZERO,
                    };
                    convert::masks(0, decoded)
                        .objects
                        .into_iter()
                        .flat_map(|o| o.masks)
                        .collect()
                }
                _ => Vec::new(),
            };
            let mut out = v1::ObjectMasks {
                masks,
                object_id: id,
                ..v1::ObjectMasks::default()
            };
            out.set_state(wire_state(object));
            out
        })
        .collect();
    v1::Masks {
        request_id: 0,
        objects,
        decode_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn ids_are_required_with_track_and_distinct() {
        assert!(check_ids(&[0, 0], false).is_ok());
        assert!(check_ids(&[1, 2], true).is_ok());
        let missing = check_ids(&[1, 0], true).unwrap_err();
        assert_eq!(missing.code(), Code::InvalidArgument);
        assert!(missing.to_string().starts_with("object 1:"));
        let twice = check_ids(&[5, 5], false).unwrap_err();
        assert!(twice.to_string().contains("object_id 5 appears twice"));
    }

    #[test]
    fn capacity_counts_new_ids_only() {
        let mut tracks = SessionTracks::default();
        tracks.objects.insert(1, ObjectState::Lost);
        tracks.objects.insert(2, ObjectState::Lost);
        assert!(tracks.check_capacity(&[1, 2, 3], 3).is_ok());
        let over = tracks.check_capacity(&[3, 4], 3).unwrap_err();
        assert_eq!(over.code(), Code::ResourceExhausted);
        assert!(over.to_string().contains("--max-tracked-objects"));
    }

    #[test]
    fn prompts_with_track_or_ids_go_through_tracking() {
        let mut prompt = v1::Prompt {
            objects: vec![v1::ObjectPrompt::default()],
            ..v1::Prompt::default()
        };
        assert!(!wants_tracking(&prompt));
        prompt.objects[0].object_id = 4;
        assert!(wants_tracking(&prompt));
        prompt.objects[0].object_id = 0;
        prompt.track = true;
        assert!(wants_tracking(&prompt));
    }
}
