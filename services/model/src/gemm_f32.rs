//! Dense f32 matrix products on plain slices through the `gemm` crate, the
//! engine candle's CPU matmul calls, without candle's per-call tensor
//! allocation, layout checks and copies.
//!
//! Why `unsafe` here: `gemm::gemm` takes raw pointers and strides. Like the
//! other kernel modules that allow `unsafe` (`panels_f32`, `int8_tiles`),
//! it exposes only safe functions: every view is checked to lie inside its slice before the
//! call, and the borrow checker keeps the destination (`&mut`) apart from
//! the operands (`&`). Strided views let attention read one head's Q, K or V
//! columns straight out of the packed QKV rows, no transpose or copy.
#![allow(unsafe_code)]

use crate::error::{ModelError, Result};

/// A read-only `rows x cols` matrix inside a slice: element `(r, c)` is
/// `data[r * row_stride + c * col_stride]`.
#[derive(Debug, Clone, Copy)]
pub struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

/// Whether every element of a `rows x cols` strided view lies in `len`.
fn fits(len: usize, rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> bool {
    if rows == 0 || cols == 0 {
        return true;
    }
    let last = (rows - 1)
        .checked_mul(row_stride)
        .zip((cols - 1).checked_mul(col_stride))
        .and_then(|(a, b)| a.checked_add(b));
    last.is_some_and(|last| last < len)
        && isize::try_from(row_stride).is_ok()
        && isize::try_from(col_stride).is_ok()
}

impl<'a> MatRef<'a> {
    /// A view, or an error if it does not fit in `data`.
    pub fn new(
        data: &'a [f32],
        rows: usize,
        cols: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> Result<MatRef<'a>> {
        if !fits(data.len(), rows, cols, row_stride, col_stride) {
            return Err(ModelError::Inference(format!(
                "matrix view {rows}x{cols} (strides {row_stride}, {col_stride}) \
                 exceeds its slice of {}",
                data.len()
            )));
        }
        Ok(MatRef {
            data,
            rows,
            cols,
            row_stride,
            col_stride,
        })
    }

    /// A row-major `rows x cols` matrix at the start of `data`.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Result<MatRef<'a>> {
        MatRef::new(data, rows, cols, cols, 1)
    }
}

/// How the product is spread over threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threads {
    /// On the calling thread (used inside already parallel attention).
    One,
    /// Over rayon's current pool.
    Pool,
}

/// `dst = a * b`, where `dst` is `a.rows x b.cols` with rows `dst_row_stride`
/// apart (columns contiguous).
pub fn matmul(
    dst: &mut [f32],
    dst_row_stride: usize,
    a: MatRef<'_>,
    b: MatRef<'_>,
    threads: Threads,
) -> Result<()> {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if b.rows != k {
        return Err(ModelError::Inference(format!(
            "matmul of {m}x{k} by {}x{n}",
            b.rows
        )));
    }
    if dst_row_stride < n || !fits(dst.len(), m, n, dst_row_stride, 1) {
        return Err(ModelError::Inference(format!(
            "matmul destination {m}x{n} (row stride {dst_row_stride}) exceeds its slice of {}",
            dst.len()
        )));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        for row in dst.chunks_mut(dst_row_stride.max(1)).take(m) {
            row[..n].fill(0.0);
        }
        return Ok(());
    }
    let parallelism = match threads {
        Threads::Pool if rayon::current_num_threads() > 1 => {
            gemm::Parallelism::Rayon(rayon::current_num_threads())
        }
        _ => gemm::Parallelism::None,
    };
    // `fits` checked every stride converts to isize; the casts cannot wrap.
    let s = |x: usize| x as isize;
    // SAFETY: `fits` proved that every element the views address lies inside
    // `a.data`, `b.data` and `dst` respectively (k, m, n > 0 here); `dst` is
    // borrowed mutably and the operands shared, so they cannot overlap; with
    // `read_dst = false` gemm writes `dst = 1.0 * a * b` without reading it.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            s(dst_row_stride),
            false,
            a.data.as_ptr(),
            s(a.col_stride),
            s(a.row_stride),
            b.data.as_ptr(),
            s(b.col_stride),
            s(b.row_stride),
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        out
    }

    #[test]
    fn matches_a_naive_product_row_major_and_strided() {
        let (m, k, n) = (7, 33, 5);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.3).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.7).cos()).collect();
        let want = naive(&a, &b, m, k, n);
        let mut dst = vec![0.0; m * n];
        matmul(
            &mut dst,
            n,
            MatRef::row_major(&a, m, k).unwrap(),
            MatRef::row_major(&b, k, n).unwrap(),
            Threads::Pool,
        )
        .unwrap();
        for (x, y) in dst.iter().zip(&want) {
            assert!((x - y).abs() < 1e-4);
        }
        // b read transposed out of a column-major copy, dst with a wider row.
        let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        let mut wide = vec![-1.0; m * (n + 3)];
        matmul(
            &mut wide,
            n + 3,
            MatRef::row_major(&a, m, k).unwrap(),
            MatRef::new(&bt, k, n, 1, k).unwrap(),
            Threads::One,
        )
        .unwrap();
        for i in 0..m {
            for j in 0..n {
                assert!((wide[i * (n + 3) + j] - want[i * n + j]).abs() < 1e-4);
            }
            assert_eq!(wide[i * (n + 3) + n], -1.0, "padding untouched");
        }
    }

    #[test]
    fn views_and_shapes_out_of_bounds_are_errors() {
        let a = vec![0.0f32; 10];
        assert!(MatRef::new(&a, 3, 4, 4, 1).is_err());
        assert!(MatRef::new(&a, 2, 5, 5, 1).is_ok());
        assert!(MatRef::new(&a, 2, 2, usize::MAX, 1).is_err());
        let x = MatRef::row_major(&a, 2, 5).unwrap();
        let y = MatRef::row_major(&a, 2, 5).unwrap();
        let mut dst = vec![0.0; 100];
        assert!(matmul(&mut dst, 5, x, y, Threads::One).is_err());
        let y = MatRef::row_major(&a, 5, 2).unwrap();
        let mut small = vec![0.0; 3];
        assert!(matmul(&mut small, 2, x, y, Threads::One).is_err());
    }
}
