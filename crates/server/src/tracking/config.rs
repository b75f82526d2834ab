//! The tracking flags of `mobilesam serve`.

use crate::error::ServerError;

/// Default largest number of objects one session tracks.
pub const DEFAULT_MAX_TRACKED_OBJECTS: usize = 64;

/// Default largest number of frames one session holds tracking results for.
pub const DEFAULT_MAX_TRACKED_FRAMES: usize = 10_000;

/// How sessions follow objects from frame to frame.
#[derive(Debug, Clone, Copy, PartialEq, clap::Args)]
pub struct TrackingConfig {
    /// Largest number of objects one session tracks (lost ones included); a prompt that
    /// would track more is answered RESOURCE_EXHAUSTED.
    #[arg(long, env = "MOBILESAM_MAX_TRACKED_OBJECTS", default_value_t = DEFAULT_MAX_TRACKED_OBJECTS)]
    pub max_tracked_objects: usize,

    /// Largest number of frames one session keeps tracking results for (each object's
    /// mask per frame index, as RLE; with the recipe or SAM 2.1's memory). Tracking onto
    /// one more frame is answered RESOURCE_EXHAUSTED when the client numbered it
    /// (SetImage.frame_index); when the server did (no frame_index: a live stream), the
    /// oldest frames' results are dropped instead (not those tracking starts from).
    #[arg(long, env = "MOBILESAM_MAX_TRACKED_FRAMES", default_value_t = DEFAULT_MAX_TRACKED_FRAMES)]
    pub max_tracked_frames: usize,

    /// Marks a followed object LOST when its mask's score (predicted IoU) is below this
    /// (off by default: only an empty mask loses an object).
    /// Negative scores are accepted as written (`--track-min-score -0.5`).
    #[arg(long, env = "MOBILESAM_TRACK_MIN_SCORE", allow_negative_numbers = true)]
    pub track_min_score: Option<f32>,

    /// Marks a followed object LOST when its mask's area grows or shrinks by more than
    /// this factor from one frame to the next (above 1, e.g. 4; off by default).
    #[arg(long, env = "MOBILESAM_TRACK_MAX_AREA_CHANGE")]
    pub track_max_area_change: Option<f32>,
}

impl Default for TrackingConfig {
    fn default() -> Self {
        Self {
            max_tracked_objects: DEFAULT_MAX_TRACKED_OBJECTS,
            max_tracked_frames: DEFAULT_MAX_TRACKED_FRAMES,
            track_min_score: None,
            track_max_area_change: None,
        }
    }
}

impl TrackingConfig {
    /// Checks the ranges clap cannot.
    pub fn validate(&self) -> Result<(), ServerError> {
        if self.max_tracked_objects == 0 {
            return Err(ServerError::Config(
                "--max-tracked-objects must be at least 1".into(),
            ));
        }
        if self.max_tracked_frames == 0 {
            return Err(ServerError::Config(
                "--max-tracked-frames must be at least 1".into(),
            ));
        }
        if let Some(score) = self.track_min_score {
            if !score.is_finite() {
                return Err(ServerError::Config(format!(
                    "--track-min-score must be a finite score, not {score}"
                )));
            }
        }
        if let Some(change) = self.track_max_area_change {
            if !change.is_finite() || change <= 1.0 {
                return Err(ServerError::Config(format!(
                    "--track-max-area-change must be a finite factor above 1, not {change}"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_thresholds_off() {
        let config = TrackingConfig::default();
        assert!(config.validate().is_ok());
        assert_eq!(config.track_min_score, None);
        assert_eq!(config.track_max_area_change, None);
    }

    #[test]
    fn a_negative_min_score_parses_without_an_equals_sign() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            tracking: TrackingConfig,
        }
        let cli = Cli::try_parse_from(["serve", "--track-min-score", "-0.5"]).expect("parses");
        assert_eq!(cli.tracking.track_min_score, Some(-0.5));
    }

    #[test]
    fn out_of_range_settings_are_refused() {
        let bad = [
            TrackingConfig {
                max_tracked_objects: 0,
                ..Default::default()
            },
            TrackingConfig {
                max_tracked_frames: 0,
                ..Default::default()
            },
            TrackingConfig {
                track_min_score: Some(f32::NAN),
                ..Default::default()
            },
            TrackingConfig {
                track_max_area_change: Some(1.0),
                ..Default::default()
            },
            TrackingConfig {
                track_max_area_change: Some(f32::INFINITY),
                ..Default::default()
            },
        ];
        for config in bad {
            let message = config.validate().unwrap_err().to_string();
            assert!(message.contains("--"), "{message}");
        }
    }
}
