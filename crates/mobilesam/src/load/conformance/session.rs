//! One scenario session: a `Segment` stream and the matching of its answers to the
//! requests of the step that is running (README, "Operations"). Steps run one at a time,
//! so every answer belongs to the current step; one that matches none of its requests is
//! reported on stderr and skipped, as the Python client does.

use std::collections::HashMap;
use std::time::Duration;

use mobilesam_proto::v1;
use mobilesam_proto::v1::segment_request::Request;
use mobilesam_proto::v1::segment_response::Response;

use super::failure::Failure;
use super::results::{GenerateResult, GeneratedResult, SummaryResult};
use crate::load::conversation::Conversation;

/// An open scenario session.
pub struct Session {
    conversation: Conversation,
    /// The server's id of the session (from its latest `ImageReady`): `resume` sends it.
    pub session_id: String,
    next_request_id: u64,
    /// How the stream ended, once it has: every later request fails with it.
    ended: Option<Ended>,
    timeout: Duration,
}

/// How a stream ended.
#[derive(Debug, Clone)]
enum Ended {
    /// The server ended it with status OK.
    Finished,
    /// It failed with this status.
    Failed(Failure),
}

impl Ended {
    /// What a request still pending, or made later, gets.
    fn failure(&self) -> Failure {
        match self {
            Ended::Finished => Failure::ended(),
            Ended::Failed(failure) => failure.clone(),
        }
    }
}

impl Session {
    /// A session on a stream just opened; every answer must come within `timeout`.
    pub fn new(conversation: Conversation, timeout: Duration) -> Self {
        Session {
            conversation,
            session_id: String::new(),
            next_request_id: 1,
            ended: None,
            timeout,
        }
    }

    /// The next request id of this stream (1, 2, ...).
    pub fn request_id(&mut self) -> u64 {
        let id = self.next_request_id;
        self.next_request_id += 1;
        id
    }

    /// Sends a request without waiting for its answer.
    pub async fn send(&mut self, request: Request) -> Result<(), Failure> {
        if let Some(ended) = &self.ended {
            return Err(ended.failure());
        }
        self.conversation
            .send(request)
            .await
            .map_err(|s| Failure::status(&s))
    }

    /// The next answer. A stream that ends (OK: `UNAVAILABLE`, as the Python client says
    /// it; failed: its status) stays ended; silence past the timeout is a client error.
    async fn next(&mut self) -> Result<Response, Failure> {
        loop {
            if let Some(ended) = &self.ended {
                return Err(ended.failure());
            }
            let message = tokio::time::timeout(self.timeout, self.conversation.message())
                .await
                .map_err(|_| {
                    Failure::client(format!("no answer within {} s", self.timeout.as_secs()))
                })?;
            match message {
                Ok(Some(v1::SegmentResponse {
                    response: Some(response),
                })) => return Ok(response),
                Ok(Some(_)) => stray("an empty answer"),
                Ok(None) => self.ended = Some(Ended::Finished),
                Err(status) => self.ended = Some(Ended::Failed(Failure::status(&status))),
            }
        }
    }

    /// The answer to the one `SetImage` pending: an `ImageReady`, or an `Error` without
    /// request id.
    pub async fn image(&mut self) -> Result<v1::ImageReady, Failure> {
        loop {
            match self.next().await? {
                Response::ImageReady(ready) => return Ok(ready),
                Response::Error(e) if e.request_id == 0 => return Err(Failure::wire(&e)),
                other => stray_answer(&other),
            }
        }
    }

    /// The answers to prefetches of images with these SHA-256s, in that order. An
    /// `ImageReady` goes to the pending prefetch of its `image_sha256` (else the oldest
    /// pending one); an `Error` without request id to the oldest pending one; when the
    /// stream ends, every prefetch still pending gets how it ended.
    pub async fn prefetches(&mut self, sha256s: &[String]) -> Vec<Result<v1::ImageReady, Failure>> {
        let mut answers: Vec<Option<Result<v1::ImageReady, Failure>>> = vec![None; sha256s.len()];
        loop {
            let pending: Vec<usize> = (0..sha256s.len())
                .filter(|&i| answers[i].is_none())
                .collect();
            let Some(&oldest) = pending.first() else {
                break;
            };
            match self.next().await {
                Ok(Response::ImageReady(ready)) => {
                    let slot = pending
                        .iter()
                        .copied()
                        .find(|&i| sha256s[i] == ready.image_sha256)
                        .unwrap_or(oldest);
                    answers[slot] = Some(Ok(ready));
                }
                Ok(Response::Error(e)) if e.request_id == 0 => {
                    answers[oldest] = Some(Err(Failure::wire(&e)))
                }
                Ok(other) => stray_answer(&other),
                Err(failure) => {
                    for i in pending {
                        answers[i] = Some(Err(failure.clone()));
                    }
                }
            }
        }
        answers.into_iter().flatten().collect()
    }

    /// The answers to the prompts with these request ids, in that order: `Masks` or an
    /// `Error`, matched by request id; when the stream ends, every prompt still pending
    /// gets how it ended.
    pub async fn prompts(&mut self, request_ids: &[u64]) -> Vec<Result<v1::Masks, Failure>> {
        let slots: HashMap<u64, usize> = request_ids
            .iter()
            .enumerate()
            .map(|(i, &r)| (r, i))
            .collect();
        let mut answers: Vec<Option<Result<v1::Masks, Failure>>> = vec![None; request_ids.len()];
        while answers.iter().any(Option::is_none) {
            let (request_id, answer) = match self.next().await {
                Ok(Response::Masks(masks)) => (masks.request_id, Ok(masks)),
                Ok(Response::Error(e)) if e.request_id != 0 => {
                    (e.request_id, Err(Failure::wire(&e)))
                }
                Ok(other) => {
                    stray_answer(&other);
                    continue;
                }
                Err(failure) => {
                    for answer in answers.iter_mut().filter(|a| a.is_none()) {
                        *answer = Some(Err(failure.clone()));
                    }
                    break;
                }
            };
            match slots.get(&request_id) {
                Some(&i) if answers[i].is_none() => answers[i] = Some(answer),
                _ => stray(&format!(
                    "an answer to request {request_id}, which is not pending"
                )),
            }
        }
        answers.into_iter().flatten().collect()
    }

    /// The answer to the generation `request_id`: its masks in arrival order up to its
    /// summary, or its `Error`.
    pub async fn generation(&mut self, request_id: u64) -> Result<GenerateResult, Failure> {
        let mut result = GenerateResult::default();
        loop {
            match self.next().await? {
                Response::GeneratedMask(g) if g.request_id == request_id => {
                    result.masks.push(GeneratedResult::from(&g))
                }
                Response::GenerateSummary(s) if s.request_id == request_id => {
                    result.summary = SummaryResult::from(&s);
                    return Ok(result);
                }
                Response::Error(e) if e.request_id == request_id => return Err(Failure::wire(&e)),
                other => stray_answer(&other),
            }
        }
    }

    /// Half-closes the stream and waits for its end: OK, or the status it ended with
    /// (already, or now).
    pub async fn close(self) -> Result<(), Failure> {
        match self.ended {
            Some(Ended::Finished) => return Ok(()),
            Some(Ended::Failed(failure)) => return Err(failure),
            None => {}
        }
        let mut rest = self.conversation.half_close();
        loop {
            let message = tokio::time::timeout(self.timeout, rest.message())
                .await
                .map_err(|_| {
                    Failure::client(format!(
                        "the stream did not end within {} s",
                        self.timeout.as_secs()
                    ))
                })?;
            match message {
                Ok(Some(answer)) => stray(&format!("{:?} after the half-close", answer.response)),
                Ok(None) => return Ok(()),
                Err(status) => return Err(Failure::status(&status)),
            }
        }
    }
}

/// Reports an answer that no pending request of the step is waiting for.
fn stray_answer(answer: &Response) {
    let what = match answer {
        Response::ImageReady(_) => "an ImageReady".to_string(),
        Response::Masks(m) => format!("masks for request {}", m.request_id),
        Response::Error(e) => format!("an error ({}) for request {}", e.message, e.request_id),
        Response::GeneratedMask(g) => format!("a generated mask for request {}", g.request_id),
        Response::GenerateSummary(s) => format!("a generate summary for request {}", s.request_id),
    };
    stray(&format!("{what} that nothing waits for"));
}

fn stray(what: &str) {
    eprintln!("rust: warning: the server sent {what}; skipped");
}
