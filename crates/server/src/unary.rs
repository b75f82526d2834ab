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

use mobilesam_model::Embedding;
use mobilesam_proto::v1;
use tonic::Code;

use crate::convert;
use crate::error::RequestError;
use crate::jobs::{self, DecodeJob, EncodeJob, Owner};
use crate::metrics::{self, RequestKind};
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
    let (kind, result) = match validate::set_image(message) {
        Err(e) => (RequestKind::SetImage, Err(e)),
        Ok(ImageRequest::Resume { session_id }) => (RequestKind::Resume, resume(state, session_id)),
        Ok(ImageRequest::Encode { image, session_id }) => (
            RequestKind::SetImage,
            encode(state, image, session_id).await,
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
        let closed = !request.session_id.is_empty() && state.sessions.close(&request.session_id);
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

fn not_found(session_id: &str) -> RequestError {
    RequestError::NotFound(format!(
        "session {session_id} is unknown or has expired; send the image again with SetImage"
    ))
}

fn resume(state: &AppState, session_id: String) -> Result<v1::ImageReady, RequestError> {
    let embedding = state
        .sessions
        .get(&session_id)
        .ok_or_else(|| not_found(&session_id))?;
    Ok(image_ready(&session_id, &embedding, 0.0))
}

async fn encode(
    state: &AppState,
    image: Vec<u8>,
    session_id: Option<String>,
) -> Result<v1::ImageReady, RequestError> {
    let (job, pending) = EncodeJob::new(image);
    state.scheduler.submit_encode(job)?;
    let encoded = pending.await.unwrap_or_else(|_| {
        Err(RequestError::Unavailable(
            "the server stopped before encoding".into(),
        ))
    })?;
    let session_id = session_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let embedding = encoded.embedding;
    let size = u64::try_from(embedding.size_bytes()).unwrap_or(u64::MAX);
    // Without a stream the cache is the only place the embedding lives.
    if !state
        .sessions
        .insert(session_id.clone(), Arc::clone(&embedding), size)
    {
        return Err(RequestError::ResourceExhausted(
            "the image's embedding is larger than the whole session cache \
             (--session-cache-bytes); the unary API cannot keep it"
                .into(),
        ));
    }
    let encode_ms = encoded.elapsed.as_secs_f64() * 1e3;
    let mut ready = image_ready(&session_id, &embedding, encode_ms);
    ready.tracked = tracking::follow(state, &session_id, &embedding).await?;
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
    let embedding = state
        .sessions
        .get(&request.session_id)
        .ok_or_else(|| not_found(&request.session_id))?;
    let owner = Owner::Session(request.session_id.clone());
    if prompt.supersede_pending {
        let superseded = state.scheduler.supersede(|job| job.owner == owner);
        jobs::answer_superseded(superseded, prompt.request_id);
    }
    let (job, pending) = DecodeJob::new(owner, embedding, objects, options);
    state.scheduler.submit_decode(job)?;
    let decoded = pending.await.unwrap_or_else(|_| {
        Err(RequestError::Unavailable(
            "the server stopped before decoding".into(),
        ))
    })?;
    match convert::masks(prompt.request_id, decoded).response {
        Some(v1::segment_response::Response::Masks(masks)) => Ok(masks),
        _ => Err(RequestError::Internal("masks were not converted".into())),
    }
}

fn image_ready(session_id: &str, embedding: &Embedding, encode_ms: f64) -> v1::ImageReady {
    match convert::image_ready(session_id, embedding, encode_ms).response {
        Some(v1::segment_response::Response::ImageReady(ready)) => ready,
        _ => v1::ImageReady {
            session_id: session_id.to_string(),
            ..Default::default()
        },
    }
}
