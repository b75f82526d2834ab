//! The `mobilesam.v1.SegmentAnything` service: one function per RPC.

use std::sync::Arc;
use std::time::Instant;

use mobilesam_proto::v1;
use mobilesam_proto::v1::segment_anything_server::SegmentAnything;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status, Streaming};

use super::{stream, unary};
use crate::error::RequestError;
use crate::generate;
use crate::metrics::{self, RequestKind};
use crate::state::AppState;
use crate::tracking;

/// Answers buffered between a stream's writer and the transport.
const OUTBOUND_BUFFER: usize = 16;

/// The gRPC service; cheap to clone.
#[derive(Clone)]
pub struct SegmentService {
    state: Arc<AppState>,
}

impl SegmentService {
    /// A service over shared state.
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }
}

#[tonic::async_trait]
impl SegmentAnything for SegmentService {
    type SegmentStream = ReceiverStream<Result<v1::SegmentResponse, Status>>;

    /// Opens an interactive session stream; see [`stream::run`].
    async fn segment(
        &self,
        request: Request<Streaming<v1::SegmentRequest>>,
    ) -> Result<Response<Self::SegmentStream>, Status> {
        if self.state.shutdown.is_cancelled() {
            return Err(Status::unavailable("the server is shutting down"));
        }
        let (out, outbound) = mpsc::channel(OUTBOUND_BUFFER);
        tokio::spawn(stream::run(
            Arc::clone(&self.state),
            request.into_inner(),
            out,
        ));
        Ok(Response::new(ReceiverStream::new(outbound)))
    }

    /// Describes the loaded model; UNAVAILABLE while it is loading.
    async fn get_model_info(
        &self,
        _request: Request<v1::GetModelInfoRequest>,
    ) -> Result<Response<v1::ModelInfo>, Status> {
        let started = Instant::now();
        let result = self
            .state
            .model_info
            .get()
            .cloned()
            .ok_or_else(|| RequestError::Unavailable("the model is still loading".into()));
        let code = result
            .as_ref()
            .map_or_else(RequestError::code, |_| Code::Ok);
        metrics::record_request(RequestKind::ModelInfo, code, started.elapsed());
        result.map(Response::new).map_err(|e| e.to_status())
    }

    type GenerateMasksStream = generate::rpc::GenerateStream;

    /// Segment everything; see [`generate::rpc::generate_masks`].
    async fn generate_masks(
        &self,
        request: Request<v1::GenerateMasksRequest>,
    ) -> Result<Response<Self::GenerateMasksStream>, Status> {
        generate::rpc::generate_masks(&self.state, request.into_inner()).map(Response::new)
    }

    /// Unary SetImage; see [`unary::set_image`].
    async fn set_image(
        &self,
        request: Request<v1::SetImage>,
    ) -> Result<Response<v1::ImageReady>, Status> {
        unary::set_image(&self.state, request.into_inner())
            .await
            .map(Response::new)
            .map_err(|e| e.to_status())
    }

    /// Unary Predict; see [`unary::predict`].
    async fn predict(
        &self,
        request: Request<v1::PredictRequest>,
    ) -> Result<Response<v1::Masks>, Status> {
        unary::predict(&self.state, request.into_inner())
            .await
            .map(Response::new)
            .map_err(|e| e.to_status())
    }

    /// CloseSession; see [`unary::close_session`].
    async fn close_session(
        &self,
        request: Request<v1::CloseSessionRequest>,
    ) -> Result<Response<v1::CloseSessionResponse>, Status> {
        unary::close_session(&self.state, request.get_ref())
            .map(Response::new)
            .map_err(|e| e.to_status())
    }

    /// Untrack; see [`tracking::untrack_rpc`].
    async fn untrack(
        &self,
        request: Request<v1::UntrackRequest>,
    ) -> Result<Response<v1::UntrackResponse>, Status> {
        let started = Instant::now();
        let result = tracking::untrack_rpc(&self.state, request.into_inner()).await;
        let code = result
            .as_ref()
            .map_or_else(RequestError::code, |_| Code::Ok);
        metrics::record_request(RequestKind::Untrack, code, started.elapsed());
        result.map(Response::new).map_err(|e| e.to_status())
    }
}
