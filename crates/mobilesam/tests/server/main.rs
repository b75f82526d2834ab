//! The real `mobilesam serve` on a loopback port, driven by tonic clients (and `mobilesam
//! load`), one module per concern: streams, unary RPCs and gRPC-web, security, faults,
//! lanes, logs, the shared embedding store, tracking, generation and overload.
//!
//! One test binary instead of one per file: each integration-test binary compiled the tonic
//! client and the helpers and linked the whole dependency tree again (about 20 s each on CI).

#[path = "../cli/cli_support/mod.rs"]
mod cli_support;
mod server_support;

mod load_overload;
mod server_backends;
mod server_families;
mod server_faults;
mod server_generate;
mod server_grpc;
mod server_lanes;
mod server_logs;
mod server_memory_failover;
mod server_memory_tracking;
mod server_polygons;
mod server_prefetch;
mod server_security;
mod server_store;
mod server_tracking;
mod server_truncated_images;
mod server_unary;
