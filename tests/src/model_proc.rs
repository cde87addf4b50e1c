//! A `liveseg model serve` process for tests: started on a free port with
//! a model directory, SERVING once the model is loaded and warmed up, and
//! killed on drop.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The repository's model directory, or `LIVESEG_MODEL_DIR`.
pub fn model_dir() -> PathBuf {
    std::env::var_os("LIVESEG_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/all-MiniLM-L6-v2")
        })
}

pub struct ModelProc {
    child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Drop for ModelProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ModelProc {
    /// Starts the service on `model` with `extra` flags and waits until it
    /// reports SERVING.
    pub async fn start(model: &Path, extra: &[&str]) -> Result<ModelProc> {
        let dir = tempfile::tempdir()?;
        let addr_file = dir.path().join("model.addr");
        let log = std::fs::File::create(dir.path().join("model.log"))?;
        let child = Command::new(crate::liveseg_bin())
            .args(["model", "serve", "--listen", "127.0.0.1:0", "--addr-file"])
            .arg(&addr_file)
            .arg("--model-dir")
            .arg(model)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting liveseg model serve")?;
        let mut proc = ModelProc {
            child,
            url: String::new(),
            _dir: dir,
        };
        let addr = crate::poll(Duration::from_secs(30), "the address file", || {
            let a = std::fs::read_to_string(&addr_file).ok();
            async move { a.filter(|a| !a.is_empty()) }
        })
        .await?;
        proc.url = format!("http://{addr}");
        crate::await_serving(
            &proc.url,
            "liveseg.v1.ModelService",
            Duration::from_secs(60),
        )
        .await?;
        Ok(proc)
    }
}
