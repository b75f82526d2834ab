//! The ways requests arrive, all thin and all calling the same session ([`crate::sessions`])
//! and lane ([`crate::lanes`]) entry points:
//!
//! - [`service`]: the gRPC service, one function per RPC;
//! - [`stream`]: one interactive `Segment` stream (answers in request order);
//! - [`unary`]: the same work as single calls (`SetImage`, `Predict`, `CloseSession`);
//! - [`web`]: gRPC-web and the annotation page for browsers, with CORS;
//! - [`size_limit`] and [`drain_body`]: HTTP layers in front of them (message size limits,
//!   reading the rest of a refused request's body).

pub mod drain_body;
pub mod service;
pub mod size_limit;
pub mod stream;
pub mod unary;
pub mod web;
