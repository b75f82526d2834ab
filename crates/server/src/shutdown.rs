//! Shutdown on SIGTERM or SIGINT.

use std::future::Future;

use tracing::{info, warn};

/// Starts listening for SIGTERM and SIGINT now (call it inside the runtime, before the
/// model loads) and returns a future that completes at the first of them.
pub fn listen() -> impl Future<Output = ()> {
    #[cfg(unix)]
    let terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    let interrupt = tokio::signal::ctrl_c();
    async move {
        #[cfg(unix)]
        {
            let mut terminate = match terminate {
                Ok(stream) => stream,
                Err(e) => {
                    warn!("cannot listen for SIGTERM ({e}); only SIGINT stops the server");
                    let _ = interrupt.await;
                    info!("SIGINT received");
                    return;
                }
            };
            tokio::select! {
                _ = terminate.recv() => info!("SIGTERM received"),
                _ = interrupt => info!("SIGINT received"),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = interrupt.await;
            info!("interrupt received");
        }
    }
}
