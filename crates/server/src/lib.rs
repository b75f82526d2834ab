//! The MobileSAM gRPC streaming server: transport and orchestration, no tensor math.
//!
//! A request flows: [`transports`] (the gRPC service, the `Segment` stream, the unary RPCs,
//! gRPC-web) -> [`validate`] (every rule for bad input) -> [`sessions`] (open and resume,
//! this replica's cache, or the shared [`store`] on Redis) -> [`lanes`] (queues, workers,
//! priorities: decodes before encodes before generations) -> the model -> [`convert`]
//! (results to messages). [`tracking`] follows objects from frame to frame, [`generate`]
//! segments everything, [`security`] holds TLS and the bearer token, [`metrics`] names
//! every Prometheus metric, [`server`] starts and stops it all. `ARCHITECTURE.md` follows
//! a prompt through these files.

pub mod config;
pub mod convert;
pub mod error;
pub mod fault_injection;
pub mod generate;
pub mod lanes;
pub mod logging;
pub mod metrics;
pub mod metrics_http;
pub mod security;
pub mod server;
pub mod sessions;
pub mod shutdown;
pub mod state;
pub mod store;
pub mod tracking;
pub mod transports;
pub mod validate;

pub use config::{DeviceSpec, LogFormat, ServerConfig};
pub use error::{RequestError, ServerError};
pub use logging::init as init_logging;
pub use server::{run, serve};
