//! Server settings: one clap flag per setting, each also read from a `MOBILESAM_*`
//! environment variable (so a Kubernetes manifest can set them).

use std::net::SocketAddr;
use std::time::Duration;

pub use mobilesam_model::device::DeviceSpec;

use crate::error::ServerError;

/// Default gRPC listen address.
pub const DEFAULT_ADDR: &str = "0.0.0.0:50051";
/// Default Prometheus listen address.
pub const DEFAULT_METRICS_ADDR: &str = "0.0.0.0:9090";
/// Default largest number of cached sessions.
pub const DEFAULT_MAX_SESSIONS: usize = 256;
/// Default memory cap of the session cache (1 GiB, about 256 embeddings).
pub const DEFAULT_SESSION_CACHE_BYTES: u64 = 1 << 30;
/// Default idle time after which a cached session is dropped.
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(600);
/// Default largest number of objects in one prompt.
pub const DEFAULT_MAX_OBJECTS: usize = 64;
/// Default largest number of points in one object.
pub const DEFAULT_MAX_POINTS: usize = 64;
/// Default largest gRPC message (64 MiB: a large JPEG fits).
pub const DEFAULT_MAX_MESSAGE_BYTES: u64 = 64 << 20;
/// Default time allowed for in-flight work after SIGTERM/SIGINT.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything `mobilesam serve` can be told, apart from where the weights come from.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct ServerConfig {
    /// Address of the gRPC listener (port 0 picks a free port; the log names it).
    #[arg(long, env = "MOBILESAM_ADDR", default_value = DEFAULT_ADDR)]
    pub addr: SocketAddr,

    /// Address of the Prometheus `/metrics` HTTP listener.
    #[arg(long, env = "MOBILESAM_METRICS_ADDR", default_value = DEFAULT_METRICS_ADDR)]
    pub metrics_addr: SocketAddr,

    /// Device of the workers: `cpu`, `cuda`, `cuda:N`, `metal` or `metal:N`.
    #[arg(long, env = "MOBILESAM_DEVICE", default_value = "cpu")]
    pub device: DeviceSpec,

    /// Implementation of the encoder and decoder: `fused` (hand-written CPU kernels, the
    /// default on the CPU) or `candle` (tensor operations, the default and only choice on
    /// GPUs; on the CPU, the slower reference).
    #[arg(long, env = "MOBILESAM_BACKEND", value_name = "BACKEND")]
    pub backend: Option<mobilesam_model::Backend>,

    /// Largest number of cached sessions (least recently used are evicted).
    #[arg(long, env = "MOBILESAM_MAX_SESSIONS", default_value_t = DEFAULT_MAX_SESSIONS)]
    pub max_sessions: usize,

    /// Memory cap of the session cache: bytes, or with a unit (`512MiB`, `2GB`).
    #[arg(long, env = "MOBILESAM_SESSION_CACHE_BYTES", default_value = "1GiB", value_parser = parse_bytes)]
    pub session_cache_bytes: u64,

    /// Idle time after which a cached session is dropped (`90s`, `10m`, `1h`).
    #[arg(long, env = "MOBILESAM_SESSION_TTL", default_value = "10m", value_parser = humantime::parse_duration)]
    pub session_ttl: Duration,

    /// Largest accepted image (width * height); larger ones are refused before decoding.
    #[arg(long, env = "MOBILESAM_MAX_IMAGE_PIXELS", default_value_t = mobilesam_model::image::DEFAULT_MAX_IMAGE_PIXELS)]
    pub max_image_pixels: u64,

    /// Largest number of objects in one prompt.
    #[arg(long, env = "MOBILESAM_MAX_OBJECTS", default_value_t = DEFAULT_MAX_OBJECTS)]
    pub max_objects: usize,

    /// Largest number of points in one object.
    #[arg(long, env = "MOBILESAM_MAX_POINTS", default_value_t = DEFAULT_MAX_POINTS)]
    pub max_points: usize,

    /// Largest gRPC message received or sent: bytes, or with a unit (`64MiB`).
    #[arg(long, env = "MOBILESAM_MAX_MESSAGE_BYTES", default_value = "64MiB", value_parser = parse_bytes)]
    pub max_message_bytes: u64,

    /// Time allowed after SIGTERM/SIGINT to finish in-flight work before exiting.
    #[arg(long, env = "MOBILESAM_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,

    /// Log format: `text` for people, `json` for log collectors.
    #[arg(long, env = "MOBILESAM_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Browser clients: CORS origins and the annotation page.
    #[command(flatten)]
    pub web: crate::transports::web::WebConfig,

    /// TLS, mutual TLS and the bearer token.
    #[command(flatten)]
    pub security: crate::security::SecurityConfig,

    /// Following objects from frame to frame.
    #[command(flatten)]
    pub tracking: crate::tracking::TrackingConfig,
    /// The shared embedding store (Redis or Valkey).
    #[command(flatten)]
    pub store: crate::store::StoreConfig,

    /// The scheduler lanes: workers, queue bounds, threads, priorities, pauses.
    #[command(flatten)]
    pub lanes: crate::lanes::LaneConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([0, 0, 0, 0], 50051)),
            metrics_addr: SocketAddr::from(([0, 0, 0, 0], 9090)),
            device: DeviceSpec::Cpu,
            backend: None,
            max_sessions: DEFAULT_MAX_SESSIONS,
            session_cache_bytes: DEFAULT_SESSION_CACHE_BYTES,
            session_ttl: DEFAULT_SESSION_TTL,
            max_image_pixels: mobilesam_model::image::DEFAULT_MAX_IMAGE_PIXELS,
            max_objects: DEFAULT_MAX_OBJECTS,
            max_points: DEFAULT_MAX_POINTS,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            log_format: LogFormat::Text,
            web: crate::transports::web::WebConfig::default(),
            security: crate::security::SecurityConfig::default(),
            tracking: crate::tracking::TrackingConfig::default(),
            store: crate::store::StoreConfig::default(),
            lanes: crate::lanes::LaneConfig::default(),
        }
    }
}

impl ServerConfig {
    /// Checks the settings that clap cannot: counts that must be positive.
    pub fn validate(&self) -> Result<(), ServerError> {
        let positive = [
            ("--max-objects", self.max_objects),
            ("--max-points", self.max_points),
        ];
        for (flag, value) in positive {
            if value == 0 {
                return Err(ServerError::Config(format!("{flag} must be at least 1")));
            }
        }
        if self.max_image_pixels == 0 {
            return Err(ServerError::Config(
                "--max-image-pixels must be at least 1".into(),
            ));
        }
        if self.max_message_bytes > usize::MAX as u64 || self.max_message_bytes < 1024 {
            return Err(ServerError::Config(
                "--max-message-bytes must be at least 1KiB".into(),
            ));
        }
        self.tracking.validate()?;
        self.store.validate()?;
        self.lanes.validate()
    }
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Parses a byte count: a plain number, or a number with a unit (`B`, `KB`, `MB`, `GB`,
/// `TB` are powers of 1000; `KiB`, `MiB`, `GiB`, `TiB` powers of 1024; case-insensitive).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1_000,
        "mb" | "m" => 1_000_000,
        "gb" | "g" => 1_000_000_000,
        "tb" | "t" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        other => return Err(format!("unknown byte unit `{other}` in `{text}`")),
    };
    if let Ok(whole) = number.parse::<u64>() {
        return whole
            .checked_mul(multiplier)
            .ok_or_else(|| format!("`{text}` is too large"));
    }
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a byte count"))?;
    let bytes = value * multiplier as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(format!("`{text}` is out of range"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: ServerConfig,
    }

    #[test]
    fn clap_defaults_match_default_impl() {
        let cli = Cli::try_parse_from(["serve"]).expect("defaults parse");
        assert_eq!(cli.config, ServerConfig::default());
        assert!(cli.config.validate().is_ok());
    }

    #[test]
    fn flags_parse() {
        let cli = Cli::try_parse_from([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--device",
            "cuda:1",
            "--backend",
            "candle",
            "--session-cache-bytes",
            "8MiB",
            "--session-ttl",
            "2m 30s",
            "--log-format",
            "json",
        ])
        .expect("flags parse");
        assert_eq!(cli.config.addr, SocketAddr::from(([127, 0, 0, 1], 0)));
        assert_eq!(cli.config.device, DeviceSpec::Cuda(1));
        assert_eq!(cli.config.backend, Some(mobilesam_model::Backend::Candle));
        assert_eq!(cli.config.session_cache_bytes, 8 << 20);
        assert_eq!(cli.config.session_ttl, Duration::from_secs(150));
        assert_eq!(cli.config.log_format, LogFormat::Json);
    }

    #[test]
    fn zero_counts_are_refused() {
        let config = ServerConfig {
            lanes: crate::lanes::LaneConfig {
                encode_workers: 0,
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--workers"));
    }

    #[test]
    fn devices_parse_and_print() {
        for (text, spec) in [
            ("cpu", DeviceSpec::Cpu),
            ("CUDA", DeviceSpec::Cuda(0)),
            ("cuda:3", DeviceSpec::Cuda(3)),
            ("metal:1", DeviceSpec::Metal(1)),
        ] {
            assert_eq!(text.parse::<DeviceSpec>(), Ok(spec));
        }
        assert_eq!(DeviceSpec::Cuda(2).to_string(), "cuda:2");
        assert!("tpu".parse::<DeviceSpec>().is_err());
        assert!("cpu:1".parse::<DeviceSpec>().is_err());
        assert!("cuda:x".parse::<DeviceSpec>().is_err());
    }

    #[test]
    fn byte_counts_parse() {
        assert_eq!(parse_bytes("1234"), Ok(1234));
        assert_eq!(parse_bytes("4MiB"), Ok(4 << 20));
        assert_eq!(parse_bytes("1.5 GiB"), Ok(3 << 29));
        assert_eq!(parse_bytes("2GB"), Ok(2_000_000_000));
        assert!(parse_bytes("12 parsecs").is_err());
        assert!(parse_bytes("").is_err());
        assert!(parse_bytes("99999999999999999999TiB").is_err());
    }
}
