use std::time::Instant;
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let det = mobilesam_model::detector::Detector::load(
        std::path::Path::new(&args[1]),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let img = mobilesam_model::image::read_image(std::path::Path::new(&args[2]), u64::MAX).unwrap();
    let opts = mobilesam_model::detector::DetectOptions::default();
    let mut times = vec![];
    for _ in 0..6 {
        let t = Instant::now();
        let d = det.detect(&img, &opts).unwrap();
        times.push(t.elapsed().as_secs_f64() * 1e3);
        std::hint::black_box(d);
    }
    println!("{times:?}");
}
