//! Per-stage wall times of the encoder and the decoder on the CPU, for performance work.
//!
//! `cargo run --release -p mobilesam-model --example stage_times -- CHECKPOINT IMAGE [RUNS [DECODER_RUNS]]`
//! (threads: `RAYON_NUM_THREADS`). Prints the median over the runs of each encoder stage
//! (preprocessing, patch embedding, the four TinyViT stages, the neck) and of the decoder's
//! parts (mask decoder to low-resolution logits, postprocessing to an RLE).

use std::path::Path;
use std::time::Instant;

use candle_core::Device;
use mobilesam_model::image::{preprocess, read_image};
use mobilesam_model::sam::postprocess_mask;
use mobilesam_model::{ObjectPrompt, Point, Sam};

/// Times per named step, in order of first appearance.
#[derive(Default)]
struct Stats {
    names: Vec<String>,
    times: Vec<Vec<f64>>,
}

impl Stats {
    fn record(&mut self, i: usize, name: &str, ms: f64) {
        if self.names.len() <= i {
            self.names.push(name.to_string());
            self.times.push(Vec::new());
        }
        self.times[i].push(ms);
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        return Err("usage: stage_times CHECKPOINT IMAGE [RUNS [DECODER_RUNS]]".into());
    }
    let runs: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(5);
    let decoder_runs: usize = args.get(4).map(|s| s.parse()).transpose()?.unwrap_or(runs);
    let sam = Sam::load(Path::new(&args[1]), &Device::Cpu)?;
    let image = read_image(Path::new(&args[2]), u64::MAX)?;
    let mut stats = Stats::default();
    let mut embedding = None;
    for run in 0..=runs {
        let start = Instant::now();
        let input = preprocess(&image)?;
        let mut marks = vec![("preprocess".to_string(), start.elapsed().as_secs_f64())];
        let encoded = sam.embed_observed(&input, &mut |name, _, _| {
            marks.push((name.to_string(), start.elapsed().as_secs_f64()));
        })?;
        marks.push(("neck".to_string(), start.elapsed().as_secs_f64()));
        if run > 0 {
            let mut last = 0.0;
            for (i, (name, t)) in marks.iter().enumerate() {
                stats.record(i, name, (t - last) * 1e3);
                last = *t;
            }
            stats.record(marks.len(), "encoder total", last * 1e3);
        }
        embedding = Some(encoded);
    }
    let embedding = embedding.ok_or("no runs")?;
    let (h, w) = embedding.original_size;
    let prompt = [ObjectPrompt {
        points: vec![Point {
            x: w as f32 / 2.0,
            y: h as f32 / 2.0,
            label: 1,
        }],
        ..ObjectPrompt::default()
    }];
    let base = stats.names.len();
    for run in 0..=decoder_runs {
        let start = Instant::now();
        let raw = sam.decode_raw(&embedding, &prompt, false)?;
        let t1 = start.elapsed().as_secs_f64();
        for o in &raw {
            for (logits, score) in o.low_res_logits.iter().zip(&o.scores) {
                std::hint::black_box(postprocess_mask(logits, &embedding, *score)?);
            }
        }
        let t2 = start.elapsed().as_secs_f64();
        if run > 0 {
            stats.record(base, "mask decoder", t1 * 1e3);
            stats.record(base + 1, "postprocess", (t2 - t1) * 1e3);
            stats.record(base + 2, "decoder total", t2 * 1e3);
        }
    }
    println!("{} threads, {runs} runs, medians:", rayon_threads());
    for (name, t) in stats.names.iter().zip(stats.times) {
        println!("{name:>14}: {:8.2} ms", median(t));
    }
    // A second pass with the CPU kernels' step accounting on: mean per image.
    mobilesam_kernels::profile::enable(true);
    for _ in 0..runs {
        let input = preprocess(&image)?;
        std::hint::black_box(sam.embed_preprocessed(&input)?);
    }
    let encoder_steps = mobilesam_kernels::profile::take();
    for _ in 0..decoder_runs {
        std::hint::black_box(sam.decode(&embedding, &prompt, Default::default())?);
    }
    mobilesam_kernels::profile::enable(false);
    let decoder_steps = mobilesam_kernels::profile::take();
    println!("steps, mean per image:");
    for (steps, n) in [(encoder_steps, runs), (decoder_steps, decoder_runs)] {
        for (name, total, _) in steps {
            println!(
                "{name:>28}: {:8.2} ms",
                total.as_secs_f64() * 1e3 / n.max(1) as f64
            );
        }
    }
    Ok(())
}

fn rayon_threads() -> usize {
    mobilesam_model::threads::num_threads()
}
