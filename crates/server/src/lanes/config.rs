//! Every flag of the scheduler lanes: how many workers each lane has, the queues' bounds,
//! the threads of each lane's kernel pool, the lanes' OS priorities (see [`super::priority`])
//! and how long background work pauses for interactive work (see [`super::yield_gate`]).

use std::time::Duration;

use super::priority::Priority;
use super::yield_gate::DEFAULT_MAX_PAUSE;
use crate::error::ServerError;

/// Default number of workers that only encode images.
pub const DEFAULT_ENCODE_WORKERS: usize = 2;
/// Default bound of the decode and the encode queue.
pub const DEFAULT_QUEUE_CAPACITY: usize = 64;
/// Default number of workers that only decode prompts.
pub const DEFAULT_DECODE_WORKERS: usize = 1;
/// Default number of workers that only generate masks.
pub const DEFAULT_GENERATE_WORKERS: usize = 1;
/// Default bound of the generation queue (each job is seconds to minutes of work).
pub const DEFAULT_GENERATE_QUEUE_CAPACITY: usize = 8;
/// Default OS priority of the decode lane.
pub const DEFAULT_DECODE_PRIORITY: Priority = Priority::Normal;
/// Default OS priority of the encode lane.
pub const DEFAULT_ENCODE_PRIORITY: Priority = Priority::Batch(10);
/// Default OS priority of the generate lane.
pub const DEFAULT_GENERATE_PRIORITY: Priority = Priority::Idle;

/// Lane settings of `mobilesam serve`.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct LaneConfig {
    /// Encode workers (SetImage); each owns one copy of the model on the device. Prompts
    /// and generations have their own (`--decode-workers`, `--generate-workers`).
    #[arg(long = "workers", env = "MOBILESAM_WORKERS", default_value_t = DEFAULT_ENCODE_WORKERS)]
    pub encode_workers: usize,

    /// Capacity of the decode and the encode queue (the generate queue has its own,
    /// `--generate-queue-capacity`); a full queue answers RESOURCE_EXHAUSTED at once.
    #[arg(long, env = "MOBILESAM_QUEUE_CAPACITY", default_value_t = DEFAULT_QUEUE_CAPACITY)]
    pub queue_capacity: usize,

    /// Workers that only decode prompts (each owns one model); prompts never queue behind
    /// an encode or a generation.
    #[arg(long, env = "MOBILESAM_DECODE_WORKERS", default_value_t = DEFAULT_DECODE_WORKERS)]
    pub decode_workers: usize,

    /// Workers that only run GenerateMasks (background work, lowest priority).
    #[arg(long, env = "MOBILESAM_GENERATE_WORKERS", default_value_t = DEFAULT_GENERATE_WORKERS)]
    pub generate_workers: usize,

    /// Capacity of the GenerateMasks queue; a full queue answers RESOURCE_EXHAUSTED.
    #[arg(long, env = "MOBILESAM_GENERATE_QUEUE_CAPACITY", default_value_t = DEFAULT_GENERATE_QUEUE_CAPACITY)]
    pub generate_queue_capacity: usize,

    /// CPU threads in each lane's kernel pool; 0: one per CPU (or RAYON_NUM_THREADS).
    #[arg(long, env = "MOBILESAM_LANE_THREADS", default_value_t = 0)]
    pub lane_threads: usize,

    /// OS priority of the decode lane: normal, nice:N, batch:N or idle.
    #[arg(long, env = "MOBILESAM_DECODE_PRIORITY", default_value_t = DEFAULT_DECODE_PRIORITY)]
    pub decode_priority: Priority,

    /// OS priority of the encode lane: normal, nice:N, batch:N or idle.
    #[arg(long, env = "MOBILESAM_ENCODE_PRIORITY", default_value_t = DEFAULT_ENCODE_PRIORITY)]
    pub encode_priority: Priority,

    /// OS priority of the generate lane: normal, nice:N, batch:N or idle.
    #[arg(long, env = "MOBILESAM_GENERATE_PRIORITY", default_value_t = DEFAULT_GENERATE_PRIORITY)]
    pub generate_priority: Priority,

    /// Longest pause of an encode (generation) between two model steps while prompts
    /// (prompts or encodes) run; 0 turns the pauses off.
    #[arg(long, env = "MOBILESAM_YIELD_MAX_PAUSE", default_value = "250ms", value_parser = humantime::parse_duration)]
    pub yield_max_pause: Duration,
}

impl Default for LaneConfig {
    fn default() -> Self {
        Self {
            encode_workers: DEFAULT_ENCODE_WORKERS,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            decode_workers: DEFAULT_DECODE_WORKERS,
            generate_workers: DEFAULT_GENERATE_WORKERS,
            generate_queue_capacity: DEFAULT_GENERATE_QUEUE_CAPACITY,
            lane_threads: 0,
            decode_priority: DEFAULT_DECODE_PRIORITY,
            encode_priority: DEFAULT_ENCODE_PRIORITY,
            generate_priority: DEFAULT_GENERATE_PRIORITY,
            yield_max_pause: DEFAULT_MAX_PAUSE,
        }
    }
}

impl LaneConfig {
    /// Checks the counts that must be positive.
    pub fn validate(&self) -> Result<(), ServerError> {
        for (flag, value) in [
            ("--workers", self.encode_workers),
            ("--queue-capacity", self.queue_capacity),
            ("--decode-workers", self.decode_workers),
            ("--generate-workers", self.generate_workers),
            ("--generate-queue-capacity", self.generate_queue_capacity),
        ] {
            if value == 0 {
                return Err(ServerError::Config(format!("{flag} must be at least 1")));
            }
        }
        Ok(())
    }

    /// Threads of each lane's kernel pool.
    pub fn threads(&self) -> usize {
        if self.lane_threads > 0 {
            return self.lane_threads;
        }
        std::env::var("RAYON_NUM_THREADS")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .filter(|&n: &usize| n > 0)
            .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
            .unwrap_or(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        lanes: LaneConfig,
    }

    #[test]
    fn defaults_and_flags() {
        let cli = Cli::try_parse_from(["serve"]).expect("defaults parse");
        assert_eq!(cli.lanes, LaneConfig::default());
        let cli = Cli::try_parse_from([
            "serve",
            "--decode-workers",
            "2",
            "--encode-priority",
            "idle",
            "--lane-threads",
            "3",
            "--yield-max-pause",
            "0",
        ])
        .expect("flags parse");
        assert_eq!(cli.lanes.decode_workers, 2);
        assert_eq!(cli.lanes.encode_priority, Priority::Idle);
        assert_eq!(cli.lanes.threads(), 3);
        assert_eq!(cli.lanes.yield_max_pause, Duration::ZERO);
        assert!(Cli::try_parse_from(["serve", "--generate-priority", "fast"]).is_err());
        let zero = LaneConfig {
            generate_queue_capacity: 0,
            ..LaneConfig::default()
        };
        assert!(zero
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--generate-queue-capacity"));
    }
}
