//! Security of the gRPC listener: TLS and mutual TLS ([`tls`]), the bearer token
//! ([`auth`]), and the flags that turn them on ([`config`]). All off by default.

pub mod auth;
pub mod config;
pub mod tls;

use tonic::transport::Server;
use tracing::info;

pub use config::SecurityConfig;

use crate::error::ServerError;
use auth::{AuthLayer, BearerToken};

/// A gRPC server builder with TLS applied (when configured) and the bearer-token layer (a
/// pass-through when no token file is given). Reads and checks every file now, so a bad one
/// stops the server at start with one clear line.
pub fn transport(config: &SecurityConfig) -> Result<(Server, AuthLayer), ServerError> {
    tls::install_crypto_provider();
    let mut builder = Server::builder();
    if let Some(tls) = tls::server_tls_config(config)? {
        builder = builder
            .tls_config(tls)
            .map_err(|e| ServerError::Security(format!("TLS setup: {}", error_chain(&e))))?;
        info!(
            mutual = config.tls_client_ca.is_some(),
            "TLS on the gRPC listener"
        );
    }
    let token = config
        .auth_token_file
        .as_deref()
        .map(BearerToken::load)
        .transpose()?;
    if token.is_some() {
        info!("bearer token required on every RPC except health");
    }
    Ok((builder, AuthLayer::new(token)))
}

/// An error and its causes on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
