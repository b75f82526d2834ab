//! What both trackers (the recipe and SAM 2.1's memory) share around a prompt: its plain
//! decode on the decode lane, and its answer with each object's id and tracking state.

use std::sync::Arc;

use mobilesam_model::{DecodeOptions, Embedding, ObjectPrompt};
use mobilesam_proto::v1;

use crate::convert;
use crate::error::RequestError;
use crate::lanes::jobs::Decoded;
use crate::lanes::{self, Owner};
use crate::state::AppState;

/// Decodes `objects` on the decode lane, for tracking (never superseded).
pub async fn decode(
    state: &AppState,
    embedding: Arc<Embedding>,
    objects: Vec<ObjectPrompt>,
    options: DecodeOptions,
) -> Result<Decoded, RequestError> {
    lanes::decode(&state.queues, Owner::Tracking, embedding, objects, options).await
}

/// A prompt's masks with the objects' ids and, where `states` has one, their tracking
/// state (`states` may be shorter than the objects: the rest get none).
pub fn masks(
    request_id: u64,
    decoded: Decoded,
    ids: &[u64],
    states: &[Option<v1::TrackState>],
) -> v1::Masks {
    let mut masks = convert::masks(request_id, decoded);
    for (i, (object, &id)) in masks.objects.iter_mut().zip(ids).enumerate() {
        object.object_id = id;
        if let Some(Some(state)) = states.get(i) {
            object.set_state(*state);
        }
    }
    masks
}
