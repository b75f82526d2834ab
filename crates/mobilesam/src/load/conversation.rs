//! One client's `Segment` stream: send a request, wait for its answer.

use std::time::Duration;

use mobilesam_proto::v1;
use mobilesam_proto::v1::segment_anything_client::SegmentAnythingClient;
use mobilesam_proto::v1::segment_request::Request;
use mobilesam_proto::v1::segment_response::Response;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};

/// Largest message either side may send (a response with low-resolution logits for many
/// objects is large).
const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// An open `Segment` stream on its own connection.
pub struct Conversation {
    tx: mpsc::Sender<v1::SegmentRequest>,
    rx: Streaming<v1::SegmentResponse>,
    timeout: Duration,
}

impl Conversation {
    /// Connects to `uri` and opens a stream; every answer must come within `timeout`.
    pub async fn open(uri: &str, timeout: Duration) -> Result<Self, Status> {
        let channel = Channel::from_shared(uri.to_string())
            .map_err(|e| Status::invalid_argument(format!("bad address {uri}: {e}")))?
            .connect_timeout(timeout)
            .connect()
            .await
            .map_err(|e| Status::unavailable(format!("cannot connect to {uri}: {e}")))?;
        let mut client = SegmentAnythingClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let (tx, requests) = mpsc::channel(4);
        let rx = client
            .segment(ReceiverStream::new(requests))
            .await?
            .into_inner();
        Ok(Self { tx, rx, timeout })
    }

    /// Sends `request` and returns the next message from the server. A stream that ends,
    /// fails or stays silent past the timeout gives the status that says so.
    pub async fn ask(&mut self, request: Request) -> Result<Response, Status> {
        self.send(request).await?;
        self.receive().await
    }

    /// Sends `request` without waiting for an answer (pipelining).
    pub async fn send(&mut self, request: Request) -> Result<(), Status> {
        let message = v1::SegmentRequest {
            request: Some(request),
        };
        self.tx
            .send(message)
            .await
            .map_err(|_| Status::unavailable("the stream closed before the request was sent"))
    }

    /// The next message from the server as it comes, with no timeout: `Ok(None)` when the
    /// server ended the stream with status OK, the status when it failed.
    pub async fn message(&mut self) -> Result<Option<v1::SegmentResponse>, Status> {
        self.rx.message().await
    }

    /// Half-closes the stream (no more requests) and returns what the server still sends:
    /// its last answers, then the end of the stream.
    pub fn half_close(self) -> Streaming<v1::SegmentResponse> {
        drop(self.tx);
        self.rx
    }

    /// The next message from the server, within the timeout.
    pub async fn receive(&mut self) -> Result<Response, Status> {
        let answer = tokio::time::timeout(self.timeout, self.rx.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no answer within the timeout"))??;
        answer
            .and_then(|r| r.response)
            .ok_or_else(|| Status::new(Code::Unknown, "the stream ended without an answer"))
    }
}
