//! The security settings of `mobilesam serve`: TLS on the gRPC listener ([`crate::tls`]),
//! mutual TLS, and the bearer token ([`crate::auth`]). All off by default; each flag is
//! also a `MOBILESAM_*` environment variable.

use std::path::PathBuf;

use tonic::transport::Server;
use tracing::info;

use crate::auth::{AuthLayer, BearerToken};
use crate::error::ServerError;

/// Where the certificates, keys and token come from.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct SecurityConfig {
    /// PEM certificate chain for TLS on the gRPC listener (with `--tls-key`). The metrics
    /// listener stays plain HTTP.
    #[arg(long, env = "MOBILESAM_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of `--tls-cert` (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "MOBILESAM_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    /// PEM CA certificate(s): clients must then present a certificate signed by one
    /// (mutual TLS).
    #[arg(long, env = "MOBILESAM_TLS_CLIENT_CA", value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,

    /// File holding a bearer token: every RPC except health then needs
    /// `authorization: Bearer <token>`.
    #[arg(long, env = "MOBILESAM_AUTH_TOKEN_FILE", value_name = "FILE")]
    pub auth_token_file: Option<PathBuf>,
}

impl SecurityConfig {
    /// A gRPC server builder with TLS applied (when configured) and the bearer-token layer
    /// (a pass-through when no token file is given). Reads and checks every file now, so a
    /// bad one stops the server at start with one clear line.
    pub fn transport(&self) -> Result<(Server, AuthLayer), ServerError> {
        crate::tls::install_crypto_provider();
        let mut builder = Server::builder();
        if let Some(tls) = crate::tls::server_tls_config(self)? {
            builder = builder
                .tls_config(tls)
                .map_err(|e| ServerError::Security(format!("TLS setup: {}", error_chain(&e))))?;
            info!(
                mutual = self.tls_client_ca.is_some(),
                "TLS on the gRPC listener"
            );
        }
        let token = self
            .auth_token_file
            .as_deref()
            .map(BearerToken::load)
            .transpose()?;
        if token.is_some() {
            info!("bearer token required on every RPC except health");
        }
        Ok((builder, AuthLayer::new(token)))
    }
}

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
