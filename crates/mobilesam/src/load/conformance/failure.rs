//! Why a step (or one answer of a step) failed, as the results file names it: the canonical
//! gRPC status name, or `CLIENT_ERROR` when this client itself failed.

use mobilesam_proto::v1;
use mobilesam_server::metrics::code_label;
use tonic::{Code, Status};

/// The code recorded when the client failed rather than the server (README, "Operations").
pub const CLIENT_ERROR: &str = "CLIENT_ERROR";

/// A failure: the code the comparator compares and a message for people.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// `INVALID_ARGUMENT`, `NOT_FOUND`, ... or [`CLIENT_ERROR`].
    pub code: &'static str,
    /// Free text; the comparator ignores it.
    pub message: String,
}

impl Failure {
    /// The client's own failure (a refused prompt, a timeout, an answer it could not match).
    pub fn client(message: impl Into<String>) -> Self {
        Failure {
            code: CLIENT_ERROR,
            message: message.into(),
        }
    }

    /// A stream's `Error{code}` message; an unknown code number is `UNKNOWN`.
    pub fn wire(error: &v1::Error) -> Self {
        Failure {
            code: code_label(Code::from_i32(error.code)),
            message: error.message.clone(),
        }
    }

    /// The status of a failed RPC or stream.
    pub fn status(status: &Status) -> Self {
        Failure {
            code: code_label(status.code()),
            message: status.message().to_string(),
        }
    }

    /// Requests still waiting when the server ended the stream with status OK (the Python
    /// client's `Unavailable("the server ended the stream")`).
    pub fn ended() -> Self {
        Failure {
            code: code_label(Code::Unavailable),
            message: "the server ended the stream".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_named_as_grpc_names_them() {
        let wire = |code| {
            Failure::wire(&v1::Error {
                request_id: 0,
                code,
                message: String::new(),
            })
            .code
        };
        assert_eq!(wire(3), "INVALID_ARGUMENT");
        assert_eq!(wire(5), "NOT_FOUND");
        assert_eq!(wire(10), "ABORTED");
        assert_eq!(wire(12), "UNIMPLEMENTED");
        assert_eq!(wire(99), "UNKNOWN");
        assert_eq!(Failure::status(&Status::not_found("x")).code, "NOT_FOUND");
        assert_eq!(Failure::ended().code, "UNAVAILABLE");
        assert_eq!(Failure::client("x").code, "CLIENT_ERROR");
    }
}
