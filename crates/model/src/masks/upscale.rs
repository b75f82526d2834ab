//! The upscale of a low-resolution logit map to the original image: [`upscale_logits`] is
//! the reference `Sam.postprocess_masks` for one map (PyTorch's bilinear `F.interpolate`,
//! `align_corners=False`, float32, bit for bit); [`upscale_to_mask`] and
//! [`upscale_to_scored_mask`] threshold in the same pass, with the stability score.

use mobilesam_kernels::multiversioned;

use super::rle::{BinaryMask, MASK_THRESHOLD};
use crate::error::{ModelError, Result};
use crate::image::IMAGE_SIZE;
use crate::prompt::LOW_RES_MASK_SIZE;

/// Upscales one `256 x 256` low-resolution logit map (row-major) to the original image, as
/// the reference `Sam.postprocess_masks`: bilinear to `IMAGE_SIZE x IMAGE_SIZE`, crop to
/// `input_size`, bilinear to `original_size` (both (height, width)). Returns the
/// full-resolution logits, row-major; threshold them with [`BinaryMask::from_logits`].
///
/// The arithmetic is PyTorch's CPU `upsample_bilinear2d` (`align_corners=False`, no
/// scale factor, the generic kernel used for one-channel maps) in float32: per axis
/// `scale = in / out`, `src = max(scale * (dst + 0.5) - 0.5, 0)`, `i0 = floor(src)`,
/// `i1 = i0 + (i0 < in - 1)`, `l1 = src - i0`, `l0 = 1 - l1`; then
/// `top = fma(a, l0w, b * l1w)`, `bottom = fma(c, l0w, d * l1w)`,
/// `value = fma(top, l0h, bottom * l1h)`, the fused multiply-adds that x86-64 builds of
/// PyTorch (AVX2 / AVX-512 kernels) execute; this reproduces them bit for bit. Outputs
/// with `height + width <= 128` follow PyTorch's other ("channels last") kernel, as
/// PyTorch does for them.
pub fn upscale_logits(
    low_res: &[f32],
    input_size: (usize, usize),
    original_size: (usize, usize),
) -> Result<Vec<f32>> {
    check_upscale(low_res, input_size, original_size)?;
    let (in_h, in_w) = input_size;
    let (out_h, out_w) = original_size;
    const LOW: usize = LOW_RES_MASK_SIZE;
    // Only the cropped part of the IMAGE_SIZE x IMAGE_SIZE map is computed.
    let padded = resize_bilinear(
        low_res,
        LOW,
        &AxisWeights::new(LOW, IMAGE_SIZE, in_h),
        &AxisWeights::new(LOW, IMAGE_SIZE, in_w),
    );
    let rows = AxisWeights::new(in_h, out_h, out_h);
    let cols = AxisWeights::new(in_w, out_w, out_w);
    if out_h + out_w <= SMALL_OUTPUT {
        Ok(resize_bilinear_small(&padded, in_w, &rows, &cols))
    } else {
        Ok(resize_bilinear(&padded, in_w, &rows, &cols))
    }
}

/// [`upscale_logits`] thresholded ([`BinaryMask::from_logits`]), without the
/// full-resolution logits: output rows are computed in parallel bands, each from the two
/// rows it blends, with the same arithmetic, so the mask is identical.
pub fn upscale_to_mask(
    low_res: &[f32],
    input_size: (usize, usize),
    original_size: (usize, usize),
) -> Result<BinaryMask> {
    upscale_to_scored_mask(low_res, input_size, original_size).map(|(mask, _)| mask)
}

/// [`upscale_to_mask`], plus the mask's stability score: the reference's
/// `calculate_stability_score` with offset [`STABILITY_SCORE_OFFSET`], counted on the
/// same full-resolution logits in the same pass.
pub fn upscale_to_scored_mask(
    low_res: &[f32],
    input_size: (usize, usize),
    original_size: (usize, usize),
) -> Result<(BinaryMask, f32)> {
    check_upscale(low_res, input_size, original_size)?;
    let (in_h, in_w) = input_size;
    let (out_h, out_w) = original_size;
    if out_h + out_w <= SMALL_OUTPUT {
        let logits = upscale_logits(low_res, input_size, original_size)?;
        let stability =
            StabilityCounts::of(&logits, MASK_THRESHOLD, STABILITY_SCORE_OFFSET).score();
        return Ok((BinaryMask::from_logits(&logits, out_h, out_w), stability));
    }
    const LOW: usize = LOW_RES_MASK_SIZE;
    let steps = UpscaleSteps {
        rows_a: AxisWeights::new(LOW, IMAGE_SIZE, in_h),
        rows_b: AxisWeights::new(in_h, out_h, out_h),
        cols_b: AxisWeights::new(in_w, out_w, out_w),
        // The first pass's horizontal half, for the low-resolution rows it reads.
        horizontal_a: horizontal_rows(low_res, LOW, &AxisWeights::new(LOW, IMAGE_SIZE, in_w)),
        in_w,
    };
    let mut data = vec![0u8; out_h * out_w];
    let band = out_h
        .div_ceil(rayon::current_num_threads().max(1) * 4)
        .max(1);
    use rayon::prelude::*;
    let counts = data
        .par_chunks_mut(band * out_w)
        .enumerate()
        .map(|(b, rows)| mask_band(&steps, b * band, rows, out_w))
        .reduce(StabilityCounts::default, StabilityCounts::add);
    let mask = BinaryMask {
        height: out_h,
        width: out_w,
        data,
    };
    Ok((mask, counts.score()))
}

/// SAM 2's `SAM2Transforms.postprocess_masks` for one map: the `256 x 256` logits straight
/// to `original_size` (height, width), bilinear with `align_corners=False`, no crop (SAM 2's
/// input has no padding), with the arithmetic of [`upscale_logits`]'s passes.
pub fn upscale_stretched_logits(
    low_res: &[f32],
    original_size: (usize, usize),
) -> Result<Vec<f32>> {
    check_upscale(low_res, (IMAGE_SIZE, IMAGE_SIZE), original_size)?;
    const LOW: usize = LOW_RES_MASK_SIZE;
    let (out_h, out_w) = original_size;
    let rows = AxisWeights::new(LOW, out_h, out_h);
    let cols = AxisWeights::new(LOW, out_w, out_w);
    if out_h + out_w <= SMALL_OUTPUT {
        Ok(resize_bilinear_small(low_res, LOW, &rows, &cols))
    } else {
        Ok(resize_bilinear(low_res, LOW, &rows, &cols))
    }
}

/// [`upscale_stretched_logits`] thresholded, with the stability score of
/// [`upscale_to_scored_mask`].
pub fn upscale_stretched_to_scored_mask(
    low_res: &[f32],
    original_size: (usize, usize),
) -> Result<(BinaryMask, f32)> {
    let logits = upscale_stretched_logits(low_res, original_size)?;
    let stability = StabilityCounts::of(&logits, MASK_THRESHOLD, STABILITY_SCORE_OFFSET).score();
    Ok((
        BinaryMask::from_logits(&logits, original_size.0, original_size.1),
        stability,
    ))
}

/// The logit offset of the stability score reported with every mask (the reference
/// `SamAutomaticMaskGenerator`'s default `stability_score_offset`).
pub const STABILITY_SCORE_OFFSET: f32 = 1.0;

/// Pixels above `threshold + offset` (`high`) and above `threshold - offset` (`low`): the
/// stability score is their ratio. Shared by every mask's score and AMG's filter
/// ([`crate::amg::stability_score`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct StabilityCounts {
    high: u64,
    low: u64,
}

impl StabilityCounts {
    /// The counts of full-resolution `logits`.
    pub(crate) fn of(logits: &[f32], threshold: f32, offset: f32) -> Self {
        let mut counts = Self::default();
        // Chunks keep each row count within its u32.
        for chunk in logits.chunks(1 << 24) {
            counts.count_row(chunk, threshold, offset);
        }
        counts
    }

    /// Adds one row of full-resolution logits.
    #[inline(always)]
    fn count_row(&mut self, logits: &[f32], threshold: f32, offset: f32) {
        let (hi, lo) = (threshold + offset, threshold - offset);
        let (mut high, mut low) = (0u32, 0u32);
        for &v in logits {
            high += u32::from(v > hi);
            low += u32::from(v > lo);
        }
        self.high += u64::from(high);
        self.low += u64::from(low);
    }

    fn add(self, other: Self) -> Self {
        Self {
            high: self.high + other.high,
            low: self.low + other.low,
        }
    }

    /// `high / low`, the IoU of the two thresholded masks (the high one lies inside the
    /// low one), as the reference divides: NaN when no pixel is above the low threshold.
    pub(crate) fn ratio(self) -> f32 {
        self.high as f32 / self.low as f32
    }

    /// [`Self::ratio`], with 0 for the reference's NaN (no pixel above the low threshold).
    fn score(self) -> f32 {
        if self.low == 0 {
            0.0
        } else {
            self.ratio()
        }
    }
}

/// What [`mask_band`] needs: both passes' weights and the first pass's horizontal rows.
struct UpscaleSteps {
    rows_a: AxisWeights,
    rows_b: AxisWeights,
    cols_b: AxisWeights,
    horizontal_a: Vec<f32>,
    in_w: usize,
}

/// Every needed input row interpolated along x (`src` rows of `in_w` values).
fn horizontal_rows(src: &[f32], in_w: usize, cols: &AxisWeights) -> Vec<f32> {
    let out_w = cols.i0.len();
    let mut out = vec![0.0f32; (src.len() / in_w) * out_w];
    horizontal_into(src, in_w, cols, &mut out);
    out
}

multiversioned! {
    fn horizontal_into(src: &[f32], in_w: usize, cols: &AxisWeights, out: &mut [f32]) {
        let out_w = cols.i0.len();
        for (src_row, h_row) in src.chunks_exact(in_w).zip(out.chunks_exact_mut(out_w)) {
            for (x, h) in h_row.iter_mut().enumerate() {
                *h = src_row[cols.i0[x]].mul_add(cols.l0[x], src_row[cols.i1[x]] * cols.l1[x]);
            }
        }
    }
}

multiversioned! {
    /// Output rows `y0..` of the mask: for each, the two second-pass rows it blends, each made
    /// from one first-pass row (two horizontal rows blended, then interpolated along x).
    /// Returns the band's stability counts.
    fn mask_band(steps: &UpscaleSteps, y0: usize, out: &mut [u8], out_w: usize) -> StabilityCounts {
        let in_w = steps.in_w;
        let mut counts = StabilityCounts::default();
        let mut values = vec![0.0f32; out_w];
        let mut padded = vec![0.0f32; in_w];
        // Second-pass rows kept from the previous output row: (index, values).
        let mut slots: [(usize, Vec<f32>); 2] = [
            (usize::MAX, vec![0.0; out_w]),
            (usize::MAX, vec![0.0; out_w]),
        ];
        for (i, out_row) in out.chunks_exact_mut(out_w).enumerate() {
            let y = y0 + i;
            let (r0, r1) = (steps.rows_b.i0[y], steps.rows_b.i1[y]);
            if slots[0].0 != r0 {
                if slots[1].0 == r0 {
                    slots.swap(0, 1);
                } else {
                    second_pass_row(steps, r0, &mut padded, &mut slots[0]);
                }
            }
            if r1 != r0 && slots[1].0 != r1 {
                second_pass_row(steps, r1, &mut padded, &mut slots[1]);
            }
            let top = &slots[0].1;
            let bottom = if r1 == r0 { &slots[0].1 } else { &slots[1].1 };
            let (l0, l1) = (steps.rows_b.l0[y], steps.rows_b.l1[y]);
            for ((v, &t), &b) in values.iter_mut().zip(top).zip(bottom) {
                *v = t.mul_add(l0, b * l1);
            }
            for (o, &v) in out_row.iter_mut().zip(&values) {
                *o = u8::from(v > MASK_THRESHOLD);
            }
            counts.count_row(&values, MASK_THRESHOLD, STABILITY_SCORE_OFFSET);
        }
        counts
    }
}

/// Row `r` of the second pass's horizontal half: first-pass row `r` (two horizontal rows
/// blended), then interpolated along x. Inlined into [`mask_band`].
#[inline(always)]
fn second_pass_row(
    steps: &UpscaleSteps,
    r: usize,
    padded: &mut [f32],
    dst: &mut (usize, Vec<f32>),
) {
    let in_w = steps.in_w;
    let a = &steps.horizontal_a;
    let top = &a[steps.rows_a.i0[r] * in_w..][..in_w];
    let bottom = &a[steps.rows_a.i1[r] * in_w..][..in_w];
    let (l0, l1) = (steps.rows_a.l0[r], steps.rows_a.l1[r]);
    for ((p, &t), &b) in padded.iter_mut().zip(top).zip(bottom) {
        *p = t.mul_add(l0, b * l1);
    }
    dst.0 = r;
    let cols = &steps.cols_b;
    for (x, h) in dst.1.iter_mut().enumerate() {
        *h = padded[cols.i0[x]].mul_add(cols.l0[x], padded[cols.i1[x]] * cols.l1[x]);
    }
}

/// The checks shared by [`upscale_logits`] and [`upscale_to_mask`].
fn check_upscale(
    low_res: &[f32],
    input_size: (usize, usize),
    original_size: (usize, usize),
) -> Result<()> {
    const LOW: usize = LOW_RES_MASK_SIZE;
    if low_res.len() != LOW * LOW {
        return Err(ModelError::InvalidMask(format!(
            "low-resolution logits have {} values, expected {LOW}x{LOW}",
            low_res.len()
        )));
    }
    let (in_h, in_w) = input_size;
    if in_h == 0 || in_w == 0 || in_h > IMAGE_SIZE || in_w > IMAGE_SIZE {
        return Err(ModelError::InvalidMask(format!(
            "input size {in_h}x{in_w} is not within 1..={IMAGE_SIZE}"
        )));
    }
    let (out_h, out_w) = original_size;
    if out_h == 0 || out_w == 0 || out_h.checked_mul(out_w).is_none() {
        return Err(ModelError::InvalidMask(format!(
            "original size {out_h}x{out_w} is empty or too large"
        )));
    }
    Ok(())
}

/// How many leading rows and columns of a low-resolution logit map the full-resolution
/// mask of an input of `input_size` (height, width) reads: the crop to the unpadded input
/// comes before the upscale, so for a landscape photo about the bottom 40% of the map is
/// never used.
pub fn low_res_extent(input_size: (usize, usize)) -> (usize, usize) {
    let extent = |n: usize| {
        let n = n.min(IMAGE_SIZE);
        AxisWeights::new(LOW_RES_MASK_SIZE, IMAGE_SIZE, n)
            .i1
            .iter()
            .max()
            .map_or(0, |m| m + 1)
    };
    (extent(input_size.0), extent(input_size.1))
}

/// PyTorch resizes one-channel maps whose output height + width is at most this with its
/// "channels last" kernel (`_use_vectorized_kernel_cond_2d`), which rounds differently.
const SMALL_OUTPUT: usize = 128;

/// PyTorch's per-axis bilinear source indices and weights (`compute_indices_weights_linear`).
struct AxisWeights {
    i0: Vec<usize>,
    i1: Vec<usize>,
    l0: Vec<f32>,
    l1: Vec<f32>,
}

impl AxisWeights {
    /// Weights for the first `count` of `out_size` outputs resampled from `in_size` inputs.
    fn new(in_size: usize, out_size: usize, count: usize) -> Self {
        let mut w = Self {
            i0: Vec::with_capacity(count),
            i1: Vec::with_capacity(count),
            l0: Vec::with_capacity(count),
            l1: Vec::with_capacity(count),
        };
        // `area_pixel_compute_scale`: `(float)input_size / output_size`.
        let scale = in_size as f32 / out_size as f32;
        for dst in 0..count {
            if in_size == out_size {
                w.i0.push(dst);
                w.i1.push(dst);
                w.l0.push(1.0);
                w.l1.push(0.0);
                continue;
            }
            // `area_pixel_compute_source_index`, then `guard_index_and_lambda`.
            let src = (scale * (dst as f32 + 0.5) - 0.5).max(0.0);
            let i0 = (src.floor() as usize).min(in_size - 1);
            let l1 = (src - i0 as f32).clamp(0.0, 1.0);
            w.i0.push(i0);
            w.i1.push(if i0 < in_size - 1 { i0 + 1 } else { i0 });
            w.l0.push(1.0 - l1);
            w.l1.push(l1);
        }
        w
    }
}

multiversioned! {
    /// Separable bilinear resize of a row-major map with rows of `in_w` values: each needed
    /// input row is interpolated along x once, then output rows blend two of those rows. The
    /// operations, their order and their fusing are PyTorch's, so the results are identical.
    fn resize_bilinear(src: &[f32], in_w: usize, rows: &AxisWeights, cols: &AxisWeights) -> Vec<f32> {
        let out_w = cols.i0.len();
        let needed_rows = rows.i1.iter().copied().max().map_or(0, |m| m + 1);
        let mut horizontal = vec![0.0f32; needed_rows * out_w];
        for (src_row, h_row) in src
            .chunks_exact(in_w)
            .zip(horizontal.chunks_exact_mut(out_w))
        {
            for (x, h) in h_row.iter_mut().enumerate() {
                *h = src_row[cols.i0[x]].mul_add(cols.l0[x], src_row[cols.i1[x]] * cols.l1[x]);
            }
        }
        let mut out = vec![0.0f32; rows.i0.len() * out_w];
        for (y, out_row) in out.chunks_exact_mut(out_w).enumerate() {
            let top = &horizontal[rows.i0[y] * out_w..][..out_w];
            let bottom = &horizontal[rows.i1[y] * out_w..][..out_w];
            let (l0, l1) = (rows.l0[y], rows.l1[y]);
            for ((o, &t), &b) in out_row.iter_mut().zip(top).zip(bottom) {
                *o = t.mul_add(l0, b * l1);
            }
        }
        out
    }
}

multiversioned! {
    /// Bilinear resize as PyTorch's `cpu_upsample_linear_channels_last` computes one channel:
    /// four corner weights `w_hw = l_h * l_w`, then
    /// `fma(d, w11, fma(c, w10, fma(a, w00, b * w01)))`.
    fn resize_bilinear_small(
        src: &[f32],
        in_w: usize,
        rows: &AxisWeights,
        cols: &AxisWeights,
    ) -> Vec<f32> {
        let mut out = Vec::with_capacity(rows.i0.len() * cols.i0.len());
        for y in 0..rows.i0.len() {
            let top = &src[rows.i0[y] * in_w..][..in_w];
            let bottom = &src[rows.i1[y] * in_w..][..in_w];
            for x in 0..cols.i0.len() {
                let (x0, x1) = (cols.i0[x], cols.i1[x]);
                let w00 = rows.l0[y] * cols.l0[x];
                let w01 = rows.l0[y] * cols.l1[x];
                let w10 = rows.l1[y] * cols.l0[x];
                let w11 = rows.l1[y] * cols.l1[x];
                let acc = top[x0].mul_add(w00, top[x1] * w01);
                let acc = bottom[x0].mul_add(w10, acc);
                out.push(bottom[x1].mul_add(w11, acc));
            }
        }
        out
    }
}

#[cfg(test)]
mod streamed_tests {
    use super::*;

    #[test]
    fn streamed_mask_equals_thresholded_logits() {
        let low: Vec<f32> = (0..LOW_RES_MASK_SIZE * LOW_RES_MASK_SIZE)
            .map(|i| ((i % 256) as f32 * 0.05).sin() + ((i / 256) as f32 * 0.031).cos() - 0.3)
            .collect();
        for (input, original) in [
            ((576, 1024), (720, 1280)),
            ((1024, 683), (3000, 2000)),
            ((1024, 1024), (1024, 1024)),
            ((1024, 640), (50, 31)),
            ((300, 1024), (301, 1027)),
        ] {
            let logits = upscale_logits(&low, input, original).expect("upscales");
            let want = BinaryMask::from_logits(&logits, original.0, original.1);
            let got = upscale_to_mask(&low, input, original).expect("upscales");
            assert!(got == want, "{input:?} -> {original:?}: masks differ");
            // The stability score counted in the same pass is the reference formula's
            // (`amg::stability_score` computes it so, as SamAutomaticMaskGenerator) on the
            // full logits.
            let (scored, stability) =
                upscale_to_scored_mask(&low, input, original).expect("upscales");
            assert!(
                scored == want,
                "{input:?} -> {original:?}: scored mask differs"
            );
            let reference = StabilityCounts::of(&logits, MASK_THRESHOLD, 1.0).ratio();
            assert!(
                stability > 0.0 && stability < 1.0,
                "{input:?} -> {original:?}: {stability} is a real ratio"
            );
            assert_eq!(stability, reference, "{input:?} -> {original:?}");
        }
    }

    #[test]
    fn stability_score_of_an_empty_map_is_zero() {
        let low = vec![-5.0f32; LOW_RES_MASK_SIZE * LOW_RES_MASK_SIZE];
        for original in [(720, 1280), (50, 31)] {
            let (mask, stability) =
                upscale_to_scored_mask(&low, (576, 1024), original).expect("upscales");
            assert_eq!((mask.area(), stability), (0, 0.0), "{original:?}");
        }
        let certain = vec![5.0f32; LOW_RES_MASK_SIZE * LOW_RES_MASK_SIZE];
        let (_, stability) =
            upscale_to_scored_mask(&certain, (576, 1024), (720, 1280)).expect("up");
        assert_eq!(stability, 1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{load_json, lowbias32, num, pair};
    use super::*;
    use crate::masks::rle::Rle;

    fn rle_of(v: &serde_json::Value) -> Rle {
        serde_json::from_value(v.clone()).expect("rle")
    }

    /// The logit map of make_preprocess_fixtures.py `synth_logits`.
    fn synth_logits(seed: u32) -> Vec<f32> {
        let mut out = Vec::with_capacity(256 * 256);
        for y in 0..256i64 {
            for x in 0..256i64 {
                let r1 = (x - 100).pow(2) + (y - 140).pow(2);
                let r2 = (x - 190).pow(2) + (y - 60).pow(2);
                let b1 = (2500 - r1) as f32 / 300.0;
                let b2 = (1600 - r2) as f32 / 200.0;
                let n = lowbias32((y * 256 + x) as u32 ^ seed.wrapping_mul(0x9e37_79b9));
                let noise = ((n % 2001) as f32 - 1000.0) / 4000.0;
                let v = if x < 24 && y < 24 {
                    (((x / 3 + y / 3) % 2) * 2 - 1) as f32
                } else {
                    b1.max(b2) + noise
                };
                out.push(v);
            }
        }
        out
    }

    fn checksum(values: impl Iterator<Item = u64>) -> u64 {
        const K1: u64 = 0x9e37_79b9_7f4a_7c15;
        const K2: u64 = 0xff51_afd7_ed55_8ccd;
        values.enumerate().fold(0u64, |acc, (i, v)| {
            acc.wrapping_add((v ^ (i as u64).wrapping_mul(K1)).wrapping_mul(K2))
        })
    }

    #[test]
    fn upscale_matches_torch() {
        let cases = load_json("upscale_cases.json");
        for case in cases["cases"].as_array().expect("cases") {
            let seed = num(&case["seed"]) as u32;
            let input_size = pair(&case["input_size"]);
            let (h, w) = pair(&case["original_size"]);
            let got = upscale_logits(&synth_logits(seed), input_size, (h, w)).expect("upscale");
            assert_eq!(got.len(), h * w);
            let mut max_err = 0.0f32;
            for s in case["samples"].as_array().expect("samples") {
                let (y, x) = (num(&s[0]), num(&s[1]));
                let want = f32::from_bits(num(&s[2]) as u32);
                max_err = max_err.max((got[y * w + x] - want).abs());
            }
            let mask = BinaryMask::from_logits(&got, h, w);
            let want = BinaryMask::from_rle(&rle_of(&case["mask_rle"])).expect("rle");
            let differing = mask
                .data
                .iter()
                .zip(&want.data)
                .filter(|(a, b)| a != b)
                .count();
            let sum: u64 = case["checksum"]
                .as_str()
                .expect("sum")
                .parse()
                .expect("u64");
            let bit_exact = checksum(got.iter().map(|v| u64::from(v.to_bits()))) == sum;
            println!(
                "{input_size:?} -> {h}x{w}: sampled max |err| {max_err:e}, \
                 {differing} mask pixels differ, bit-exact {bit_exact}"
            );
            assert_eq!(max_err, 0.0, "{h}x{w}");
            assert_eq!(differing, 0, "{h}x{w}");
            assert!(bit_exact, "{h}x{w}: checksum of all logits");
            assert_eq!(mask.area(), case["mask_area"].as_u64().expect("area"));
            assert_eq!(mask.to_rle(), rle_of(&case["mask_rle"]));
        }
    }

    #[test]
    fn upscale_identity_and_errors() {
        let low: Vec<f32> = (0..256 * 256).map(|i| (i % 97) as f32 - 48.0).collect();
        // 256 -> 1024 -> crop 1024 -> 1024 copies the second stage.
        let full = upscale_logits(&low, (1024, 1024), (1024, 1024)).expect("upscale");
        let quarter = upscale_logits(&low, (1024, 1024), (256, 256)).expect("upscale");
        assert_eq!(full.len(), 1024 * 1024);
        assert_eq!(quarter.len(), 256 * 256);
        assert!(upscale_logits(&low[1..], (1024, 1024), (10, 10)).is_err());
        assert!(upscale_logits(&low, (0, 1024), (10, 10)).is_err());
        assert!(upscale_logits(&low, (1025, 1024), (10, 10)).is_err());
        assert!(upscale_logits(&low, (1024, 1024), (0, 10)).is_err());
    }
}
