//! One `Segment` stream: a reader that turns requests into jobs, and a writer that sends
//! the answers in request order.
//!
//! The reader handles requests one after another. `SetImage` waits for its encode (later
//! prompts need the embedding); a `Prompt` is validated and queued as a decode job at
//! once, so a client can pipeline prompts; so is `GenerateMasks`, as a heavy job on the
//! current image (see [`crate::generate`]). Every request leaves one [`Answer`] in a FIFO
//! that the writer resolves in order, so answers come in request order even when several
//! workers finish out of order (a generation's answer is its masks and then its summary,
//! all sent before the next request's answer). A client that goes away drops the FIFO,
//! which cancels its queued jobs. On shutdown the reader stops taking requests; the
//! answers already owed are sent, then the stream ends with UNAVAILABLE.

use std::sync::Arc;
use std::time::Instant;

use mobilesam_model::Embedding;
use mobilesam_proto::v1;
use mobilesam_proto::v1::segment_request::Request as Kind;
use tokio::sync::mpsc;
use tonic::{Code, Status, Streaming};
use tracing::{debug, warn};

use crate::convert;
use crate::error::RequestError;
use crate::generate::{self, GenerateEvent, GenerateEvents, GenerateInput};
use crate::lanes::{self, Owner, PendingDecode};
use crate::metrics::{self, RequestKind};
use crate::sessions;
use crate::state::AppState;
use crate::tracking;
use crate::validate::{self, ImageRequest};

/// Answers owed but not yet sent, per stream; a full backlog stops reading requests.
const ANSWER_BACKLOG: usize = 64;

/// Where a stream's responses go (the tonic response body).
pub type Outbound = mpsc::Sender<Result<v1::SegmentResponse, Status>>;

/// One owed answer, in request order.
enum Answer {
    /// Known already.
    Ready {
        response: v1::SegmentResponse,
        kind: RequestKind,
        code: Code,
        started: Instant,
    },
    /// The masks of a queued decode job.
    Masks {
        request_id: u64,
        pending: PendingDecode,
        started: Instant,
    },
    /// The events of a queued mask generation.
    Generated {
        request_id: u64,
        events: GenerateEvents,
        started: Instant,
    },
}

impl Answer {
    fn ok(response: v1::SegmentResponse, kind: RequestKind, started: Instant) -> Self {
        Self::Ready {
            response,
            kind,
            code: Code::Ok,
            started,
        }
    }

    fn failed(request_id: u64, kind: RequestKind, error: &RequestError, started: Instant) -> Self {
        Self::Ready {
            response: convert::error(request_id, error),
            kind,
            code: error.code(),
            started,
        }
    }
}

/// Why the reader stopped.
#[derive(Debug)]
enum End {
    /// The client finished sending; owed answers are still sent.
    ClientDone,
    /// The client went away.
    ClientGone,
    /// The server is shutting down.
    Shutdown,
    /// A request could not be read (over the message-size limit, malformed, or the
    /// connection broke): the owed answers are sent, then this status.
    Unreadable(Status),
}

/// The image the stream currently works on.
struct Current {
    session_id: String,
    embedding: Arc<Embedding>,
    /// The image's frame (given by the client or assigned by the server).
    frame: tracking::frames::FrameIndex,
}

/// Serves one stream until the client is done or gone, or the server shuts down.
pub async fn run(state: Arc<AppState>, inbound: Streaming<v1::SegmentRequest>, out: Outbound) {
    metrics::add_active_streams(1.0);
    let (answers, owed) = mpsc::channel(ANSWER_BACKLOG);
    let reader = Reader {
        state,
        out: out.clone(),
        answers,
        current: None,
        owner: Owner::next_stream(),
    };
    let (end, ()) = tokio::join!(reader.run(inbound), write_answers(owed, out.clone()));
    debug!(?end, "stream ended");
    let closing = match end {
        End::Shutdown => Some(Status::unavailable(
            "the server is shutting down; reconnect and send the image again",
        )),
        End::Unreadable(status) => Some(status),
        End::ClientDone | End::ClientGone => None,
    };
    if let Some(status) = closing {
        let _ = out.send(Err(status)).await;
    }
    metrics::add_active_streams(-1.0);
}

/// The status that ends a stream whose request could not be read. tonic reports a message
/// over `--max-message-bytes` as OUT_OF_RANGE; gRPC's convention (and grpc-core's) is
/// RESOURCE_EXHAUSTED, which clients treat as "too large", so that case is renamed.
fn unreadable(status: Status) -> Status {
    if status.code() == Code::OutOfRange && status.message().contains("message length too large") {
        return Status::resource_exhausted(format!(
            "{}; send a smaller image or raise the server's --max-message-bytes",
            status.message()
        ));
    }
    status
}

struct Reader {
    state: Arc<AppState>,
    out: Outbound,
    answers: mpsc::Sender<Answer>,
    current: Option<Current>,
    /// This stream, as the owner of its decode jobs (for `supersede_pending`).
    owner: Owner,
}

impl Reader {
    async fn run(mut self, mut inbound: Streaming<v1::SegmentRequest>) -> End {
        loop {
            let next = tokio::select! {
                biased;
                _ = self.state.shutdown.cancelled() => return End::Shutdown,
                _ = self.out.closed() => return End::ClientGone,
                next = inbound.message() => next,
            };
            let request = match next {
                Ok(Some(request)) => request,
                Ok(None) => return End::ClientDone,
                Err(status) => {
                    debug!(%status, "reading the stream failed");
                    return End::Unreadable(unreadable(status));
                }
            };
            let started = Instant::now();
            let answer = match request.request {
                Some(Kind::SetImage(message)) if message.prefetch => {
                    self.prefetch(message, started);
                    continue;
                }
                Some(Kind::SetImage(message)) => match self.set_image(message, started).await {
                    Some(answer) => answer,
                    None => return End::ClientGone,
                },
                Some(Kind::Prompt(prompt)) if tracking::wants_tracking(&prompt) => {
                    match self.tracked_prompt(&prompt, started).await {
                        Some(answer) => answer,
                        None => return End::ClientGone,
                    }
                }
                Some(Kind::Prompt(prompt)) => self.prompt(&prompt, started),
                Some(Kind::GenerateMasks(message)) => self.generate_masks(&message, started),
                Some(Kind::Untrack(message)) => match self.untrack(message, started).await {
                    Some(answer) => answer,
                    None => continue,
                },
                None => Answer::failed(
                    0,
                    RequestKind::Empty,
                    &RequestError::InvalidArgument(
                        "empty SegmentRequest: set set_image, prompt or generate_masks".into(),
                    ),
                    started,
                ),
            };
            if self.answers.send(answer).await.is_err() {
                return End::ClientGone;
            }
        }
    }

    /// `SetImage`: open the image (from memory, the store, or an encode this waits for),
    /// resume a session, or open an image by digest; see [`crate::sessions`]. `None` when
    /// the client went away meanwhile.
    async fn set_image(&mut self, message: v1::SetImage, started: Instant) -> Option<Answer> {
        let checked = validate::frame_index(&message)
            .and_then(|frame_index| Ok((validate::set_image(message)?, frame_index)));
        let (request, frame_index) = match checked {
            Ok(checked) => checked,
            Err(e) => return Some(Answer::failed(0, RequestKind::SetImage, &e, started)),
        };
        let kind = sessions::request_kind(&request);
        let current = self.current.as_ref().map(|c| c.session_id.clone());
        let opening = sessions::open(&self.state, request, current, frame_index);
        // Dropping the future when the client goes away cancels a queued encode.
        let result = tokio::select! {
            result = opening => result,
            _ = self.out.closed() => return None,
        };
        let opened = match result {
            Ok(opened) => opened,
            Err(e) => return Some(Answer::failed(0, kind, &e, started)),
        };
        if !opened.cached {
            warn!(
                size = opened.embedding.size_bytes(),
                "an embedding is larger than the session cache; sessions cannot be resumed"
            );
        }
        // A new frame (an image) of a session moves the objects it follows onto it.
        let tracked = if kind == RequestKind::SetImage {
            tokio::select! {
                tracked = tracking::follow(&self.state, &opened.session_id, &opened.embedding, opened.frame()) => tracked,
                _ = self.out.closed() => return None,
            }
        } else {
            Ok(None)
        };
        let mut response = opened.response();
        self.current = Some(Current {
            frame: opened.frame(),
            session_id: opened.session_id,
            embedding: opened.embedding,
        });
        Some(match tracked {
            Ok(tracked) => {
                tracking::attach(&mut response, tracked);
                Answer::ok(response, kind, started)
            }
            Err(e) => Answer::failed(0, kind, &e, started),
        })
    }

    /// `SetImage.prefetch`: encode the image in the background (the generate lane) into
    /// this replica's cache and the store, leaving the stream's image as it is. Its answer,
    /// `ImageReady{prefetched}` or an error, is sent when the encode is done, outside the
    /// request order, so prompts sent meanwhile are answered without waiting for it.
    fn prefetch(&self, message: v1::SetImage, started: Instant) {
        let state = Arc::clone(&self.state);
        let out = self.out.clone();
        tokio::spawn(async move {
            let result = match validate::frame_index(&message) {
                Ok(frame_index) => match validate::set_image(message) {
                    Ok(ImageRequest::Prefetch { image }) => {
                        let prefetching = sessions::prefetch(&state, image, frame_index);
                        tokio::select! {
                            result = prefetching => result,
                            _ = out.closed() => return,
                        }
                    }
                    Ok(_) => Err(RequestError::Internal("not a prefetch".into())),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            let (response, code) = match result {
                Ok(ready) => (
                    convert::in_stream(v1::segment_response::Response::ImageReady(ready)),
                    Code::Ok,
                ),
                Err(e) => (convert::error(0, &e), e.code()),
            };
            metrics::record_request(RequestKind::Prefetch, code, started.elapsed());
            let _ = out.send(Ok(response)).await;
        });
    }

    /// `Prompt`: validate and queue a decode job; the writer waits for it.
    fn prompt(&self, prompt: &v1::Prompt, started: Instant) -> Answer {
        let request_id = prompt.request_id;
        let fail = |e: RequestError| Answer::failed(request_id, RequestKind::Prompt, &e, started);
        let Some(current) = &self.current else {
            return fail(RequestError::FailedPrecondition(
                "no image yet: send SetImage (an image, or a session_id to resume) first".into(),
            ));
        };
        let (objects, options) = match validate::prompt(prompt, self.state.limits) {
            Ok(valid) => valid,
            Err(e) => return fail(e),
        };
        self.state.sessions.touch(&current.session_id);
        if prompt.supersede_pending {
            lanes::supersede(&self.state.queues, &self.owner, prompt.request_id);
        }
        let submitted = lanes::submit_decode(
            &self.state.queues,
            self.owner.clone(),
            Arc::clone(&current.embedding),
            objects,
            options,
        );
        match submitted {
            Ok(pending) => Answer::Masks {
                request_id,
                pending,
                started,
            },
            Err(e) => fail(e),
        }
    }
}

impl Reader {
    /// `GenerateMasks`: validate and queue a generation on the current image's embedding;
    /// the writer streams its masks.
    fn generate_masks(&self, message: &v1::GenerateMasks, started: Instant) -> Answer {
        let request_id = message.request_id;
        let fail = |e: RequestError| Answer::failed(request_id, RequestKind::Generate, &e, started);
        let Some(current) = &self.current else {
            return fail(RequestError::FailedPrecondition(
                "no image yet: send SetImage (an image, or a session_id to resume) first".into(),
            ));
        };
        let defaults = self.state.generate_defaults();
        let params = match generate::params::params(message.params.as_ref(), true, &defaults) {
            Ok(params) => params,
            Err(e) => return fail(e),
        };
        self.state.sessions.touch(&current.session_id);
        let input = GenerateInput::Embedding(Arc::clone(&current.embedding));
        match lanes::submit_generate(&self.state.queues, input, params) {
            Ok(events) => Answer::Generated {
                request_id,
                events,
                started,
            },
            Err(e) => fail(e),
        }
    }
}

impl Reader {
    /// A `Prompt` that tracks or names objects (see [`tracking::prompt`]): answered once
    /// decoded, so that the tracking state is current before the next request is read.
    /// `None` when the client went away meanwhile.
    async fn tracked_prompt(&self, prompt: &v1::Prompt, started: Instant) -> Option<Answer> {
        let request_id = prompt.request_id;
        let kind = RequestKind::Prompt;
        let Some(current) = &self.current else {
            let e = RequestError::FailedPrecondition(
                "no image yet: send SetImage (an image, or a session_id to resume) first".into(),
            );
            return Some(Answer::failed(request_id, kind, &e, started));
        };
        self.state.sessions.touch(&current.session_id);
        let embedding = Arc::clone(&current.embedding);
        let result = tokio::select! {
            result = tracking::prompt(&self.state, &current.session_id, embedding, current.frame, prompt) => result,
            _ = self.out.closed() => return None,
        };
        Some(match result {
            Ok(masks) => {
                let response = convert::in_stream(v1::segment_response::Response::Masks(masks));
                Answer::ok(response, kind, started)
            }
            Err(e) => Answer::failed(request_id, kind, &e, started),
        })
    }

    /// `Untrack`: no answer, unless there is no session to untrack from.
    async fn untrack(&self, message: v1::Untrack, started: Instant) -> Option<Answer> {
        let kind = RequestKind::Untrack;
        let Some(current) = &self.current else {
            let e = RequestError::FailedPrecondition(
                "no session yet: send SetImage (an image, or a session_id to resume) first".into(),
            );
            return Some(Answer::failed(0, kind, &e, started));
        };
        tracking::untrack(&self.state, &current.session_id, &message.object_ids).await;
        metrics::record_request(kind, Code::Ok, started.elapsed());
        None
    }
}

/// Sends a generation's masks as they arrive; returns its last message (the summary, or
/// the error), or `None` when the client went away.
async fn send_generated(
    request_id: u64,
    mut events: GenerateEvents,
    out: &Outbound,
) -> Option<(v1::SegmentResponse, Code)> {
    use v1::segment_response::Response as R;
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            _ = out.closed() => return None,
        };
        let result = match event {
            Some(GenerateEvent::Mask(mask)) => {
                let mask = generate::convert::generated_mask(request_id, *mask);
                let response = convert::in_stream(R::GeneratedMask(mask));
                if out.send(Ok(response)).await.is_err() {
                    return None;
                }
                continue;
            }
            Some(GenerateEvent::Done(result)) => result,
            None => Err(lanes::submit::server_stopped("generating")),
        };
        return Some(match result {
            Ok(generated) => {
                let summary = generate::convert::summary(request_id, &generated);
                let response = convert::in_stream(R::GenerateSummary(summary));
                (response, Code::Ok)
            }
            Err(e) => (convert::error(request_id, &e), e.code()),
        });
    }
}

/// Sends owed answers in order until the reader is done and the backlog is empty, or the
/// client goes away (dropping the backlog cancels its queued jobs).
async fn write_answers(mut owed: mpsc::Receiver<Answer>, out: Outbound) {
    while let Some(answer) = owed.recv().await {
        let (response, kind, code, started) = match answer {
            Answer::Ready {
                response,
                kind,
                code,
                started,
            } => (response, kind, code, started),
            Answer::Masks {
                request_id,
                pending,
                started,
            } => {
                let result = tokio::select! {
                    result = pending.result() => result,
                    _ = out.closed() => return,
                };
                match result {
                    Ok(decoded) => (
                        convert::in_stream(v1::segment_response::Response::Masks(convert::masks(
                            request_id, decoded,
                        ))),
                        RequestKind::Prompt,
                        Code::Ok,
                        started,
                    ),
                    Err(e) => (
                        convert::error(request_id, &e),
                        RequestKind::Prompt,
                        e.code(),
                        started,
                    ),
                }
            }
            Answer::Generated {
                request_id,
                events,
                started,
            } => {
                let Some((response, code)) = send_generated(request_id, events, &out).await else {
                    return;
                };
                (response, RequestKind::Generate, code, started)
            }
        };
        metrics::record_request(kind, code, started.elapsed());
        if let Some(v1::segment_response::Response::Error(e)) = &response.response {
            debug!(kind = kind.label(), code = ?code, message = %e.message, "request refused");
        }
        if out.send(Ok(response)).await.is_err() {
            return;
        }
    }
}
