//! Shared by the model crate's integration tests: fixture paths, the seeded model, `.npy`.

#![allow(dead_code)]

pub mod full_size;
pub mod prompt_cases;

use candle_core::Device;
use mobilesam_model::Sam;

// Fixture paths and the seeded checkpoint, as the checkpoint crate's tests have them.
#[path = "../../../checkpoint/tests/common/mod.rs"]
mod checkpoint_common;

#[allow(unused_imports)] // each test binary uses its own part of `common`
pub use checkpoint_common::{fixtures, seeded_checkpoint};

/// The seeded model on the CPU.
pub fn seeded_sam() -> Sam {
    Sam::from_checkpoint(&seeded_checkpoint(), &Device::Cpu).expect("model builds")
}

/// Reads a little-endian float32 `.npy` file: (shape, values).
pub fn read_npy_f32(path: &std::path::Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).expect("npy readable");
    assert_eq!(&bytes[..6], b"\x93NUMPY", "not an npy file");
    let (header_len, start) = if bytes[6] == 1 {
        (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10)
    } else {
        (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        )
    };
    let header = std::str::from_utf8(&bytes[start..start + header_len]).expect("ascii header");
    assert!(header.contains("'<f4'"), "float32 expected: {header}");
    assert!(header.contains("'fortran_order': False"));
    let open = header.find('(').expect("shape");
    let close = header.find(')').expect("shape");
    let shape = header[open + 1..close]
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().expect("dimension"))
        .collect();
    let values = bytes[start + header_len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (shape, values)
}

/// Relative L2 distance `|a - b| / |b|`.
pub fn relative_l2(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let num: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum();
    let den: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum();
    (num / den).sqrt()
}
