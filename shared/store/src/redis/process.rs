//! A real `redis-server` child process for tests, benchmarks and local
//! clusters: started on a free loopback port with its own data directory,
//! killed when dropped. Fault tests use [`RedisProcess::kill9`] and
//! [`RedisProcess::restart`] (same port, same AOF).

use crate::error::{Result, StoreError};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// When Redis fsyncs its append-only file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// Before every reply: an acknowledged write survives `kill -9` of Redis
    /// and of the machine. Required for the no-loss guarantee.
    Always,
    /// Once a second: up to about a second of acknowledged writes can be lost.
    EverySec,
}

impl Fsync {
    fn as_str(self) -> &'static str {
        match self {
            Fsync::Always => "always",
            Fsync::EverySec => "everysec",
        }
    }
}

/// A running `redis-server`.
pub struct RedisProcess {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    fsync: Fsync,
    _tmp: Option<tempfile::TempDir>,
}

impl RedisProcess {
    /// Starts a server with AOF on and the given fsync policy in a fresh
    /// temporary directory, on a free port of 127.0.0.1.
    pub fn start(fsync: Fsync) -> Result<Self> {
        let tmp = tempfile::Builder::new()
            .prefix("liveseg-redis")
            .tempdir()
            .map_err(|e| StoreError::io(std::env::temp_dir(), e))?;
        let dir = tmp.path().to_path_buf();
        let mut last = None;
        // The port is free when probed but could be taken before Redis binds it.
        for _ in 0..5 {
            let port = free_port().map_err(|e| StoreError::io(&dir, e))?;
            let mut p = RedisProcess {
                child: None,
                port,
                dir: dir.clone(),
                fsync,
                _tmp: None,
            };
            match p.spawn() {
                Ok(()) => {
                    p._tmp = Some(tmp);
                    return Ok(p);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| StoreError::Internal("redis-server did not start".into())))
    }

    /// Starts a server on a chosen port and directory (kept on drop), e.g.
    /// for `deploy/local`.
    pub fn start_at(port: u16, dir: &Path, fsync: Fsync) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        let mut p = RedisProcess {
            child: None,
            port,
            dir: dir.to_path_buf(),
            fsync,
            _tmp: None,
        };
        p.spawn()?;
        Ok(p)
    }

    fn spawn(&mut self) -> Result<()> {
        let log = self.dir.join("redis.log");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--dir", &self.dir.to_string_lossy()])
            .args(["--appendonly", "yes"])
            .args(["--appendfsync", self.fsync.as_str()])
            // Rewrite the AOF once it grows 25% past its last rewrite (Redis's
            // default is 100%). A restart loads the rewritten base as an RDB
            // image and replays the commands after it, and the replay is the
            // slow part: on 2M events (stream entries and dedupe keys) the
            // base loaded in 2.0 s and a base-sized tail took 2.4-3.4 s more.
            // The tail bounds the outage a Redis restart causes; a smaller
            // one costs a few more background rewrites.
            .args(["--auto-aof-rewrite-percentage", "25"])
            // Dedupe buckets hold a quarter window of a shard's message ids
            // each and expire whole: free them off the main thread.
            .args(["--lazyfree-lazy-expire", "yes"])
            .args(["--save", ""])
            .args(["--logfile", &log.to_string_lossy()])
            .args(["--daemonize", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                StoreError::Internal(format!(
                    "starting redis-server (is it installed? `apt-get install -y redis-server`): {e}"
                ))
            })?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.ping() {
                return Ok(());
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                self.child = None;
                return Err(StoreError::Internal(format!(
                    "redis-server exited with {status}; see {}",
                    log.display()
                )));
            }
            if Instant::now() > deadline {
                return Err(StoreError::Internal(format!(
                    "redis-server on port {} did not answer PING within 10 s",
                    self.port
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn ping(&self) -> bool {
        ::redis::Client::open(self.url().as_str())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
            .and_then(|mut c| ::redis::cmd("PING").query::<String>(&mut c))
            .is_ok()
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `kill -9`: no shutdown, no final fsync.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP: the server stops answering but keeps its connections and
    /// data (clients time out), like a long stall of its host.
    pub fn pause(&self) -> Result<()> {
        self.signal("-STOP")
    }

    /// SIGCONT after [`pause`](Self::pause).
    pub fn resume(&self) -> Result<()> {
        self.signal("-CONT")
    }

    fn signal(&self, signal: &str) -> Result<()> {
        let pid = self
            .pid()
            .ok_or_else(|| StoreError::Internal("redis-server is not running".into()))?;
        let status = std::process::Command::new("kill")
            .arg(signal)
            .arg(pid.to_string())
            .status()
            .map_err(|e| StoreError::Internal(format!("kill {signal} {pid}: {e}")))?;
        if status.success() {
            Ok(())
        } else {
            Err(StoreError::Internal(format!(
                "kill {signal} {pid}: {status}"
            )))
        }
    }

    /// Starts it again on the same port and directory (it reloads its AOF).
    pub fn restart(&mut self) -> Result<()> {
        self.kill9();
        self.spawn()
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
