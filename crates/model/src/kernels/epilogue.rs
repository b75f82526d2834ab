//! What follows a matrix product, per output row: bias, residual and GELU in one pass
//! over the row while it is still in cache.

use super::gelu::{fused_add_gelu, gelu_slice};

/// What follows a matrix product, per output row: `y = x + bias`, then `y += residual`,
/// then GELU.
#[derive(Debug, Clone, Copy, Default)]
pub struct Epilogue<'a> {
    /// Added to every row (length = row length).
    pub bias: Option<&'a [f32]>,
    /// GELU after bias and residual.
    pub gelu: bool,
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
            if epilogue.gelu && fused_add_gelu(row, epilogue.bias, residual_row) {
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
            if epilogue.gelu {
                gelu_slice(row);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
                gelu: false,
            },
            Some(&residual),
        );
        assert_eq!(out, vec![2.5, 0.5, 3.0, 1.5]);
    }
}
