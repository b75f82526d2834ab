//! A safe front for the `gemm` crate's single-threaded `f32` matrix product, on slices with
//! explicit strides (callers split the work into row blocks themselves).

use gemm::Parallelism;

/// A read-only strided matrix view: element `(i, j)` is `data[i * row_stride + j *
/// col_stride]`.
#[derive(Debug, Clone, Copy)]
pub struct MatRef<'a> {
    /// The backing values.
    pub data: &'a [f32],
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Distance between rows.
    pub row_stride: usize,
    /// Distance between columns.
    pub col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major matrix whose rows are `row_stride` apart.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride,
            col_stride: 1,
        }
    }

    /// The transpose of a row-major `cols x rows` matrix whose rows are `row_stride` apart.
    pub fn transposed(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: 1,
            col_stride: row_stride,
        }
    }

    /// Whether every element lies inside `data`.
    fn in_bounds(&self) -> bool {
        in_bounds(
            self.data.len(),
            self.rows,
            self.cols,
            self.row_stride,
            self.col_stride,
        )
    }
}

fn in_bounds(len: usize, rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> bool {
    if rows == 0 || cols == 0 {
        return true;
    }
    let last = (rows - 1).checked_mul(row_stride).and_then(|r| {
        (cols - 1)
            .checked_mul(col_stride)
            .and_then(|c| r.checked_add(c))
    });
    matches!(last, Some(last) if last < len) && isize::try_from(len).is_ok()
}

/// `dst = a * b` (or `dst += a * b` with `accumulate`), `dst` row-major with rows
/// `dst_stride` apart; single-threaded.
///
/// # Panics
/// When the shapes disagree or a view reaches past its slice, or rows of `dst` overlap.
pub fn matmul(a: MatRef, b: MatRef, dst: &mut [f32], dst_stride: usize, accumulate: bool) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "matmul: inner dimensions differ");
    assert!(
        a.in_bounds() && b.in_bounds(),
        "matmul: operand out of bounds"
    );
    assert!(
        in_bounds(dst.len(), m, n, dst_stride, 1) && (m <= 1 || dst_stride >= n),
        "matmul: destination out of bounds"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for row in dst.chunks_mut(dst_stride.max(1)).take(m) {
                row[..n].fill(0.0);
            }
        }
        return;
    }
    // SAFETY: the asserts above check that every element the product reads (`a`, `b`) or
    // writes (`dst`, rows `dst_stride >= n` apart, so no two output elements alias) lies
    // inside its slice, and that all strides fit in `isize`; `dst` is borrowed mutably, so
    // it cannot overlap `a` or `b`. `Parallelism::None` runs on this thread only.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_stride as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &MatRef, b: &MatRef) -> Vec<f32> {
        let mut out = vec![0.0; a.rows * b.cols];
        for i in 0..a.rows {
            for j in 0..b.cols {
                let mut s = 0.0f64;
                for k in 0..a.cols {
                    s += f64::from(a.data[i * a.row_stride + k * a.col_stride])
                        * f64::from(b.data[k * b.row_stride + j * b.col_stride]);
                }
                out[i * b.cols + j] = s as f32;
            }
        }
        out
    }

    #[test]
    fn strided_and_transposed_products() {
        let a: Vec<f32> = (0..7 * 10).map(|i| (i % 13) as f32 - 6.0).collect();
        let b: Vec<f32> = (0..5 * 9).map(|i| (i % 7) as f32 * 0.5).collect();
        // a: 7 x 4 inside rows of 10; b: the transpose of a 5 x 4 block in rows of 9.
        let a = MatRef::rows(&a, 7, 4, 10);
        let b = MatRef::transposed(&b, 4, 5, 9);
        let mut dst = vec![1.0; 7 * 6];
        matmul(a, b, &mut dst, 6, false);
        let want = naive(&a, &b);
        for i in 0..7 {
            assert_eq!(&dst[i * 6..i * 6 + 5], &want[i * 5..i * 5 + 5]);
            assert_eq!(dst[i * 6 + 5], 1.0, "padding column untouched");
        }
        matmul(a, b, &mut dst, 6, true);
        assert_eq!(dst[0], 2.0 * want[0]);
    }

    #[test]
    #[should_panic(expected = "out of bounds")]
    fn rejects_short_slices() {
        let a = vec![0.0; 5];
        let b = vec![0.0; 4];
        let mut dst = vec![0.0; 4];
        matmul(
            MatRef::rows(&a, 2, 3, 3),
            MatRef::rows(&b, 3, 1, 1),
            &mut dst,
            1,
            false,
        );
    }
}
