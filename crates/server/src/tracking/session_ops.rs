//! Tracking's session operations, shared by the `Segment` stream and the unary RPCs: a
//! prompt that starts tracking or corrects objects, the follow-up on a new frame, and
//! untracking.

use std::collections::HashSet;
use std::sync::Arc;

use mobilesam_model::Embedding;
use mobilesam_proto::v1;

use super::frames::FrameIndex;
use super::{memory, recipe_ops, record_size, Prompted};
use crate::error::RequestError;
use crate::state::AppState;
use crate::validate;

/// Whether a prompt goes through tracking: it asks to track its objects, or names them
/// (their ids are echoed, and a tracked id prompted again is a correction).
pub fn wants_tracking(prompt: &v1::Prompt) -> bool {
    prompt.track || prompt.objects.iter().any(|o| o.object_id != 0)
}

/// A prompt with `track` set or object ids, on `embedding` (frame `frame`), the
/// current image of `session_id`: checked, then the recipe's ([`super::recipe_ops::prompt`])
/// or, with a SAM 2.1 checkpoint, the memory trackers' ([`super::memory::prompt`]).
pub async fn prompt(
    state: &AppState,
    session_id: &str,
    embedding: Arc<Embedding>,
    frame: FrameIndex,
    message: &v1::Prompt,
) -> Result<v1::Masks, RequestError> {
    let (objects, options) = validate::prompt(message, state.limits)?;
    let ids: Vec<u64> = message.objects.iter().map(|o| o.object_id).collect();
    check_ids(&ids, message.track)?;
    let prompted = Prompted {
        request_id: message.request_id,
        track: message.track,
        ids,
        objects,
        options,
    };
    if memory::in_use(state) {
        return memory::prompt(state, session_id, embedding, frame, prompted).await;
    }
    recipe_ops::prompt(state, session_id, embedding, frame, prompted).await
}

/// The follow-up on frame `frame` (image `embedding`) of `session_id`: every
/// followed object's result there, stored or computed with the recipe
/// ([`super::recipe_ops::follow`]; with a SAM 2.1 checkpoint: [`super::memory::follow`]).
/// `None` when the session tracks nothing.
pub async fn follow(
    state: &AppState,
    session_id: &str,
    embedding: &Arc<Embedding>,
    frame: FrameIndex,
) -> Result<Option<v1::Masks>, RequestError> {
    if memory::in_use(state) {
        return memory::follow(state, session_id, embedding, frame).await;
    }
    recipe_ops::follow(state, session_id, embedding, frame).await
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
    let frame = opened.frame();
    prompt(state, session_id, opened.embedding, frame, message).await
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracking::{RecipeObject, SessionTracks};
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
        tracks.objects.insert(1, RecipeObject::default());
        tracks.objects.insert(2, RecipeObject::default());
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
