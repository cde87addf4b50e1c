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
//! folded into Q's weights and bias; every weight is stored transposed
//! (input-major) so the matrix products read it contiguously.

use crate::error::{ModelError, Result};
use candle_core::{DType, Device, Tensor};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;

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
    gamma: Tensor,
    beta: Tensor,
}

/// A dense layer with its weight stored `(in, out)`.
struct Dense {
    weight: Tensor,
    bias: Tensor,
}

impl Dense {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.matmul(&self.weight)?.broadcast_add(&self.bias)
    }
}

struct Layer {
    qkv: Dense,
    attention_out: Dense,
    attention_norm: LayerNorm,
    intermediate: Dense,
    output: Dense,
    output_norm: LayerNorm,
}

pub struct BertEncoder {
    config: BertConfig,
    device: Device,
    word: Tensor,
    position: Tensor,
    /// Token type 0's embedding (every text is a single segment).
    token_type: Tensor,
    embed_norm: LayerNorm,
    layers: Vec<Layer>,
}

struct Weights {
    tensors: HashMap<String, Tensor>,
    /// Some checkpoints prefix every name with `bert.`.
    prefix: &'static str,
}

impl Weights {
    fn get(&self, name: &str) -> Result<Tensor> {
        let full = format!("{}{name}", self.prefix);
        let t = self
            .tensors
            .get(&full)
            .ok_or_else(|| ModelError::Load(format!("weight {full} is missing")))?;
        Ok(t.to_dtype(DType::F32)?)
    }

    fn vector(&self, name: &str, len: usize) -> Result<Tensor> {
        let t = self.get(name)?;
        if t.dims() != [len] {
            return Err(ModelError::Load(format!(
                "weight {name}: shape {:?}, expected [{len}]",
                t.dims()
            )));
        }
        Ok(t)
    }

    /// A PyTorch `(out, in)` weight, checked and stored transposed.
    fn matrix_t(&self, name: &str, out: usize, inp: usize) -> Result<Tensor> {
        let t = self.get(name)?;
        if t.dims() != [out, inp] {
            return Err(ModelError::Load(format!(
                "weight {name}: shape {:?}, expected [{out}, {inp}]",
                t.dims()
            )));
        }
        Ok(t.t()?.contiguous()?)
    }

    fn norm(&self, name: &str, len: usize) -> Result<LayerNorm> {
        Ok(LayerNorm {
            gamma: self.vector(&format!("{name}.weight"), len)?,
            beta: self.vector(&format!("{name}.bias"), len)?,
        })
    }

    fn dense(&self, name: &str, out: usize, inp: usize) -> Result<Dense> {
        Ok(Dense {
            weight: self.matrix_t(&format!("{name}.weight"), out, inp)?,
            bias: self.vector(&format!("{name}.bias"), out)?,
        })
    }
}

impl BertEncoder {
    pub fn load(weights: &Path, config: BertConfig, device: &Device) -> Result<BertEncoder> {
        let tensors = candle_core::safetensors::load(weights, device)
            .map_err(|e| ModelError::Load(format!("{}: {e}", weights.display())))?;
        let prefix = if tensors.contains_key("bert.embeddings.word_embeddings.weight") {
            "bert."
        } else {
            ""
        };
        let w = Weights { tensors, prefix };
        let h = config.hidden_size;
        let word = w.get("embeddings.word_embeddings.weight")?;
        if word.dims() != [config.vocab_size, h] {
            return Err(ModelError::Load(format!(
                "word embeddings: shape {:?}, expected [{}, {h}]",
                word.dims(),
                config.vocab_size
            )));
        }
        let position = w.get("embeddings.position_embeddings.weight")?;
        let token_type = w
            .get("embeddings.token_type_embeddings.weight")?
            .narrow(0, 0, 1)?
            .contiguous()?;
        let embed_norm = w.norm("embeddings.LayerNorm", h)?;
        let scale = 1.0 / (config.head_dim() as f64).sqrt();
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{i}");
            let q = w.dense(&format!("{p}.attention.self.query"), h, h)?;
            let k = w.dense(&format!("{p}.attention.self.key"), h, h)?;
            let v = w.dense(&format!("{p}.attention.self.value"), h, h)?;
            let qkv = Dense {
                weight: Tensor::cat(&[(q.weight * scale)?, k.weight, v.weight], 1)?,
                bias: Tensor::cat(&[(q.bias * scale)?, k.bias, v.bias], 0)?,
            };
            layers.push(Layer {
                qkv,
                attention_out: w.dense(&format!("{p}.attention.output.dense"), h, h)?,
                attention_norm: w.norm(&format!("{p}.attention.output.LayerNorm"), h)?,
                intermediate: w.dense(
                    &format!("{p}.intermediate.dense"),
                    config.intermediate_size,
                    h,
                )?,
                output: w.dense(&format!("{p}.output.dense"), h, config.intermediate_size)?,
                output_norm: w.norm(&format!("{p}.output.LayerNorm"), h)?,
            });
        }
        Ok(BertEncoder {
            config,
            device: device.clone(),
            word,
            position,
            token_type,
            embed_norm,
            layers,
        })
    }

    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    pub fn dims(&self) -> usize {
        self.config.hidden_size
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
        }
        let hidden = self.encode(seqs)?;
        let mut out = Vec::with_capacity(seqs.len());
        let mut offset = 0;
        for s in seqs {
            let mean = hidden.narrow(0, offset, s.len())?.mean(0)?;
            offset += s.len();
            let norm = mean.sqr()?.sum_all()?.sqrt()?.to_scalar::<f32>()?;
            let mut v = mean.to_vec1::<f32>()?;
            // A zero vector cannot be normalised; it stays zero (no NaN).
            if norm > 0.0 {
                v.iter_mut().for_each(|x| *x /= norm);
            }
            out.push(v);
        }
        Ok(out)
    }

    /// The last hidden state of every token of every sequence, packed.
    fn encode(&self, seqs: &[&[u32]]) -> Result<Tensor> {
        let total: usize = seqs.iter().map(|s| s.len()).sum();
        let ids: Vec<u32> = seqs.iter().flat_map(|s| s.iter().copied()).collect();
        let positions: Vec<u32> = seqs.iter().flat_map(|s| 0..s.len() as u32).collect();
        let ids = Tensor::from_vec(ids, total, &self.device)?;
        let positions = Tensor::from_vec(positions, total, &self.device)?;
        let x = (self.word.index_select(&ids, 0)? + self.position.index_select(&positions, 0)?)?
            .broadcast_add(&self.token_type)?;
        let mut x = self.norm(&x, &self.embed_norm)?;
        for layer in &self.layers {
            x = self.layer(&x, layer, seqs)?;
        }
        Ok(x)
    }

    fn norm(&self, x: &Tensor, n: &LayerNorm) -> candle_core::Result<Tensor> {
        candle_nn::ops::layer_norm(x, &n.gamma, &n.beta, self.config.layer_norm_eps as f32)
    }

    fn layer(&self, x: &Tensor, l: &Layer, seqs: &[&[u32]]) -> Result<Tensor> {
        let h = self.config.hidden_size;
        let heads = self.config.num_attention_heads;
        let dh = self.config.head_dim();
        let qkv = l.qkv.forward(x)?;
        let mut contexts = Vec::with_capacity(seqs.len());
        let mut offset = 0;
        for s in seqs {
            let n = s.len();
            let rows = qkv.narrow(0, offset, n)?;
            offset += n;
            let split = |part: usize| -> candle_core::Result<Tensor> {
                rows.narrow(1, part * h, h)?
                    .reshape((n, heads, dh))?
                    .transpose(0, 1)?
                    .contiguous()
            };
            let (q, k, v) = (split(0)?, split(1)?, split(2)?);
            let scores = q.matmul(&k.t()?)?;
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            let context = probs
                .matmul(&v)?
                .transpose(0, 1)?
                .contiguous()?
                .reshape((n, h))?;
            contexts.push(context);
        }
        let context = Tensor::cat(&contexts, 0)?;
        let a = (l.attention_out.forward(&context)? + x)?;
        let a = self.norm(&a, &l.attention_norm)?;
        let i = l.intermediate.forward(&a)?.gelu_erf()?;
        let o = (l.output.forward(&i)? + &a)?;
        Ok(self.norm(&o, &l.output_norm)?)
    }
}
