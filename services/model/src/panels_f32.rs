//! f32 dense products on AVX-512 or AVX2+FMA: weights packed once into
//! 16-column panels; on AVX-512 a register tile of 8 rows x 32 columns (one
//! broadcast input times two weight vectors per step), on AVX2 6 rows x 16
//! columns (12 of the 16 ymm registers accumulate: enough independent FMAs
//! to cover their latency on two FMA ports).
//!
//! Why not `gemm` here: for a 15-token text, `gemm` (what candle runs) packs
//! the weight operand again on every call, blocks the other side 64 rows at
//! a time (15 fill a quarter), and keeps such a small product on one thread
//! while the other spins: perf showed a single-threaded 15-token call at
//! about a third of this core's FMA peak. Here the weights are read once
//! per call, straight from their packed form, and the columns are split
//! over the pool: a 15-token text runs about 2x faster. On long batches
//! (thousands of rows) it measured level with `gemm` (both on AVX-512). On
//! an AVX2-only CPU the whole model went from 0.75-1.20x ONNX Runtime with
//! `gemm` to 1.03-1.28x in a run after the change (BENCHMARKS.md, session
//! 12). So where the CPU has either kernel `Dense` runs every f32 product
//! here and holds the weights once; elsewhere it calls `gemm`.
//!
//! Exactness: each output is the sum over inputs in index order with one
//! FMA per term, whatever the rows around it, so a text's embedding does
//! not depend on its batch (the golden tests check that and the float64
//! tolerance), nor on which of the two kernels ran (same sums, same order).
//!
//! Why `unsafe` here: `std::arch` intrinsics (raw pointer loads) inside
//! `#[target_feature]` functions, called only after the run-time check;
//! every pointer read is inside slices whose lengths are checked first.
#![allow(unsafe_code)]

use crate::error::{ModelError, Result};
use crate::panels::{self, PANEL, Part, TILE_PANELS, TILE_ROWS};

/// A dense layer's f32 weights packed into panels.
pub struct PackedF32 {
    inputs: usize,
    outputs: usize,
    /// Panel `p`, input `i`: the 16 weights of columns `16p..16p + 16` at
    /// `(p * inputs + i) * 16` (zero past `outputs`).
    panels: Vec<f32>,
}

/// The register tiles this module has, fastest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    Avx512,
    Avx2,
}

impl Kernel {
    /// The fastest kernel this CPU runs, if any.
    pub fn best() -> Option<Kernel> {
        [Kernel::Avx512, Kernel::Avx2]
            .into_iter()
            .find(|k| k.supported())
    }

    pub fn supported(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                Kernel::Avx512 => std::is_x86_feature_detected!("avx512f"),
                Kernel::Avx2 => {
                    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }
}

/// Whether this CPU runs a panel kernel.
pub fn available() -> bool {
    Kernel::best().is_some()
}

impl PackedF32 {
    /// From a PyTorch-layout `(out, in)` row-major weight.
    pub fn new(weight_out_in: &[f32], outputs: usize, inputs: usize) -> Result<PackedF32> {
        if Some(weight_out_in.len()) != outputs.checked_mul(inputs) {
            return Err(ModelError::Load(format!(
                "f32 dense layer {inputs}->{outputs}: weight of {} values",
                weight_out_in.len()
            )));
        }
        let mut packed = vec![0.0f32; panels::panel_count(outputs) * PANEL * inputs];
        for (o, row) in weight_out_in.chunks_exact(inputs.max(1)).enumerate() {
            let (p, c) = (o / PANEL, o % PANEL);
            for (i, w) in row.iter().enumerate() {
                packed[(p * inputs + i) * PANEL + c] = *w;
            }
        }
        Ok(PackedF32 {
            inputs,
            outputs,
            panels: packed,
        })
    }

    /// `dst[..rows * outputs] = x[..rows * inputs] * Wᵀ`, row-major; an
    /// error on a CPU with neither kernel (callers check `available`).
    pub fn matmul(&self, x: &[f32], rows: usize, dst: &mut [f32]) -> Result<()> {
        match Kernel::best() {
            Some(kernel) => self.matmul_on(kernel, x, rows, dst),
            None => Err(ModelError::Inference(
                "the f32 panel kernel needs AVX-512 or AVX2 with FMA".to_string(),
            )),
        }
    }

    /// `matmul` on a given kernel (tests compare the two).
    fn matmul_on(&self, kernel: Kernel, x: &[f32], rows: usize, dst: &mut [f32]) -> Result<()> {
        let (k, n) = (self.inputs, self.outputs);
        let (x, dst) = panels::operands("f32 dense", x, dst, rows, (k, n))?;
        if k == 0 {
            dst.fill(0.0);
            return Ok(());
        }
        panels::spread(rows, n, dst, |part| match kernel {
            Kernel::Avx512 => self.rows_times_panels(x, part),
            Kernel::Avx2 => self.rows_times_panels_avx2(x, part),
        });
        Ok(())
    }

    /// AVX-512: tiles of 8 rows x 2 panels.
    fn rows_times_panels(&self, x: &[f32], part: Part<'_>) {
        let Part {
            first,
            count,
            panels: (p0, p1),
            out,
            out_stride,
        } = part;
        let k = self.inputs;
        let mut acc = [[0.0f32; PANEL * TILE_PANELS]; TILE_ROWS];
        for p in (p0..p1).step_by(TILE_PANELS) {
            let w = &self.panels[p * PANEL * k..(p + TILE_PANELS) * PANEL * k];
            let col0 = p * PANEL;
            let cols = self.outputs.saturating_sub(col0).min(PANEL * TILE_PANELS);
            for r0 in (first..first + count).step_by(TILE_ROWS) {
                let live = (first + count - r0).min(TILE_ROWS);
                let a = &x[r0 * k..(r0 + live) * k];
                tile(a, live, w, k, &mut acc);
                for (t, acc_row) in acc.iter().enumerate().take(live) {
                    let base = (r0 + t - first) * out_stride + col0 - p0 * PANEL;
                    out[base..base + cols].copy_from_slice(&acc_row[..cols]);
                }
            }
        }
    }

    /// AVX2: tiles of 6 rows x 1 panel.
    fn rows_times_panels_avx2(&self, x: &[f32], part: Part<'_>) {
        let Part {
            first,
            count,
            panels: (p0, p1),
            out,
            out_stride,
        } = part;
        let k = self.inputs;
        let mut acc = [[0.0f32; PANEL]; AVX2_ROWS];
        for p in p0..p1 {
            let col0 = p * PANEL;
            let cols = self.outputs.saturating_sub(col0).min(PANEL);
            if cols == 0 {
                continue; // a padding panel
            }
            let w = &self.panels[p * PANEL * k..(p + 1) * PANEL * k];
            for r0 in (first..first + count).step_by(AVX2_ROWS) {
                let live = (first + count - r0).min(AVX2_ROWS);
                let a = &x[r0 * k..(r0 + live) * k];
                tile_avx2(a, live, w, k, &mut acc);
                for (t, acc_row) in acc.iter().enumerate().take(live) {
                    let base = (r0 + t - first) * out_stride + col0 - p0 * PANEL;
                    out[base..base + cols].copy_from_slice(&acc_row[..cols]);
                }
            }
        }
    }
}

/// Rows per AVX2 register tile: 6 x 2 accumulators + 2 weight registers +
/// 1 broadcast = 15 of 16 ymm registers.
const AVX2_ROWS: usize = 6;

/// `acc[r][c] = Σ_i a[r][i] * w[c][i]` for `live` rows of `a` and the two
/// panels in `w`, on AVX-512; the plain loop where it cannot run, so a tile
/// is never left unwritten.
fn tile(a: &[f32], live: usize, w: &[f32], k: usize, acc: &mut [[f32; 32]; TILE_ROWS]) {
    let fits = (1..=TILE_ROWS).contains(&live)
        && a.len() >= live * k
        && w.len() >= TILE_PANELS * PANEL * k;
    #[cfg(target_arch = "x86_64")]
    if fits && Kernel::Avx512.supported() {
        // SAFETY: the CPU has avx512f, `a` holds `live` (1..=8) rows of k
        // floats and `w` two panels of 16 * k floats (all checked just
        // above), which is all the kernels read.
        unsafe {
            match live {
                8 => avx512::tile::<8>(a, w, k, acc),
                7 => avx512::tile::<7>(a, w, k, acc),
                6 => avx512::tile::<6>(a, w, k, acc),
                5 => avx512::tile::<5>(a, w, k, acc),
                4 => avx512::tile::<4>(a, w, k, acc),
                3 => avx512::tile::<3>(a, w, k, acc),
                2 => avx512::tile::<2>(a, w, k, acc),
                _ => avx512::tile::<1>(a, w, k, acc),
            }
        }
        return;
    }
    let _ = fits;
    plain(a, live, w, k, acc);
}

/// `tile` for one panel and up to 6 rows, on AVX2 + FMA.
fn tile_avx2(a: &[f32], live: usize, w: &[f32], k: usize, acc: &mut [[f32; PANEL]; AVX2_ROWS]) {
    let fits = (1..=AVX2_ROWS).contains(&live) && a.len() >= live * k && w.len() >= PANEL * k;
    #[cfg(target_arch = "x86_64")]
    if fits && Kernel::Avx2.supported() {
        // SAFETY: the CPU has avx2 and fma, `a` holds `live` (1..=6) rows
        // of k floats and `w` one panel of 16 * k floats (checked just
        // above), which is all the kernels read.
        unsafe {
            match live {
                6 => avx2::tile::<6>(a, w, k, acc),
                5 => avx2::tile::<5>(a, w, k, acc),
                4 => avx2::tile::<4>(a, w, k, acc),
                3 => avx2::tile::<3>(a, w, k, acc),
                2 => avx2::tile::<2>(a, w, k, acc),
                _ => avx2::tile::<1>(a, w, k, acc),
            }
        }
        return;
    }
    let _ = fits;
    plain(a, live, w, k, acc);
}

/// The tiles' sums as a plain loop (same terms, same order, one FMA each):
/// `C` columns over `C / 16` panels of `w`.
fn plain<const C: usize>(a: &[f32], live: usize, w: &[f32], k: usize, acc: &mut [[f32; C]]) {
    for (r, acc_row) in acc.iter_mut().enumerate().take(live) {
        let Some(row) = a.get(r * k..(r + 1) * k) else {
            break;
        };
        for (c, out) in acc_row.iter_mut().enumerate() {
            let (panel, col) = (c / PANEL, c % PANEL);
            *out = row.iter().enumerate().fold(0.0f32, |sum, (i, x)| {
                let weight = w.get((panel * k + i) * PANEL + col).copied().unwrap_or(0.0);
                x.mul_add(weight, sum)
            });
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{PANEL, TILE_ROWS};
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must have avx512f; `a` must hold `R * k` floats and `w`
    /// `2 * PANEL * k`; `R <= TILE_ROWS`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn tile<const R: usize>(
        a: &[f32],
        w: &[f32],
        k: usize,
        acc: &mut [[f32; 32]; TILE_ROWS],
    ) {
        let mut sums = [[_mm512_setzero_ps(); 2]; R];
        let (a0, w0) = (a.as_ptr(), w.as_ptr());
        // SAFETY (whole function): step i < k reads floats 16i..16i+16 of
        // each panel (panel 1 starts at PANEL * k) and a[r * k + i] for
        // r < R: all inside the lengths the caller guarantees.
        let w1 = unsafe { w0.add(PANEL * k) };
        for i in 0..k {
            let (b0, b1) = unsafe {
                (
                    _mm512_loadu_ps(w0.add(i * PANEL)),
                    _mm512_loadu_ps(w1.add(i * PANEL)),
                )
            };
            for (r, s) in sums.iter_mut().enumerate() {
                let x = _mm512_set1_ps(unsafe { *a0.add(r * k + i) });
                s[0] = _mm512_fmadd_ps(x, b0, s[0]);
                s[1] = _mm512_fmadd_ps(x, b1, s[1]);
            }
        }
        for (s, out) in sums.iter().zip(acc.iter_mut()) {
            let (lo, hi) = out.split_at_mut(PANEL);
            unsafe {
                _mm512_storeu_ps(lo.as_mut_ptr(), s[0]);
                _mm512_storeu_ps(hi.as_mut_ptr(), s[1]);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{AVX2_ROWS, PANEL};
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must have avx2 and fma; `a` must hold `R * k` floats and `w`
    /// `PANEL * k`; `R <= AVX2_ROWS`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn tile<const R: usize>(
        a: &[f32],
        w: &[f32],
        k: usize,
        acc: &mut [[f32; PANEL]; AVX2_ROWS],
    ) {
        let mut sums = [[_mm256_setzero_ps(); 2]; R];
        let (a0, w0) = (a.as_ptr(), w.as_ptr());
        for i in 0..k {
            // SAFETY: step i < k reads floats 16i..16i+16 of the panel and
            // a[r * k + i] for r < R: inside the lengths the caller
            // guarantees.
            let (b0, b1) = unsafe {
                (
                    _mm256_loadu_ps(w0.add(i * PANEL)),
                    _mm256_loadu_ps(w0.add(i * PANEL + 8)),
                )
            };
            for (r, s) in sums.iter_mut().enumerate() {
                let x = _mm256_set1_ps(unsafe { *a0.add(r * k + i) });
                s[0] = _mm256_fmadd_ps(x, b0, s[0]);
                s[1] = _mm256_fmadd_ps(x, b1, s[1]);
            }
        }
        for (s, out) in sums.iter().zip(acc.iter_mut()) {
            let (lo, hi) = out.split_at_mut(8);
            unsafe {
                _mm256_storeu_ps(lo.as_mut_ptr(), s[0]);
                _mm256_storeu_ps(hi.as_mut_ptr(), s[1]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In pools of 1, 2 and 3 threads, so that both ways of splitting a
    /// product run whatever this machine's core count.
    #[test]
    fn matches_the_definition_for_every_row_count_and_odd_widths() {
        let kernels: Vec<Kernel> = [Kernel::Avx512, Kernel::Avx2]
            .into_iter()
            .filter(|k| k.supported())
            .collect();
        if kernels.is_empty() {
            eprintln!("neither AVX-512 nor AVX2+FMA here: the panel kernels are not used");
            return;
        }
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            for kernel in &kernels {
                pool.install(|| definition_case(*kernel));
            }
        }
    }

    /// Where the CPU has both kernels they give the same bits (same sums in
    /// the same order), so an embedding does not depend on the CPU's width.
    #[test]
    fn both_kernels_give_the_same_bits() {
        if !(Kernel::Avx512.supported() && Kernel::Avx2.supported()) {
            eprintln!("this CPU lacks one of the two kernels: nothing to compare");
            return;
        }
        let (k, n, rows) = (384, 100, 23);
        let w: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.013).sin()).collect();
        let x: Vec<f32> = (0..rows * k).map(|i| (i as f32 * 0.029).cos()).collect();
        let p = PackedF32::new(&w, n, k).unwrap();
        let mut wide = vec![0.0; rows * n];
        let mut narrow = vec![1.0; rows * n];
        p.matmul_on(Kernel::Avx512, &x, rows, &mut wide).unwrap();
        p.matmul_on(Kernel::Avx2, &x, rows, &mut narrow).unwrap();
        assert_eq!(wide, narrow);
    }

    /// The AVX2 tile's plain-loop fallback gives the kernel's sums.
    #[test]
    fn the_avx2_fallback_tile_matches_the_kernel() {
        let k = 10;
        let w: Vec<f32> = (0..PANEL * k).map(|i| (i as f32 * 0.3).sin()).collect();
        let a: Vec<f32> = (0..5 * k).map(|i| (i as f32 * 0.7).cos()).collect();
        let mut fast = [[0.0f32; PANEL]; AVX2_ROWS];
        tile_avx2(&a, 5, &w, k, &mut fast);
        let mut slow = [[0.0f32; PANEL]; AVX2_ROWS];
        tile_avx2(&a, 5, &w[..w.len() - 1], k, &mut slow);
        // The same FMA chain in the same order: the same bits (the last
        // column's weight is cut off in `slow`).
        for r in 0..5 {
            for c in 0..15 {
                assert_eq!(fast[r][c].to_bits(), slow[r][c].to_bits(), "({r}, {c})");
            }
        }
    }

    /// The plain loop `tile` falls back on gives the kernel's sums.
    #[test]
    fn the_fallback_tile_matches_the_kernel() {
        let k = 10;
        let w: Vec<f32> = (0..TILE_PANELS * PANEL * k)
            .map(|i| (i as f32 * 0.3).sin())
            .collect();
        let a: Vec<f32> = (0..3 * k).map(|i| (i as f32 * 0.7).cos()).collect();
        let mut fast = [[0.0f32; 32]; TILE_ROWS];
        tile(&a, 3, &w, k, &mut fast);
        let mut slow = [[0.0f32; 32]; TILE_ROWS];
        // Too short a weight slice for the kernel: the loop runs instead,
        // with the same FMA chain, so the same bits.
        tile(&a, 3, &w[..w.len() - 1], k, &mut slow);
        for r in 0..3 {
            for c in 0..31 {
                assert_eq!(fast[r][c].to_bits(), slow[r][c].to_bits(), "({r}, {c})");
            }
        }
    }

    fn definition_case(kernel: Kernel) {
        let (k, n) = (37, 45);
        let w: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let p = PackedF32::new(&w, n, k).unwrap();
        for rows in [1, 3, 6, 7, 8, 9, 13, 15, 64, 130] {
            let x: Vec<f32> = (0..rows * k).map(|i| (i as f32 * 0.11).cos()).collect();
            let mut dst = vec![f32::NAN; rows * n];
            p.matmul_on(kernel, &x, rows, &mut dst).unwrap();
            for r in 0..rows {
                for o in 0..n {
                    let want: f64 = (0..k)
                        .map(|i| f64::from(x[r * k + i]) * f64::from(w[o * k + i]))
                        .sum();
                    let got = dst[r * n + o];
                    assert!(
                        (f64::from(got) - want).abs() < 1e-4,
                        "{kernel:?}, {rows} rows, ({r}, {o})"
                    );
                }
            }
            // A row's result does not depend on the rows around it.
            let mut one = vec![0.0; n];
            p.matmul_on(kernel, &x[(rows - 1) * k..], 1, &mut one)
                .unwrap();
            assert_eq!(one, dst[(rows - 1) * n..]);
        }
    }

    #[test]
    fn bad_buffers_are_errors() {
        let p = PackedF32::new(&[0.5; 8], 2, 4).unwrap();
        assert!(p.matmul(&[1.0; 3], 1, &mut [0.0; 2]).is_err());
        assert!(p.matmul(&[1.0; 4], 1, &mut [0.0; 1]).is_err());
        assert!(PackedF32::new(&[0.0; 7], 2, 4).is_err());
        assert!(p.matmul(&[1.0; 4], usize::MAX, &mut [0.0; 2]).is_err());
    }
}
