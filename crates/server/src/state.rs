//! What every stream and RPC of one server shares.

use std::sync::{Arc, OnceLock};

use mobilesam_proto::v1;
use tokio_util::sync::CancellationToken;

use crate::config::ServerConfig;
use crate::lanes::jobs::JobQueues;
use crate::lanes::queues::LaneCapacities;
use crate::sessions::cache::{SessionLimits, SessionStore};
use crate::sessions::content::ContentIndex;
use crate::sessions::SessionImage;
use crate::store::EmbeddingStore;
use crate::tracking::Tracker;
use crate::validate::PromptLimits;
use mobilesam_model::amg::AmgParams;

/// Shared server state.
pub struct AppState {
    /// The job queues in front of the workers.
    pub queues: Arc<JobQueues>,
    /// Cached embeddings by session id.
    pub sessions: SessionStore<SessionImage>,
    /// The cached sessions' embeddings by image SHA-256.
    pub content: ContentIndex,
    /// The shared embedding store, once the model is loaded (when one is configured).
    pub store: OnceLock<Arc<EmbeddingStore>>,
    /// Size limits of prompts.
    pub limits: PromptLimits,
    /// Set once the model is loaded.
    pub model_info: OnceLock<v1::ModelInfo>,
    /// The served family's segment-everything defaults, set once the model is loaded.
    pub generate_defaults: OnceLock<AmgParams>,
    /// Cancelled when the server starts shutting down: streams stop reading requests.
    pub shutdown: CancellationToken,
    /// The objects each session follows from frame to frame.
    pub tracking: Tracker,
}

impl AppState {
    /// `GenerateParams`' defaults: the served family's reference generator's
    /// (`SamAutomaticMaskGenerator`, or `SAM2AutomaticMaskGenerator` for SAM 2.1).
    pub fn generate_defaults(&self) -> AmgParams {
        self.generate_defaults.get().cloned().unwrap_or_default()
    }

    /// Fresh state for `config`.
    pub fn new(config: &ServerConfig) -> Self {
        Self {
            queues: Arc::new(JobQueues::new(LaneCapacities {
                decode: config.lanes.queue_capacity,
                encode: config.lanes.queue_capacity,
                generate: config.lanes.generate_queue_capacity,
            })),
            sessions: SessionStore::new(SessionLimits {
                max_sessions: config.max_sessions,
                max_bytes: config.session_cache_bytes,
                ttl: config.session_ttl,
            }),
            content: ContentIndex::new(),
            store: OnceLock::new(),
            limits: PromptLimits {
                max_objects: config.max_objects,
                max_points: config.max_points,
            },
            model_info: OnceLock::new(),
            generate_defaults: OnceLock::new(),
            shutdown: CancellationToken::new(),
            tracking: Tracker::new(config.tracking),
        }
    }
}
