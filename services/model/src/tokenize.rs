//! Tokenization as sentence-transformers does it for all-MiniLM-L6-v2: at
//! most 256 tokens including `[CLS]` and `[SEP]`, truncating the end. The
//! shipped `tokenizer.json` truncates and pads to 128; both are overridden
//! here (128 would cut long emails short, and fixed padding would compute
//! 128 positions for a subject line). Nothing is padded at all: the encoder
//! packs sequences of different lengths into one matrix.

use crate::error::{ModelError, Result};
use std::path::Path;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

/// sentence-transformers' `max_seq_length` for this model.
pub const MAX_TOKENS: usize = 256;

pub struct TextTokenizer {
    inner: Tokenizer,
    max_tokens: usize,
}

/// The token ids of one text and whether it was cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    pub ids: Vec<u32>,
    pub truncated: bool,
}

impl TextTokenizer {
    pub fn from_file(path: &Path, max_tokens: usize) -> Result<TextTokenizer> {
        let mut inner = Tokenizer::from_file(path)
            .map_err(|e| ModelError::Load(format!("{}: {e}", path.display())))?;
        inner.with_padding(None);
        inner
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| ModelError::Load(format!("truncation settings: {e}")))?;
        Ok(TextTokenizer { inner, max_tokens })
    }

    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Token ids of each text, `[CLS]` and `[SEP]` included; the error names
    /// the text that failed.
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<Tokens>> {
        texts
            .iter()
            .enumerate()
            .map(|(index, text)| {
                let enc = self
                    .inner
                    .encode(*text, true)
                    .map_err(|e| ModelError::Tokenize {
                        index,
                        reason: e.to_string(),
                    })?;
                Ok(Tokens {
                    truncated: !enc.get_overflowing().is_empty(),
                    ids: enc.get_ids().to_vec(),
                })
            })
            .collect()
    }
}
