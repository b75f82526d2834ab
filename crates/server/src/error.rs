//! The server's two error types: [`RequestError`], the answer to one bad or failed request
//! (mapped to a gRPC status code here and nowhere else), and [`ServerError`], what stops
//! the server from starting or running.

use mobilesam_model::ModelError;
use tonic::Code;

/// Why one request was not answered with a result. The stream stays open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The request itself is malformed: bad image, bad prompt, over a limit.
    #[error("{0}")]
    InvalidArgument(String),
    /// The session the request names is unknown or was evicted.
    #[error("{0}")]
    NotFound(String),
    /// The request is valid but comes too early (a prompt before any image).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A job queue is full; the client may retry later.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The server cannot take work now (loading or shutting down).
    #[error("{0}")]
    Unavailable(String),
    /// A failure inside the server, not caused by the request.
    #[error("{0}")]
    Internal(String),
    /// The request asks for something this server does not do (yet).
    #[error("{0}")]
    Unimplemented(String),
    /// A newer prompt superseded this queued one (`Prompt.supersede_pending`).
    #[error("{0}")]
    Aborted(String),
}

impl RequestError {
    /// The gRPC status code of this error.
    pub fn code(&self) -> Code {
        match self {
            Self::InvalidArgument(_) => Code::InvalidArgument,
            Self::NotFound(_) => Code::NotFound,
            Self::FailedPrecondition(_) => Code::FailedPrecondition,
            Self::ResourceExhausted(_) => Code::ResourceExhausted,
            Self::Unavailable(_) => Code::Unavailable,
            Self::Internal(_) => Code::Internal,
            Self::Unimplemented(_) => Code::Unimplemented,
            Self::Aborted(_) => Code::Aborted,
        }
    }

    /// The error as a `tonic::Status` (for unary RPCs).
    pub fn to_status(&self) -> tonic::Status {
        tonic::Status::new(self.code(), self.to_string())
    }
}

impl From<ModelError> for RequestError {
    fn from(error: ModelError) -> Self {
        match error {
            ModelError::ImageDecode(_)
            | ModelError::ImageTooLarge { .. }
            | ModelError::InvalidPrompt(_)
            | ModelError::InvalidParams(_)
            | ModelError::InvalidMask(_) => Self::InvalidArgument(error.to_string()),
            ModelError::Io { .. }
            | ModelError::Checkpoint(_)
            | ModelError::UnsupportedCheckpoint(_)
            | ModelError::Device(_)
            | ModelError::Shape(_)
            | ModelError::Tensor(_) => Self::Internal(error.to_string()),
        }
    }
}

/// What stops the server from starting or makes it stop.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A setting is out of range.
    #[error("invalid setting: {0}")]
    Config(String),
    /// The device cannot be opened.
    #[error("{0}")]
    Device(String),
    /// The checkpoint cannot be read or does not fit the model.
    #[error("cannot load the model: {0}")]
    Model(#[from] ModelError),
    /// A listener cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The Prometheus recorder cannot be installed.
    #[error("cannot set up metrics: {0}")]
    Metrics(String),
    /// The gRPC transport failed.
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// Another I/O failure (runtime, threads, signals).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A TLS certificate or key, or the auth token file, cannot be used.
    #[error("{0}")]
    Security(String),
    /// A worker thread failed to start or died.
    #[error("worker failed: {0}")]
    Worker(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use mobilesam_checkpoint::CheckpointError;

    #[test]
    fn model_errors_map_to_codes() {
        let bad = RequestError::from(ModelError::ImageDecode("truncated".into()));
        assert_eq!(bad.code(), Code::InvalidArgument);
        assert!(bad.to_string().contains("truncated"));
        let big = RequestError::from(ModelError::ImageTooLarge {
            width: 10,
            height: 10,
            pixels: 100,
            limit: 50,
        });
        assert_eq!(big.code(), Code::InvalidArgument);
        let internal = RequestError::from(ModelError::InvalidPrompt("x".into()));
        assert_eq!(internal.code(), Code::InvalidArgument);
        let tensor = RequestError::from(ModelError::Checkpoint(CheckpointError::Invalid {
            path: "p".into(),
            reason: "r".into(),
        }));
        assert_eq!(tensor.code(), Code::Internal);
        assert_eq!(
            RequestError::ResourceExhausted("full".into())
                .to_status()
                .code(),
            Code::ResourceExhausted
        );
    }
}
