//! Element-wise math for the CPU kernels: exponential, GELU (erf form) and softmax (the
//! epilogues of matrix-product rows are in [`super::epilogue`]). Branch-free, so that each loop vectorizes
//! (AVX2+FMA or NEON, picked at run time).
//!
//! GELU follows PyTorch's vectorized CPU kernel: `x * 0.5 * (1 + erf(x / sqrt(2)))` with
//! erf from Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7, 5e-7 in f32), the same
//! approximation as ATen's `Vectorized<float>::erf`.

pub(crate) const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split in two for an exact range reduction (Cephes).
pub(crate) const LN2_HI: f32 = 0.693_359_4;
/// The low part of ln 2 (see [`LN2_HI`]).
pub(crate) const LN2_LO: f32 = -2.121_944_4e-4;
/// Cephes' polynomial for `(e^r - 1 - r) / r^2` on the reduced range, highest power first.
pub(crate) const EXP_POLYNOMIAL: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5,
];
/// Adding this to an integral `n` in [-126, 127] puts `n + 127` in the low mantissa bits
/// (see [`one_plus_times_pow2`]).
pub(crate) const POW2_MAGIC: f32 = 12_582_912.0 + 127.0;

/// `e^x` with about 1 ulp error for `x` in [-87, 88]; smaller inputs give about 1e-38
/// (callers only use it where that is as good as 0), larger ones saturate near 2^127.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let n = x.mul_add(LOG2E, 0.5).floor();
    let r = (-n).mul_add(LN2_HI, x);
    let r = (-n).mul_add(LN2_LO, r);
    let p = EXP_POLYNOMIAL[1..]
        .iter()
        .fold(EXP_POLYNOMIAL[0], |p, &c| p.mul_add(r, c));
    let p = p.mul_add(r * r, r);
    one_plus_times_pow2(p, n)
}

/// `(p + 1) * 2^n` for an integral `n` in [-126, 127], the last step of the exps.
#[inline(always)]
fn one_plus_times_pow2(p: f32, n: f32) -> f32 {
    // 2^n through the exponent bits. Adding 1.5 * 2^23 + 127 puts n + 127 in the low
    // mantissa bits (exactly, below 2^24), and the shift moves them into the exponent while
    // the constant's own bits fall off the top; unlike `n as i32`, this vectorizes.
    let scale = f32::from_bits((n + POW2_MAGIC).to_bits() << 23);
    // (p + 1) * scale in one rounding: scale is a power of two, so this equals the
    // rounded sum times scale, bit for bit.
    p.mul_add(scale, scale)
}

/// erf(x), Abramowitz & Stegun 7.1.26, as ATen's vectorized kernel.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / 0.327_591_1f32.mul_add(a, 1.0);
    let r = 1.061_405_4f32.mul_add(t, -1.453_152);
    let r = r.mul_add(t, 1.421_413_8);
    let r = r.mul_add(t, -0.284_496_74);
    let r = r.mul_add(t, 0.254_829_6);
    let e = -exp(-(x * x));
    let y = (e * t).mul_add(r, 1.0);
    y.copysign(x)
}

/// `e^x` for `x <= 0` only, for GELU's `exp(-z^2)`: a cheaper variant of [`exp`] (no
/// upper clamp, a one-constant range reduction, one polynomial term fewer; relative error
/// below 5e-7, against about 1.5e-7 for [`exp`]). In GELU that is far below the error of
/// the erf approximation itself (absolute 1.5e-7, relative 1e-3 and more in the tail
/// where `t * r * e` is small), so GELU stays as accurate as the direct formula (see the
/// tests).
#[inline(always)]
fn exp_nonpositive(x: f32) -> f32 {
    let x = x.max(-87.0);
    let n = x.mul_add(LOG2E, 0.5).floor();
    let r = (-n).mul_add(std::f32::consts::LN_2, x);
    let p = EXP_POLYNOMIAL[2..]
        .iter()
        .fold(EXP_POLYNOMIAL[1], |p, &c| p.mul_add(r, c));
    let p = p.mul_add(r * r, r);
    one_plus_times_pow2(p, n)
}

/// GELU, erf form: `x * 0.5 * (1 + erf(x / sqrt(2)))` with the erf approximation of
/// [`erf`], rearranged for fewer operations. erf is odd, so `x * erf(z) = |x| * erf(|z|)`,
/// and erf(|z|) = `1 - t * r * e` (see [`erf`]); hence GELU = `max(x, 0) - |x| * t *
/// (r / 2) * e`, which also avoids the cancellation in `1 + erf` for negative `x`. The
/// polynomial's coefficients are halved (exactly) to fold in the `/ 2`.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    let z = x * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / 0.327_591_1f32.mul_add(z.abs(), 1.0);
    let half_r = 0.530_702_7f32.mul_add(t, -0.726_576);
    let half_r = half_r.mul_add(t, 0.710_706_9);
    let half_r = half_r.mul_add(t, -0.142_248_37);
    let half_r = half_r.mul_add(t, 0.127_414_8);
    let e = exp_nonpositive(-(z * z));
    (-x.abs()).mul_add((t * half_r) * e, x.max(0.0))
}

multiversioned! {
    /// GELU of every value, in place.
    pub fn gelu_inplace(values: &mut [f32]) {
        for v in values.iter_mut() {
            *v = gelu(*v);
        }
    }
}

multiversioned! {
    /// For a block of score rows (`width` columns each), scaled by `scale`: each column's
    /// maximum into `max`, then every score replaced by `exp(score * scale - max)` and each
    /// column's sum of those into `sum` (the per-block part of a softmax over rows).
    pub fn exp_columns(scores: &mut [f32], width: usize, scale: f32, max: &mut [f32], sum: &mut [f32]) {
        max.fill(f32::NEG_INFINITY);
        sum.fill(0.0);
        for row in scores.chunks_exact(width) {
            for (m, s) in max.iter_mut().zip(row) {
                *m = m.max(s * scale);
            }
        }
        for row in scores.chunks_exact_mut(width) {
            for ((s, m), total) in row.iter_mut().zip(max.iter()).zip(sum.iter_mut()) {
                *s = exp(*s * scale - m);
                *total += *s;
            }
        }
    }
}

multiversioned! {
    /// Softmax of `x * scale + bias` within each run of `group` values of every row of
    /// `scores` (rows of `bias.len()` values; `bias` is per column).
    pub fn grouped_softmax(scores: &mut [f32], group: usize, scale: f32, bias: &[f32]) {
        let width = bias.len();
        if width == 0 || group == 0 {
            return;
        }
        for row in scores.chunks_exact_mut(width) {
            for (v, b) in row.iter_mut().zip(bias) {
                *v = v.mul_add(scale, *b);
            }
            for g in row.chunks_exact_mut(group) {
                let max = g.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v));
                let mut total = 0.0;
                for v in g.iter_mut() {
                    *v = exp(*v - max);
                    total += *v;
                }
                let inv = 1.0 / total;
                for v in g.iter_mut() {
                    *v *= inv;
                }
            }
        }
    }
}

multiversioned! {
    /// Softmax of `row * scale + bias` (bias of the same length), in place.
    pub fn scaled_softmax(row: &mut [f32], scale: f32, bias: Option<&[f32]>) {
        match bias {
            Some(bias) => {
                for (v, b) in row.iter_mut().zip(bias) {
                    *v = v.mul_add(scale, *b);
                }
            }
            None => {
                for v in row.iter_mut() {
                    *v *= scale;
                }
            }
        }
        let max = max_value(row);
        let sum = exp_shifted_sum::<8>(row, max);
        let inv = 1.0 / sum;
        for v in row.iter_mut() {
            *v *= inv;
        }
    }
}

multiversioned! {
    /// The numerators of the softmax of `row * scale + bias`, in place (`exp(v - max)`), in two
    /// passes instead of four: the bias joins the pass that finds the maximum. Returns their
    /// sum, by which the caller divides whatever it computes from them (for attention, the
    /// weighted sum of values: a division per output value instead of per score).
    pub fn scaled_exp(row: &mut [f32], scale: f32, bias: &[f32]) -> f32 {
        let mut max_lanes = [f32::NEG_INFINITY; 16];
        let mut chunks = row.chunks_exact_mut(16);
        let mut bias_chunks = bias.chunks_exact(16);
        for (chunk, b) in (&mut chunks).zip(&mut bias_chunks) {
            for ((v, b), m) in chunk.iter_mut().zip(b).zip(max_lanes.iter_mut()) {
                *v = v.mul_add(scale, *b);
                *m = m.max(*v);
            }
        }
        let mut max = max_lanes.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        for (v, b) in chunks
            .into_remainder()
            .iter_mut()
            .zip(bias_chunks.remainder())
        {
            *v = v.mul_add(scale, *b);
            max = max.max(*v);
        }
        exp_shifted_sum::<16>(row, max)
    }
}

/// `v = exp(v - max)` for every value of `row`, in place; returns their sum, accumulated in
/// `LANES` interleaved partial sums (so the loop vectorizes) plus the remainder.
#[inline(always)]
fn exp_shifted_sum<const LANES: usize>(row: &mut [f32], max: f32) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for (lane, v) in lanes.iter_mut().zip(chunk.iter_mut()) {
            *v = exp(*v - max);
            *lane += *v;
        }
    }
    let mut sum = 0.0f32;
    for v in chunks.into_remainder() {
        *v = exp(*v - max);
        sum += *v;
    }
    lanes.iter().sum::<f32>() + sum
}

#[inline(always)]
fn max_value(row: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let mut chunks = row.chunks_exact(8);
    for chunk in &mut chunks {
        for (lane, v) in lanes.iter_mut().zip(chunk) {
            *lane = lane.max(*v);
        }
    }
    chunks
        .remainder()
        .iter()
        .chain(&lanes)
        .fold(f32::NEG_INFINITY, |m, v| m.max(*v))
}

/// Sum with eight interleaved partial sums (vectorizes; deterministic for a given length).
#[inline(always)]
pub fn sum(values: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let mut chunks = values.chunks_exact(8);
    for chunk in &mut chunks {
        for (lane, v) in lanes.iter_mut().zip(chunk) {
            *lane += v;
        }
    }
    let tail: f32 = chunks.remainder().iter().sum();
    lanes.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    fn erf_f64(x: f64) -> f64 {
        // Abramowitz & Stegun 7.1.26 needs a reference: integrate exp(-t^2) numerically.
        let n = 20_000;
        let h = x / n as f64;
        let mut s = 0.0;
        for i in 0..n {
            let t = (i as f64 + 0.5) * h;
            s += (-t * t).exp();
        }
        s * h * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn exp_is_accurate() {
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = f64::from(x).exp();
            let got = f64::from(exp(x));
            assert!(
                ((got - want) / want).abs() < 3e-7,
                "exp({x}) = {got}, want {want}"
            );
            x += 0.173;
        }
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-1000.0) < 1e-37);
    }

    #[test]
    fn exp_nonpositive_is_accurate() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x <= 0.0 {
            let want = f64::from(x).exp();
            worst = worst.max(((f64::from(exp_nonpositive(x)) - want) / want).abs());
            x += 0.000_913;
        }
        println!("exp_nonpositive worst relative error {worst:e}");
        assert!(worst < 5e-7, "{worst}");
    }

    #[test]
    fn erf_and_gelu_are_accurate() {
        let mut x = -6.0f32;
        while x < 6.0 {
            let want = erf_f64(f64::from(x));
            assert!(
                (f64::from(erf(x)) - want).abs() < 5e-7,
                "erf({x}) = {} want {want}",
                erf(x)
            );
            let g = f64::from(x) * 0.5 * (1.0 + erf_f64(f64::from(x) / std::f64::consts::SQRT_2));
            let mut v = [x];
            gelu_inplace(&mut v);
            assert!(
                (f64::from(v[0]) - g).abs() < 5e-7 * (1.0 + f64::from(x).abs()),
                "gelu({x}) = {} want {g}",
                v[0]
            );
            x += 0.0137;
        }
    }

    #[test]
    fn gelu_is_as_accurate_as_the_direct_formula() {
        // The rearranged GELU against `x * 0.5 * (1 + erf(x / sqrt(2)))` with the same erf,
        // both against the exact value: the error (absolute, relative to |GELU| + 1e-7)
        // stays at the direct formula's level.
        let (mut worst_new, mut worst_direct, mut worst_gap) = (0.0f64, 0.0f64, 0.0f64);
        let mut x = -9.0f32;
        while x < 9.0 {
            let xd = f64::from(x);
            let exact = xd * 0.5 * (1.0 + erf_f64(xd / std::f64::consts::SQRT_2));
            let direct = x * 0.5 * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
            let got = gelu(x);
            let scale = exact.abs() + 1e-7;
            worst_new = worst_new.max((f64::from(got) - exact).abs() / scale);
            worst_direct = worst_direct.max((f64::from(direct) - exact).abs() / scale);
            worst_gap = worst_gap.max(f64::from((got - direct).abs()) / scale);
            x += 0.0037;
        }
        println!(
            "worst error: rearranged {worst_new:e}, direct {worst_direct:e}, gap {worst_gap:e}"
        );
        assert!(worst_new <= worst_direct, "{worst_new} vs {worst_direct}");
    }

    #[test]
    fn softmax_sums_to_one() {
        let mut row: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin() * 10.0).collect();
        let bias: Vec<f32> = (0..37).map(|i| i as f32 * 0.01).collect();
        let reference: Vec<f64> = {
            let z: Vec<f64> = row
                .iter()
                .zip(&bias)
                .map(|(v, b)| f64::from(*v) * 0.5 + f64::from(*b))
                .collect();
            let m = z.iter().cloned().fold(f64::MIN, f64::max);
            let e: Vec<f64> = z.iter().map(|v| (v - m).exp()).collect();
            let s: f64 = e.iter().sum();
            e.iter().map(|v| v / s).collect()
        };
        scaled_softmax(&mut row, 0.5, Some(&bias));
        for (got, want) in row.iter().zip(&reference) {
            assert!((f64::from(*got) - want).abs() < 1e-6);
        }
    }

    #[test]
    fn scaled_exp_gives_the_softmax_numerators() {
        // 37 values: two 16-value chunks and a remainder.
        let row: Vec<f32> = (0..37).map(|i| (i as f32 * 0.9).sin() * 4.0).collect();
        let bias: Vec<f32> = (0..37).map(|i| (i % 5) as f32 * 0.3).collect();
        let mut softmax = row.clone();
        scaled_softmax(&mut softmax, 0.7, Some(&bias));
        let mut numerators = row;
        let sum = scaled_exp(&mut numerators, 0.7, &bias);
        for (n, p) in numerators.iter().zip(&softmax) {
            assert!((n / sum - p).abs() < 1e-7, "{} vs {p}", n / sum);
        }
    }

    #[test]
    fn grouped_softmax_matches_per_group() {
        let bias: Vec<f32> = (0..12).map(|i| i as f32 * 0.1).collect();
        let scores: Vec<f32> = (0..36).map(|i| (i as f32 * 0.7).cos() * 3.0).collect();
        let mut grouped = scores.clone();
        grouped_softmax(&mut grouped, 4, 0.25, &bias);
        let mut expected = scores;
        for row in expected.chunks_exact_mut(12) {
            for (g, b) in row.chunks_exact_mut(4).zip(bias.chunks_exact(4)) {
                scaled_softmax(g, 0.25, Some(b));
            }
        }
        for (a, b) in grouped.iter().zip(&expected) {
            assert!((a - b).abs() < 1e-6);
        }
    }
}
