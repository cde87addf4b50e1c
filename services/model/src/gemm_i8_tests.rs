//! Tests of `gemm_i8` (and of the `int8_tiles` kernels through it).

use super::*;

fn reference(w: &[f32], x: &[f32], rows: usize, k: usize, n: usize) -> Vec<f32> {
    let mut out = vec![0.0; rows * n];
    for r in 0..rows {
        for o in 0..n {
            out[r * n + o] = (0..k).map(|i| x[r * k + i] * w[o * k + i]).sum();
        }
    }
    out
}

const KERNELS: [Kernel; 3] = [Kernel::Portable, Kernel::Avx2, Kernel::Vnni];

/// Runs `f` in pools of 1, 2 and 3 threads, so that `panels::spread`'s row
/// chunks and column split both run whatever this machine's core count.
fn in_pools(f: impl Fn() + Sync) {
    for threads in [1, 2, 3] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(&f);
    }
}

fn run(p: &PackedI8, x: &[f32], rows: usize, kernel: Kernel) -> Vec<f32> {
    let mut dst = vec![f32::NAN; rows * p.outputs];
    p.matmul_on(x, rows, &mut dst, kernel).unwrap();
    dst
}

/// Weights and inputs that quantize without rounding: each weight row
/// holds ±127 and integers in between (times a scale), each input row
/// spans exactly 256 steps from -64 to 191 (times a scale, so its zero
/// point is 64). The product is then exact.
#[test]
fn values_on_the_quantization_grid_multiply_exactly() {
    in_pools(grid_case);
}

fn grid_case() {
    // Odd sizes on purpose: inputs not a multiple of 4, outputs not of
    // 32, rows not of 8; 3 rows (column split) and 150 (row chunks).
    let (k, n) = (37, 45);
    let w: Vec<f32> = (0..n * k)
        .map(|i| match i % k {
            0 => 127.0 * 0.01,
            1 => -127.0 * 0.01,
            j => ((i * 7 + j) % 255) as f32 * 0.01 - 1.27,
        })
        .collect();
    for rows in [3, 150] {
        let x: Vec<f32> = (0..rows * k)
            .map(|i| match i % k {
                0 => -64.0 * 0.5,
                1 => 191.0 * 0.5,
                j => ((i * 13 + j) % 256) as f32 * 0.5 - 32.0,
            })
            .collect();
        let want = reference(&w, &x, rows, k, n);
        for kernel in KERNELS {
            let p = PackedI8::for_kernel(&w, n, k, kernel).unwrap();
            for (a, b) in run(&p, &x, rows, kernel).iter().zip(&want) {
                assert!((a - b).abs() <= 1e-3 * b.abs().max(1.0), "{a} vs {b}");
            }
        }
    }
}

/// Off-grid values: every output within the bound the two roundings
/// allow (half a step of each operand, times the other's magnitude).
#[test]
fn general_values_stay_within_the_quantization_bound() {
    let (k, n, rows) = (384, 70, 21);
    let w: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.37).sin() * 0.2).collect();
    let x: Vec<f32> = (0..rows * k)
        .map(|i| (i as f32 * 0.11).cos() * 3.0)
        .collect();
    let p = PackedI8::new(&w, n, k).unwrap();
    let got = run(&p, &x, rows, Kernel::best());
    let want = reference(&w, &x, rows, k, n);
    for r in 0..rows {
        let xr = &x[r * k..(r + 1) * k];
        let (lo, hi) = xr
            .iter()
            .fold((0.0f32, 0.0f32), |(l, h), v| (l.min(*v), h.max(*v)));
        let sx = (hi - lo) / 255.0;
        for o in 0..n {
            let wr = &w[o * k..(o + 1) * k];
            let sw = wr.iter().fold(0.0f32, |m, v| m.max(v.abs())) / 127.0;
            let bound: f32 = xr
                .iter()
                .zip(wr)
                .map(|(a, b)| a.abs() * sw / 2.0 + b.abs() * sx / 2.0 + sw * sx / 4.0)
                .sum();
            let (g, e) = (got[r * n + o], want[r * n + o]);
            assert!(
                (g - e).abs() <= bound * 1.01 + 1e-5,
                "row {r} col {o}: {g} vs {e}"
            );
        }
    }
}

/// The kernels sum exact integers, so they agree to the bit, whatever
/// the split over threads (each runs where the CPU has it; elsewhere the
/// portable loop stands in).
#[test]
fn the_vnni_avx2_and_portable_kernels_agree_to_the_bit() {
    in_pools(kernels_case);
}

fn kernels_case() {
    let (k, n) = (96, 100);
    let w: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.73).sin()).collect();
    let p = PackedI8::new(&w, n, k).unwrap();
    for rows in [1, 9, 64, 200] {
        let x: Vec<f32> = (0..rows * k)
            .map(|i| (i as f32 * 0.29).cos() - 0.3)
            .collect();
        let bits = |v: Vec<f32>| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        let a = run(&p, &x, rows, Kernel::Portable);
        assert!(a.iter().all(|v| v.is_finite()));
        for kernel in KERNELS {
            // Each kernel on weights laid out for it, and on the portable
            // loop over that layout.
            let p = PackedI8::for_kernel(&w, n, k, kernel).unwrap();
            let portable = run(&p, &x, rows, Kernel::Portable);
            assert_eq!(
                bits(a.clone()),
                bits(portable),
                "portable over {kernel:?}'s layout"
            );
            let b = run(&p, &x, rows, kernel);
            assert_eq!(bits(a.clone()), bits(b.clone()), "{kernel:?}, {rows} rows");
            // Row r's result does not depend on the rows around it.
            let one = run(&p, &x[(rows - 1) * k..], 1, kernel);
            assert_eq!(one, b[(rows - 1) * n..].to_vec());
        }
    }
}

#[test]
fn zero_rows_and_bad_buffers() {
    let p = PackedI8::new(&[0.5; 8], 2, 4).unwrap();
    // All-zero weights and inputs give zeros, not NaN.
    let z = PackedI8::new(&[0.0; 8], 2, 4).unwrap();
    assert_eq!(run(&z, &[0.0; 4], 1, Kernel::best()), vec![0.0, 0.0]);
    assert_eq!(run(&p, &[0.0; 4], 1, Kernel::best()), vec![0.0, 0.0]);
    let mut short = vec![0.0; 1];
    assert!(p.matmul(&[1.0; 4], 1, &mut short).is_err());
    assert!(p.matmul(&[1.0; 3], 1, &mut [0.0; 2]).is_err());
    assert!(PackedI8::new(&[0.0; 7], 2, 4).is_err());
    // Wider than an i32 sum holds, or sizes that overflow: errors.
    let wide = MAX_INPUTS + 1;
    assert!(PackedI8::new(&vec![0.0; wide], 1, wide).is_err());
    assert!(p.matmul(&[1.0; 4], usize::MAX, &mut [0.0; 2]).is_err());
    assert!(p.matmul(&[], 0, &mut []).is_ok());
}
