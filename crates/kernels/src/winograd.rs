//! Dense 3x3 convolution (stride 1, zero padding 1) by Winograd's F(2x2, 3x3) on a
//! channels-last map: every 2x2 block of outputs comes from a 4x4 block of inputs through
//! 16 channel products instead of 36, so the wide 256 -> 256 convolution of the neck does
//! 2.25 times fewer multiplications than im2col. Each task takes a band of output rows:
//! it transforms its input tiles (`B^T d B`, channel vectors at a time), multiplies each of
//! the 16 transformed planes by its transformed weight (`G g G^T`, computed once in f64),
//! and transforms back (`A^T m A`) with bias and GELU.

use rayon::prelude::*;

use super::buffers::with_scratch;
use super::epilogue::{apply_epilogue, Activation, Epilogue};
use super::matmul::{matmul, MatRef};

/// Rows of output tiles per task: large bands share each packing of the transformed
/// weights over more tiles; at least two bands per thread keep the threads busy.
fn tile_rows_per_task(tile_rows: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    tile_rows.div_ceil(2 * threads).clamp(2, 8)
}

/// A 3x3 convolution, stride 1, zero padding 1, in Winograd form.
#[derive(Debug, Clone)]
pub struct Winograd3x3 {
    /// 16 matrices `(in_ch, out_ch)`, one per position of the 4x4 transformed tile.
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
    in_ch: usize,
    out_ch: usize,
}

impl Winograd3x3 {
    /// From PyTorch's `(out_ch, in_ch, 3, 3)` weight.
    ///
    /// # Panics
    /// When the weight's length does not match.
    pub fn from_torch(weight: &[f32], bias: Option<Vec<f32>>, in_ch: usize, out_ch: usize) -> Self {
        assert_eq!(weight.len(), out_ch * in_ch * 9, "conv weight shape");
        assert!(
            Self::supports(in_ch, out_ch),
            "winograd conv: channels must be multiples of {LANES}"
        );
        const G: [[f64; 3]; 4] = [
            [1.0, 0.0, 0.0],
            [0.5, 0.5, 0.5],
            [0.5, -0.5, 0.5],
            [0.0, 0.0, 1.0],
        ];
        let transformed = transform_weights(weight, &G, in_ch, out_ch);
        Self {
            weight: transformed,
            bias,
            in_ch,
            out_ch,
        }
    }

    /// Whether these channel counts are supported (multiples of 16).
    pub fn supports(in_ch: usize, out_ch: usize) -> bool {
        channels_supported(in_ch, out_ch)
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.out_ch
    }

    /// `x` (h, w, in_ch) -> `out` (h, w, out_ch), `activation` last.
    ///
    /// # Panics
    /// When the lengths do not match.
    pub fn forward(&self, x: &[f32], h: usize, w: usize, out: &mut [f32], activation: Activation) {
        let (ci, co) = (self.in_ch, self.out_ch);
        assert!(
            x.len() == h * w * ci && out.len() == h * w * co,
            "winograd conv: shapes"
        );
        if h == 0 || w == 0 {
            return;
        }
        let tiles_across = w.div_ceil(2);
        let epilogue = Epilogue {
            bias: self.bias.as_deref(),
            activation,
        };
        let per_task = tile_rows_per_task(h.div_ceil(2));
        let band_rows = 2 * per_task;
        let zeros = vec![0.0; ci];
        out.par_chunks_mut(band_rows * w * co)
            .enumerate()
            .for_each(|(band, rows)| {
                crate::yield_point::reached();
                let ty0 = band * per_task;
                let tile_rows = (rows.len() / (w * co)).div_ceil(2);
                let tiles = tile_rows * tiles_across;
                with_scratch(16 * tiles * (ci + co), |scratch| {
                    let (v, m) = scratch.split_at_mut(16 * tiles * ci);
                    for t in 0..tiles {
                        let (ty, tx) = (ty0 + t / tiles_across, t % tiles_across);
                        input_tile(x, (h, w, ci), &zeros, 2 * ty, 2 * tx, t, tiles, v);
                    }
                    for k in 0..16 {
                        matmul(
                            MatRef::rows(&v[k * tiles * ci..], tiles, ci, ci),
                            MatRef::rows(&self.weight[k * ci * co..], ci, co, co),
                            &mut m[k * tiles * co..],
                            co,
                            false,
                        );
                    }
                    for t in 0..tiles {
                        let (ty, tx) = (t / tiles_across, t % tiles_across);
                        output_tile(m, co, t, tiles, 2 * ty, 2 * tx, w, rows);
                    }
                });
                apply_epilogue(rows, co, epilogue, None);
            });
    }
}

/// Whether both channel counts are positive multiples of [`LANES`] (both Winograd forms).
pub(super) fn channels_supported(in_ch: usize, out_ch: usize) -> bool {
    in_ch.is_multiple_of(LANES) && out_ch.is_multiple_of(LANES) && in_ch > 0 && out_ch > 0
}

/// `G g G^T` (in f64) of every `(out, in)` 3x3 filter of PyTorch's `(out_ch, in_ch, 3, 3)`
/// weight, for a filter transform `G` of `N` rows: `N * N` matrices `(in_ch, out_ch)`, one
/// per position of the transformed tile.
pub(super) fn transform_weights<const N: usize>(
    weight: &[f32],
    g_rows: &[[f64; 3]; N],
    in_ch: usize,
    out_ch: usize,
) -> Vec<f32> {
    let mut transformed = vec![0.0f32; N * N * in_ch * out_ch];
    for o in 0..out_ch {
        for i in 0..in_ch {
            let g = &weight[(o * in_ch + i) * 9..][..9];
            for (a, ga) in g_rows.iter().enumerate() {
                for (b, gb) in g_rows.iter().enumerate() {
                    let mut u = 0.0f64;
                    for (ky, &wa) in ga.iter().enumerate() {
                        for (kx, &wb) in gb.iter().enumerate() {
                            u += wa * f64::from(g[ky * 3 + kx]) * wb;
                        }
                    }
                    transformed[((a * N + b) * in_ch + i) * out_ch + o] = u as f32;
                }
            }
        }
    }
    transformed
}

/// Channels per vector step of the tile transforms (both Winograd forms).
pub(super) const LANES: usize = 16;

/// `LANES` values of `s` from `at` on, as an array.
#[inline(always)]
pub(super) fn lanes(s: &[f32], at: usize) -> &[f32; LANES] {
    s[at..at + LANES]
        .try_into()
        .expect("a slice of LANES values converts to an array")
}

multiversioned! {
    /// `B^T d B` of the 4x4 input block with top-left corner `(y0 - 1, x0 - 1)` (zeros
    /// outside the map), every channel: position `k` of the transformed tile goes to row `t`
    /// of plane `k` of `v` (planes of `tiles` rows of `ci` values).
    #[allow(clippy::too_many_arguments)]
    fn input_tile(
        x: &[f32],
        (h, w, ci): (usize, usize, usize),
        zeros: &[f32],
        y0: usize,
        x0: usize,
        t: usize,
        tiles: usize,
        v: &mut [f32],
    ) {
        let pixel = |r: usize, s: usize| -> &[f32] {
            let iy = (y0 + r).checked_sub(1).filter(|&y| y < h);
            let ix = (x0 + s).checked_sub(1).filter(|&x| x < w);
            match (iy, ix) {
                (Some(iy), Some(ix)) => &x[(iy * w + ix) * ci..][..ci],
                _ => &zeros[..ci],
            }
        };
        let d: [[&[f32]; 4]; 4] = std::array::from_fn(|r| std::array::from_fn(|s| pixel(r, s)));
        for c in (0..ci).step_by(LANES) {
            let d: [[&[f32; LANES]; 4]; 4] = d.map(|row| row.map(|p| lanes(p, c)));
            // Rows: B^T d.
            let mut bd = [[[0.0f32; LANES]; 4]; 4];
            for s in 0..4 {
                for l in 0..LANES {
                    let (d0, d1, d2, d3) = (d[0][s][l], d[1][s][l], d[2][s][l], d[3][s][l]);
                    bd[0][s][l] = d0 - d2;
                    bd[1][s][l] = d1 + d2;
                    bd[2][s][l] = d2 - d1;
                    bd[3][s][l] = d1 - d3;
                }
            }
            // Columns: (B^T d) B.
            for (r, row) in bd.iter().enumerate() {
                for s in 0..4 {
                    let dst = &mut v[((r * 4 + s) * tiles + t) * ci + c..][..LANES];
                    for (l, out) in dst.iter_mut().enumerate() {
                        *out = match s {
                            0 => row[0][l] - row[2][l],
                            1 => row[1][l] + row[2][l],
                            2 => row[2][l] - row[1][l],
                            _ => row[1][l] - row[3][l],
                        };
                    }
                }
            }
        }
    }
}

multiversioned! {
    /// `A^T m A` of tile `t` (row `t` of the 16 planes of `m`, `co` values each) into the
    /// 2x2 output block at `(y0, x0)` of the band `rows` (rows of `w * co` values; the parts
    /// past the band's or the map's edge are dropped).
    #[allow(clippy::too_many_arguments)]
    fn output_tile(
        m: &[f32],
        co: usize,
        t: usize,
        tiles: usize,
        y0: usize,
        x0: usize,
        w: usize,
        rows: &mut [f32],
    ) {
        let band_height = rows.len() / (w * co);
        for c in (0..co).step_by(LANES) {
            let p: [&[f32; LANES]; 16] = std::array::from_fn(|k| lanes(m, (k * tiles + t) * co + c));
            // A^T m: two rows of four.
            let mut am = [[[0.0f32; LANES]; 4]; 2];
            for s in 0..4 {
                for l in 0..LANES {
                    let (m0, m1, m2, m3) = (p[s][l], p[4 + s][l], p[8 + s][l], p[12 + s][l]);
                    am[0][s][l] = m0 + m1 + m2;
                    am[1][s][l] = m1 - m2 - m3;
                }
            }
            for (dy, row) in am.iter().enumerate() {
                let y = y0 + dy;
                if y >= band_height {
                    break;
                }
                for dx in 0..2 {
                    let x = x0 + dx;
                    if x >= w {
                        break;
                    }
                    let dst = &mut rows[(y * w + x) * co + c..][..LANES];
                    for (l, out) in dst.iter_mut().enumerate() {
                        *out = if dx == 0 {
                            row[0][l] + row[1][l] + row[2][l]
                        } else {
                            row[1][l] - row[2][l] - row[3][l]
                        };
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::conv::Conv3x3;
    use super::*;

    #[test]
    fn matches_im2col_convolution() {
        // Odd sizes: partial tiles on the right and bottom edges, and a short last band.
        for (h, w) in [(9, 7), (4, 4), (1, 3), (13, 10)] {
            let (ci, co) = (16, 32);
            let x: Vec<f32> = (0..h * w * ci)
                .map(|i| ((i * 13) % 17) as f32 * 0.1 - 0.8)
                .collect();
            let weight: Vec<f32> = (0..co * ci * 9)
                .map(|i| ((i * 5) % 7) as f32 * 0.3 - 1.0)
                .collect();
            let bias: Vec<f32> = (0..co).map(|i| i as f32 * 0.5).collect();
            for activation in [Activation::Identity, Activation::Gelu, Activation::Silu] {
                let direct = Conv3x3::from_torch(&weight, Some(bias.clone()), ci, co, 1);
                let winograd = Winograd3x3::from_torch(&weight, Some(bias.clone()), ci, co);
                let mut want = vec![0.0; h * w * co];
                let mut got = vec![0.0; h * w * co];
                direct.forward(&x, h, w, &mut want, activation);
                winograd.forward(&x, h, w, &mut got, activation);
                for (a, b) in got.iter().zip(&want) {
                    assert!((a - b).abs() < 1e-4, "{h}x{w}: {a} vs {b}");
                }
            }
        }
    }
}
