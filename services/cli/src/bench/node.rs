//! The node under test: this binary's `serve`, in its own process and data
//! dir on a free port, killed on drop.

use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct NodeProcess {
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// Flags added to `serve` (kept for a restart).
    extra: Vec<String>,
    pub addr: String,
    pub api_key: String,
}

impl NodeProcess {
    pub async fn start(extra: &[String]) -> Result<NodeProcess> {
        NodeProcess::start_in(tempfile::tempdir()?, extra.to_vec()).await
    }

    /// SIGTERM, then start again on the same data (recovery loads every account).
    pub async fn restart(mut self) -> Result<NodeProcess> {
        self.stop().await?;
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir()?);
        let extra = std::mem::take(&mut self.extra);
        NodeProcess::start_in(dir, extra).await
    }

    async fn start_in(dir: tempfile::TempDir, extra: Vec<String>) -> Result<NodeProcess> {
        let data: PathBuf = dir.path().join("data");
        let _ = std::fs::remove_file(data.join("node.addr"));
        let exe = std::env::current_exe().context("locating the liveseg binary")?;
        let child = Command::new(exe)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--checkpoint-interval",
                "5s",
                "--passivate-after",
                "1h",
                "--data-dir",
            ])
            .arg(&data)
            .args(&extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        let mut node = NodeProcess {
            child: Some(child),
            dir,
            extra,
            addr: String::new(),
            api_key: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(addr) = std::fs::read_to_string(data.join("node.addr"))
                .ok()
                .filter(|a| !a.is_empty())
            {
                node.addr = addr;
                break;
            }
            if Instant::now() > deadline {
                bail!("the node did not start within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        node.api_key = crate::client::read_api_key(&data)?;
        Ok(node)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Resident set size of the node process, from /proc.
    pub fn rss_bytes(&self) -> u64 {
        let Some(pid) = self.child.as_ref().map(Child::id) else {
            return 0;
        };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    pub async fn stop(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status()?;
            let deadline = Instant::now() + Duration::from_secs(60);
            while c.try_wait()?.is_none() {
                if Instant::now() > deadline {
                    let _ = c.kill();
                    bail!("the node did not stop within 60 s of SIGTERM");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(())
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
