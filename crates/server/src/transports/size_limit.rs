//! The status of a request message over `--max-message-bytes`, made uniform.
//!
//! tonic refuses such a message before decoding it, with OUT_OF_RANGE. gRPC's convention
//! (grpc-core, grpc-go, grpc-java) is RESOURCE_EXHAUSTED, which clients treat as "too
//! large, do not retry as is". This layer renames the code on trailers-only answers (a
//! unary request, or the request of a server-streaming RPC, refused before the handler
//! ran); a `Segment` stream does the same for a message inside the stream
//! ([`crate::transports::stream`]). The message, which names the size and the limit, is kept.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderMap, HeaderValue, Request, Response};
use tower_layer::Layer;
use tower_service::Service;

/// tonic's words for a message over the decoding limit.
pub const TOO_LARGE: &str = "message length too large";

/// Renames OUT_OF_RANGE "message length too large" answers to RESOURCE_EXHAUSTED.
#[derive(Debug, Clone, Copy, Default)]
pub struct SizeLimitStatusLayer;

impl<S> Layer<S> for SizeLimitStatusLayer {
    type Service = SizeLimitStatus<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SizeLimitStatus { inner }
    }
}

/// The service made by [`SizeLimitStatusLayer`].
#[derive(Debug, Clone)]
pub struct SizeLimitStatus<S> {
    inner: S,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B, R> Service<Request<B>> for SizeLimitStatus<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Send + 'static,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let answer = self.inner.call(request);
        Box::pin(async move {
            let mut response = answer.await?;
            rename_too_large(response.headers_mut());
            Ok(response)
        })
    }
}

/// Turns `grpc-status: 11` with tonic's "too large" message into `grpc-status: 8`.
pub fn rename_too_large(headers: &mut HeaderMap) {
    if headers.get("grpc-status").map(HeaderValue::as_bytes) != Some(b"11") {
        return;
    }
    let message = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .replace("%20", " ");
    if message.contains(TOO_LARGE) {
        headers.insert("grpc-status", HeaderValue::from_static("8"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(status: &'static str, message: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("grpc-status", HeaderValue::from_static(status));
        headers.insert("grpc-message", HeaderValue::from_static(message));
        headers
    }

    #[test]
    fn only_the_size_refusal_is_renamed() {
        let mut too_large = headers("11", "Error,%20decoded%20message%20length%20too%20large");
        rename_too_large(&mut too_large);
        assert_eq!(too_large["grpc-status"], "8");
        let mut other = headers("11", "index%20out%20of%20range");
        rename_too_large(&mut other);
        assert_eq!(other["grpc-status"], "11");
        let mut ok = HeaderMap::new();
        rename_too_large(&mut ok);
        assert!(ok.get("grpc-status").is_none());
    }
}
