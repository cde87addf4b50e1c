//! Int8 matrix products for the encoder's dense layers: weights quantized
//! once per output channel (symmetric s8), input rows quantized per call,
//! one scale and zero point per row (asymmetric u8), products summed in
//! exact i32 and scaled back to f32 once per output.
//!
//! Why its own kernel and not Candle's quantized matmul (`Precision::Q8_0`
//! keeps that path): Candle's Q8_0 product is a dot-product loop, one row x
//! column at a time, converting two f16 block scales per 32 values; on this
//! model it ran 3-5x slower than our own f32 path. Here the weights are
//! packed once into 16-column panels laid out for AVX-512 VNNI's `vpdpbusd`
//! (u8 x s8, four products summed into each i32 lane, no saturation): one
//! instruction does 64 multiply-adds, and a register tile of 8 rows x 32
//! columns reuses every loaded weight 8 times. On CPUs without VNNI the
//! panels are laid out for the AVX2 tile instead (i16, input pairs; see
//! `int8_tiles::Panels`). This is the scheme ONNX
//! Runtime's dynamic quantization runs (u8 activations, s8 weights), with a
//! finer activation scale (per row, not per tensor).
//!
//! Zero points: a row is `x ≈ s·(q - z)`, so its product with a weight
//! column `w` is `s·s_w·(Σ q·w - z·Σ w)`; `Σ w` is stored per column at load
//! time, so the inner loop multiplies raw u8 by s8 and nothing else.
//!
//! Where the CPU has no AVX-512 VNNI, an AVX2 tile (over the weights
//! widened to i16 in pairs) or a portable loop gives bit-identical results
//! (all sum exact i32), just slower; the tiles are in `int8_tiles`.

use crate::error::{ModelError, Result};
use rayon::prelude::*;
use std::cell::RefCell;

use crate::int8_tiles::{self, Kernel, Panels, Rows};
use crate::panels::{self, PANEL, Part, TILE_PANELS, TILE_ROWS};

/// The widest input an i32 sum of u8 x s8 products holds: 255 * 127 each.
pub const MAX_INPUTS: usize = (i32::MAX / (255 * 127)) as usize;

/// A dense layer's weights, quantized and packed for the kernel.
pub struct PackedI8 {
    inputs: usize,
    outputs: usize,
    /// `inputs` rounded up to a multiple of 4 (zero padded).
    k4: usize,
    /// Panels, `TILE_PANELS`-aligned, in the layout of the kernel chosen
    /// at load (see `Panels`).
    panels: Panels,
    /// The tile kernel the panels were laid out for.
    kernel: Kernel,
    /// Per output column: the dequantization scale and `Σ w` over inputs.
    scales: Vec<f32>,
    col_sums: Vec<i32>,
}

/// Input rows quantized to u8 for one product.
#[derive(Default)]
struct QuantRows {
    /// `rows` rounded up to `TILE_ROWS` rows of `k4` bytes (zero padded).
    data: Vec<u8>,
    /// `data` widened to u16, for the AVX2 tile (empty for the others):
    /// a pair of inputs is then one 32-bit broadcast.
    wide: Vec<u16>,
    scales: Vec<f32>,
    zeros: Vec<i32>,
}

impl PackedI8 {
    /// From a PyTorch-layout `(out, in)` row-major weight, for the fastest
    /// kernel this CPU runs.
    pub fn new(weight_out_in: &[f32], outputs: usize, inputs: usize) -> Result<PackedI8> {
        PackedI8::for_kernel(weight_out_in, outputs, inputs, Kernel::best())
    }

    /// `new`, laid out for `kernel`.
    fn for_kernel(
        weight_out_in: &[f32],
        outputs: usize,
        inputs: usize,
        kernel: Kernel,
    ) -> Result<PackedI8> {
        if Some(weight_out_in.len()) != outputs.checked_mul(inputs) || inputs == 0 {
            return Err(ModelError::Load(format!(
                "int8 dense layer {inputs}->{outputs}: weight of {} values",
                weight_out_in.len()
            )));
        }
        if inputs > MAX_INPUTS {
            return Err(ModelError::Load(format!(
                "int8 dense layer {inputs}->{outputs}: at most {MAX_INPUTS} inputs, \
                 or its i32 sums could overflow"
            )));
        }
        let k4 = inputs.div_ceil(4) * 4;
        let panel_count = panels::panel_count(outputs);
        let mut panels = vec![0i8; panel_count * PANEL * k4];
        let mut scales = vec![0.0f32; outputs];
        let mut col_sums = vec![0i32; outputs];
        for (o, row) in weight_out_in.chunks_exact(inputs).enumerate() {
            let max = row.iter().fold(0.0f32, |m, w| m.max(w.abs()));
            let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
            scales[o] = scale;
            let (p, c) = (o / PANEL, o % PANEL);
            for (i, w) in row.iter().enumerate() {
                let q = (w / scale).round().clamp(-127.0, 127.0) as i8;
                col_sums[o] += i32::from(q);
                panels[(p * k4 / 4 + i / 4) * 64 + c * 4 + i % 4] = q;
            }
        }
        Ok(PackedI8 {
            inputs,
            outputs,
            k4,
            panels: Panels::for_kernel(panels, k4, kernel),
            kernel,
            scales,
            col_sums,
        })
    }

    /// `dst[..rows * outputs] = x[..rows * inputs] * Wᵀ`, row-major.
    pub fn matmul(&self, x: &[f32], rows: usize, dst: &mut [f32]) -> Result<()> {
        self.matmul_on(x, rows, dst, self.kernel)
    }

    /// `matmul` on a given tile kernel (only a request: without the CPU
    /// features, or with weights laid out for another kernel, the portable
    /// loop runs).
    fn matmul_on(&self, x: &[f32], rows: usize, dst: &mut [f32], kernel: Kernel) -> Result<()> {
        let (k, n) = (self.inputs, self.outputs);
        let (x, dst) = panels::operands("int8 dense", x, dst, rows, (k, n))?;
        if rows == 0 || n == 0 {
            return Ok(());
        }
        SCRATCH.with(|cell| {
            // A product started while another is quantized on this thread
            // (a rayon worker stealing work) gets its own buffers.
            let mut own = None;
            let mut held = cell.try_borrow_mut().ok();
            let q: &mut QuantRows = match held.as_deref_mut() {
                Some(q) => q,
                None => own.insert(QuantRows::default()),
            };
            quantize_rows(x, rows, k, self.k4, q);
            q.wide.clear();
            if matches!(self.panels, Panels::Wide(_)) {
                q.wide.extend(q.data.iter().map(|b| u16::from(*b)));
            }
            let q: &QuantRows = q;
            panels::spread(rows, n, dst, |part| {
                pulp::Arch::new().dispatch(RowsTimesPanels {
                    packed: self,
                    q,
                    kernel,
                    part,
                });
            });
        });
        Ok(())
    }
}

/// One `Part` of a product. Run through `dispatch` so that scaling the
/// sums back to f32 is vector code too (the tiles have their own target
/// features).
struct RowsTimesPanels<'a> {
    packed: &'a PackedI8,
    q: &'a QuantRows,
    kernel: Kernel,
    part: Part<'a>,
}

impl pulp::WithSimd for RowsTimesPanels<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let RowsTimesPanels {
            packed,
            q,
            kernel,
            part:
                Part {
                    first,
                    count,
                    panels: (p0, p1),
                    out,
                    out_stride,
                },
        } = self;
        let k4 = packed.k4;
        let mut acc = [[0i32; PANEL * TILE_PANELS]; TILE_ROWS];
        for p in (p0..p1).step_by(TILE_PANELS) {
            let panel_len = PANEL * k4;
            let w = packed.panels.slice(p * panel_len, TILE_PANELS * panel_len);
            let col0 = p * PANEL;
            let cols = packed.outputs.saturating_sub(col0).min(PANEL * TILE_PANELS);
            let sums = &packed.col_sums[col0..col0 + cols];
            let scales = &packed.scales[col0..col0 + cols];
            // `first` is a multiple of TILE_ROWS (see `panels::spread`) and
            // the quantized rows are padded to one, so every tile is whole.
            for r0 in (first..first + count).step_by(TILE_ROWS) {
                let (a0, a1) = (r0 * k4, (r0 + TILE_ROWS) * k4);
                let a = Rows {
                    bytes: &q.data[a0..a1],
                    wide: q.wide.get(a0..a1),
                };
                int8_tiles::tile(kernel, a, w, k4, &mut acc);
                let live_rows = (first + count - r0).min(TILE_ROWS);
                for (t, acc_row) in acc.iter().enumerate().take(live_rows) {
                    let r = r0 + t;
                    let (scale, zero) = (q.scales[r], q.zeros[r]);
                    let base = (r - first) * out_stride + col0 - p0 * PANEL;
                    let dst = out[base..base + cols].iter_mut();
                    for (((d, a), s), w) in dst.zip(acc_row).zip(sums).zip(scales) {
                        *d = (a - zero * s) as f32 * (scale * w);
                    }
                }
            }
        }
    }
}

thread_local! {
    static SCRATCH: RefCell<QuantRows> = const {
        RefCell::new(QuantRows {
            data: Vec::new(),
            wide: Vec::new(),
            scales: Vec::new(),
            zeros: Vec::new(),
        })
    };
}

/// Rows quantized per task when the product's rows are split over threads.
const QUANT_CHUNK_ROWS: usize = 32;

/// Quantizes each row to u8 with its own scale and zero point, so that
/// `x ≈ scale * (q - zero)`; the range always includes 0, so exact zeros
/// stay exact. Rows are independent: chunks of them go to rayon's pool.
fn quantize_rows(x: &[f32], rows: usize, k: usize, k4: usize, q: &mut QuantRows) {
    let padded = rows.div_ceil(TILE_ROWS) * TILE_ROWS;
    q.data.clear();
    q.data.resize(padded * k4, 0);
    q.scales.clear();
    q.scales.resize(rows, 1.0);
    q.zeros.clear();
    q.zeros.resize(rows, 0);
    let tasks: Vec<QuantizeRows<'_>> = x
        .chunks(QUANT_CHUNK_ROWS * k)
        .zip(q.data.chunks_mut(QUANT_CHUNK_ROWS * k4))
        .zip(q.scales.chunks_mut(QUANT_CHUNK_ROWS))
        .zip(q.zeros.chunks_mut(QUANT_CHUNK_ROWS))
        .map(|(((x, data), scales), zeros)| QuantizeRows {
            x,
            data,
            scales,
            zeros,
            k,
            k4,
        })
        .collect();
    if tasks.len() > 1 {
        tasks
            .into_par_iter()
            .for_each(|t| pulp::Arch::new().dispatch(t));
    } else {
        tasks
            .into_iter()
            .for_each(|t| pulp::Arch::new().dispatch(t));
    }
}

/// A chunk of rows to quantize; a struct, not a closure, so `dispatch`
/// inlines the body into its AVX-512/AVX2 build (see `kernels`).
struct QuantizeRows<'a> {
    x: &'a [f32],
    data: &'a mut [u8],
    scales: &'a mut [f32],
    zeros: &'a mut [i32],
    k: usize,
    k4: usize,
}

impl pulp::WithSimd for QuantizeRows<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let rows = self
            .x
            .chunks_exact(self.k)
            .zip(self.data.chunks_exact_mut(self.k4));
        let params = self.scales.iter_mut().zip(self.zeros.iter_mut());
        for ((row, out), (scale, zero)) in rows.zip(params) {
            (*scale, *zero) = quantize_row(row, out);
        }
    }
}

/// 1.5 * 2^23 (see `quantize_row`).
const ROUND_MAGIC: f32 = 12_582_912.0;

/// Lanes of the min/max reduction: independent partial results vectorise.
const LANES: usize = 16;

/// One row into `out` (`k4 >= row.len()` bytes); returns (scale, zero).
#[inline(always)]
fn quantize_row(row: &[f32], out: &mut [u8]) -> (f32, i32) {
    let (mut lo, mut hi) = ([0.0f32; LANES], [0.0f32; LANES]);
    let mut blocks = row.chunks_exact(LANES);
    for block in &mut blocks {
        for j in 0..LANES {
            lo[j] = lo[j].min(block[j]);
            hi[j] = hi[j].max(block[j]);
        }
    }
    for v in blocks.remainder() {
        lo[0] = lo[0].min(*v);
        hi[0] = hi[0].max(*v);
    }
    let lo = lo.iter().fold(0.0f32, |m, v| m.min(*v));
    let hi = hi.iter().fold(0.0f32, |m, v| m.max(*v));
    let scale = if hi > lo { (hi - lo) / 255.0 } else { 1.0 };
    let zero = (-lo / scale).round().clamp(0.0, 255.0);
    let inv = 1.0 / scale;
    let (head, padding) = out.split_at_mut(row.len());
    for (o, v) in head.iter_mut().zip(row) {
        // Adding 1.5 * 2^23 to a value in [0, 255] leaves it rounded (to
        // nearest even) in the low mantissa bits: plain bit operations, so
        // the loop vectorises, where a float-to-u8 cast did not.
        let q = (v * inv + zero).clamp(0.0, 255.0) + ROUND_MAGIC;
        *o = q.to_bits() as u8;
    }
    // Padding inputs hold the zero point, so they add `zero * 0`.
    padding.fill(zero as u8);
    (scale, zero as i32)
}

#[cfg(test)]
#[path = "gemm_i8_tests.rs"]
mod tests;
