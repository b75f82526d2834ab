//! `mobilesam bench`: median wall time of the encoder (decoded image -> embedding,
//! preprocessing included) and of the decoder (one point -> full-resolution mask as COCO
//! RLE, postprocessing included).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use mobilesam_model::{DecodeOptions, ObjectPrompt, Point};
use serde::Serialize;

use crate::image_args::ImageArgs;
use crate::model_args::ModelArgs;

/// Flags of `mobilesam bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,

    #[command(flatten)]
    pub image: ImageArgs,

    /// Timed runs of each part; the medians are reported.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub runs: usize,

    /// Untimed runs of each part before the timed ones.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub warmup: usize,

    /// The prompt point `X,Y` in image pixels. Default: the image centre.
    #[arg(long, value_name = "X,Y")]
    pub point: Option<String>,

    /// Decode three candidate masks instead of one.
    #[arg(long)]
    pub multimask: bool,

    /// Print JSON; the last line is `{"encoder_ms":E,"decoder_ms":D,"threads":T}`.
    #[arg(long)]
    pub json: bool,

    /// Time this Ultralytics YOLO detection checkpoint instead of MobileSAM: letterbox,
    /// network, decoding and NMS per image, at `--imgsz` (the `detector_ms` line).
    #[arg(long, value_name = "FILE")]
    pub det_model: Option<PathBuf>,

    /// Detector input size (with --det-model).
    #[arg(long, value_name = "PIXELS", default_value_t = 640)]
    pub imgsz: usize,
}

/// The summary line of `bench --det-model --json`.
#[derive(Debug, Serialize)]
pub struct DetectorBenchSummary {
    /// Median time per image, milliseconds.
    pub detector_ms: f64,
    /// Fastest and slowest run, milliseconds.
    pub min_ms: f64,
    /// Slowest run, milliseconds.
    pub max_ms: f64,
    /// Detections on the image at the default conf.
    pub detections: usize,
    /// CPU threads the kernels run on.
    pub threads: usize,
}

/// Times the detector alone on the image.
fn run_detector(args: &BenchArgs, det_model: &Path) -> Result<()> {
    let image = args.image.read()?;
    let detector = crate::detect::load_detector(det_model, &args.model.device)?;
    let options = crate::detect::detect_options(0.25, 0.7, args.imgsz, 300, &[])?;
    let mut times = Vec::with_capacity(args.runs);
    let mut found = 0;
    for i in 0..args.warmup + args.runs {
        let start = Instant::now();
        let detections = detector
            .detect(&image, &options)
            .context("cannot run the detector")?;
        if i >= args.warmup {
            times.push(start.elapsed());
        }
        found = detections.len();
    }
    let summary = DetectorBenchSummary {
        detector_ms: median_ms(&mut times),
        min_ms: ms(times[0]),
        max_ms: ms(times[times.len() - 1]),
        detections: found,
        threads: mobilesam_model::threads::num_threads(),
    };
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!(
            "image {}x{} at imgsz {}, {} runs, {} threads, device {}",
            image.width(),
            image.height(),
            args.imgsz,
            args.runs,
            summary.threads,
            args.model.device
        );
        println!(
            "detector: median {:.1} ms (min {:.1}, max {:.1}), {} detections",
            summary.detector_ms, summary.min_ms, summary.max_ms, summary.detections
        );
    }
    Ok(())
}

/// The summary line of `bench --json`.
#[derive(Debug, Serialize)]
pub struct BenchSummary {
    /// Median encoder time, milliseconds.
    pub encoder_ms: f64,
    /// Median decoder time, milliseconds.
    pub decoder_ms: f64,
    /// CPU threads the kernels run on.
    pub threads: usize,
}

/// Loads the model and image, times both parts and prints the medians.
pub fn run(args: BenchArgs) -> Result<()> {
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    if let Some(det_model) = &args.det_model {
        return run_detector(&args, det_model);
    }
    let image = args.image.read()?;
    let sam = args.model.load()?;
    let (width, height) = (image.width() as f32, image.height() as f32);
    let (x, y) = match &args.point {
        Some(text) => parse_point(text)?,
        None => (width / 2.0, height / 2.0),
    };
    let prompt = [ObjectPrompt {
        points: vec![Point { x, y, label: 1 }],
        ..ObjectPrompt::default()
    }];
    let options = DecodeOptions {
        multimask: args.multimask,
        return_low_res_logits: false,
        return_polygons: false,
    };
    let sync = || {
        sam.device()
            .synchronize()
            .context("cannot synchronize the device")
    };

    let mut encoder = Vec::with_capacity(args.runs);
    let mut embedding = None;
    for i in 0..args.warmup + args.runs {
        let start = Instant::now();
        let e = sam.embed(&image).context("cannot encode the image")?;
        sync()?;
        if i >= args.warmup {
            encoder.push(start.elapsed());
        }
        embedding = Some(e);
    }
    let embedding = embedding.context("no embedding was computed")?;

    let mut decoder = Vec::with_capacity(args.runs);
    for i in 0..args.warmup + args.runs {
        let start = Instant::now();
        let masks = sam
            .decode(&embedding, &prompt, options)
            .context("cannot decode the prompt")?;
        sync()?;
        if i >= args.warmup {
            decoder.push(start.elapsed());
        }
        std::hint::black_box(masks);
    }

    let summary = BenchSummary {
        encoder_ms: median_ms(&mut encoder),
        decoder_ms: median_ms(&mut decoder),
        threads: mobilesam_model::threads::num_threads(),
    };
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!(
            "image {}x{}, {} runs, {} threads, device {}",
            image.width(),
            image.height(),
            args.runs,
            summary.threads,
            args.model.device
        );
        println!(
            "encoder: median {:.1} ms (min {:.1}, max {:.1})",
            summary.encoder_ms,
            ms(encoder[0]),
            ms(encoder[encoder.len() - 1])
        );
        println!(
            "decoder: median {:.1} ms (min {:.1}, max {:.1})",
            summary.decoder_ms,
            ms(decoder[0]),
            ms(decoder[decoder.len() - 1])
        );
    }
    Ok(())
}

/// Sorts the times and returns their median in milliseconds.
fn median_ms(times: &mut [Duration]) -> f64 {
    times.sort();
    let n = times.len();
    if n == 0 {
        return 0.0;
    }
    if n % 2 == 1 {
        ms(times[n / 2])
    } else {
        (ms(times[n / 2 - 1]) + ms(times[n / 2])) / 2.0
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Parses `X,Y` into finite pixel coordinates.
fn parse_point(text: &str) -> Result<(f32, f32)> {
    let (x, y) = text
        .split_once(',')
        .with_context(|| format!("--point `{text}` is not X,Y"))?;
    let parse = |v: &str| -> Result<f32> {
        let value: f32 = v
            .trim()
            .parse()
            .with_context(|| format!("--point coordinate `{v}` is not a number"))?;
        if !value.is_finite() {
            bail!("--point coordinate `{v}` is not finite");
        }
        Ok(value)
    };
    Ok((parse(x)?, parse(y)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        let d = Duration::from_millis;
        assert_eq!(median_ms(&mut [d(3), d(1), d(2)]), 2.0);
        assert_eq!(median_ms(&mut [d(4), d(1), d(2), d(3)]), 2.5);
    }

    #[test]
    fn parses_points() {
        assert_eq!(parse_point("10,20.5").ok(), Some((10.0, 20.5)));
        assert!(parse_point("10").is_err());
        assert!(parse_point("a,1").is_err());
        assert!(parse_point("inf,1").is_err());
    }
}
