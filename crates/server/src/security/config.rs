//! The security flags of `mobilesam serve` (certificates, keys, the token file). All off by
//! default; each flag is also a `MOBILESAM_*` environment variable.

use std::path::PathBuf;

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
