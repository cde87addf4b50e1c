//! A dense layer's weights and its matrix product, in f32 or one of two
//! int8 forms.
//!
//! `Int8` is liveseg's own kernel (`gemm_i8`). `Q8_0` is Candle's quantized
//! matmul (`k_quants::matmul`, what `QMatMul` runs on CPU) called on slices:
//! the weights are Q8_0 blocks (32 int8 values and one f16 scale), and each
//! product quantizes its input rows to Q8_0 too, so both sides of every dot
//! product are int8. 384 and 1536 are multiples of the 32-wide block; the
//! 256-wide k-quants are not.

use crate::error::{ModelError, Result};
use crate::gemm_f32::{self, MatRef, Threads};
use crate::gemm_i8::PackedI8;
use crate::panels;
use crate::panels_f32::{self, PackedF32};
use crate::precision::Precision;
use candle_core::quantized::GgmlType;
use candle_core::quantized::k_quants::{self, BlockQ8_0};

enum Weights {
    /// `(in, out)` row-major for `gemm`, so the product streams it
    /// contiguously (CPUs with neither panel kernel).
    F32(Vec<f32>),
    /// Packed for the panel kernels (CPUs with AVX-512, or AVX2 and FMA).
    F32Panels(PackedF32),
    /// Quantized per output channel and packed for `gemm_i8`.
    I8(PackedI8),
    /// `(out, in)`: each output's weights as `in / 32` blocks, the layout
    /// Candle's quantized matmul takes.
    Q8(Vec<BlockQ8_0>),
}

pub struct Dense {
    weights: Weights,
    bias: Vec<f32>,
    inputs: usize,
    outputs: usize,
}

impl Dense {
    /// From a PyTorch-layout `(out, in)` row-major weight and its bias.
    pub fn new(
        weight_out_in: &[f32],
        bias: Vec<f32>,
        outputs: usize,
        inputs: usize,
        precision: Precision,
    ) -> Result<Dense> {
        let panels = panels_f32::available();
        Dense::build(weight_out_in, bias, (outputs, inputs), precision, panels)
    }

    /// `new`, with the f32 kernel chosen by the caller (`f32_panels` false:
    /// gemm, as on CPUs with neither panel kernel; tests run both here).
    fn build(
        weight_out_in: &[f32],
        bias: Vec<f32>,
        (outputs, inputs): (usize, usize),
        precision: Precision,
        f32_panels: bool,
    ) -> Result<Dense> {
        if Some(weight_out_in.len()) != outputs.checked_mul(inputs) || bias.len() != outputs {
            return Err(ModelError::Load(format!(
                "dense layer {inputs}->{outputs}: weight of {} and bias of {} values",
                weight_out_in.len(),
                bias.len()
            )));
        }
        let weights = match precision {
            Precision::F32 if f32_panels => {
                Weights::F32Panels(PackedF32::new(weight_out_in, outputs, inputs)?)
            }
            Precision::F32 => {
                let mut t = vec![0.0f32; inputs * outputs];
                for (o, row) in weight_out_in.chunks_exact(inputs).enumerate() {
                    for (i, w) in row.iter().enumerate() {
                        t[i * outputs + o] = *w;
                    }
                }
                Weights::F32(t)
            }
            Precision::Int8 => Weights::I8(PackedI8::new(weight_out_in, outputs, inputs)?),
            Precision::Q8_0 => {
                if !inputs.is_multiple_of(BlockQ8_0::BLCK_SIZE) {
                    return Err(ModelError::Load(format!(
                        "q8_0 needs input widths that are multiples of {}; got {inputs}",
                        BlockQ8_0::BLCK_SIZE
                    )));
                }
                let mut blocks = vec![BlockQ8_0::zeros(); outputs * inputs / BlockQ8_0::BLCK_SIZE];
                BlockQ8_0::from_float(weight_out_in, &mut blocks);
                Weights::Q8(blocks)
            }
        };
        Ok(Dense {
            weights,
            bias,
            inputs,
            outputs,
        })
    }

    pub fn bias(&self) -> &[f32] {
        &self.bias
    }

    pub fn outputs(&self) -> usize {
        self.outputs
    }

    /// `dst[..rows * outputs] = x[..rows * inputs] * W`, without the bias
    /// (the caller fuses it into the next element-wise pass).
    pub fn product(&self, x: &[f32], rows: usize, dst: &mut [f32]) -> Result<()> {
        let (k, n) = (self.inputs, self.outputs);
        let (x, dst) = panels::operands("dense", x, dst, rows, (k, n))?;
        match &self.weights {
            Weights::F32Panels(packed) => packed.matmul(x, rows, dst),
            Weights::F32(w) => gemm_f32::matmul(
                dst,
                n,
                MatRef::row_major(x, rows, k)?,
                MatRef::row_major(w, k, n)?,
                Threads::Pool,
            ),
            Weights::I8(packed) => packed.matmul(x, rows, dst),
            Weights::Q8(blocks) => Ok(k_quants::matmul((rows, k, n), x, blocks, dst)?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case() -> (Vec<f32>, Vec<f32>, usize, usize, usize) {
        sized_case(5, 64, 12)
    }

    fn sized_case(
        rows: usize,
        inputs: usize,
        outputs: usize,
    ) -> (Vec<f32>, Vec<f32>, usize, usize, usize) {
        let w: Vec<f32> = (0..outputs * inputs)
            .map(|i| (i as f32 * 0.37).sin())
            .collect();
        let x: Vec<f32> = (0..rows * inputs)
            .map(|i| (i as f32 * 0.11).cos())
            .collect();
        (w, x, rows, inputs, outputs)
    }

    fn reference(w: &[f32], x: &[f32], rows: usize, inputs: usize, outputs: usize) -> Vec<f32> {
        let mut out = vec![0.0; rows * outputs];
        for r in 0..rows {
            for o in 0..outputs {
                out[r * outputs + o] = (0..inputs)
                    .map(|i| x[r * inputs + i] * w[o * inputs + i])
                    .sum();
            }
        }
        out
    }

    #[test]
    fn f32_and_int8_products_match_the_definition() {
        let (w, x, rows, inputs, outputs) = case();
        let want = reference(&w, &x, rows, inputs, outputs);
        for (precision, tolerance) in [
            (Precision::F32, 1e-4),
            (Precision::Int8, 0.3),
            (Precision::Q8_0, 0.15),
        ] {
            let d = Dense::new(&w, vec![0.0; outputs], outputs, inputs, precision).unwrap();
            let mut dst = vec![0.0; rows * outputs];
            d.product(&x, rows, &mut dst).unwrap();
            for (a, b) in dst.iter().zip(&want) {
                assert!((a - b).abs() < tolerance, "{precision}: {a} vs {b}");
            }
        }
    }

    /// Both f32 kernels (gemm, which CPUs with neither panel kernel run, and the
    /// panels) give the definition, and a row's result does not depend on
    /// the rows computed with it: the property the golden batch test checks
    /// end to end on whichever kernel the machine runs.
    #[test]
    fn both_f32_kernels_match_the_definition_whatever_the_batch() {
        let (w, x, rows, inputs, outputs) = sized_case(70, 96, 40);
        let want = reference(&w, &x, rows, inputs, outputs);
        for panels in [false, panels_f32::available()] {
            let shape = (outputs, inputs);
            let d = Dense::build(&w, vec![0.0; outputs], shape, Precision::F32, panels).unwrap();
            let mut all = vec![0.0; rows * outputs];
            d.product(&x, rows, &mut all).unwrap();
            for (a, b) in all.iter().zip(&want) {
                assert!((a - b).abs() < 1e-4, "panels {panels}: {a} vs {b}");
            }
            for r in [0, 1, 33, rows - 1] {
                let mut one = vec![0.0; outputs];
                d.product(&x[r * inputs..], 1, &mut one).unwrap();
                assert_eq!(
                    one,
                    all[r * outputs..(r + 1) * outputs],
                    "panels {panels}, row {r}"
                );
            }
        }
    }

    #[test]
    fn bad_shapes_are_errors_not_panics() {
        let (w, x, rows, inputs, outputs) = case();
        assert!(Dense::new(&w[1..], vec![0.0; outputs], outputs, inputs, Precision::F32).is_err());
        let odd = vec![0.0; 12 * 33];
        assert!(Dense::new(&odd, vec![0.0; 12], 12, 33, Precision::Q8_0).is_err());
        for precision in [Precision::Int8, Precision::Q8_0] {
            let d = Dense::new(&w, vec![0.0; outputs], outputs, inputs, precision).unwrap();
            let mut dst = vec![0.0; rows * outputs - 1];
            assert!(d.product(&x, rows, &mut dst).is_err());
        }
    }
}
