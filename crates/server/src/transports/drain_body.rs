//! HTTP/1.1 requests (gRPC-web, browsers) have their unread body read before the answer
//! goes out.
//!
//! A refusal that comes before the whole request was read (a message over
//! `--max-message-bytes`, refused by tonic after its 5-byte header) leaves upload bytes
//! unread. hyper then closes the HTTP/1.1 connection with those bytes in the socket, the
//! kernel answers them with a reset, and the client sees a broken pipe (a browser:
//! "Failed to fetch") instead of the status. This layer shares the request body with the
//! service and, once the service has answered, reads what is left of it (up to
//! [`DRAIN_LIMIT_BYTES`] within [`DRAIN_TIMEOUT`]) and drops it, so the answer arrives.
//! HTTP/2 requests pass untouched: a stream is reset on its own, not the connection.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{Request, Version};
use http_body::{Frame, SizeHint};
use tower_layer::Layer;
use tower_service::Service;

/// The most bytes of an unread request body read (and dropped) after the answer.
pub const DRAIN_LIMIT_BYTES: usize = 64 << 20;

/// The longest an unread request body is read after the answer.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads what the service left of an HTTP/1.x request body before answering.
#[derive(Debug, Clone, Copy, Default)]
pub struct DrainUnreadBodyLayer;

impl<S> Layer<S> for DrainUnreadBodyLayer {
    type Service = DrainUnreadBody<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DrainUnreadBody { inner }
    }
}

/// The service made by [`DrainUnreadBodyLayer`].
#[derive(Debug, Clone)]
pub struct DrainUnreadBody<S> {
    inner: S,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, R> Service<Request<Body>> for DrainUnreadBody<S>
where
    S: Service<Request<Body>, Response = R>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Send + 'static,
{
    type Response = R;
    type Error = S::Error;
    type Future = BoxFuture<R, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        if request.version() >= Version::HTTP_2 {
            return Box::pin(self.inner.call(request));
        }
        let (parts, body) = request.into_parts();
        let shared = SharedBody(Arc::new(Mutex::new(body)));
        let answer = self
            .inner
            .call(Request::from_parts(parts, Body::new(shared.clone())));
        Box::pin(async move {
            let response = answer.await?;
            let _ = tokio::time::timeout(DRAIN_TIMEOUT, shared.drain()).await;
            Ok(response)
        })
    }
}

/// A request body read by the service and, after it, by the drain.
#[derive(Clone)]
struct SharedBody(Arc<Mutex<Body>>);

impl SharedBody {
    /// Polls the shared body for its next frame.
    fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        match self.0.lock() {
            Ok(mut body) => http_body::Body::poll_frame(Pin::new(&mut *body), cx),
            // A reader panicked mid-poll: treat the body as ended.
            Err(_) => Poll::Ready(None),
        }
    }

    /// Reads the rest of the body, up to [`DRAIN_LIMIT_BYTES`], and drops it.
    async fn drain(&self) {
        let mut read = 0usize;
        while read <= DRAIN_LIMIT_BYTES {
            match std::future::poll_fn(|cx| self.poll_next(cx)).await {
                Some(Ok(frame)) => {
                    read = read.saturating_add(frame.data_ref().map_or(0, Bytes::len));
                }
                Some(Err(_)) | None => break,
            }
        }
    }
}

impl http_body::Body for SharedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.poll_next(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0
            .lock()
            .is_ok_and(|body| http_body::Body::is_end_stream(&*body))
    }

    fn size_hint(&self) -> SizeHint {
        self.0.lock().map_or_else(
            |_| SizeHint::default(),
            |body| http_body::Body::size_hint(&*body),
        )
    }
}
