//! The tracker's fixed position encodings, as sam2 computes them in `float32`:
//! [`sine_2d`] (`PositionEmbeddingSine`, normalised, scale 2 pi, temperature 10000) for the
//! image features and the memory, and [`sine_1d`] (`get_1d_sine_pe`) for the temporal
//! distance of object pointers.

const TEMPERATURE: f32 = 10000.0;

/// `PositionEmbeddingSine(channels)` on a `side` x `side` grid: (channels, side, side)
/// row-major; the first half encodes the row, the second the column, each as interleaved
/// sin / cos pairs.
pub fn sine_2d(channels: usize, side: usize) -> Vec<f32> {
    let half = channels / 2;
    let scale = std::f32::consts::TAU;
    let dim_t: Vec<f32> = (0..half)
        .map(|i| TEMPERATURE.powf((2 * (i / 2)) as f32 / half as f32))
        .collect();
    let eps = 1e-6f32;
    let norm = |v: usize| (v as f32 + 1.0) / (side as f32 + eps) * scale;
    let mut out = vec![0f32; channels * side * side];
    for y in 0..side {
        for x in 0..side {
            for (which, embed) in [(0usize, norm(y)), (1, norm(x))] {
                for (i, d) in dim_t.iter().enumerate() {
                    let v = embed / d;
                    let value = if i % 2 == 0 { v.sin() } else { v.cos() };
                    out[((which * half + i) * side + y) * side + x] = value;
                }
            }
        }
    }
    out
}

/// `get_1d_sine_pe(positions, dim)`: per position, `dim / 2` sines then `dim / 2` cosines.
pub fn sine_1d(positions: &[f32], dim: usize) -> Vec<f32> {
    let half = dim / 2;
    let dim_t: Vec<f32> = (0..half)
        .map(|i| TEMPERATURE.powf((2 * (i / 2)) as f32 / half as f32))
        .collect();
    let mut out = Vec::with_capacity(positions.len() * dim);
    for &p in positions {
        out.extend(dim_t.iter().map(|d| (p / d).sin()));
        out.extend(dim_t.iter().map(|d| (p / d).cos()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sine_2d_pairs_are_sin_then_cos() {
        let pe = sine_2d(4, 2);
        // channel 0: sin(y), channel 1: cos(y) with y = (row + 1) / 2 * 2 pi
        let y0 = 1.0f32 / (2.0 + 1e-6) * std::f32::consts::TAU;
        assert!((pe[0] - y0.sin()).abs() < 1e-6);
        assert!((pe[4] - y0.cos()).abs() < 1e-6);
    }

    #[test]
    fn sine_1d_of_zero() {
        let pe = sine_1d(&[0.0], 8);
        assert_eq!(&pe[..4], &[0.0; 4]);
        assert_eq!(&pe[4..], &[1.0; 4]);
    }
}
