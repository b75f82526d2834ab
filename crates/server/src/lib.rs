//! The MobileSAM gRPC streaming server: transport and orchestration, no tensor math.
//!
//! A request flows: [`service`] (one function per RPC) -> [`stream`] (one interactive
//! session stream) -> [`validate`] (every rule for bad input) -> [`scheduler`] (one bounded
//! queue per lane: decode, encode, generate) -> [`worker`] (one model per worker thread,
//! lane priorities from [`priority`], background work pausing for prompts at
//! [`yield_gate`]) -> [`convert`] (results to messages). [`sessions`]
//! opens and resumes sessions for both transports, from [`session`] (this replica's cache)
//! or [`store`] (shared, on Redis). [`unary`] answers the same work as single calls
//! (browsers over gRPC-web, see [`web`]). [`session`] caches embeddings for resuming,
//! [`tracking`] follows objects from frame to frame, [`metrics`] names every Prometheus metric, [`server`] starts and stops it all.

pub mod auth;
pub mod config;
pub mod convert;
pub mod drain_body;
pub mod error;
pub mod fault_injection;
pub mod generate;
pub mod job_guard;
pub mod jobs;
pub mod lanes;
pub mod logging;
pub mod metrics;
pub mod metrics_http;
pub mod priority;
pub mod scheduler;
pub mod security;
pub mod server;
pub mod service;
pub mod session;
pub mod sessions;
pub mod shutdown;
pub mod size_limit;
pub mod state;
pub mod store;
pub mod stream;
pub mod tls;
pub mod tracking;
pub mod unary;
pub mod validate;
pub mod web;
pub mod worker;
pub mod yield_gate;

pub use config::{DeviceSpec, LogFormat, ServerConfig};
pub use error::{RequestError, ServerError};
pub use logging::init as init_logging;
pub use server::{run, serve};
