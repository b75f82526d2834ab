//! What follows a matrix product, per output row: bias, residual and the activation
//! (GELU for TinyViT, SiLU for the YOLO detector) in one pass over the row while it is
//! still in cache.

use super::gelu::{fused_add_gelu, gelu_slice};
use super::math::exp;

/// The activation that ends a layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Activation {
    /// None: the values as they are.
    #[default]
    Identity,
    /// GELU (the erf form, as PyTorch's default).
    Gelu,
    /// SiLU, `x / (1 + e^-x)`.
    Silu,
}

impl Activation {
    /// GELU when `gelu`, else nothing.
    pub fn gelu_if(gelu: bool) -> Self {
        if gelu {
            Self::Gelu
        } else {
            Self::Identity
        }
    }
}

/// What follows a matrix product, per output row: `y = x + bias`, then `y += residual`,
/// then the activation.
#[derive(Debug, Clone, Copy, Default)]
pub struct Epilogue<'a> {
    /// Added to every row (length = row length).
    pub bias: Option<&'a [f32]>,
    /// Applied after bias and residual.
    pub activation: Activation,
}

/// SiLU in place; inlined into each caller's instruction-set clone.
#[inline(always)]
pub fn silu_slice(values: &mut [f32]) {
    for v in values.iter_mut() {
        *v /= 1.0 + exp(-*v);
    }
}

/// `activation` in place; inlined into each caller's instruction-set clone.
#[inline(always)]
pub fn activate(values: &mut [f32], activation: Activation) {
    match activation {
        Activation::Identity => {}
        Activation::Gelu => gelu_slice(values),
        Activation::Silu => silu_slice(values),
    }
}

multiversioned! {
    /// Applies `epilogue` to the rows of `out` (rows of `bias.len()` values), adding
    /// `residual` (same shape as `out`) when given.
    pub fn apply_epilogue(out: &mut [f32], width: usize, epilogue: Epilogue, residual: Option<&[f32]>) {
        if width == 0 {
            return;
        }
        for (i, row) in out.chunks_exact_mut(width).enumerate() {
            let residual_row = residual.map(|r| &r[i * width..(i + 1) * width]);
            if epilogue.activation == Activation::Gelu
                && fused_add_gelu(row, epilogue.bias, residual_row)
            {
                continue;
            }
            if let Some(bias) = epilogue.bias {
                for (v, b) in row.iter_mut().zip(bias) {
                    *v += b;
                }
            }
            if let Some(res) = residual_row {
                for (v, r) in row.iter_mut().zip(res) {
                    *v += r;
                }
            }
            if epilogue.activation == Activation::Gelu {
                gelu_slice(row);
            }
        }
        // SiLU over the whole block in one loop: per row, narrow rows (16 channels) leave
        // the exp and division chains too short to overlap.
        if epilogue.activation == Activation::Silu {
            silu_slice(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SiLU after the bias (run under each emulated CPU by tests/emulated_cpu.sh) against
    /// the formula in f64, over values that reach both saturated ends of the exp.
    #[test]
    fn silu_matches_the_formula() {
        let values: Vec<f32> = (0..300).map(|i| (i as f32 - 150.0) * 0.73).collect();
        let bias = [0.5f32, -1.25, 0.0];
        let mut out = values.clone();
        let silu = Epilogue {
            bias: Some(&bias),
            activation: Activation::Silu,
        };
        apply_epilogue(&mut out, 3, silu, None);
        for (i, (&x, &got)) in values.iter().zip(&out).enumerate() {
            let x = f64::from(x + bias[i % 3]);
            let want = x / (1.0 + (-x).exp());
            assert!(
                (f64::from(got) - want).abs() <= 1e-5 * want.abs().max(1.0),
                "silu({x}) = {got}, want {want}"
            );
        }
    }

    #[test]
    fn epilogue_order() {
        let mut out = vec![1.0, -2.0, 3.0, 0.5];
        let residual = vec![0.5, 0.5, -1.0, -1.0];
        let bias = [1.0, 2.0];
        apply_epilogue(
            &mut out,
            2,
            Epilogue {
                bias: Some(&bias),
                activation: Activation::Identity,
            },
            Some(&residual),
        );
        assert_eq!(out, vec![2.5, 0.5, 3.0, 1.5]);
    }
}
