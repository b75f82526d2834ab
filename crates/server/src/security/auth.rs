//! The optional bearer token (`--auth-token-file`): a tower layer on the whole gRPC
//! router that answers UNAUTHENTICATED to any request without `authorization: Bearer
//! <token>`, before it reaches a service.
//!
//! The layer is keyed by path: every gRPC method path (`/package.Service/Method`) needs the
//! token except those on an *exempt* list, so every RPC added later is protected without
//! touching this file. Exempt: `grpc.health.v1` (Kubernetes probes carry no token), CORS
//! preflights (`OPTIONS`, which browsers send without credentials and which reach no RPC)
//! and paths that name no RPC (the static annotation page and its files, public content a
//! browser loads before it can send a header). Server reflection is protected: it
//! describes the API only to clients that may call it. gRPC-web requests use the same
//! paths and headers, so they are checked the same way.
//!
//! A refused upload is answered before its body is read; on HTTP/1.1 the rest of the body
//! is read by [`crate::transports::drain_body`] so that the answer arrives.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::AUTHORIZATION;
use http::{HeaderValue, Method, Request, Response};
use subtle::ConstantTimeEq;
use tonic::Code;
use tower_layer::Layer;
use tower_service::Service;
use tracing::debug;

use crate::error::ServerError;
use crate::metrics;

/// Path prefixes served without a token.
pub const EXEMPT_PATH_PREFIXES: [&str; 1] = ["/grpc.health.v1.Health/"];

/// The shared secret clients must present.
#[derive(Clone)]
pub struct BearerToken(Arc<[u8]>);

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

impl BearerToken {
    /// Reads the token from `path`: the whole file, surrounding white space trimmed. An
    /// empty file, or one whose token is not printable ASCII without spaces, is refused.
    pub fn load(path: &Path) -> Result<Self, ServerError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ServerError::Security(format!(
                "cannot read --auth-token-file {}: {e}",
                path.display()
            ))
        })?;
        Self::parse(&text).map_err(|reason| {
            ServerError::Security(format!("--auth-token-file {} {reason}", path.display()))
        })
    }

    /// The token in `text` (trimmed), or why it cannot be one.
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let token = text.trim();
        if token.is_empty() {
            return Err("is empty");
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("must hold one token of printable ASCII without spaces");
        }
        Ok(Self(token.as_bytes().into()))
    }

    /// Whether an `authorization` header value carries this token (`Bearer` scheme,
    /// case-insensitive). The token bytes are compared in constant time.
    pub fn admits(&self, header: Option<&HeaderValue>) -> bool {
        const SCHEME: &[u8] = b"bearer ";
        let Some(value) = header.map(HeaderValue::as_bytes) else {
            return false;
        };
        if value.len() < SCHEME.len() || !value[..SCHEME.len()].eq_ignore_ascii_case(SCHEME) {
            return false;
        }
        let given = value[SCHEME.len()..].trim_ascii();
        given.ct_eq(&self.0).into()
    }
}

/// Whether a request may pass without a token.
pub fn is_exempt<B>(request: &Request<B>) -> bool {
    let path = request.uri().path();
    request.method() == Method::OPTIONS
        || !is_rpc_path(path)
        || EXEMPT_PATH_PREFIXES
            .iter()
            .any(|prefix| path.starts_with(prefix))
}

/// Whether `path` has the shape of a gRPC method: `/package.Service/Method`.
fn is_rpc_path(path: &str) -> bool {
    let mut segments = path.trim_start_matches('/').split('/');
    match (segments.next(), segments.next(), segments.next()) {
        (Some(service), Some(method), None) => service.contains('.') && !method.is_empty(),
        _ => false,
    }
}

/// Checks the bearer token on every request; lets everything through when no token is
/// configured.
#[derive(Debug, Clone, Default)]
pub struct AuthLayer {
    token: Option<BearerToken>,
}

impl AuthLayer {
    /// A layer requiring `token`, or letting everything pass when `None`.
    pub fn new(token: Option<BearerToken>) -> Self {
        Self { token }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth {
            inner,
            token: self.token.clone(),
        }
    }
}

/// The service made by [`AuthLayer`].
#[derive(Debug, Clone)]
pub struct Auth<S> {
    inner: S,
    token: Option<BearerToken>,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B, R> Service<Request<B>> for Auth<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if let Some(token) = &self.token {
            if !is_exempt(&request) && !token.admits(request.headers().get(AUTHORIZATION)) {
                debug!(path = request.uri().path(), "request without a valid token");
                metrics::record_unauthenticated();
                let status = tonic::Status::new(
                    Code::Unauthenticated,
                    "missing or wrong bearer token: send `authorization: Bearer <token>`",
                );
                return Box::pin(std::future::ready(Ok(status.into_http())));
            }
        }
        Box::pin(self.inner.call(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(text: &str) -> HeaderValue {
        HeaderValue::from_str(text).expect("header")
    }

    #[test]
    fn tokens_are_trimmed_and_checked() {
        assert!(BearerToken::parse("  s3cret\n").is_ok());
        assert_eq!(BearerToken::parse(" \n").unwrap_err(), "is empty");
        assert!(BearerToken::parse("two words").is_err());
    }

    #[test]
    fn only_the_bearer_token_is_admitted() {
        let token = BearerToken::parse("s3cret").expect("token");
        assert!(token.admits(Some(&header("Bearer s3cret"))));
        assert!(token.admits(Some(&header("bearer s3cret "))));
        assert!(!token.admits(None));
        assert!(!token.admits(Some(&header("Bearer s3cre"))));
        assert!(!token.admits(Some(&header("Bearer s3cret2"))));
        assert!(!token.admits(Some(&header("Basic s3cret"))));
        assert!(!token.admits(Some(&header("s3cret"))));
        assert!(!token.admits(Some(&header("Bearer"))));
    }

    #[test]
    fn health_and_preflights_are_exempt() {
        let get = |path: &str| Request::post(path).body(()).expect("request");
        assert!(is_exempt(&get("/grpc.health.v1.Health/Check")));
        assert!(is_exempt(&get("/")));
        assert!(is_exempt(&get("/index.html")));
        assert!(is_exempt(&get("/assets/app.js")));
        assert!(!is_exempt(&get("/mobilesam.v1.SegmentAnything/FutureRpc")));
        assert!(!is_exempt(&get("/mobilesam.v1.SegmentAnything/Segment")));
        assert!(!is_exempt(&get(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
        )));
        let preflight = Request::builder()
            .method(Method::OPTIONS)
            .uri("/mobilesam.v1.SegmentAnything/Predict")
            .body(())
            .expect("request");
        assert!(is_exempt(&preflight));
    }
}
