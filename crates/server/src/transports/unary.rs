//! The unary session RPCs (`SetImage`, `Predict`, `CloseSession`), for clients that cannot
//! stream: browsers over gRPC-web.
//!
//! They share the session store, the validation rules, the job queues and the metrics with
//! the `Segment` stream, so a session opened here can be resumed on a stream and the other
//! way round. Each call is self-contained: the session id names the embedding. A client
//! that goes away drops the call's future, which drops the job's receiver and so cancels
//! the queued job. Failures are the stream's `Error` codes, as gRPC statuses. A `Predict`
//! whose prompt sets `supersede_pending` answers the session's queued (not started)
//! `Predict` calls ABORTED: latest wins per session.

use std::sync::Arc;
use std::time::Instant;

use mobilesam_proto::v1;
use tonic::Code;

use crate::convert;
use crate::error::RequestError;
use crate::lanes::{self, Owner};
use crate::metrics::{self, RequestKind};
use crate::sessions;
use crate::state::AppState;
use crate::tracking;
use crate::validate::{self, ImageRequest};

/// `SetImage`: encode an image into a new session (no session id) or into the named
/// session (the next video frame), or check that a named session is cached.
pub async fn set_image(
    state: &AppState,
    message: v1::SetImage,
) -> Result<v1::ImageReady, RequestError> {
    let started = Instant::now();
    let checked = validate::frame_index(&message)
        .and_then(|frame_index| Ok((validate::set_image(message)?, frame_index)));
    let (kind, result) = match checked {
        Err(e) => (RequestKind::SetImage, Err(e)),
        Ok((request, frame_index)) => (
            sessions::request_kind(&request),
            open(state, request, frame_index).await,
        ),
    };
    record(kind, &result, started);
    result
}

/// `Predict`: decode a prompt against a cached session.
pub async fn predict(
    state: &AppState,
    request: v1::PredictRequest,
) -> Result<v1::Masks, RequestError> {
    let started = Instant::now();
    let result = decode(state, request).await;
    record(RequestKind::Prompt, &result, started);
    result
}

/// `CloseSession`: drop a session's embedding; an unknown session is not an error.
pub fn close_session(
    state: &AppState,
    request: &v1::CloseSessionRequest,
) -> Result<v1::CloseSessionResponse, RequestError> {
    let started = Instant::now();
    let result = validate::check_session_id(&request.session_id).map(|()| {
        let closed = !request.session_id.is_empty() && sessions::close(state, &request.session_id);
        let closed = state.tracking.close(&request.session_id) || closed;
        v1::CloseSessionResponse { closed }
    });
    record(RequestKind::CloseSession, &result, started);
    result
}

fn record<T>(kind: RequestKind, result: &Result<T, RequestError>, started: Instant) {
    let code = result
        .as_ref()
        .map_or_else(RequestError::code, |_| Code::Ok);
    metrics::record_request(kind, code, started.elapsed());
}

/// Opens a session as the stream does; without a stream the session cache is the only
/// place the embedding lives, so an embedding the cache cannot keep is an error here.
async fn open(
    state: &AppState,
    request: ImageRequest,
    frame_index: Option<i64>,
) -> Result<v1::ImageReady, RequestError> {
    let kind = sessions::request_kind(&request);
    if let ImageRequest::Prefetch { image } = request {
        return sessions::prefetch(state, image, frame_index).await;
    }
    let opened = sessions::open(state, request, None, frame_index).await?;
    if !opened.cached {
        return Err(RequestError::ResourceExhausted(
            "the image's embedding is larger than the whole session cache \
             (--session-cache-bytes); the unary API cannot keep it"
                .into(),
        ));
    }
    let mut ready = opened.image_ready();
    if kind == RequestKind::SetImage {
        // A new frame (an image) of a session moves the objects it follows onto it.
        ready.tracked =
            tracking::follow(state, &opened.session_id, &opened.embedding, opened.frame()).await?;
    }
    Ok(ready)
}

async fn decode(state: &AppState, request: v1::PredictRequest) -> Result<v1::Masks, RequestError> {
    if request.session_id.is_empty() {
        return Err(RequestError::InvalidArgument(
            "Predict needs the session_id of an ImageReady".into(),
        ));
    }
    validate::check_session_id(&request.session_id)?;
    let prompt = request.prompt.ok_or_else(|| {
        RequestError::InvalidArgument("Predict needs a prompt with at least one object".into())
    })?;
    if tracking::wants_tracking(&prompt) {
        return tracking::predict(state, &request.session_id, &prompt).await;
    }
    let (objects, options) = validate::prompt(&prompt, state.limits)?;
    let embedding = match state.sessions.get(&request.session_id) {
        Some(session) => Arc::clone(&session.embedding),
        // Another replica opened it: its record and embedding may be in the store.
        None => {
            sessions::resume(state, request.session_id.clone())
                .await?
                .embedding
        }
    };
    let owner = Owner::Session(request.session_id.clone());
    if prompt.supersede_pending {
        lanes::supersede(&state.queues, &owner, prompt.request_id);
    }
    let decoded = lanes::decode(&state.queues, owner, embedding, objects, options).await?;
    Ok(convert::masks(prompt.request_id, decoded))
}
