//! LayerNorm of rows with two-pass statistics (mean, then mean squared deviation), as
//! PyTorch computes it.

use super::math::sum;

/// LayerNorm parameters for rows of `weight.len()` values.
#[derive(Debug, Clone)]
pub struct LayerNormParams {
    /// Scale per channel.
    pub weight: Vec<f32>,
    /// Shift per channel.
    pub bias: Vec<f32>,
    /// Added to the variance.
    pub eps: f32,
}

impl LayerNormParams {
    /// Channels per row.
    pub fn dim(&self) -> usize {
        self.weight.len()
    }

    /// Normalizes each row of `src` into the same row of `dst` (equal lengths, a multiple
    /// of [`LayerNormParams::dim`]).
    pub fn rows(&self, src: &[f32], dst: &mut [f32]) {
        layer_norm_rows(src, dst, &self.weight, &self.bias, self.eps);
    }

    /// Normalizes each row of `values` in place.
    pub fn rows_inplace(&self, values: &mut [f32]) {
        layer_norm_rows_inplace(values, &self.weight, &self.bias, self.eps);
    }
}

multiversioned! {
    fn layer_norm_rows(src: &[f32], dst: &mut [f32], weight: &[f32], bias: &[f32], eps: f32) {
        let dim = weight.len();
        if dim == 0 {
            return;
        }
        for (s, d) in src.chunks_exact(dim).zip(dst.chunks_exact_mut(dim)) {
            let mean = sum(s) / dim as f32;
            for (o, v) in d.iter_mut().zip(s) {
                *o = v - mean;
            }
            finish_row(d, weight, bias, eps);
        }
    }
}

multiversioned! {
    fn layer_norm_rows_inplace(values: &mut [f32], weight: &[f32], bias: &[f32], eps: f32) {
        let dim = weight.len();
        if dim == 0 {
            return;
        }
        for row in values.chunks_exact_mut(dim) {
            let mean = sum(row) / dim as f32;
            for v in row.iter_mut() {
                *v -= mean;
            }
            finish_row(row, weight, bias, eps);
        }
    }
}

/// `row` holds `x - mean`: scales by 1 / sqrt(var + eps), then weight and bias.
#[inline(always)]
fn finish_row(row: &mut [f32], weight: &[f32], bias: &[f32], eps: f32) {
    let dim = row.len() as f32;
    let mut lanes = [0.0f32; 8];
    let mut chunks = row.chunks_exact(8);
    for chunk in &mut chunks {
        for (lane, v) in lanes.iter_mut().zip(chunk) {
            *lane += v * v;
        }
    }
    let tail: f32 = chunks.remainder().iter().map(|v| v * v).sum();
    let var = (lanes.iter().sum::<f32>() + tail) / dim;
    let inv_std = 1.0 / (var + eps).sqrt();
    for ((v, w), b) in row.iter_mut().zip(weight).zip(bias) {
        *v = *v * inv_std * w + b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_rows() {
        let p = LayerNormParams {
            weight: vec![1.0, 2.0, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 3.0],
            bias: vec![0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0],
            eps: 1e-5,
        };
        let src: Vec<f32> = (0..30)
            .map(|i| (i as f32 * 0.7).cos() * 100.0 + 1000.0)
            .collect();
        let mut dst = vec![0.0; 30];
        p.rows(&src, &mut dst);
        let mut inplace = src.clone();
        p.rows_inplace(&mut inplace);
        assert_eq!(dst, inplace);
        for (r, row) in src.chunks(10).enumerate() {
            let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / 10.0;
            let var = row
                .iter()
                .map(|&v| (f64::from(v) - mean).powi(2))
                .sum::<f64>()
                / 10.0;
            for j in 0..10 {
                let want = (f64::from(row[j]) - mean) / (var + 1e-5).sqrt()
                    * f64::from(p.weight[j])
                    + f64::from(p.bias[j]);
                assert!((f64::from(dst[r * 10 + j]) - want).abs() < 1e-5);
            }
        }
    }
}
