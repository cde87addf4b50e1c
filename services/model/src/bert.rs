//! The all-MiniLM-L6-v2 encoder (BERT: 6 layers, hidden 384, 12 heads) on
//! Candle, with mean pooling over each text's tokens and L2 normalisation.
//!
//! Texts of different lengths are packed, not padded: the tokens of every
//! text in a batch are rows of one `(tokens, hidden)` matrix, so the dense
//! layers (nearly all the arithmetic) run once over exactly the real tokens,
//! and attention runs per text over its own rows. There is no attention
//! mask, so no padded position can leak into a result, and a text's
//! embedding does not depend on which texts share its batch.
//!
//! Load-time rewrites, exact up to float rounding: Q, K and V are one fused
//! `(hidden, 3*hidden)` matrix; the attention scale `1/sqrt(head_dim)` is
//! folded into Q's weights and bias.
//!
//! The forward pass runs over plain f32 buffers owned by the encoder and
//! reused across layers and calls (no allocation per op): the dense
//! products go to `gemm` directly (or, for int8, to Candle's quantized
//! matmul) and everything between them is one fused pass per step
//! (`kernels`): bias+GELU, bias+residual+layer norm, softmax. Candle is used
//! to read the safetensors file.
//!
//! Each call runs on the encoder's own rayon pool (see `BertEncoder::pool`);
//! the element-wise passes over many rows are split between its threads.

use crate::attention::{self, Heads, Span};
use crate::dense::Dense;
use crate::error::{ModelError, Result};
use crate::kernels;
use crate::precision::Precision;
use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

/// The fields of `config.json` the encoder uses.
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub layer_norm_eps: f64,
    pub hidden_act: String,
}

impl BertConfig {
    pub fn from_file(path: &Path) -> Result<BertConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ModelError::Load(format!("{}: {e}", path.display())))?;
        let config: BertConfig = serde_json::from_str(&text)
            .map_err(|e| ModelError::Load(format!("{}: {e}", path.display())))?;
        if config.hidden_act != "gelu" {
            return Err(ModelError::Load(format!(
                "hidden_act {:?}: only exact (erf) gelu is implemented",
                config.hidden_act
            )));
        }
        if config.num_attention_heads == 0
            || !config
                .hidden_size
                .is_multiple_of(config.num_attention_heads)
        {
            return Err(ModelError::Load(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                config.hidden_size, config.num_attention_heads
            )));
        }
        Ok(config)
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

struct LayerNorm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

struct Layer {
    qkv: Dense,
    attention_out: Dense,
    attention_norm: LayerNorm,
    intermediate: Dense,
    output: Dense,
    output_norm: LayerNorm,
}

/// The forward pass's working memory, sized for the largest batch seen so
/// far and reused (growing only), so steady-state calls do not allocate.
#[derive(Default)]
struct Scratch {
    /// The hidden state, tokens x hidden.
    x: Vec<f32>,
    /// Fused Q|K|V, tokens x 3·hidden.
    qkv: Vec<f32>,
    /// Attention output before its dense layer, tokens x hidden.
    ctx: Vec<f32>,
    /// Attention per (text, head), head-major, tokens x hidden.
    per_head: Vec<f32>,
    /// A dense layer's product before its fused bias/residual/norm pass.
    delta: Vec<f32>,
    /// The feed-forward's inner activations, tokens x intermediate.
    inner: Vec<f32>,
}

/// `buf[..len]`, growing `buf` first if it is shorter.
fn sized(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    &mut buf[..len]
}

pub struct BertEncoder {
    config: BertConfig,
    precision: Precision,
    /// vocab x hidden.
    word: Vec<f32>,
    /// max positions x hidden.
    position: Vec<f32>,
    /// Token type 0's embedding (every text is a single segment).
    token_type: Vec<f32>,
    embed_norm: LayerNorm,
    layers: Vec<Layer>,
    /// Locked for the whole of a call; the service calls from one thread,
    /// so the lock is uncontended.
    scratch: Mutex<Scratch>,
    /// Where every forward pass runs. Why a pool of its own, entered once
    /// per call: the caller (the service's inference thread) is no rayon
    /// worker, so each of the ~30 parallel steps of a call would otherwise
    /// be injected into the global pool from outside, with the caller
    /// asleep on a latch until it finished; inside `install` they are
    /// forks and joins between the pool's own workers. At batch 1 that made
    /// short texts 1.1-1.25x faster in f32 and 1.35-1.55x in int8
    /// (BENCHMARKS, session 15).
    pool: rayon::ThreadPool,
}

struct Weights {
    tensors: HashMap<String, Tensor>,
    /// Some checkpoints prefix every name with `bert.`.
    prefix: &'static str,
}

impl Weights {
    /// A weight's values, row-major, after checking its shape.
    fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let full = format!("{}{name}", self.prefix);
        let t = self
            .tensors
            .get(&full)
            .ok_or_else(|| ModelError::Load(format!("weight {full} is missing")))?;
        if t.dims() != shape {
            return Err(ModelError::Load(format!(
                "weight {full}: shape {:?}, expected {shape:?}",
                t.dims()
            )));
        }
        Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
    }

    fn norm(&self, name: &str, len: usize) -> Result<LayerNorm> {
        Ok(LayerNorm {
            gamma: self.get(&format!("{name}.weight"), &[len])?,
            beta: self.get(&format!("{name}.bias"), &[len])?,
        })
    }

    fn dense(&self, name: &str, out: usize, inp: usize, precision: Precision) -> Result<Dense> {
        Dense::new(
            &self.get(&format!("{name}.weight"), &[out, inp])?,
            self.get(&format!("{name}.bias"), &[out])?,
            out,
            inp,
            precision,
        )
    }

    /// Q, K and V as one `(3·hidden, hidden)` layer, Q pre-scaled.
    fn qkv(&self, prefix: &str, h: usize, scale: f32, precision: Precision) -> Result<Dense> {
        let mut weight = Vec::with_capacity(3 * h * h);
        let mut bias = Vec::with_capacity(3 * h);
        for (part, factor) in [("query", scale), ("key", 1.0), ("value", 1.0)] {
            let name = format!("{prefix}.attention.self.{part}");
            let w = self.get(&format!("{name}.weight"), &[h, h])?;
            let b = self.get(&format!("{name}.bias"), &[h])?;
            weight.extend(w.iter().map(|v| v * factor));
            bias.extend(b.iter().map(|v| v * factor));
        }
        Dense::new(&weight, bias, 3 * h, h, precision)
    }
}

impl BertEncoder {
    pub fn load(weights: &Path, config: BertConfig, precision: Precision) -> Result<BertEncoder> {
        let tensors = candle_core::safetensors::load(weights, &Device::Cpu)
            .map_err(|e| ModelError::Load(format!("{}: {e}", weights.display())))?;
        let prefix = if tensors.contains_key("bert.embeddings.word_embeddings.weight") {
            "bert."
        } else {
            ""
        };
        let w = Weights { tensors, prefix };
        let h = config.hidden_size;
        let word = w.get("embeddings.word_embeddings.weight", &[config.vocab_size, h])?;
        let position = w.get(
            "embeddings.position_embeddings.weight",
            &[config.max_position_embeddings, h],
        )?;
        let full = format!("{prefix}embeddings.token_type_embeddings.weight");
        let types = w
            .tensors
            .get(&full)
            .ok_or_else(|| ModelError::Load(format!("weight {full} is missing")))?
            .dims()
            .first()
            .copied()
            .unwrap_or(0);
        let mut token_type = w.get("embeddings.token_type_embeddings.weight", &[types, h])?;
        token_type.truncate(h);
        if token_type.len() != h {
            return Err(ModelError::Load(format!("weight {full} has no rows")));
        }
        let embed_norm = w.norm("embeddings.LayerNorm", h)?;
        let scale = 1.0 / (config.head_dim() as f32).sqrt();
        let inner = config.intermediate_size;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{i}");
            layers.push(Layer {
                qkv: w.qkv(&p, h, scale, precision)?,
                attention_out: w.dense(&format!("{p}.attention.output.dense"), h, h, precision)?,
                attention_norm: w.norm(&format!("{p}.attention.output.LayerNorm"), h)?,
                intermediate: w.dense(&format!("{p}.intermediate.dense"), inner, h, precision)?,
                output: w.dense(&format!("{p}.output.dense"), h, inner, precision)?,
                output_norm: w.norm(&format!("{p}.output.LayerNorm"), h)?,
            });
        }
        Ok(BertEncoder {
            config,
            precision,
            word,
            position,
            token_type,
            embed_norm,
            layers,
            scratch: Mutex::new(Scratch::default()),
            // Rayon's default size: RAYON_NUM_THREADS, else one per core.
            pool: rayon::ThreadPoolBuilder::new()
                .thread_name(|i| format!("encoder-{i}"))
                .build()
                .map_err(|e| ModelError::Load(format!("starting the encoder's threads: {e}")))?,
        })
    }

    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    pub fn dims(&self) -> usize {
        self.config.hidden_size
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Threads a forward pass runs on.
    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Unit-norm mean-pooled embeddings of token sequences (each with its
    /// special tokens, at most `max_position_embeddings` long, not empty).
    pub fn embed(&self, seqs: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        for (i, s) in seqs.iter().enumerate() {
            if s.is_empty() || s.len() > self.config.max_position_embeddings {
                return Err(ModelError::Invalid {
                    field: format!("sequence {i}"),
                    reason: format!(
                        "{} tokens; must be 1..={}",
                        s.len(),
                        self.config.max_position_embeddings
                    ),
                });
            }
            if let Some(bad) = s.iter().find(|id| **id as usize >= self.config.vocab_size) {
                return Err(ModelError::Invalid {
                    field: format!("sequence {i}"),
                    reason: format!("token id {bad} >= vocab size {}", self.config.vocab_size),
                });
            }
        }
        // A panic mid-call leaves only stale numbers behind, which every
        // call overwrites before reading; the poison flag carries no meaning.
        let mut scratch = self
            .scratch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let s: &mut Scratch = &mut scratch;
        let spans = self.pool.install(|| self.encode(seqs, s))?;
        let h = self.config.hidden_size;
        Ok(spans
            .iter()
            .map(|span| mean_pool_normalized(&scratch.x[span.start * h..][..span.len * h], h))
            .collect())
    }

    /// Runs the encoder; on return `scratch.x` holds the last hidden state
    /// of every token, packed in the order of the returned spans.
    fn encode(&self, seqs: &[&[u32]], s: &mut Scratch) -> Result<Vec<Span>> {
        let h = self.config.hidden_size;
        let mut spans = Vec::with_capacity(seqs.len());
        let mut start = 0;
        for seq in seqs {
            spans.push(Span {
                start,
                len: seq.len(),
            });
            start += seq.len();
        }
        let tokens = start;
        let x = sized(&mut s.x, tokens * h);
        for (row, (p, id)) in x
            .chunks_exact_mut(h)
            .zip(seqs.iter().flat_map(|seq| seq.iter().enumerate()))
        {
            let word = &self.word[*id as usize * h..][..h];
            let pos = &self.position[p * h..][..h];
            for (((v, w), p), t) in row.iter_mut().zip(word).zip(pos).zip(&self.token_type) {
                *v = w + p + t;
            }
        }
        let eps = self.config.layer_norm_eps as f32;
        kernels::layer_norm(x, &self.embed_norm.gamma, &self.embed_norm.beta, eps);
        for layer in &self.layers {
            self.layer(layer, &spans, tokens, s)?;
        }
        Ok(spans)
    }

    fn layer(&self, l: &Layer, spans: &[Span], tokens: usize, s: &mut Scratch) -> Result<()> {
        let h = self.config.hidden_size;
        let eps = self.config.layer_norm_eps as f32;
        let heads = Heads {
            count: self.config.num_attention_heads,
            dim: self.config.head_dim(),
        };
        let x = &mut s.x[..tokens * h];
        let qkv = sized(&mut s.qkv, tokens * l.qkv.outputs());
        l.qkv.product(x, tokens, qkv)?;
        by_rows(qkv, &[], l.qkv.outputs(), |q, _| {
            kernels::add_bias(q, l.qkv.bias())
        });
        let ctx = sized(&mut s.ctx, tokens * h);
        let per_head = sized(&mut s.per_head, tokens * h);
        attention::attention(qkv, spans, heads, per_head, ctx)?;
        let delta = sized(&mut s.delta, tokens * h);
        l.attention_out.product(ctx, tokens, delta)?;
        let n = &l.attention_norm;
        let b = l.attention_out.bias();
        by_rows(x, delta, h, |x, d| {
            kernels::add_bias_residual_layer_norm(x, d, b, &n.gamma, &n.beta, eps)
        });
        let inner = sized(&mut s.inner, tokens * l.intermediate.outputs());
        l.intermediate.product(x, tokens, inner)?;
        by_rows(inner, &[], l.intermediate.outputs(), |v, _| {
            kernels::add_bias_gelu(v, l.intermediate.bias())
        });
        l.output.product(inner, tokens, delta)?;
        let n = &l.output_norm;
        let b = l.output.bias();
        by_rows(x, delta, h, |x, d| {
            kernels::add_bias_residual_layer_norm(x, d, b, &n.gamma, &n.beta, eps)
        });
        Ok(())
    }
}

/// Rows below which an element-wise pass runs on the calling thread: a
/// short text's pass takes microseconds, less than waking another thread.
const PARALLEL_ROWS: usize = 32;

/// Runs the element-wise `pass` over `x`'s `width`-wide rows (with the
/// same rows of `other`, or an empty slice when `other` is empty), split
/// into one piece per pool thread when there are enough rows. Each row's
/// result is the same however the rows are split.
fn by_rows<F>(x: &mut [f32], other: &[f32], width: usize, pass: F)
where
    F: Fn(&mut [f32], &[f32]) + Sync,
{
    let rows = x.len() / width.max(1);
    let threads = rayon::current_num_threads();
    if rows < PARALLEL_ROWS || threads == 1 {
        pass(x, other);
        return;
    }
    let piece = rows.div_ceil(threads) * width;
    x.par_chunks_mut(piece).enumerate().for_each(|(i, part)| {
        let same = other.get(i * piece..(i * piece + part.len()).min(other.len()));
        pass(part, same.unwrap_or(&[]));
    });
}

/// The mean of a text's token rows, scaled to unit length (a zero vector
/// stays zero rather than becoming NaN).
fn mean_pool_normalized(rows: &[f32], width: usize) -> Vec<f32> {
    let mut mean = vec![0.0f32; width];
    let count = rows.len() / width.max(1);
    for row in rows.chunks_exact(width) {
        for (m, v) in mean.iter_mut().zip(row) {
            *m += v;
        }
    }
    mean.iter_mut().for_each(|m| *m /= count.max(1) as f32);
    let norm = mean.iter().map(|m| m * m).sum::<f32>().sqrt();
    if norm > 0.0 {
        mean.iter_mut().for_each(|m| *m /= norm);
    }
    mean
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A pass whose result for a row depends on the row's own values and on
    /// the same row of `other`, so a misaligned piece shows.
    fn pass(x: &mut [f32], other: &[f32]) {
        for (i, v) in x.iter_mut().enumerate() {
            *v = *v * 2.0 + other.get(i).copied().unwrap_or(0.5);
        }
    }

    #[test]
    fn by_rows_gives_the_serial_result_in_one_piece_per_thread() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .expect("pool");
        for (rows, with_other) in [(PARALLEL_ROWS - 1, true), (101, true), (101, false)] {
            let width = 7;
            let x: Vec<f32> = (0..rows * width).map(|i| i as f32).collect();
            let other: Vec<f32> = if with_other {
                (0..rows * width).map(|i| (i % 13) as f32 - 6.0).collect()
            } else {
                Vec::new()
            };
            let mut serial = x.clone();
            pass(&mut serial, &other);
            let mut split = x.clone();
            let calls = AtomicUsize::new(0);
            pool.install(|| {
                by_rows(&mut split, &other, width, |x, o| {
                    calls.fetch_add(1, Ordering::Relaxed);
                    pass(x, o)
                })
            });
            assert_eq!(split, serial, "{rows} rows, other: {with_other}");
            let want = if rows < PARALLEL_ROWS { 1 } else { 3 };
            assert_eq!(calls.load(Ordering::Relaxed), want, "{rows} rows");
        }
    }
}
