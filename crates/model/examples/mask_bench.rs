//! Times the postprocessing of one real mask (seeded or real weights decide how
//! fragmented it is): `cargo run --release -p mobilesam-model --example mask_bench --
//! CHECKPOINT IMAGE`. Decodes one point at the image centre, then prints the median of 50
//! runs of each step: area, bbox, column-major runs, the whole COCO RLE, and the upscale
//! from low-resolution logits to the thresholded full-resolution mask.

use std::path::Path;
use std::time::Instant;

use candle_core::Device;
use mobilesam_model::image::read_image;
use mobilesam_model::masks::runs::column_major_runs;
use mobilesam_model::masks::upscale_to_mask;
use mobilesam_model::{ObjectPrompt, Point, Sam};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        return Err("usage: mask_bench CHECKPOINT IMAGE".into());
    }
    let sam = Sam::load(Path::new(&args[1]), &Device::Cpu)?;
    let image = read_image(Path::new(&args[2]), u64::MAX)?;
    let embedding = sam.embed(&image)?;
    let (h, w) = embedding.original_size;
    let prompt = [ObjectPrompt {
        points: vec![Point {
            x: w as f32 / 2.0,
            y: h as f32 / 2.0,
            label: 1,
        }],
        ..ObjectPrompt::default()
    }];
    let raw = sam.decode_raw(&embedding, &prompt, false)?;
    let logits = &raw[0].low_res_logits[0];
    let upscale = || upscale_to_mask(logits, embedding.input_size, embedding.original_size);
    let mask = upscale()?;
    println!(
        "{h}x{w} mask, RLE of {} characters",
        mask.to_rle().counts.len()
    );
    for step in ["area", "bbox", "runs", "rle", "upscale"] {
        let mut times = Vec::new();
        for _ in 0..50 {
            let start = Instant::now();
            match step {
                "area" => drop(std::hint::black_box(mask.area())),
                "bbox" => drop(std::hint::black_box(mask.bbox())),
                "runs" => drop(std::hint::black_box(column_major_runs(
                    &mask.data,
                    mask.height,
                    mask.width,
                ))),
                "rle" => drop(std::hint::black_box(mask.to_rle())),
                _ => drop(std::hint::black_box(upscale()?)),
            }
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        println!("{step:>8}: {:.3} ms", times[times.len() / 2]);
    }
    Ok(())
}
