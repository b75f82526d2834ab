//! How a job's answer travels from the worker that ran it to the stream that asked.

use tokio::sync::oneshot;

use crate::error::RequestError;

/// Where a worker sends a job's result.
pub type Reply<T> = oneshot::Sender<Result<T, RequestError>>;

/// Where a stream waits for a job's result.
pub type Pending<T> = oneshot::Receiver<Result<T, RequestError>>;
