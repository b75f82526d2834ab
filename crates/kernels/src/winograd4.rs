//! Dense 3x3 convolution (stride 1, zero padding 1) by Winograd's F(4x4, 3x3) on a
//! channels-last map: every 4x4 block of outputs comes from a 6x6 block of inputs through
//! 36 channel products instead of 144, 4 times fewer multiplications than im2col and 1.8
//! times fewer than F(2x2, 3x3) ([`super::winograd`]), with fewer transformed values per
//! output to write and read back. Its rounding error is larger (the transforms scale
//! values by up to 8 and 1/24), so the encoder, whose parity is held to 1e-6, keeps
//! F(2x2, 3x3); the YOLO detector, held to 1e-3 in confidence, uses this one.
//!
//! Each task takes a band of output rows and works through its tiles a chunk at a time
//! (so that the transformed tiles stay in cache): it transforms the chunk's input tiles
//! (`B^T d B`, 16 channels at a time), multiplies each of the 36 transformed planes by its
//! transformed weight (`G g G^T`, computed once in f64), and transforms back (`A^T m A`)
//! with bias and the activation.

use rayon::prelude::*;

use super::buffers::with_scratch;
use super::epilogue::{apply_epilogue, Activation, Epilogue};
use super::matmul::{matmul, MatRef};
use super::winograd::{channels_supported, lanes, transform_weights, LANES};

/// Values of a transformed tile.
const POSITIONS: usize = 36;

/// Bytes of transformed inputs and products (36 x (in + out) channels per tile) that a
/// task keeps at once: a chunk of tiles this size stays within the core's cache.
const CHUNK_BYTES: usize = 512 << 10;

/// Tiles per chunk for these channel counts.
fn chunk_tiles(ci: usize, co: usize) -> usize {
    (CHUNK_BYTES / (POSITIONS * (ci + co) * std::mem::size_of::<f32>())).clamp(8, 64)
}

/// `G`, the filter transform.
const G: [[f64; 3]; 6] = [
    [0.25, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// Rows of output tiles per task: the most rows (up to 4, so that each product has tiles
/// enough) that leave the busiest thread no more rows than any smaller count would.
fn tile_rows_per_task(tile_rows: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    let busiest = |per_task: usize| tile_rows.div_ceil(per_task).div_ceil(threads) * per_task;
    (1..=4).rev().min_by_key(|&p| busiest(p)).unwrap_or(1)
}

/// A 3x3 convolution, stride 1, zero padding 1, in F(4x4, 3x3) Winograd form.
#[derive(Debug, Clone)]
pub struct Winograd4x4 {
    /// 36 matrices `(in_ch, out_ch)`, one per position of the 6x6 transformed tile.
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
    in_ch: usize,
    out_ch: usize,
}

impl Winograd4x4 {
    /// From PyTorch's `(out_ch, in_ch, 3, 3)` weight.
    ///
    /// # Panics
    /// When the weight's length does not match or the channels are not supported.
    pub fn from_torch(weight: &[f32], bias: Option<Vec<f32>>, in_ch: usize, out_ch: usize) -> Self {
        assert_eq!(weight.len(), out_ch * in_ch * 9, "conv weight shape");
        assert!(
            Self::supports(in_ch, out_ch),
            "winograd conv: channels must be multiples of {LANES}"
        );
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
        let tiles_across = w.div_ceil(4);
        let epilogue = Epilogue {
            bias: self.bias.as_deref(),
            activation,
        };
        let per_task = tile_rows_per_task(h.div_ceil(4));
        let band_rows = 4 * per_task;
        let zeros = vec![0.0; ci];
        out.par_chunks_mut(band_rows * w * co)
            .enumerate()
            .for_each(|(band, rows)| {
                crate::yield_point::reached();
                let ty0 = band * per_task;
                let band_tiles = (rows.len() / (w * co)).div_ceil(4) * tiles_across;
                let chunk = chunk_tiles(ci, co).min(band_tiles);
                with_scratch(POSITIONS * chunk * (ci + co), |scratch| {
                    let (v, m) = scratch.split_at_mut(POSITIONS * chunk * ci);
                    for first in (0..band_tiles).step_by(chunk) {
                        let tiles = chunk.min(band_tiles - first);
                        for t in 0..tiles {
                            let (ty, tx) = ((first + t) / tiles_across, (first + t) % tiles_across);
                            let corner = (4 * (ty0 + ty), 4 * tx);
                            input_tile(x, (h, w, ci), &zeros, corner, (t, tiles), v);
                        }
                        for k in 0..POSITIONS {
                            matmul(
                                MatRef::rows(&v[k * tiles * ci..], tiles, ci, ci),
                                MatRef::rows(&self.weight[k * ci * co..], ci, co, co),
                                &mut m[k * tiles * co..],
                                co,
                                false,
                            );
                        }
                        for t in 0..tiles {
                            let (ty, tx) = ((first + t) / tiles_across, (first + t) % tiles_across);
                            output_tile(m, (t, tiles, co), (4 * ty, 4 * tx), w, rows);
                        }
                    }
                });
                apply_epilogue(rows, co, epilogue, None);
            });
    }
}

/// `B^T d` along one axis: six vectors in, six out.
#[inline(always)]
fn input_transform(d: [&[f32; LANES]; 6]) -> [[f32; LANES]; 6] {
    let mut t = [[0.0f32; LANES]; 6];
    for l in 0..LANES {
        let (d0, d1, d2, d3, d4, d5) = (d[0][l], d[1][l], d[2][l], d[3][l], d[4][l], d[5][l]);
        t[0][l] = 4.0f32.mul_add(d0, (-5.0f32).mul_add(d2, d4));
        t[1][l] = (-4.0f32).mul_add(d1 + d2, d3 + d4);
        t[2][l] = 4.0f32.mul_add(d1 - d2, d4 - d3);
        t[3][l] = 2.0f32.mul_add(d3 - d1, d4 - d2);
        t[4][l] = 2.0f32.mul_add(d1 - d3, d4 - d2);
        t[5][l] = 4.0f32.mul_add(d1, (-5.0f32).mul_add(d3, d5));
    }
    t
}

multiversioned! {
    /// `B^T d B` of the 6x6 input block with top-left corner `(y0 - 1, x0 - 1)` (zeros
    /// outside the map), every channel: position `k` of the transformed tile goes to row `t`
    /// of plane `k` of `v` (planes of `tiles` rows of `ci` values).
    fn input_tile(
        x: &[f32],
        (h, w, ci): (usize, usize, usize),
        zeros: &[f32],
        (y0, x0): (usize, usize),
        (t, tiles): (usize, usize),
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
        let d: [[&[f32]; 6]; 6] = std::array::from_fn(|r| std::array::from_fn(|s| pixel(r, s)));
        for c in (0..ci).step_by(LANES) {
            // Columns first: B^T d, one column of six pixels at a time (`columns[s][r]`).
            let columns: [[[f32; LANES]; 6]; 6] = std::array::from_fn(|s| {
                input_transform(std::array::from_fn(|r| lanes(d[r][s], c)))
            });
            // Then rows: (B^T d) B.
            let rows_of_columns: [[&[f32; LANES]; 6]; 6] =
                std::array::from_fn(|r| std::array::from_fn(|s| &columns[s][r]));
            for (r, row) in rows_of_columns.into_iter().enumerate() {
                let out = input_transform(row);
                for (s, value) in out.iter().enumerate() {
                    v[((r * 6 + s) * tiles + t) * ci + c..][..LANES].copy_from_slice(value);
                }
            }
        }
    }
}

/// `A^T m` along one axis: six vectors in, four out.
#[inline(always)]
fn output_transform(m: [&[f32; LANES]; 6]) -> [[f32; LANES]; 4] {
    let mut y = [[0.0f32; LANES]; 4];
    for l in 0..LANES {
        let (m0, m1, m2, m3, m4, m5) = (m[0][l], m[1][l], m[2][l], m[3][l], m[4][l], m[5][l]);
        let (p12, d12, p34, d34) = (m1 + m2, m1 - m2, m3 + m4, m3 - m4);
        y[0][l] = m0 + p12 + p34;
        y[1][l] = 2.0f32.mul_add(d34, d12);
        y[2][l] = 4.0f32.mul_add(p34, p12);
        y[3][l] = 8.0f32.mul_add(d34, d12) + m5;
    }
    y
}

multiversioned! {
    /// `A^T m A` of tile `t` (row `t` of the 36 planes of `m`, `co` values each) into the
    /// 4x4 output block at `(y0, x0)` of the band `rows` (rows of `w * co` values; the parts
    /// past the band's or the map's edge are dropped).
    fn output_tile(
        m: &[f32],
        (t, tiles, co): (usize, usize, usize),
        (y0, x0): (usize, usize),
        w: usize,
        rows: &mut [f32],
    ) {
        let band_height = rows.len() / (w * co);
        for c in (0..co).step_by(LANES) {
            let p = |k: usize| lanes(m, (k * tiles + t) * co + c);
            // Columns first: A^T m (`columns[s][dy]`), then rows.
            let columns: [[[f32; LANES]; 4]; 6] = std::array::from_fn(|s| {
                output_transform(std::array::from_fn(|r| p(r * 6 + s)))
            });
            let rows_of_columns: [[&[f32; LANES]; 6]; 4] =
                std::array::from_fn(|dy| std::array::from_fn(|s| &columns[s][dy]));
            for (dy, row) in rows_of_columns.into_iter().enumerate() {
                let y = y0 + dy;
                if y >= band_height {
                    break;
                }
                let out = output_transform(row);
                for (dx, value) in out.iter().enumerate() {
                    let x = x0 + dx;
                    if x >= w {
                        break;
                    }
                    rows[(y * w + x) * co + c..][..LANES].copy_from_slice(value);
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
        // Odd sizes: partial tiles on the right and bottom edges, short last bands, and
        // more tiles than one chunk.
        for (h, w) in [(9, 7), (4, 4), (1, 3), (13, 10), (30, 41)] {
            let (ci, co) = (16, 32);
            let x: Vec<f32> = (0..h * w * ci)
                .map(|i| ((i * 13) % 17) as f32 * 0.1 - 0.8)
                .collect();
            let weight: Vec<f32> = (0..co * ci * 9)
                .map(|i| ((i * 5) % 7) as f32 * 0.3 - 1.0)
                .collect();
            let bias: Vec<f32> = (0..co).map(|i| i as f32 * 0.5).collect();
            for activation in [Activation::Identity, Activation::Silu] {
                let direct = Conv3x3::from_torch(&weight, Some(bias.clone()), ci, co, 1);
                let winograd = Winograd4x4::from_torch(&weight, Some(bias.clone()), ci, co);
                let mut want = vec![0.0; h * w * co];
                let mut got = vec![0.0; h * w * co];
                direct.forward(&x, h, w, &mut want, activation);
                winograd.forward(&x, h, w, &mut got, activation);
                for (a, b) in got.iter().zip(&want) {
                    assert!(
                        (a - b).abs() < 2e-4 * b.abs().max(1.0),
                        "{h}x{w}: {a} vs {b}"
                    );
                }
            }
        }
    }
}
