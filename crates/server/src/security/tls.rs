//! TLS on the gRPC listener (rustls with the ring provider): the server's certificate
//! chain and key, and optionally a client CA that makes the listener require and verify a
//! client certificate (mutual TLS).
//!
//! Every file is read and checked at start, so a wrong path, a file without a PEM block
//! or a key that does not belong to the certificate stops the server with one clear line
//! instead of failing the first handshake.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use super::config::SecurityConfig;
use crate::error::ServerError;

/// Longest a client may take to finish the TLS handshake; slower connections are dropped
/// so half-open handshakes cannot pile up.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The listener's TLS settings from `--tls-cert`, `--tls-key` and `--tls-client-ca`;
/// `None` when TLS is off (neither certificate nor key given).
pub fn server_tls_config(config: &SecurityConfig) -> Result<Option<ServerTlsConfig>, ServerError> {
    let (cert_path, key_path) = match (&config.tls_cert, &config.tls_key) {
        (None, None) => {
            if config.tls_client_ca.is_some() {
                return Err(tls_error(
                    "--tls-client-ca needs --tls-cert and --tls-key".into(),
                ));
            }
            return Ok(None);
        }
        (Some(cert), Some(key)) => (cert, key),
        (Some(_), None) => return Err(tls_error("--tls-cert needs --tls-key".into())),
        (None, Some(_)) => return Err(tls_error("--tls-key needs --tls-cert".into())),
    };
    let cert_pem = read("--tls-cert", cert_path)?;
    let key_pem = read("--tls-key", key_path)?;
    let chain = certificates("--tls-cert", cert_path, &cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| {
        tls_error(format!(
            "--tls-key {} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
            key_path.display()
        ))
    })?;
    check_pair(chain, key, cert_path, key_path)?;

    let mut tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(&cert_pem, &key_pem))
        .timeout(HANDSHAKE_TIMEOUT);
    if let Some(ca_path) = &config.tls_client_ca {
        let ca_pem = read("--tls-client-ca", ca_path)?;
        certificates("--tls-client-ca", ca_path, &ca_pem)?;
        tls = tls
            .client_ca_root(Certificate::from_pem(&ca_pem))
            .client_auth_optional(false);
    }
    Ok(Some(tls))
}

/// Makes ring the process's rustls provider (tonic's acceptor asks for the process
/// default); harmless when one is installed already.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn read(flag: &str, path: &Path) -> Result<Vec<u8>, ServerError> {
    std::fs::read(path)
        .map_err(|e| tls_error(format!("cannot read {flag} {}: {e}", path.display())))
}

fn certificates(
    flag: &str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, ServerError> {
    let parsed: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem).collect();
    match parsed {
        Ok(chain) if !chain.is_empty() => Ok(chain),
        Ok(_) => Err(tls_error(format!(
            "{flag} {} holds no PEM certificate",
            path.display()
        ))),
        Err(e) => Err(tls_error(format!(
            "{flag} {} is not a valid PEM certificate file: {e}",
            path.display()
        ))),
    }
}

/// Builds a rustls server config from the pair, which checks that rustls can use the key
/// and that it belongs to the first certificate.
fn check_pair(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    cert_path: &Path,
    key_path: &Path,
) -> Result<(), ServerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(format!("TLS setup: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map(drop)
        .map_err(|e| {
            tls_error(format!(
                "--tls-key {} does not fit --tls-cert {}: {e}",
                key_path.display(),
                cert_path.display()
            ))
        })
}

fn tls_error(message: String) -> ServerError {
    ServerError::Security(message)
}
