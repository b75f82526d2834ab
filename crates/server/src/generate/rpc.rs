//! The `GenerateMasks` RPC: checks the request, queues the job, and forwards its events
//! as the response stream (masks, then the summary; a failure ends the stream with its
//! status).

use std::sync::Arc;
use std::time::Instant;

use mobilesam_proto::v1;
use mobilesam_proto::v1::generate_masks_response::Response as Kind;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};
use tracing::debug;

use super::{convert, params, GenerateEvent, GenerateEvents, GenerateInput};
use crate::error::RequestError;
use crate::lanes;
use crate::metrics::{self, RequestKind};
use crate::state::AppState;
use crate::validate;

/// Messages buffered between the forwarder and the transport.
const OUTBOUND_BUFFER: usize = 16;

/// The response stream of `GenerateMasks`.
pub type GenerateStream = ReceiverStream<Result<v1::GenerateMasksResponse, Status>>;

/// Answers one `GenerateMasks` call: bad requests, an unknown session and a full queue
/// are refused before the stream starts; the rest is streamed.
pub fn generate_masks(
    state: &Arc<AppState>,
    request: v1::GenerateMasksRequest,
) -> Result<GenerateStream, Status> {
    let started = Instant::now();
    let events = match queue(state, request) {
        Ok(events) => events,
        Err(e) => {
            metrics::record_request(RequestKind::Generate, e.code(), started.elapsed());
            debug!(code = ?e.code(), message = %e, "GenerateMasks refused");
            return Err(e.to_status());
        }
    };
    let (out, outbound) = mpsc::channel(OUTBOUND_BUFFER);
    tokio::spawn(async move {
        let code = forward(events, &out).await;
        metrics::record_request(RequestKind::Generate, code, started.elapsed());
    });
    Ok(ReceiverStream::new(outbound))
}

/// Checks the request and queues its job.
fn queue(
    state: &AppState,
    request: v1::GenerateMasksRequest,
) -> Result<GenerateEvents, RequestError> {
    if state.shutdown.is_cancelled() {
        return Err(RequestError::Unavailable(
            "the server is shutting down".into(),
        ));
    }
    let v1::GenerateMasksRequest {
        image,
        session_id,
        params: wire_params,
    } = request;
    let input = match (image.is_empty(), session_id.is_empty()) {
        (false, true) => GenerateInput::Image(image),
        (true, false) => {
            validate::check_session_id(&session_id)?;
            let session = state
                .sessions
                .get(&session_id)
                .ok_or_else(|| crate::sessions::session_not_found(&session_id))?;
            GenerateInput::Embedding(Arc::clone(&session.embedding))
        }
        (false, false) => {
            return Err(RequestError::InvalidArgument(
                "GenerateMasks takes an image or a session_id, not both".into(),
            ))
        }
        (true, true) => {
            return Err(RequestError::InvalidArgument(
                "GenerateMasks needs an image, or the session_id of a cached image".into(),
            ))
        }
    };
    let whole_image_only = matches!(input, GenerateInput::Embedding(_));
    let params = params::params(
        wire_params.as_ref(),
        whole_image_only,
        &state.generate_defaults(),
    )?;
    lanes::submit_generate(&state.queues, input, params)
}

/// Sends every event to the client; returns the code the call ended with. A client that
/// goes away drops `events`, which stops the generation at its next step.
async fn forward(
    mut events: GenerateEvents,
    out: &mpsc::Sender<Result<v1::GenerateMasksResponse, Status>>,
) -> Code {
    let message = |response| v1::GenerateMasksResponse {
        response: Some(response),
    };
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            _ = out.closed() => return Code::Cancelled,
        };
        let sent = match event {
            Some(GenerateEvent::Mask(mask)) => {
                let mask = convert::generated_mask(0, *mask);
                out.send(Ok(message(Kind::Mask(mask)))).await
            }
            Some(GenerateEvent::Done(Ok(generated))) => {
                let summary = convert::summary(0, &generated);
                return match out.send(Ok(message(Kind::Summary(summary)))).await {
                    Ok(()) => Code::Ok,
                    Err(_) => Code::Cancelled,
                };
            }
            Some(GenerateEvent::Done(Err(e))) => {
                let _ = out.send(Err(e.to_status())).await;
                return e.code();
            }
            None => {
                let e = lanes::submit::server_stopped("generating");
                let _ = out.send(Err(e.to_status())).await;
                return e.code();
            }
        };
        if sent.is_err() {
            return Code::Cancelled;
        }
    }
}
