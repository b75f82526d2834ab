//! CPU time of single encoder kernels on synthetic data (stage-0 shapes), for A/B work on
//! a busy machine: process CPU time (summed over threads from /proc/self/task/*/schedstat,
//! Linux only) is far less disturbed by other processes than wall time. `mbconv` / `merge`
//! run the fused [`InvertedResidual`], `*-layers` the same three layers one map after the
//! other, `gelu` 16.7M GELUs on a cache-resident buffer.
//! `cargo run --release -p mobilesam-kernels --example kernel_bench -- NAME [RUNS]`; NAME:
//! mbconv, mbconv-layers, merge, merge-layers, gelu (the kernel the encoder uses),
//! gelu-formula (the portable one), mbconv-depthwise (stage 0's 3x3, 256 channels, GELU),
//! attention1, attention2, attention3 (one window-attention layer of that stage).

use std::time::Instant;

use mobilesam_kernels::attention::WindowAttention;
use mobilesam_kernels::depthwise::DepthwiseConv3x3;
use mobilesam_kernels::epilogue::Activation;
use mobilesam_kernels::inverted_residual::{Finish, InvertedResidual};
use mobilesam_kernels::linear::{Fused, Linear};

fn cpu_ns() -> u64 {
    let mut total = 0;
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for t in dir.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) {
                total += s
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    total
}

fn values(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i + seed) * 2654435761) % 1000) as f32 * 0.002 - 1.0)
        .collect()
}

fn linear(k: usize, n: usize) -> Linear {
    Linear::from_torch(
        &values(k * n, 3).iter().map(|v| v * 0.1).collect::<Vec<_>>(),
        Some(values(n, 5)),
        k,
        n,
    )
}

fn block(c: usize, hidden: usize, c_out: usize, stride: usize) -> InvertedResidual {
    InvertedResidual {
        expand: linear(c, hidden),
        depthwise: DepthwiseConv3x3::from_torch(&values(hidden * 9, 7), values(hidden, 9), stride),
        project: linear(hidden, c_out),
    }
}

fn layers(
    ir: &InvertedResidual,
    x: &[f32],
    side: usize,
    out: &mut [f32],
    finish: Finish,
    e: &mut [f32],
    d: &mut [f32],
) {
    let gelu = Fused {
        gelu: true,
        ..Fused::default()
    };
    let os = ir.out_side(side);
    let (e, d) = (
        &mut e[..side * side * ir.expand.out_dim],
        &mut d[..os * os * ir.expand.out_dim],
    );
    ir.expand.forward(x, e, gelu);
    ir.depthwise.forward(e, side, side, d, Activation::Gelu);
    let fused = match finish {
        Finish::ResidualGelu => Fused {
            residual: Some(x),
            gelu: true,
            ..Fused::default()
        },
        Finish::Plain => Fused::default(),
    };
    ir.project.forward(d, out, fused);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let name = args.get(1).map(String::as_str).unwrap_or("mbconv");
    let runs: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    let side = 256;
    let x = values(side * side * 64, 1);
    let (ir, finish, c_out, os) = match name {
        n if n.starts_with("mbconv") => (block(64, 256, 64, 1), Finish::ResidualGelu, 64, 256),
        _ => (block(64, 128, 128, 2), Finish::Plain, 128, 128),
    };
    let mut out = vec![0.0; os * os * c_out];
    let mut gelu_buf = values(side * side * 256, 2);
    let mut e = values(side * side * 256, 4);
    let mut d = values(side * side * 256, 6);
    // attention1 / attention2 / attention3: one attention layer of that stage.
    let mut attention = name.strip_prefix("attention").map(|stage| {
        let (heads, window, side) = match stage {
            "1" => (4, 7, 128),
            "3" => (10, 7, 64),
            _ => (5, 14, 64),
        };
        let (c, n) = (heads * 32, window * window);
        let att = WindowAttention {
            heads,
            head_dim: 32,
            window,
            scale: 32f32.powf(-0.5),
            bias: values(heads * n * n, 8),
            pad_qkv: values(3 * c, 9),
        };
        let windowed = vec![0.0; att.windowed_len(side, side)];
        out.resize(out.len().max(side * side * c), 0.0);
        (att, values(side * side * 3 * c, 10), side, windowed)
    });
    let mut cpu = Vec::new();
    let mut wall = Vec::new();
    for r in 0..=runs {
        let (c0, t0) = (cpu_ns(), Instant::now());
        match name {
            "mbconv" | "merge" => ir.forward(&x, side, &mut out, finish),
            "mbconv-depthwise" => ir
                .depthwise
                .forward(&e, side, side, &mut d, Activation::Gelu),
            n if n.starts_with("attention") => {
                let (att, qkv, side, windowed) = attention.as_mut().expect("set up above");
                let len = *side * *side * att.channels();
                att.forward(qkv, *side, *side, windowed, &mut out[..len]);
            }
            "gelu" | "gelu-formula" => {
                for i in 0..256 {
                    let (src, dst) = gelu_buf.split_at_mut(65536);
                    dst[..65536].copy_from_slice(&src[..65536]);
                    dst[i] += 1e-3;
                    if name == "gelu" {
                        mobilesam_kernels::gelu::gelu_slice(&mut dst[..65536]);
                    } else {
                        mobilesam_kernels::math::gelu_inplace(&mut dst[..65536]);
                    }
                }
            }
            _ => layers(&ir, &x, side, &mut out, finish, &mut e, &mut d),
        }
        if r > 0 {
            cpu.push((cpu_ns() - c0) as f64 / 1e6);
            wall.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    cpu.sort_by(f64::total_cmp);
    wall.sort_by(f64::total_cmp);
    println!(
        "{name}: cpu {:.2} ms (min {:.2}), wall {:.2} ms, checksum {}",
        cpu[cpu.len() / 2],
        cpu[0],
        wall[wall.len() / 2],
        out.iter().sum::<f32>()
    );
}
