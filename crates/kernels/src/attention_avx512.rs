//! One (window, head) of TinyViT's window attention for 32-channel heads and windows of at
//! most 64 tokens (MobileSAM's 7x7 windows), in AVX-512 registers.
//!
//! Through the general path (two `gemm` calls and a softmax pass per window and head) these
//! small products ran at about a quarter of the FMA peak: 49 x 49 x 32 is too small for a
//! packed GEMM. Here four query rows at a time keep their 64 scores in sixteen registers:
//! `q k^T` is a broadcast of each query value against a row of the transposed keys, the
//! scale, bias, max, exp and sum follow on the registers, and the unnormalized weights
//! multiply the values (a broadcast per key against the key's 32-value row), divided by
//! the sum at the end. Key lanes past the window's tokens are masked out of the softmax.

use std::arch::x86_64::*;

use super::math::{EXP_POLYNOMIAL, LN2_HI, LN2_LO, LOG2E, POW2_MAGIC};

/// Channels per head this kernel handles.
pub const HEAD_DIM: usize = 32;
/// Most keys (tokens per window) this kernel handles: four blocks of 16 lanes.
pub const MAX_KEYS: usize = 64;
/// Query rows computed together.
const ROWS: usize = 4;
/// Score registers per query row.
const BLOCKS: usize = MAX_KEYS / 16;

/// Attention of one window and head: `tokens` are the window's tokens' `[q, k, v]` for the
/// head (`3 * HEAD_DIM` values from each slice's start, read in place); for each query
/// position `p` in `queries`,
/// `out[p * HEAD_DIM..][..HEAD_DIM]` gets `softmax(q_p k^T * scale + bias[p]) v`.
///
/// # Safety
/// The CPU must have AVX-512F.
///
/// # Panics
/// When `n` is 0 or above [`MAX_KEYS`], or a slice is too short.
#[target_feature(enable = "avx512f")]
pub unsafe fn attend(
    tokens: &[&[f32]],
    bias: &[f32],
    scale: f32,
    queries: &[usize],
    out: &mut [f32],
) {
    let n = tokens.len();
    assert!(
        (1..=MAX_KEYS).contains(&n)
            && tokens.iter().all(|t| t.len() >= 3 * HEAD_DIM)
            && bias.len() >= n * n
            && queries.iter().all(|&p| p < n)
            && out.len() >= n * HEAD_DIM,
        "window attention kernel: shapes"
    );
    // Keys transposed: row t holds channel t of every key; lanes past n stay zero.
    let mut keys_t = [0.0f32; HEAD_DIM * MAX_KEYS];
    for (j, token) in tokens.iter().enumerate() {
        for (t, &k) in token[HEAD_DIM..2 * HEAD_DIM].iter().enumerate() {
            keys_t[t * MAX_KEYS + j] = k;
        }
    }
    // Lanes of each score register that hold a key.
    let valid: [__mmask16; BLOCKS] = std::array::from_fn(|b| {
        let lanes = n.saturating_sub(b * 16).min(16);
        ((1u32 << lanes) - 1) as __mmask16
    });
    let mut groups = queries.chunks_exact(ROWS);
    for group in &mut groups {
        let group: &[usize; ROWS] = group.try_into().expect("chunks of ROWS");
        rows::<ROWS>(tokens, bias, scale, group, &keys_t, &valid, out);
    }
    for &p in groups.remainder() {
        rows::<1>(tokens, bias, scale, &[p], &keys_t, &valid, out);
    }
}

/// `R` query rows of [`attend`].
#[inline]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
fn rows<const R: usize>(
    tokens: &[&[f32]],
    bias: &[f32],
    scale: f32,
    positions: &[usize; R],
    keys_t: &[f32; HEAD_DIM * MAX_KEYS],
    valid: &[__mmask16; BLOCKS],
    out: &mut [f32],
) {
    let n = tokens.len();
    let queries: [&[f32]; R] = positions.map(|p| &tokens[p][..HEAD_DIM]);
    // Scores: q k^T, one broadcast query value against a transposed key row.
    let mut s = [[_mm512_setzero_ps(); BLOCKS]; R];
    for t in 0..HEAD_DIM {
        let row = &keys_t[t * MAX_KEYS..][..MAX_KEYS];
        let mut k = [_mm512_setzero_ps(); BLOCKS];
        for (b, k) in k.iter_mut().enumerate() {
            // SAFETY: the row holds MAX_KEYS = 16 * BLOCKS values.
            *k = unsafe { _mm512_loadu_ps(row.as_ptr().add(b * 16)) };
        }
        for (r, q) in queries.iter().enumerate() {
            let q = _mm512_set1_ps(q[t]);
            for b in 0..BLOCKS {
                s[r][b] = _mm512_fmadd_ps(q, k[b], s[r][b]);
            }
        }
    }
    // Softmax numerators and sums, on the registers.
    let mut weights = [[0.0f32; MAX_KEYS]; R];
    let mut inverse_sums = [0.0f32; R];
    let scale = _mm512_set1_ps(scale);
    let minus_infinity = _mm512_set1_ps(f32::NEG_INFINITY);
    for r in 0..R {
        let bias_row = &bias[positions[r] * n..][..n];
        let mut max = minus_infinity;
        for b in 0..BLOCKS {
            // SAFETY: the mask covers only lanes below n, inside the bias row.
            let bias = unsafe { _mm512_maskz_loadu_ps(valid[b], bias_row.as_ptr().add(b * 16)) };
            let v = _mm512_fmadd_ps(s[r][b], scale, bias);
            s[r][b] = _mm512_mask_blend_ps(valid[b], minus_infinity, v);
            max = _mm512_max_ps(max, s[r][b]);
        }
        let max = _mm512_set1_ps(_mm512_reduce_max_ps(max));
        let mut sum = _mm512_setzero_ps();
        for b in 0..BLOCKS {
            let e = _mm512_maskz_mov_ps(valid[b], exp(_mm512_sub_ps(s[r][b], max)));
            sum = _mm512_add_ps(sum, e);
            // SAFETY: the row holds MAX_KEYS values.
            unsafe { _mm512_storeu_ps(weights[r].as_mut_ptr().add(b * 16), e) };
        }
        inverse_sums[r] = 1.0 / _mm512_reduce_add_ps(sum);
    }
    // Weighted values: a broadcast weight per key against the key's value row.
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    for (j, token) in tokens.iter().enumerate() {
        let v = &token[2 * HEAD_DIM..][..HEAD_DIM];
        // SAFETY: the value row holds 32 values.
        let v = unsafe {
            [
                _mm512_loadu_ps(v.as_ptr()),
                _mm512_loadu_ps(v.as_ptr().add(16)),
            ]
        };
        for r in 0..R {
            let w = _mm512_set1_ps(weights[r][j]);
            acc[r][0] = _mm512_fmadd_ps(w, v[0], acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(w, v[1], acc[r][1]);
        }
    }
    for r in 0..R {
        let o = &mut out[positions[r] * HEAD_DIM..][..HEAD_DIM];
        let inv = _mm512_set1_ps(inverse_sums[r]);
        // SAFETY: the output row holds 32 values.
        unsafe {
            _mm512_storeu_ps(o.as_mut_ptr(), _mm512_mul_ps(acc[r][0], inv));
            _mm512_storeu_ps(o.as_mut_ptr().add(16), _mm512_mul_ps(acc[r][1], inv));
        }
    }
}

/// `e^x` per lane, the same steps as [`super::math::exp`] (Cephes' range reduction and
/// polynomial, about 1 ulp), so that both paths give the same numerators.
#[inline]
#[target_feature(enable = "avx512f")]
fn exp(x: __m512) -> __m512 {
    let x = _mm512_min_ps(
        _mm512_max_ps(x, _mm512_set1_ps(-87.0)),
        _mm512_set1_ps(88.0),
    );
    let n = _mm512_fmadd_ps(x, _mm512_set1_ps(LOG2E), _mm512_set1_ps(0.5));
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC }>(n);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), x);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
    let mut p = _mm512_set1_ps(EXP_POLYNOMIAL[0]);
    for &c in &EXP_POLYNOMIAL[1..] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    let p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r);
    // 2^n through the exponent bits, as in `one_plus_times_pow2`.
    let magic = _mm512_add_ps(n, _mm512_set1_ps(POW2_MAGIC));
    let scale = _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_castps_si512(magic)));
    _mm512_fmadd_ps(p, scale, scale)
}
