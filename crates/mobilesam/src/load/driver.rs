//! The gRPC side of a load run: one image encoded once (a session), single prompts for the
//! round-trip phase, then K concurrent streams resuming that session, M prompts each.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mobilesam_proto::v1;
use mobilesam_proto::v1::segment_request::Request;
use mobilesam_proto::v1::segment_response::Response;
use mobilesam_server::metrics::code_label;
use tonic::{Code, Status};

use super::conversation::Conversation;

/// Pause before asking a busy or loading server again.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// What to send, to whom, for how long.
#[derive(Debug, Clone)]
pub struct Plan {
    /// `http://host:port` of the gRPC server.
    pub uri: String,
    /// The encoded image.
    pub image: Vec<u8>,
    /// The prompt every request carries.
    pub prompt: v1::Prompt,
    /// Concurrent streams in the load phase.
    pub streams: usize,
    /// Prompts per stream in the load phase.
    pub prompts: usize,
    /// Longest wait for any one answer.
    pub answer_timeout: Duration,
    /// Least time from one prompt's send to the next one's on a stream (a user's pace);
    /// zero sends the next prompt as soon as the answer is in.
    pub prompt_interval: Duration,
}

/// Answers to one group of prompts.
#[derive(Debug, Default)]
pub struct Tally {
    /// Prompts sent.
    pub sent: u64,
    /// Round-trip times of prompts answered with masks.
    pub ok: Vec<Duration>,
    /// The server's own `decode_ms` of each prompt answered with masks.
    pub server_decode_ms: Vec<f64>,
    /// Round-trip times of prompts answered with an error.
    pub refused: Vec<Duration>,
    /// Errors by gRPC code name, in-stream errors and failed streams alike.
    pub errors: BTreeMap<String, u64>,
}

impl Tally {
    /// Counts one error under its code's name.
    pub fn count_error(&mut self, code: Code) {
        *self.errors.entry(code_label(code).to_string()).or_default() += 1;
    }

    fn merge(&mut self, other: Tally) {
        self.sent += other.sent;
        self.ok.extend(other.ok);
        self.server_decode_ms.extend(other.server_decode_ms);
        self.refused.extend(other.refused);
        for (code, n) in other.errors {
            *self.errors.entry(code).or_default() += n;
        }
    }
}

/// Opens the first stream and caches the image on the server. A server that is still
/// loading its model (UNAVAILABLE) or whose encode queue is full (RESOURCE_EXHAUSTED) is
/// asked again, for up to the answer timeout.
pub async fn open_session(plan: &Plan) -> Result<(Conversation, v1::ImageReady), Status> {
    let give_up = Instant::now() + plan.answer_timeout;
    loop {
        let attempt = async {
            let mut first = Conversation::open(&plan.uri, plan.answer_timeout).await?;
            let ready = set_image(&mut first, plan).await?;
            Ok::<_, Status>((first, ready))
        };
        match attempt.await {
            Err(status)
                if matches!(status.code(), Code::Unavailable | Code::ResourceExhausted)
                    && Instant::now() < give_up =>
            {
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            other => return other,
        }
    }
}

/// The load phase: `plan.streams` streams resume `session_id` and send prompts until
/// `deadline`. Returns their tally and the phase's wall time.
pub async fn load_phase(plan: &Plan, session_id: &str, deadline: Instant) -> (Tally, Duration) {
    let start = Instant::now();
    let tasks: Vec<_> = (0..plan.streams)
        .map(|stream| {
            let plan = plan.clone();
            let session_id = session_id.to_string();
            tokio::spawn(async move { load_stream(&plan, stream, &session_id, deadline).await })
        })
        .collect();
    let mut load = Tally::default();
    for task in tasks {
        match task.await {
            Ok(tally) => load.merge(tally),
            // A panicked task is a bug in this client; count it rather than hide it.
            Err(_) => load.count_error(Code::Internal),
        }
    }
    (load, start.elapsed())
}

/// Sends the image once; an in-stream error comes back as its status.
async fn set_image(conversation: &mut Conversation, plan: &Plan) -> Result<v1::ImageReady, Status> {
    let request = Request::SetImage(v1::SetImage {
        image: plan.image.clone(),
        session_id: String::new(),
        ..Default::default()
    });
    match conversation.ask(request).await? {
        Response::ImageReady(ready) => Ok(ready),
        Response::Error(e) => Err(Status::new(Code::from_i32(e.code), e.message)),
        other => Err(Status::internal(format!("unexpected answer {other:?}"))),
    }
}

/// One prompt and its answer, tallied. A failed stream is returned as its status.
pub async fn prompt(
    conversation: &mut Conversation,
    plan: &Plan,
    request_id: u64,
    tally: &mut Tally,
) -> Result<(), Status> {
    let mut message = plan.prompt.clone();
    message.request_id = request_id;
    tally.sent += 1;
    let start = Instant::now();
    let answer = conversation.ask(Request::Prompt(message)).await?;
    let elapsed = start.elapsed();
    match answer {
        Response::Masks(masks) if masks.request_id == request_id => {
            tally.ok.push(elapsed);
            tally.server_decode_ms.push(masks.decode_ms);
        }
        Response::Error(e) => {
            tally.refused.push(elapsed);
            tally.count_error(Code::from_i32(e.code));
        }
        other => {
            return Err(Status::internal(format!(
                "unexpected answer to prompt {request_id}: {other:?}"
            )))
        }
    }
    Ok(())
}

/// A new stream on its own connection that resumes `session_id`.
pub async fn resume(plan: &Plan, session_id: &str) -> Result<Conversation, Status> {
    let mut conversation = Conversation::open(&plan.uri, plan.answer_timeout).await?;
    let resume = Request::SetImage(v1::SetImage {
        image: Vec::new(),
        session_id: session_id.to_string(),
        ..Default::default()
    });
    match conversation.ask(resume).await? {
        Response::ImageReady(_) => Ok(conversation),
        Response::Error(e) => Err(Status::new(Code::from_i32(e.code), e.message)),
        other => Err(Status::internal(format!("unexpected answer {other:?}"))),
    }
}

/// One stream of the load phase: resume the session, then up to `plan.prompts` prompts,
/// one in flight, until the deadline.
async fn load_stream(plan: &Plan, stream: usize, session_id: &str, deadline: Instant) -> Tally {
    let mut tally = Tally::default();
    let mut conversation = match resume(plan, session_id).await {
        Ok(c) => c,
        Err(status) => {
            tally.count_error(status.code());
            return tally;
        }
    };
    let base = (stream as u64 + 1) << 32;
    for i in 0..plan.prompts {
        let sent = Instant::now();
        if sent >= deadline {
            break;
        }
        if let Err(status) = prompt(&mut conversation, plan, base + i as u64, &mut tally).await {
            tally.count_error(status.code());
            break;
        }
        if !plan.prompt_interval.is_zero() {
            let next = (sent + plan.prompt_interval).min(deadline);
            tokio::time::sleep_until(next.into()).await;
        }
    }
    tally
}
