//! Per-step CPU times of the YOLO detector (letterbox, each kind of convolution, copies,
//! pooling, decoding and NMS), for performance work.
//!
//! `cargo run --release -p mobilesam-detector --example detector_times -- CHECKPOINT IMAGE [RUNS]`
//! (threads: `RAYON_NUM_THREADS`). Prints each step's total per image, as the median over
//! the runs after one warm-up, and the median of the whole detection.

use std::path::Path;
use std::time::Instant;

use candle_core::Device;
use mobilesam_detector::{DetectOptions, Detector};
use mobilesam_kernels::profile;
use mobilesam_model::image::read_image;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        return Err("usage: detector_times CHECKPOINT IMAGE [RUNS]".into());
    }
    let runs: usize = args.get(3).map(|r| r.parse()).transpose()?.unwrap_or(20);
    let detector = Detector::load(Path::new(&args[1]), &Device::Cpu)?;
    let image = read_image(Path::new(&args[2]), u64::MAX)?;
    let options = DetectOptions::default();
    detector.detect(&image, &options)?;
    profile::enable(true);
    let mut steps: Vec<(&'static str, Vec<f64>)> = Vec::new();
    let mut totals = Vec::new();
    for _ in 0..runs {
        profile::take();
        let start = Instant::now();
        detector.detect(&image, &options)?;
        totals.push(start.elapsed().as_secs_f64() * 1e3);
        for (name, time, _) in profile::take() {
            let ms = time.as_secs_f64() * 1e3;
            match steps.iter_mut().find(|(n, _)| *n == name) {
                Some((_, v)) => v.push(ms),
                None => steps.push((name, vec![ms])),
            }
        }
    }
    for (name, v) in steps {
        println!("{name:32} {:8.2} ms", median(v));
    }
    println!("{:32} {:8.2} ms", "detection (whole)", median(totals));
    Ok(())
}
