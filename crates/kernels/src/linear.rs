//! Fully connected layers (and 1x1 convolutions on channels-last maps) as row-blocked
//! matrix products: each rayon task normalizes its rows (optional LayerNorm prologue),
//! multiplies them by the weight and finishes them (bias, residual, GELU) while they are in
//! cache.

use rayon::prelude::*;

use super::buffers::with_scratch;
use super::epilogue::{apply_epilogue, Activation, Epilogue};
use super::matmul::{matmul, MatRef};
use super::norm::LayerNormParams;

/// Products with at most this many rows are split by columns ([`Linear::few_rows`]).
const FEW_ROWS: usize = 16;
/// Output columns per task of a few-row product.
const COLUMN_BLOCK: usize = 128;
/// Weights below this size are not worth a parallel split.
const FEW_ROWS_MIN_WEIGHTS: usize = 1 << 18;

/// Rows per task for an `m`-row product: multiples of 16 rows, at most 512, in four
/// tasks per thread or more, their count a multiple of the threads (so that no thread is
/// left with one block more than the others: 4480 rows went in 9 blocks of 512).
pub fn block_rows(m: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    let tasks = m
        .div_ceil(MAX_BLOCK_ROWS)
        .max(4 * threads)
        .next_multiple_of(threads);
    m.div_ceil(tasks)
        .clamp(16, MAX_BLOCK_ROWS)
        .next_multiple_of(16)
}

/// The most rows per task of a row-blocked product.
const MAX_BLOCK_ROWS: usize = 512;

/// Runs `f(first_row, rows_of_out)` over blocks of the `width`-wide rows of `out`, in
/// parallel.
pub fn par_row_blocks(out: &mut [f32], width: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    if width == 0 || out.is_empty() {
        return;
    }
    let m = out.len() / width;
    let block = block_rows(m);
    if m <= block {
        f(0, out);
        return;
    }
    out.par_chunks_mut(block * width)
        .enumerate()
        .for_each(|(i, rows)| {
            crate::yield_point::reached();
            f(i * block, rows)
        });
}

/// `y = x W + b`: weight stored `(in, out)` row-major.
#[derive(Debug, Clone)]
pub struct Linear {
    /// `(in_dim, out_dim)`, row-major (the transpose of PyTorch's layout).
    pub weight: Vec<f32>,
    /// `out_dim` values, if any.
    pub bias: Option<Vec<f32>>,
    /// Input features.
    pub in_dim: usize,
    /// Output features.
    pub out_dim: usize,
}

/// What a [`Linear::forward`] does around the product.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fused<'a> {
    /// LayerNorm applied to the input rows first.
    pub norm: Option<&'a LayerNormParams>,
    /// Added to the output (same shape) after the bias.
    pub residual: Option<&'a [f32]>,
    /// GELU last.
    pub gelu: bool,
}

impl Linear {
    /// From PyTorch's `(out, in)` weight.
    pub fn from_torch(
        weight_out_in: &[f32],
        bias: Option<Vec<f32>>,
        in_dim: usize,
        out_dim: usize,
    ) -> Self {
        let mut weight = vec![0.0; in_dim * out_dim];
        for o in 0..out_dim {
            for i in 0..in_dim {
                weight[i * out_dim + o] = weight_out_in[o * in_dim + i];
            }
        }
        Self {
            weight,
            bias,
            in_dim,
            out_dim,
        }
    }

    /// The weight as a matrix view.
    pub fn weight_ref(&self) -> MatRef<'_> {
        MatRef::rows(&self.weight, self.in_dim, self.out_dim, self.out_dim)
    }

    /// `out = fused(x W + b)` for the rows of `x` (`rows * in_dim` values) into `out`
    /// (`rows * out_dim`), in parallel row blocks.
    ///
    /// # Panics
    /// When the lengths do not match.
    pub fn forward(&self, x: &[f32], out: &mut [f32], fused: Fused) {
        let (k, n) = (self.in_dim, self.out_dim);
        let m = x.len() / k;
        assert!(x.len() == m * k && out.len() == m * n, "linear: shapes");
        if let Some(r) = fused.residual {
            assert_eq!(r.len(), out.len(), "linear: residual shape");
        }
        if m <= FEW_ROWS
            && k * n >= FEW_ROWS_MIN_WEIGHTS
            && n >= 2 * COLUMN_BLOCK
            && rayon::current_num_threads() > 1
        {
            self.few_rows(x, out, fused);
        } else {
            par_row_blocks(out, n, |r0, o| self.rows(&x[r0 * k..], r0, o, fused));
        }
    }

    /// A product with a few rows (the decoder's prompt tokens), split by output columns
    /// instead: one row block would leave all but one thread idle while it streams the
    /// whole weight.
    fn few_rows(&self, x: &[f32], out: &mut [f32], fused: Fused) {
        let (k, n) = (self.in_dim, self.out_dim);
        let m = x.len() / k;
        with_scratch(if fused.norm.is_some() { m * k } else { 0 }, |normed| {
            let x = match fused.norm {
                Some(norm) => {
                    norm.rows(x, normed);
                    &normed[..]
                }
                None => x,
            };
            let blocks: Vec<(usize, Vec<f32>)> = (0..n)
                .step_by(COLUMN_BLOCK)
                .collect::<Vec<_>>()
                .into_par_iter()
                .map(|c0| {
                    let width = COLUMN_BLOCK.min(n - c0);
                    let mut part = vec![0.0; m * width];
                    let weight = MatRef::rows(&self.weight[c0..], k, width, n);
                    matmul(MatRef::rows(x, m, k, k), weight, &mut part, width, false);
                    (c0, part)
                })
                .collect();
            for (c0, part) in blocks {
                let width = part.len() / m;
                for (dst, src) in out.chunks_exact_mut(n).zip(part.chunks_exact(width)) {
                    dst[c0..c0 + width].copy_from_slice(src);
                }
            }
        });
        let epilogue = Epilogue {
            bias: self.bias.as_deref(),
            activation: Activation::gelu_if(fused.gelu),
        };
        apply_epilogue(out, n, epilogue, fused.residual);
    }

    /// Like [`Linear::forward`], on the calling thread only (for use inside parallel tasks).
    ///
    /// # Panics
    /// When the lengths do not match.
    pub fn forward_serial(&self, x: &[f32], out: &mut [f32], fused: Fused) {
        let (k, n) = (self.in_dim, self.out_dim);
        let m = x.len() / k;
        assert!(x.len() == m * k && out.len() == m * n, "linear: shapes");
        if let Some(r) = fused.residual {
            assert_eq!(r.len(), out.len(), "linear: residual shape");
        }
        self.rows(x, 0, out, fused);
    }

    /// One block: rows `r0..` of the output, `x` starting at row `r0`.
    fn rows(&self, x: &[f32], r0: usize, out: &mut [f32], fused: Fused) {
        let (k, n) = (self.in_dim, self.out_dim);
        let rows = out.len() / n;
        let x = &x[..rows * k];
        match fused.norm {
            Some(norm) => with_scratch(rows * k, |normed| {
                norm.rows(x, normed);
                matmul(
                    MatRef::rows(normed, rows, k, k),
                    self.weight_ref(),
                    out,
                    n,
                    false,
                );
            }),
            None => matmul(
                MatRef::rows(x, rows, k, k),
                self.weight_ref(),
                out,
                n,
                false,
            ),
        }
        let epilogue = Epilogue {
            bias: self.bias.as_deref(),
            activation: Activation::gelu_if(fused.gelu),
        };
        let residual = fused.residual.map(|r| &r[r0 * n..(r0 + rows) * n]);
        apply_epilogue(out, n, epilogue, residual);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_row_products_split_by_columns_match_row_blocks() {
        // 5 rows and a 512 x 640 weight take the column split on a 2-thread pool.
        let (m, k, n) = (5, 512, 640);
        let x: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7) % 11) as f32 * 0.1 - 0.5)
            .collect();
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i * 3) % 17) as f32 * 0.01 - 0.08)
            .collect();
        let b: Vec<f32> = (0..n).map(|i| i as f32 * 0.01).collect();
        let res: Vec<f32> = (0..m * n).map(|i| (i % 3) as f32).collect();
        let norm = LayerNormParams {
            weight: (0..k).map(|i| 1.0 + (i % 5) as f32 * 0.1).collect(),
            bias: (0..k).map(|i| (i % 3) as f32 * 0.05).collect(),
            eps: 1e-6,
        };
        let lin = Linear::from_torch(&w, Some(b), k, n);
        let fused = Fused {
            norm: Some(&norm),
            residual: Some(&res),
            gelu: true,
        };
        let mut split = vec![0.0; m * n];
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("a 2-thread pool");
        pool.install(|| lin.forward(&x, &mut split, fused));
        let mut serial = vec![0.0; m * n];
        lin.forward_serial(&x, &mut serial, fused);
        for (a, b) in split.iter().zip(&serial) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
    }

    #[test]
    fn fused_linear_matches_naive() {
        let (m, k, n) = (300, 12, 5);
        let x: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7) % 11) as f32 * 0.1 - 0.5)
            .collect();
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i * 3) % 5) as f32 * 0.2 - 0.4)
            .collect();
        let b: Vec<f32> = (0..n).map(|i| i as f32 * 0.1).collect();
        let res: Vec<f32> = (0..m * n).map(|i| (i % 3) as f32).collect();
        let lin = Linear::from_torch(&w, Some(b.clone()), k, n);
        let mut out = vec![0.0; m * n];
        lin.forward(
            &x,
            &mut out,
            Fused {
                norm: None,
                residual: Some(&res),
                gelu: true,
            },
        );
        for r in 0..m {
            for o in 0..n {
                let mut s = b[o] as f64;
                for i in 0..k {
                    s += f64::from(x[r * k + i]) * f64::from(w[o * k + i]);
                }
                s += f64::from(res[r * n + o]);
                let want = super::super::math::gelu(s as f32);
                assert!((out[r * n + o] - want).abs() < 1e-5, "row {r} col {o}");
            }
        }
    }
}
