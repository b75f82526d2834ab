//! TinyViT's windowed multi-head attention with a learned relative-position bias, on a
//! channels-last token map. Each task takes one (window, head): it gathers that head's
//! query/key/value rows of the window (padding tokens get the projection of a zero token,
//! as PyTorch pads before its LayerNorm), computes `softmax(q k^T * scale + bias) v` in
//! its scratch, and writes its own slice of a window-ordered output; a second pass puts the
//! rows back in image order. Windows of at most 64 tokens with 32-channel heads (7x7) go
//! to a register kernel instead where the CPU has AVX-512F
//! ([`super::attention_avx512`]), which reads the tokens in place.

use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
use super::attention_avx512;
use super::buffers::with_scratch;
use super::math::scaled_exp;
use super::matmul::{matmul, MatRef};

/// One TinyViT attention layer's shape and constants.
#[derive(Debug, Clone)]
pub struct WindowAttention {
    /// Attention heads.
    pub heads: usize,
    /// Channels per head of q, k and v.
    pub head_dim: usize,
    /// Window side.
    pub window: usize,
    /// Multiplies `q k^T`.
    pub scale: f32,
    /// `(heads, n, n)` bias, n = window * window.
    pub bias: Vec<f32>,
    /// The qkv row of a padding token (`3 * heads * head_dim` values).
    pub pad_qkv: Vec<f32>,
}

impl WindowAttention {
    /// Channels of the attention output (`heads * head_dim`).
    pub fn channels(&self) -> usize {
        self.heads * self.head_dim
    }

    /// Windows down and across for an `h x w` map.
    fn grid(&self, h: usize, w: usize) -> (usize, usize) {
        (h.div_ceil(self.window), w.div_ceil(self.window))
    }

    /// Values of the window-ordered buffer [`WindowAttention::forward`] works in.
    pub fn windowed_len(&self, h: usize, w: usize) -> usize {
        let (nh, nw) = self.grid(h, w);
        nh * nw * self.window * self.window * self.channels()
    }

    /// `qkv` (h * w, 3 * channels), per head `[q, k, v]` -> `out` (h * w, channels), heads
    /// side by side. `windowed` is work space of [`WindowAttention::windowed_len`] values.
    ///
    /// # Panics
    /// When the lengths do not match.
    pub fn forward(&self, qkv: &[f32], h: usize, w: usize, windowed: &mut [f32], out: &mut [f32]) {
        self.attend(qkv, h, w, windowed);
        self.unpartition(windowed, h, w, out);
    }

    /// Fills `windowed` with one `(n, head_dim)` block per (window, head).
    fn attend(&self, qkv: &[f32], h: usize, w: usize, windowed: &mut [f32]) {
        let (ws, d, c) = (self.window, self.head_dim, self.channels());
        let n = ws * ws;
        let (_, nw) = self.grid(h, w);
        assert!(
            qkv.len() == h * w * 3 * c && windowed.len() == self.windowed_len(h, w),
            "window attention: shapes"
        );
        // Chosen once per layer, not per (window, head).
        let small_window = small_window_kernel(d, n);
        windowed
            .par_chunks_mut(n * d)
            .enumerate()
            .for_each(|(task, o)| {
                crate::yield_point::reached();
                let (window, head) = (task / self.heads, task % self.heads);
                let (wy, wx) = (window / nw, window % nw);
                // Only queries inside the image: the others' outputs are dropped.
                let (rows, cols) = (ws.min(h - wy * ws), ws.min(w - wx * ws));
                let m = rows * cols;
                // Query i is window position (i / cols) * ws + i % cols.
                let position = |i: usize| (i / cols) * ws + i % cols;
                if let Some(kernel) = small_window {
                    let mut tokens: [&[f32]; SMALL_WINDOW_KEYS] = [&[]; SMALL_WINDOW_KEYS];
                    for (p, token) in tokens[..n].iter_mut().enumerate() {
                        *token = &self.token_qkv(qkv, h, w, (wy * ws + p / ws, wx * ws + p % ws))
                            [head * 3 * d..][..3 * d];
                    }
                    let mut positions = [0usize; SMALL_WINDOW_KEYS];
                    for (i, p) in positions[..m].iter_mut().enumerate() {
                        *p = position(i);
                    }
                    let bias = &self.bias[head * n * n..][..n * n];
                    kernel(&tokens[..n], bias, self.scale, &positions[..m], o);
                    return;
                }
                with_scratch(n * 3 * d + m * n + 2 * m * d + m, |scratch| {
                    let (local, rest) = scratch.split_at_mut(n * 3 * d);
                    let (scores, rest) = rest.split_at_mut(m * n);
                    let (queries, rest) = rest.split_at_mut(m * d);
                    let (attended, sums) = rest.split_at_mut(m * d);
                    self.gather(qkv, h, w, (wy, wx), head, local);
                    for (i, q) in queries.chunks_exact_mut(d).enumerate() {
                        copy_values(q, &local[position(i) * 3 * d..][..d]);
                    }
                    let k_t = MatRef::transposed(&local[d..], d, n, 3 * d);
                    matmul(MatRef::rows(queries, m, d, d), k_t, scores, n, false);
                    let bias = &self.bias[head * n * n..][..n * n];
                    for ((i, row), sum) in scores.chunks_exact_mut(n).enumerate().zip(&mut *sums) {
                        let b = &bias[position(i) * n..][..n];
                        *sum = scaled_exp(row, self.scale, b);
                    }
                    // softmax(s) v = (exp(s - max) v) / sum, one division per output value.
                    let v = MatRef::rows(&local[2 * d..], n, d, 3 * d);
                    matmul(MatRef::rows(scores, m, n, n), v, attended, d, false);
                    for ((i, row), sum) in attended.chunks_exact(d).enumerate().zip(&*sums) {
                        let inv = 1.0 / sum;
                        for (o, a) in o[position(i) * d..][..d].iter_mut().zip(row) {
                            *o = a * inv;
                        }
                    }
                });
            });
    }

    /// One head's `[q, k, v]` rows of window `(wy, wx)`'s tokens into `local` (padding
    /// tokens get [`WindowAttention::pad_qkv`]).
    fn gather(
        &self,
        qkv: &[f32],
        h: usize,
        w: usize,
        (wy, wx): (usize, usize),
        head: usize,
        local: &mut [f32],
    ) {
        let (ws, d) = (self.window, self.head_dim);
        for (p, dst) in local.chunks_exact_mut(3 * d).enumerate() {
            let src = self.token_qkv(qkv, h, w, (wy * ws + p / ws, wx * ws + p % ws));
            copy_values(dst, &src[head * 3 * d..][..3 * d]);
        }
    }

    /// The qkv row of the token at `(y, x)`: the map's, or [`WindowAttention::pad_qkv`]
    /// outside it.
    fn token_qkv<'a>(
        &'a self,
        qkv: &'a [f32],
        h: usize,
        w: usize,
        (y, x): (usize, usize),
    ) -> &'a [f32] {
        let c3 = 3 * self.channels();
        if y < h && x < w {
            &qkv[(y * w + x) * c3..][..c3]
        } else {
            &self.pad_qkv
        }
    }

    /// Window-ordered blocks back to image-ordered rows (padding dropped).
    fn unpartition(&self, windowed: &[f32], h: usize, w: usize, out: &mut [f32]) {
        let (ws, d, c) = (self.window, self.head_dim, self.channels());
        let n = ws * ws;
        let (_, nw) = self.grid(h, w);
        assert_eq!(out.len(), h * w * c, "window attention: output shape");
        out.par_chunks_mut(w * c).enumerate().for_each(|(y, row)| {
            let (wy, py) = (y / ws, y % ws);
            for (x, px) in row.chunks_exact_mut(c).enumerate() {
                let (wx, pxx) = (x / ws, x % ws);
                let base = (wy * nw + wx) * self.heads;
                let p = py * ws + pxx;
                for (head, dst) in px.chunks_exact_mut(d).enumerate() {
                    copy_values(dst, &windowed[((base + head) * n + p) * d..][..d]);
                }
            }
        });
    }
}

/// Most tokens per window of the register kernel.
const SMALL_WINDOW_KEYS: usize = 64;
// The register kernel's own limit, which it defines without looking back at this file.
#[cfg(target_arch = "x86_64")]
const _: () = assert!(SMALL_WINDOW_KEYS == attention_avx512::MAX_KEYS);

/// One (window, head) in registers: `(tokens' q/k/v, bias, scale, query positions, out)`.
type SmallWindowKernel = fn(&[&[f32]], &[f32], f32, &[usize], &mut [f32]);

/// The register kernel for `head_dim`-channel heads over `n`-token windows, where it
/// applies (32 channels, at most 64 tokens) and the CPU has AVX-512F.
fn small_window_kernel(head_dim: usize, n: usize) -> Option<SmallWindowKernel> {
    #[cfg(target_arch = "x86_64")]
    if head_dim == attention_avx512::HEAD_DIM
        && n <= SMALL_WINDOW_KEYS
        && std::arch::is_x86_feature_detected!("avx512f")
    {
        return Some(|tokens, bias, scale, queries, out| {
            // SAFETY: AVX-512F was detected above.
            unsafe { attention_avx512::attend(tokens, bias, scale, queries, out) }
        });
    }
    let _ = (head_dim, n);
    None
}

/// `dst.copy_from_slice(src)`, inlined for MobileSAM's 32-channel heads (one head's q, k
/// and v together, or one of them): these per-token copies are short, and a `memcpy` call
/// for each cost more than the copy. A copy of 32 values is the most LLVM inlines (four
/// 256-bit stores); a 96-value array copy would still become a `memcpy` call.
#[inline(always)]
fn copy_values(dst: &mut [f32], src: &[f32]) {
    const BLOCK: usize = 32;
    if dst.len().is_multiple_of(BLOCK) && dst.len() == src.len() && dst.len() <= 3 * BLOCK {
        for (d, s) in dst.chunks_exact_mut(BLOCK).zip(src.chunks_exact(BLOCK)) {
            if let (Ok(d), Ok(s)) = (
                <&mut [f32; BLOCK]>::try_from(d),
                <&[f32; BLOCK]>::try_from(s),
            ) {
                *d = *s;
            }
        }
    } else {
        dst.copy_from_slice(src);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Straightforward attention over padded windows, in f64.
    fn reference(att: &WindowAttention, qkv: &[f32], h: usize, w: usize) -> Vec<f64> {
        let (ws, d, c) = (att.window, att.head_dim, att.channels());
        let n = ws * ws;
        let (nh, nw) = att.grid(h, w);
        let row = |y: usize, x: usize| -> Vec<f64> {
            let src = if y < h && x < w {
                &qkv[(y * w + x) * 3 * c..][..3 * c]
            } else {
                &att.pad_qkv[..]
            };
            src.iter().map(|&v| f64::from(v)).collect()
        };
        let mut out = vec![0.0; h * w * c];
        for wy in 0..nh {
            for wx in 0..nw {
                let tokens: Vec<(usize, usize)> = (0..n)
                    .map(|p| (wy * ws + p / ws, wx * ws + p % ws))
                    .collect();
                let rows: Vec<Vec<f64>> = tokens.iter().map(|&(y, x)| row(y, x)).collect();
                for head in 0..att.heads {
                    for (i, &(y, x)) in tokens.iter().enumerate() {
                        let mut s: Vec<f64> = (0..n)
                            .map(|j| {
                                let dot: f64 = (0..d)
                                    .map(|t| {
                                        rows[i][head * 3 * d + t] * rows[j][head * 3 * d + d + t]
                                    })
                                    .sum();
                                dot * f64::from(att.scale)
                                    + f64::from(att.bias[(head * n + i) * n + j])
                            })
                            .collect();
                        let m = s.iter().cloned().fold(f64::MIN, f64::max);
                        s.iter_mut().for_each(|v| *v = (*v - m).exp());
                        let total: f64 = s.iter().sum();
                        if y < h && x < w {
                            for t in 0..d {
                                let v: f64 = (0..n)
                                    .map(|j| s[j] / total * rows[j][head * 3 * d + 2 * d + t])
                                    .sum();
                                out[(y * w + x) * c + head * d + t] = v;
                            }
                        }
                    }
                }
            }
        }
        out
    }

    /// `att.forward` on an `h x w` map against [`reference`], to 1e-5.
    fn assert_matches_reference(att: &WindowAttention, qkv: &[f32], h: usize, w: usize) {
        let mut windowed = vec![0.0; att.windowed_len(h, w)];
        let mut out = vec![0.0; h * w * att.channels()];
        att.forward(qkv, h, w, &mut windowed, &mut out);
        for (got, want) in out.iter().zip(reference(att, qkv, h, w)) {
            assert!((f64::from(*got) - want).abs() < 1e-5, "{got} vs {want}");
        }
    }

    /// Deterministic values in [-1, 1).
    fn values(len: usize, seed: usize) -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.5 - 1.0)
            .collect()
    }

    #[test]
    fn small_windows_of_32_channel_heads_match_reference() {
        // MobileSAM's 7x7 windows of 32-channel heads (the register kernel where the CPU
        // has AVX-512F), over a map that pads windows on both sides; and 8x8 (64 tokens).
        for (ws, h, w) in [(7, 10, 9), (8, 9, 16)] {
            let (heads, d) = (2, 32);
            let (c, n) = (heads * d, ws * ws);
            let att = WindowAttention {
                heads,
                head_dim: d,
                window: ws,
                scale: 0.3,
                bias: values(heads * n * n, 1),
                pad_qkv: values(3 * c, 2),
            };
            assert_matches_reference(&att, &values(h * w * 3 * c, 3), h, w);
        }
    }

    #[test]
    fn register_kernel_is_picked_for_7x7_windows_where_the_cpu_has_avx512() {
        #[cfg(target_arch = "x86_64")]
        let avx512 = std::arch::is_x86_feature_detected!("avx512f");
        #[cfg(not(target_arch = "x86_64"))]
        let avx512 = false;
        assert_eq!(small_window_kernel(32, 49).is_some(), avx512);
        assert!(small_window_kernel(32, 196).is_none());
        assert!(small_window_kernel(4, 9).is_none());
    }

    #[test]
    fn matches_reference_with_padding() {
        let (heads, d, ws, h, w) = (2, 4, 3, 5, 4);
        let (c, n) = (heads * d, ws * ws);
        let att = WindowAttention {
            heads,
            head_dim: d,
            window: ws,
            scale: 0.5,
            bias: (0..heads * n * n)
                .map(|i| ((i * 7) % 5) as f32 * 0.1)
                .collect(),
            pad_qkv: (0..3 * c).map(|i| i as f32 * 0.05 - 0.3).collect(),
        };
        let qkv: Vec<f32> = (0..h * w * 3 * c)
            .map(|i| ((i * 11) % 23) as f32 * 0.1 - 1.1)
            .collect();
        assert_matches_reference(&att, &qkv, h, w);
    }
}
