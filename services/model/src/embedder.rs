//! The embedding model as one plain value: tokenizer + encoder, loaded from
//! the model directory. `embed` is synchronous and runs on the calling
//! thread; the service runs it on its inference thread (`queue`).

use crate::bert::{BertConfig, BertEncoder};
use crate::error::Result;
use crate::files::ModelFiles;
use crate::precision::Precision;
use crate::tokenize::{MAX_TOKENS, TextTokenizer, Tokens};
use std::path::Path;

pub const MODEL_NAME: &str = "sentence-transformers/all-MiniLM-L6-v2";

pub struct Embedder {
    tokenizer: TextTokenizer,
    encoder: BertEncoder,
    /// See [`Embedder::model_id`].
    id: String,
}

impl Embedder {
    /// Loads the model from `dir` in f32 (exact); fails naming the fetch
    /// script when files are missing.
    pub fn load(dir: &Path) -> Result<Embedder> {
        Embedder::load_with(dir, Precision::F32)
    }

    /// Loads the model with its dense layers in `precision`.
    pub fn load_with(dir: &Path, precision: Precision) -> Result<Embedder> {
        let files = ModelFiles::locate(dir)?;
        let config = BertConfig::from_file(&files.config)?;
        let max_tokens = MAX_TOKENS.min(config.max_position_embeddings);
        let tokenizer = TextTokenizer::from_file(&files.tokenizer, max_tokens)?;
        let encoder = BertEncoder::load(&files.weights, config, precision)?;
        let id = model_id(&files, precision)?;
        Ok(Embedder {
            tokenizer,
            encoder,
            id,
        })
    }

    /// Which model computes these vectors, exactly: the model's name, the
    /// precision and a digest of its three files, e.g.
    /// `sentence-transformers/all-MiniLM-L6-v2 f32 sha256:0123456789ab`.
    /// Stored with every vector; vectors of two ids are not comparable
    /// (other weights, another tokenizer, or int8 rounding), so a node
    /// refuses to mix them (see the node's `content` module).
    pub fn model_id(&self) -> &str {
        &self.id
    }

    pub fn precision(&self) -> Precision {
        self.encoder.precision()
    }

    /// What computes the embeddings, for the service's Info RPC and logs.
    pub fn backend(&self) -> String {
        match self.precision() {
            Precision::F32 => "candle-cpu f32".to_string(),
            Precision::Int8 => "cpu int8 (liveseg kernel: s8 weights x u8 rows)".to_string(),
            Precision::Q8_0 => "candle-cpu q8_0 (candle's quantized matmul)".to_string(),
        }
    }

    /// Threads a forward pass runs on.
    pub fn threads(&self) -> usize {
        self.encoder.threads()
    }

    pub fn dims(&self) -> usize {
        self.encoder.dims()
    }

    pub fn max_tokens(&self) -> usize {
        self.tokenizer.max_tokens()
    }

    pub fn tokenize(&self, texts: &[&str]) -> Result<Vec<Tokens>> {
        self.tokenizer.encode(texts)
    }

    /// Embeddings of already tokenized texts, in order.
    pub fn embed_tokens(&self, seqs: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        self.encoder.embed(seqs)
    }

    /// Tokenizes and embeds, in one call (tests, the CLI's local mode).
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let tokens = self.tokenize(texts)?;
        let seqs: Vec<&[u32]> = tokens.iter().map(|t| t.ids.as_slice()).collect();
        self.embed_tokens(&seqs)
    }
}

/// `model_id` of the files in `dir` at `precision`: SHA-256 over the
/// config, tokenizer and weights, each prefixed by its length (so no
/// shift of bytes between files gives the same digest).
fn model_id(files: &ModelFiles, precision: Precision) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for path in [&files.config, &files.tokenizer, &files.weights] {
        let failed = |e: std::io::Error| {
            crate::error::ModelError::Load(format!("reading {}: {e}", path.display()))
        };
        let mut file = std::fs::File::open(path).map_err(failed)?;
        let len = file.metadata().map_err(failed)?.len();
        hash.update(len.to_le_bytes());
        // Streamed: the weights are ~90 MB.
        let mut buf = vec![0u8; 1 << 20];
        let mut read = 0u64;
        loop {
            let n = std::io::Read::read(&mut file, &mut buf).map_err(failed)?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            read += n as u64;
        }
        if read != len {
            return Err(crate::error::ModelError::Load(format!(
                "{} changed while it was read",
                path.display()
            )));
        }
    }
    let digest = hash.finalize();
    let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    // "int8" in ids stored before the `gemm_i8` kernel named Candle's Q8_0
    // vectors; it keeps that meaning, so a library embedded with Q8_0 is not
    // silently mixed with the other int8 kernel's vectors.
    let precision = match precision {
        Precision::F32 => "f32",
        Precision::Q8_0 => "int8",
        Precision::Int8 => "int8-rows",
    };
    Ok(format!("{MODEL_NAME} {precision} sha256:{hex}"))
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("dims", &self.dims())
            .field("max_tokens", &self.max_tokens())
            .field("precision", &self.precision())
            .finish()
    }
}

/// Cosine similarity of two vectors (0 when either is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        dot += f64::from(*x) * f64::from(*y);
        na += f64::from(*x) * f64::from(*x);
        nb += f64::from(*y) * f64::from(*y);
    }
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    (dot / (na.sqrt() * nb.sqrt())) as f32
}
