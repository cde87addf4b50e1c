//! The encoder's element-wise work over contiguous f32 rows, each kernel one
//! pass over memory: bias + exact (erf) GELU, bias + residual + layer norm,
//! and row softmax.
//!
//! Why polynomials for `exp` and `erf`: libm's `expf`/`erff` are scalar
//! calls, about a fifth of candle's time on this model. The polynomials
//! below are branch-free, so the compiler turns the loops into vector code;
//! they are within a few float ulps of the true functions (the tests check
//! against float64), far inside the golden tolerance.
//!
//! Why `pulp::Arch::dispatch`: the workspace builds for baseline x86-64
//! (SSE2). `dispatch` runs a `WithSimd` body inside a function compiled for
//! AVX-512 or AVX2+FMA, whichever the CPU has (checked at run time, no
//! `unsafe` here), so the same plain loops become 16- or 8-wide code;
//! elsewhere they run as SSE2. Each kernel is a struct, not a closure: see
//! `ResidualNorm` for why.
//!
//! Reductions keep `LANES` independent partial sums, so they vectorise
//! without reassociation, and their order is fixed: a row's result never
//! depends on the other rows of the batch.

use pulp::{Simd, WithSimd};

/// Partial sums per reduction: 8 lanes (an AVX2 register of f32; on
/// AVX-512 the compiler pairs them).
const LANES: usize = 8;

const LOG2_E: f32 = std::f32::consts::LOG2_E;
/// 1.5 * 2^23: adding it rounds an f32 in (-2^22, 2^22) to an integer held
/// in the low mantissa bits.
const ROUND_MAGIC: f32 = 12_582_912.0;
/// ln 2 split in two so `n * LN2_HI` is exact (Cephes).
const LN2_HI: f32 = 355.0 / 512.0;
#[allow(clippy::excessive_precision)]
const LN2_LO: f32 = -2.121_944_40e-4;

/// `e^x` for x in [-87, 88] (clamped outside), relative error ~1e-7.
// The coefficients are quoted as published, not rounded to f32 by hand.
#[allow(clippy::excessive_precision)]
#[inline(always)]
fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let t = x * LOG2_E + ROUND_MAGIC;
    let n = t - ROUND_MAGIC;
    let r = x - n * LN2_HI - n * LN2_LO;
    // Cephes expf polynomial on |r| <= ln2/2.
    let mut p = 1.987_569_150_0e-4f32;
    p = p * r + 1.398_199_950_7e-3;
    p = p * r + 8.333_451_907_3e-3;
    p = p * r + 4.166_579_589_4e-2;
    p = p * r + 1.666_666_545_9e-1;
    p = p * r + 5.000_000_120_1e-1;
    let er = p * r * r + r + 1.0;
    // 2^n, built in the exponent field; n + 127 is in 1..=254 here.
    let n_bits = t.to_bits().wrapping_sub(ROUND_MAGIC.to_bits());
    er * f32::from_bits(n_bits.wrapping_add(127) << 23)
}

/// `erf(x)`: a rational approximation (odd degree-13 over even degree-8,
/// the one XLA and Eigen use), a few ulps from the true value; beyond
/// |x| = 4 erf is ±1 in f32.
#[allow(clippy::excessive_precision)]
#[inline(always)]
fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_258_013_06e-10f32;
    p = p * x2 + 2.770_681_424_959_02e-8;
    p = p * x2 - 2.101_024_020_825_08e-6;
    p = p * x2 - 5.692_506_394_623_46e-5;
    p = p * x2 - 7.349_906_303_268_55e-4;
    p = p * x2 - 2.954_599_808_540_25e-3;
    p = p * x2 - 1.609_603_332_624_15e-2;
    let mut q = -1.456_607_184_649_96e-5f32;
    q = q * x2 - 2.133_740_552_789_05e-4;
    q = q * x2 - 1.682_826_974_382_03e-3;
    q = q * x2 - 7.373_329_167_204_68e-3;
    q = q * x2 - 1.426_473_905_141_89e-2;
    x * p / q
}

/// `x * Φ(x)`, the exact GELU BERT uses.
#[inline(always)]
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

#[inline(always)]
fn lane_sum(xs: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().map(|v| f(*v)).sum();
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += f(*v);
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn lane_max(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, v| m.max(*v));
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a = a.max(*v);
        }
    }
    acc.iter().fold(tail, |m, v| m.max(*v))
}

/// Normalises one row in place (two passes: mean, then variance about it).
#[inline(always)]
fn normalize_row(row: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let width = row.len() as f32;
    let mean = lane_sum(row, |v| v) / width;
    let var = lane_sum(row, |v| (v - mean) * (v - mean)) / width;
    let rstd = 1.0 / (var + eps).sqrt();
    for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
        *v = (*v - mean) * rstd * g + b;
    }
}

/// Layer norm of each `gamma.len()`-wide row of `rows`, in place.
pub fn layer_norm(rows: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let delta: &[f32] = &[];
    pulp::Arch::new().dispatch(ResidualNorm {
        x: rows,
        delta,
        bias: delta,
        gamma,
        beta,
        eps,
    });
}

/// `x <- layer_norm(x + delta + bias)` row by row: the residual add, the
/// dense layer's bias and the norm in one pass.
pub fn add_bias_residual_layer_norm(
    x: &mut [f32],
    delta: &[f32],
    bias: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) {
    pulp::Arch::new().dispatch(ResidualNorm {
        x,
        delta,
        bias,
        gamma,
        beta,
        eps,
    });
}

/// Why a struct per kernel, not a closure: `dispatch` compiles the
/// `with_simd` body into a function built for the CPU's best SIMD level
/// only if the body is inlined there; a closure's body is a function of its
/// own that LLVM may leave out of line, and it then runs as baseline SSE2
/// (perf showed softmax doing exactly that). `#[inline(always)]` on
/// `with_simd` and on every helper it calls guarantees the inlining.
struct ResidualNorm<'a> {
    x: &'a mut [f32],
    /// Empty for a plain layer norm.
    delta: &'a [f32],
    bias: &'a [f32],
    gamma: &'a [f32],
    beta: &'a [f32],
    eps: f32,
}

impl WithSimd for ResidualNorm<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        let width = self.gamma.len();
        if width == 0 {
            return;
        }
        for (i, row) in self.x.chunks_exact_mut(width).enumerate() {
            if let Some(d) = self.delta.get(i * width..(i + 1) * width) {
                for ((v, d), b) in row.iter_mut().zip(d).zip(self.bias) {
                    *v += d + b;
                }
            }
            normalize_row(row, self.gamma, self.beta, self.eps);
        }
    }
}

/// `x <- gelu(x + bias)` for each `bias.len()`-wide row.
pub fn add_bias_gelu(x: &mut [f32], bias: &[f32]) {
    pulp::Arch::new().dispatch(AddBias {
        x,
        bias,
        gelu: true,
    });
}

/// `x <- x + bias` for each `bias.len()`-wide row.
pub fn add_bias(x: &mut [f32], bias: &[f32]) {
    pulp::Arch::new().dispatch(AddBias {
        x,
        bias,
        gelu: false,
    });
}

struct AddBias<'a> {
    x: &'a mut [f32],
    bias: &'a [f32],
    gelu: bool,
}

impl WithSimd for AddBias<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        if self.bias.is_empty() {
            return;
        }
        for row in self.x.chunks_exact_mut(self.bias.len()) {
            if self.gelu {
                for (v, b) in row.iter_mut().zip(self.bias) {
                    *v = gelu(*v + b);
                }
            } else {
                for (v, b) in row.iter_mut().zip(self.bias) {
                    *v += b;
                }
            }
        }
    }
}

/// Softmax of each `width`-wide row, in place (max subtracted first).
pub fn softmax_rows(x: &mut [f32], width: usize) {
    if width == 0 {
        return;
    }
    pulp::Arch::new().dispatch(SoftmaxRows { x, width });
}

struct SoftmaxRows<'a> {
    x: &'a mut [f32],
    width: usize,
}

impl WithSimd for SoftmaxRows<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        for row in self.x.chunks_exact_mut(self.width) {
            let max = lane_max(row);
            for v in row.iter_mut() {
                *v = exp(*v - max);
            }
            let inv = 1.0 / lane_sum(row, |v| v);
            for v in row.iter_mut() {
                *v *= inv;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(lo: f64, hi: f64, n: usize) -> impl Iterator<Item = f64> {
        (0..=n).map(move |i| lo + (hi - lo) * i as f64 / n as f64)
    }

    #[test]
    fn exp_is_within_a_few_ulps() {
        let mut worst = 0.0f64;
        for x in grid(-87.0, 88.0, 400_000) {
            let got = f64::from(exp(x as f32));
            let want = (x as f32 as f64).exp();
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 3e-7, "max relative error {worst}");
        assert_eq!(exp(-1000.0), exp(-87.0));
        assert!(exp(0.0) == 1.0);
    }

    #[test]
    fn erf_is_within_a_few_ulps() {
        let mut worst = 0.0f64;
        for x in grid(-6.0, 6.0, 400_000) {
            let x = x as f32;
            let got = f64::from(erf(x));
            let want = candle_core::cpu::erf::erf_f64(f64::from(x));
            worst = worst.max((got - want).abs());
        }
        assert!(worst < 5e-7, "max absolute error {worst}");
    }

    #[test]
    fn gelu_matches_the_erf_definition() {
        for x in grid(-10.0, 10.0, 20_000) {
            let want = 0.5 * x * (1.0 + candle_core::cpu::erf::erf_f64(x / 2f64.sqrt()));
            let got = f64::from(gelu(x as f32));
            assert!((got - want).abs() < 2e-6 * (1.0 + x.abs()), "gelu({x})");
        }
    }

    #[test]
    fn softmax_rows_sum_to_one_and_match_the_definition() {
        let width = 13;
        let mut x: Vec<f32> = (0..width * 3)
            .map(|i| (i as f32 * 0.37).sin() * 9.0)
            .collect();
        let orig = x.clone();
        softmax_rows(&mut x, width);
        for (row, o) in x.chunks(width).zip(orig.chunks(width)) {
            let max = o
                .iter()
                .copied()
                .fold(f64::NEG_INFINITY, |m, v| m.max(f64::from(v)));
            let denom: f64 = o.iter().map(|v| (f64::from(*v) - max).exp()).sum();
            for (p, v) in row.iter().zip(o) {
                let want = (f64::from(*v) - max).exp() / denom;
                assert!((f64::from(*p) - want).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn layer_norm_matches_the_definition() {
        let width = 20;
        let delta: Vec<f32> = (0..width * 2).map(|i| (i as f32).cos()).collect();
        let bias: Vec<f32> = (0..width).map(|i| i as f32 * 0.01).collect();
        let gamma: Vec<f32> = (0..width).map(|i| 1.0 + i as f32 * 0.1).collect();
        let beta: Vec<f32> = (0..width).map(|i| -(i as f32) * 0.05).collect();
        let mut x: Vec<f32> = (0..width * 2)
            .map(|i| (i as f32 * 0.7).sin() * 3.0)
            .collect();
        let orig = x.clone();
        add_bias_residual_layer_norm(&mut x, &delta, &bias, &gamma, &beta, 1e-12);
        for r in 0..2 {
            let v: Vec<f64> = (0..width)
                .map(|i| {
                    f64::from(orig[r * width + i])
                        + f64::from(delta[r * width + i])
                        + f64::from(bias[i])
                })
                .collect();
            let mean = v.iter().sum::<f64>() / width as f64;
            let var = v.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / width as f64;
            for i in 0..width {
                let want =
                    (v[i] - mean) / (var + 1e-12).sqrt() * f64::from(gamma[i]) + f64::from(beta[i]);
                assert!((f64::from(x[r * width + i]) - want).abs() < 1e-5);
            }
        }
    }
}
