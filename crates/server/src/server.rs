//! Starting, running and stopping the server: listeners, model workers, gRPC services
//! (segmentation, health, reflection), the metrics endpoint and the session sweeper.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mobilesam_checkpoint::Checkpoint;
use mobilesam_model::ModelError;
use mobilesam_proto::v1;
use mobilesam_proto::v1::segment_anything_server::SegmentAnythingServer;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;
use tonic_web::GrpcWebLayer;
use tracing::{info, warn};

use crate::config::ServerConfig;
use crate::error::ServerError;
use crate::lanes::jobs::JobQueues;
use crate::lanes::workers::{LaneSpec, ModelSummary, WorkerPool};
use crate::lanes::yield_gate::YieldGate;
use crate::state::AppState;
use crate::store::{EmbeddingStore, ModelId, StoreClient};
use crate::transports::service::SegmentService;
use crate::{metrics, metrics_http, security, shutdown};

/// Name reported by `GetModelInfo`.
pub const MODEL_NAME: &str = "mobile_sam";
/// MobileSAM's family name; `ModelInfo.family` reports the loaded checkpoint's family
/// ([`mobilesam_model::Family::name`]).
pub const MODEL_FAMILY: &str = "mobile_sam";

/// HTTP/2 pings on idle connections find clients that vanished without closing (their
/// queued work is then cancelled).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// How long a ping may go unanswered before the connection is dropped.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs the server on its own async runtime until SIGTERM or SIGINT, then drains
/// in-flight work (at most `config.shutdown_timeout`) and returns.
pub fn run(config: ServerConfig, checkpoint: PathBuf) -> Result<(), ServerError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("mobilesam-io")
        .build()
        .map_err(|source| ServerError::Io {
            context: "cannot start the async runtime",
            source,
        })?;
    let result = runtime.block_on(async {
        let stop = shutdown::listen();
        serve(config, checkpoint, stop).await
    });
    // A model load still running after an early stop must not hold the exit.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

/// Runs the server until `stop` completes, then drains in-flight work. Installs the
/// process-wide metrics recorder, so it can run once per process.
pub async fn serve(
    config: ServerConfig,
    checkpoint: PathBuf,
    stop: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    config.validate()?;
    crate::fault_injection::init();
    let (grpc_server, auth) = security::transport(&config.security)?;
    let device = config
        .device
        .open()
        .map_err(|e| ServerError::Device(e.to_string()))?;
    let backend = mobilesam_model::Backend::choose(config.backend, &device)
        .map_err(|e| ServerError::Device(e.to_string()))?;
    let store_client = EmbeddingStore::client(&config.store)?;
    let prometheus = metrics::install()?;
    let grpc_listener = bind(config.addr).await?;
    let metrics_listener = bind(config.metrics_addr).await?;
    info!(addr = %local_addr(&grpc_listener), "gRPC listening");
    info!(addr = %local_addr(&metrics_listener), "metrics listening on /metrics");

    let state = Arc::new(AppState::new(&config));
    let (health, health_service) = tonic_health::server::health_reporter();
    set_health(&health, ServingStatus::NotServing).await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(mobilesam_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServerError::Config(format!("reflection: {e}")))?;
    let max_message = usize::try_from(config.max_message_bytes).unwrap_or(usize::MAX);
    let segment = SegmentAnythingServer::new(SegmentService::new(Arc::clone(&state)))
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);
    // Browsers: gRPC-web over HTTP/1.1 and the page at `/` on the same port (see `web`).
    // The gRPC-web translation wraps the gRPC routes only (it answers 400 to any other
    // HTTP/1.1 request); the token check runs inside it, so browsers get gRPC-web statuses.
    let cors = config.web.cors()?;
    let grpc_routes = Routes::new(health_service)
        .add_service(reflection)
        .add_service(segment)
        .into_axum_router()
        .layer(auth)
        .layer(crate::transports::size_limit::SizeLimitStatusLayer)
        .layer(GrpcWebLayer::new())
        .layer(crate::transports::drain_body::DrainUnreadBodyLayer);
    let routes = Routes::from(config.web.add_page(grpc_routes));
    let mut grpc = tokio::spawn(
        grpc_server
            .accept_http1(true)
            .tcp_nodelay(true)
            .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
            .layer(cors)
            .add_routes(routes)
            .serve_with_incoming_shutdown(
                // Nagle off on every accepted connection: `tcp_nodelay` above is ignored
                // for a caller's incoming stream, and with Nagle on a small answer waits
                // ~40 ms for the client's delayed ACK (measured by `mobilesam load`).
                TcpIncoming::from(grpc_listener).with_nodelay(Some(true)),
                state.shutdown.clone().cancelled_owned(),
            ),
    );
    let metrics_stop = CancellationToken::new();
    let metrics_server = tokio::spawn(metrics_http::serve(
        metrics_listener,
        prometheus,
        metrics_stop.clone(),
    ));
    tokio::spawn(sweep_sessions(Arc::clone(&state)));
    if let Some(client) = &store_client {
        info!(store = %client.display_url(), dtype = config.store.embedding_store_dtype.label(), "embedding store configured");
        let client = Arc::clone(client);
        let stop = state.shutdown.clone();
        tokio::spawn(async move { client.watch(stop).await });
    }

    tokio::pin!(stop);
    let loading = {
        let queues = Arc::clone(&state.queues);
        let config = config.clone();
        let store_client = store_client.clone();
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            info!(checkpoint = %checkpoint.display(), "loading the model");
            let weights = Arc::new(Checkpoint::load(&checkpoint).map_err(ModelError::from)?);
            let store = match store_client {
                Some(client) => Some(open_store(client, &weights, &config, device.clone())?),
                None => None,
            };
            let target = (device, backend);
            load(weights, started, &config, target, queues).map(|loaded| (loaded, store))
        })
    };
    let loaded = tokio::select! {
        loaded = loading => loaded,
        () = &mut stop => {
            info!("stopped before the model finished loading");
            state.shutdown.cancel();
            state.queues.close();
            metrics_stop.cancel();
            return Ok(());
        }
    };
    let pool = match loaded {
        Ok(Ok(((pool, summary), store))) => {
            let _ = state
                .generate_defaults
                .set(summary.generate_defaults.clone());
            let _ = state.model_info.set(model_info(summary, &config));
            if let Some(store) = store {
                let _ = state.store.set(Arc::new(store));
            }
            pool
        }
        Ok(Err(e)) => {
            state.shutdown.cancel();
            metrics_stop.cancel();
            return Err(e);
        }
        Err(e) => {
            state.shutdown.cancel();
            metrics_stop.cancel();
            return Err(ServerError::Worker(format!("model loading failed: {e}")));
        }
    };
    set_health(&health, ServingStatus::Serving).await;
    info!(workers = config.lanes.encode_workers, device = %config.device, "serving");

    let failed = tokio::select! {
        () = &mut stop => None,
        finished = &mut grpc => Some(finished),
    };
    set_health(&health, ServingStatus::NotServing).await;
    drain(
        &state,
        grpc,
        failed.is_none(),
        pool,
        config.shutdown_timeout,
    )
    .await;
    metrics_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), metrics_server).await;
    info!("stopped");
    match failed {
        Some(Ok(Ok(()))) | None => Ok(()),
        Some(Ok(Err(e))) => Err(ServerError::Transport(e)),
        Some(Err(e)) => Err(ServerError::Worker(format!("gRPC server task failed: {e}"))),
    }
}

/// Stops taking streams, lets open streams send what they owe, then stops the workers
/// once the queues are empty; gives up on whatever is left after `timeout`.
async fn drain(
    state: &AppState,
    mut grpc: JoinHandle<Result<(), tonic::transport::Error>>,
    grpc_running: bool,
    pool: WorkerPool,
    timeout: Duration,
) {
    info!(
        ?timeout,
        "shutting down: no new streams, finishing in-flight work"
    );
    let deadline = tokio::time::Instant::now() + timeout;
    state.shutdown.cancel();
    if grpc_running && tokio::time::timeout_at(deadline, &mut grpc).await.is_err() {
        warn!("streams still open at the shutdown deadline; closing them");
        grpc.abort();
    }
    state.queues.close();
    let joined = tokio::task::spawn_blocking(move || pool.join());
    if tokio::time::timeout_at(deadline, joined).await.is_err() {
        warn!("workers still busy at the shutdown deadline; exiting anyway");
    }
}

/// Sets the overall health and the segmentation service's.
async fn set_health(health: &HealthReporter, status: ServingStatus) {
    health.set_service_status("", status).await;
    health
        .set_service_status(mobilesam_proto::SERVICE_NAME, status)
        .await;
}

/// The store of this model's embeddings: the checkpoint file's SHA-256 (taken while
/// loading it) names the model.
fn open_store(
    client: Arc<StoreClient>,
    weights: &Checkpoint,
    config: &ServerConfig,
    device: candle_core::Device,
) -> Result<EmbeddingStore, ServerError> {
    let digest = weights.sha256().map(ToString::to_string).ok_or_else(|| {
        ServerError::Config("the checkpoint has no file digest to name its embeddings".into())
    })?;
    info!(checkpoint_sha256 = %digest, "embeddings are stored under this checkpoint digest");
    Ok(EmbeddingStore::new(
        client,
        &config.store,
        ModelId::new(digest),
        device,
    ))
}

/// Starts the workers, each with its own model built from `weights` (read since `started`).
fn load(
    weights: Arc<Checkpoint>,
    started: Instant,
    config: &ServerConfig,
    (device, backend): (candle_core::Device, mobilesam_model::Backend),
    queues: Arc<JobQueues>,
) -> Result<(WorkerPool, ModelSummary), ServerError> {
    let loaded = WorkerPool::start(
        &LaneSpec::all(config),
        weights,
        (device, backend),
        queues,
        config.max_image_pixels,
        Arc::new(YieldGate::new(config.lanes.yield_max_pause)),
    )?;
    info!(
        workers = config.lanes.encode_workers,
        %backend,
        parameters = loaded.1.parameters,
        load_ms = started.elapsed().as_secs_f64() * 1e3,
        "model loaded"
    );
    Ok(loaded)
}

fn model_info(summary: ModelSummary, config: &ServerConfig) -> v1::ModelInfo {
    v1::ModelInfo {
        name: MODEL_NAME.into(),
        parameters: summary.parameters,
        checkpoint_bytes: summary.checkpoint_bytes,
        device: config.device.to_string(),
        image_size: u32::try_from(mobilesam_model::image::IMAGE_SIZE).unwrap_or(u32::MAX),
        family: summary.family.into(),
        memory_tracking: summary.memory_tracking,
    }
}

/// Drops expired sessions every quarter TTL (between 1 s and 1 min).
async fn sweep_sessions(state: Arc<AppState>) {
    let period =
        (state.sessions.limits().ttl / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = tick.tick() => {
                let removed = state.sessions.remove_expired();
                state.content.remove_dead();
                if removed > 0 {
                    info!(removed, "expired sessions dropped");
                }
                let untracked = state.tracking.retain(|id| state.sessions.contains(id));
                if untracked > 0 {
                    info!(untracked, "tracking state of dropped sessions released");
                }
            }
        }
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })
}

fn local_addr(listener: &TcpListener) -> String {
    listener
        .local_addr()
        .map_or_else(|_| "?".into(), |a| a.to_string())
}
