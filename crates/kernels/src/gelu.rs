//! GELU over a slice, by the fastest kernel the CPU has.
//!
//! The function to compute is PyTorch's: `x * 0.5 * (1 + erf(x / sqrt 2))` with ATen's
//! vectorized erf (Abramowitz & Stegun 7.1.26). Written as `max(x, 0) - |x| * q(|x|)`,
//! where `q(a) = (1 - erf_AS(a / sqrt 2)) / 2` is smooth and falls from 1/2 to 0.
//!
//! - With AVX-512, `q` comes from a table: 32 intervals of width 1/4 on [0, 8), one
//!   degree-4 polynomial each (interpolated at Chebyshev nodes, in f64, at first use), and
//!   each lane picks its interval's coefficients with a two-register permute
//!   (`vpermt2ps`). That is 17 instructions per 16 values, against about 27 for the formula
//!   (an exp, a division and two polynomials), and the table reproduces `q` to 3e-8
//!   (absolute, times `|x|`), below f32 rounding. Beyond 8, `|x| * q(|x|)` is below 1e-14
//!   and the last interval's polynomial stands in for it.
//! - Otherwise, [`math::gelu`](super::math::gelu) (the formula) in a loop compiled for
//!   AVX2+FMA or NEON.

// The table is built and used on x86-64 only.
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]

#[cfg(target_arch = "x86_64")]
use std::sync::OnceLock;

use super::math::gelu_inplace;

/// Intervals of the table.
const INTERVALS: usize = 32;
/// Intervals per unit of `|x|`.
const PER_UNIT: f64 = 4.0;
/// Polynomial coefficients per interval.
const TERMS: usize = 5;

/// Per-interval polynomial coefficients of `q`, lowest power first, in the local variable
/// `u = 4 |x| - interval` in [0, 1).
#[derive(Debug)]
struct Table {
    /// `coefficients[j][k]`: coefficient of `u^j` in interval `k`.
    coefficients: [[f32; INTERVALS]; TERMS],
}

/// GELU of every value, in place.
pub fn gelu_slice(values: &mut [f32]) {
    if !fused_add_gelu(values, None, None) {
        gelu_inplace(values);
    }
}

/// `gelu(row + bias + residual)` in one pass (either addend optional), where the CPU has
/// the table kernel; returns false, with `row` untouched, elsewhere.
///
/// # Panics
/// When an addend is shorter than `row`.
pub fn fused_add_gelu(row: &mut [f32], bias: Option<&[f32]>, residual: Option<&[f32]>) -> bool {
    #[cfg(target_arch = "x86_64")]
    if let Some(table) = avx512_table() {
        let len = row.len();
        let (bias, residual) = (bias.map(|b| &b[..len]), residual.map(|r| &r[..len]));
        // SAFETY: the table exists only where the CPU has AVX-512F.
        unsafe { avx512::add_gelu(row, [bias, residual], table) };
        return true;
    }
    let _ = (row, bias, residual);
    false
}

/// The table, where the CPU has AVX-512F (checked once).
#[cfg(target_arch = "x86_64")]
fn avx512_table() -> Option<&'static Table> {
    static TABLE: OnceLock<Option<Table>> = OnceLock::new();
    TABLE
        .get_or_init(|| std::arch::is_x86_feature_detected!("avx512f").then(Table::new))
        .as_ref()
}

/// `(1 - erf(z)) / 2` at `z = a / sqrt 2` with erf from Abramowitz & Stegun 7.1.26, in f64:
/// the function ATen's vectorized GELU computes.
fn half_erfc_as(a: f64) -> f64 {
    const P: f64 = 0.327_591_1;
    const A: [f64; 5] = [
        0.254_829_592,
        -0.284_496_736,
        1.421_413_741,
        -1.453_152_027,
        1.061_405_429,
    ];
    let z = a / std::f64::consts::SQRT_2;
    let t = 1.0 / P.mul_add(z, 1.0);
    let r = A.iter().rev().fold(0.0f64, |r, &c| r.mul_add(t, c));
    0.5 * t * r * (-z * z).exp()
}

impl Table {
    fn new() -> Table {
        let mut coefficients = [[0.0f32; INTERVALS]; TERMS];
        // Chebyshev nodes of [0, 1]: the interpolant is within a small factor of the best
        // polynomial, and far below f32 rounding here.
        let nodes: [f64; TERMS] = std::array::from_fn(|i| {
            0.5 + 0.5 * (std::f64::consts::PI * (i as f64 + 0.5) / TERMS as f64).cos()
        });
        for k in 0..INTERVALS {
            let values = nodes.map(|u| half_erfc_as((k as f64 + u) / PER_UNIT));
            let c = interpolate(&nodes, &values);
            for (j, row) in coefficients.iter_mut().enumerate() {
                row[k] = c[j] as f32;
            }
        }
        Table { coefficients }
    }
}

/// Coefficients (lowest power first) of the polynomial through `(nodes[i], values[i])`:
/// Gaussian elimination with partial pivoting on the Vandermonde system.
fn interpolate(nodes: &[f64; TERMS], values: &[f64; TERMS]) -> [f64; TERMS] {
    let mut m: [[f64; TERMS + 1]; TERMS] = std::array::from_fn(|i| {
        let mut row = [0.0; TERMS + 1];
        for (j, cell) in row[..TERMS].iter_mut().enumerate() {
            *cell = nodes[i].powi(j as i32);
        }
        row[TERMS] = values[i];
        row
    });
    for col in 0..TERMS {
        let pivot = (col..TERMS)
            .max_by(|&a, &b| m[a][col].abs().total_cmp(&m[b][col].abs()))
            .unwrap_or(col);
        m.swap(col, pivot);
        let pivot_row = m[col];
        for row in &mut m[col + 1..] {
            let f = row[col] / pivot_row[col];
            for (cell, p) in row[col..].iter_mut().zip(&pivot_row[col..]) {
                *cell -= f * p;
            }
        }
    }
    let mut c = [0.0; TERMS];
    for row in (0..TERMS).rev() {
        let known: f64 = (row + 1..TERMS).map(|j| m[row][j] * c[j]).sum();
        c[row] = (m[row][TERMS] - known) / m[row][row];
    }
    c
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{Table, INTERVALS, PER_UNIT, TERMS};

    /// GELU of every value plus its addends (each as long as `values`) through the table,
    /// 16 lanes at a time (a masked tail).
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn add_gelu(values: &mut [f32], addends: [Option<&[f32]>; 2], table: &Table) {
        assert!(
            addends.iter().flatten().all(|a| a.len() == values.len()),
            "GELU addends: lengths"
        );
        // Each coefficient's 32 interval values in two registers.
        let mut coefficients = [(_mm512_setzero_ps(), _mm512_setzero_ps()); TERMS];
        for (registers, row) in coefficients.iter_mut().zip(&table.coefficients) {
            // SAFETY: each row holds 32 values, two loads of 16.
            *registers = unsafe {
                (
                    _mm512_loadu_ps(row.as_ptr()),
                    _mm512_loadu_ps(row.as_ptr().add(16)),
                )
            };
        }
        let len = values.len();
        let p = values.as_mut_ptr();
        let mut i = 0;
        while i < len {
            let mask: __mmask16 = if len - i >= 16 {
                u16::MAX
            } else {
                (1u16 << (len - i)) - 1
            };
            // SAFETY: the mask keeps every load and store below `len` (the addends are as
            // long as `values`).
            unsafe {
                let mut x = _mm512_maskz_loadu_ps(mask, p.add(i));
                for addend in addends.iter().flatten() {
                    x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(mask, addend.as_ptr().add(i)));
                }
                _mm512_mask_storeu_ps(p.add(i), mask, lanes(x, &coefficients));
            }
            i += 16;
        }
    }

    /// `max(x, 0) - |x| * q(|x|)` for 16 values.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn lanes(x: __m512, coefficients: &[(__m512, __m512); TERMS]) -> __m512 {
        let a = _mm512_abs_ps(x);
        // Position in intervals, clamped into the last one (u <= 1 there).
        let last = (INTERVALS as f32) * (1.0 - f32::EPSILON);
        let s = _mm512_min_ps(
            _mm512_mul_ps(a, _mm512_set1_ps(PER_UNIT as f32)),
            _mm512_set1_ps(last),
        );
        let interval = _mm512_cvttps_epi32(s);
        let u = _mm512_sub_ps(s, _mm512_cvtepi32_ps(interval));
        let (low, high) = coefficients[TERMS - 1];
        let mut q = _mm512_permutex2var_ps(low, interval, high);
        for &(low, high) in coefficients[..TERMS - 1].iter().rev() {
            q = _mm512_fmadd_ps(q, u, _mm512_permutex2var_ps(low, interval, high));
        }
        _mm512_fnmadd_ps(a, q, _mm512_max_ps(x, _mm512_setzero_ps()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ATen's GELU in f64: `max(x, 0) - |x| * q(|x|)`.
    fn reference(x: f32) -> f64 {
        let x = f64::from(x);
        x.max(0.0) - x.abs() * half_erfc_as(x.abs())
    }

    /// Values from -12 to 12 in small steps, plus edges.
    fn inputs() -> Vec<f32> {
        let mut v: Vec<f32> = (0..24_001).map(|i| i as f32 * 0.001 - 12.0).collect();
        v.extend([0.0, -0.0, 7.999_999, 8.0, 1e6, -1e6, 1e-30, -1e-30]);
        v
    }

    fn check(values: &[f32], got: &[f32], what: &str) {
        for (&x, &g) in values.iter().zip(got) {
            let want = reference(x);
            // 3e-8 from the table plus f32 rounding of the result.
            let tolerance = 6e-8 + 1.2e-7 * want.abs();
            assert!(
                (f64::from(g) - want).abs() <= tolerance,
                "{what}: gelu({x}) = {g}, want {want}"
            );
        }
    }

    #[test]
    fn slice_gelu_matches_the_reference() {
        let values = inputs();
        // Every tail length of the masked 16-lane loop.
        for len in [0, 1, 15, 16, 17, 31, values.len()] {
            let mut got = values[..len].to_vec();
            gelu_slice(&mut got);
            check(&values[..len], &got, "gelu_slice");
        }
    }

    #[test]
    fn table_kernel_matches_the_reference_where_available() {
        #[cfg(target_arch = "x86_64")]
        if let Some(table) = avx512_table() {
            let values = inputs();
            let mut got = values.clone();
            // SAFETY: the table exists only with AVX-512F.
            unsafe { avx512::add_gelu(&mut got, [None, None], table) };
            check(&values, &got, "avx512");
            let mut nan = [f32::NAN];
            // SAFETY: as above.
            unsafe { avx512::add_gelu(&mut nan, [None, None], table) };
            assert!(nan[0].is_nan());
            return;
        }
        println!("no AVX-512F here: only the portable kernel was checked");
    }

    #[test]
    fn fused_addition_matches_adding_first() {
        let values = inputs();
        let bias: Vec<f32> = (0..values.len())
            .map(|i| (i % 7) as f32 * 0.25 - 0.75)
            .collect();
        let residual: Vec<f32> = (0..values.len())
            .map(|i| (i % 5) as f32 * 0.5 - 1.0)
            .collect();
        for len in [0, 1, 17, values.len()] {
            let mut fused = values[..len].to_vec();
            if !fused_add_gelu(&mut fused, Some(&bias), Some(&residual)) {
                println!("no fused kernel here");
                return;
            }
            let mut separate: Vec<f32> = (0..len)
                .map(|i| values[i] + bias[i] + residual[i])
                .collect();
            gelu_slice(&mut separate);
            assert_eq!(fused, separate, "length {len}");
        }
    }

    #[test]
    fn interpolation_reproduces_a_polynomial() {
        let nodes = [0.1, 0.3, 0.5, 0.7, 0.9];
        let poly = |u: f64| 1.0 - 2.0 * u + 0.5 * u.powi(3) + 0.25 * u.powi(4);
        let c = interpolate(&nodes, &nodes.map(poly));
        for (got, want) in c.iter().zip([1.0, -2.0, 0.0, 0.5, 0.25]) {
            assert!((got - want).abs() < 1e-12, "{c:?}");
        }
    }
}
