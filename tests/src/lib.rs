//! Harness for end-to-end tests over real `liveseg` processes: start a node
//! on a free port in its own data dir, wait until it serves (polling with a
//! deadline), talk to it over real gRPC/HTTP, and kill it on drop.

pub mod checker;
pub mod cluster;
pub mod load;
pub mod model_proc;
pub mod models;
pub mod scenario;

use anyhow::{Context, Result, bail};
use liveseg_proto::pb;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// The `liveseg` binary next to the test executable (same profile).
pub fn liveseg_bin() -> PathBuf {
    if let Ok(p) = std::env::var("LIVESEG_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/<test> -> target/<profile>/liveseg
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    dir.join("liveseg")
}

/// Polls `f` until it returns Some or the deadline passes. Each check is
/// a real query of the condition; the interval only paces the checks.
pub async fn poll<T, F, Fut>(deadline: Duration, what: &str, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let check = async {
        let mut pace = tokio::time::interval(Duration::from_millis(20));
        loop {
            pace.tick().await;
            if let Some(v) = f().await {
                return v;
            }
        }
    };
    tokio::time::timeout(deadline, check)
        .await
        .map_err(|_| anyhow::anyhow!("timed out after {deadline:?} waiting for {what}"))
}

/// Polls the gRPC health service at `url` until `service` ("" for the
/// whole server) reports SERVING.
pub async fn await_serving(url: &str, service: &str, deadline: Duration) -> Result<()> {
    poll(deadline, "health SERVING", || {
        let url = url.to_string();
        async move {
            let channel = Channel::from_shared(url).ok()?.connect().await.ok()?;
            let mut h = tonic_health::pb::health_client::HealthClient::new(channel);
            let r = h
                .check(tonic_health::pb::HealthCheckRequest {
                    service: service.to_string(),
                })
                .await
                .ok()?;
            (r.into_inner().status
                == tonic_health::pb::health_check_response::ServingStatus::Serving as i32)
                .then_some(())
        }
    })
    .await
}

pub struct Node {
    pub child: Option<Child>,
    pub data_dir: PathBuf,
    pub addr: String,
    pub api_key: String,
    pub admin_key: String,
    pub log: PathBuf,
}

impl Node {
    /// Starts `liveseg serve` on 127.0.0.1:0 with `data_dir` and extra flags.
    pub async fn start(data_dir: &Path, extra: &[&str]) -> Result<Node> {
        let _ = std::fs::remove_file(data_dir.join("node.addr"));
        std::fs::create_dir_all(data_dir)?;
        let log = data_dir.join(format!("node-{}.log", std::process::id()));
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let child = Command::new(liveseg_bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {}", liveseg_bin().display()))?;
        let mut node = Node {
            child: Some(child),
            data_dir: data_dir.to_path_buf(),
            addr: String::new(),
            api_key: String::new(),
            admin_key: String::new(),
            log,
        };
        let addr_file = data_dir.join("node.addr");
        let exited = |n: &mut Node| n.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
        node.addr = poll(Duration::from_secs(60), "node.addr", || {
            let text = std::fs::read_to_string(&addr_file).ok();
            async move { text.filter(|t| !t.is_empty()) }
        })
        .await
        .with_context(|| node.log_tail())?;
        if let Some(status) = exited(&mut node) {
            bail!("node exited early ({status}): {}", node.log_tail());
        }
        let creds: serde_json::Value =
            serde_json::from_slice(&std::fs::read(data_dir.join("credentials.json"))?)?;
        node.api_key = creds["api_key"].as_str().unwrap_or_default().to_string();
        node.admin_key = creds["admin_key"].as_str().unwrap_or_default().to_string();
        let url = node.url();
        await_serving(&url, "", Duration::from_secs(30)).await?;
        Ok(node)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    /// SIGKILL: no flush, no checkpoint.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for the exit status.
    pub async fn terminate(&mut self) -> Result<std::process::ExitStatus> {
        let Some(mut c) = self.child.take() else {
            bail!("not running")
        };
        Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()?;
        let status = poll(Duration::from_secs(60), "exit after SIGTERM", || {
            let s = c.try_wait().ok().flatten();
            async move { s }
        })
        .await;
        if status.is_err() {
            let _ = c.kill();
        }
        status
    }

    async fn channel(&self) -> Result<Channel> {
        Ok(Channel::from_shared(self.url())?.connect().await?)
    }

    pub async fn ingest(
        &self,
    ) -> Result<pb::ingest_service_client::IngestServiceClient<InterceptedService<Channel, Auth>>>
    {
        Ok(
            pb::ingest_service_client::IngestServiceClient::with_interceptor(
                self.channel().await?,
                Auth(self.api_key.clone()),
            ),
        )
    }

    pub async fn segments(
        &self,
    ) -> Result<pb::segment_service_client::SegmentServiceClient<InterceptedService<Channel, Auth>>>
    {
        Ok(
            pb::segment_service_client::SegmentServiceClient::with_interceptor(
                self.channel().await?,
                Auth(self.api_key.clone()),
            ),
        )
    }

    pub async fn content(
        &self,
    ) -> Result<pb::content_service_client::ContentServiceClient<InterceptedService<Channel, Auth>>>
    {
        self.content_with(&self.api_key).await
    }

    pub async fn content_with(
        &self,
        key: &str,
    ) -> Result<pb::content_service_client::ContentServiceClient<InterceptedService<Channel, Auth>>>
    {
        Ok(
            pb::content_service_client::ContentServiceClient::with_interceptor(
                self.channel().await?,
                Auth(key.to_string()),
            ),
        )
    }

    pub async fn insight(
        &self,
    ) -> Result<pb::insight_service_client::InsightServiceClient<InterceptedService<Channel, Auth>>>
    {
        Ok(
            pb::insight_service_client::InsightServiceClient::with_interceptor(
                self.channel().await?,
                Auth(self.api_key.clone()),
            ),
        )
    }

    pub async fn membership_with(&self, key: &str) -> Result<MembershipClient> {
        membership_at(&self.url(), key).await
    }

    pub async fn membership(&self) -> Result<MembershipClient> {
        self.membership_with(&self.api_key).await
    }

    pub async fn ingest_with(
        &self,
        key: &str,
    ) -> Result<pb::ingest_service_client::IngestServiceClient<InterceptedService<Channel, Auth>>>
    {
        Ok(
            pb::ingest_service_client::IngestServiceClient::with_interceptor(
                self.channel().await?,
                Auth(key.to_string()),
            ),
        )
    }

    pub async fn admin_with(
        &self,
        key: &str,
    ) -> Result<pb::admin_service_client::AdminServiceClient<InterceptedService<Channel, Auth>>>
    {
        Ok(
            pb::admin_service_client::AdminServiceClient::with_interceptor(
                self.channel().await?,
                Auth(key.to_string()),
            ),
        )
    }

    pub async fn admin(
        &self,
    ) -> Result<pb::admin_service_client::AdminServiceClient<InterceptedService<Channel, Auth>>>
    {
        self.admin_with(&self.api_key).await
    }

    /// Waits until every durable event has been applied.
    pub async fn settle(&self) -> Result<pb::NodeStats> {
        let admin = self.admin().await?;
        poll(Duration::from_secs(120), "all events applied", || {
            let mut a = admin.clone();
            async move {
                let s = a.stats(pb::StatsRequest {}).await.ok()?.into_inner();
                (s.applied_seq >= s.log_head).then_some(s)
            }
        })
        .await
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Adds `authorization: Bearer <key>` to every call.
#[derive(Clone)]
pub struct Auth(pub String);

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let v = format!("Bearer {}", self.0)
            .parse()
            .map_err(|_| tonic::Status::invalid_argument("bad key"))?;
        req.metadata_mut().insert("authorization", v);
        Ok(req)
    }
}

/// A counter or gauge on a /metrics page (0 when absent). `name` may
/// include labels: `liveseg_x_total{kind="a"}`.
pub fn metric_value(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.split_whitespace().last()?.parse().ok())
        .unwrap_or(0.0)
}

/// A plain HTTP/1.1 GET of `path` at `addr` (`host:port`): status line,
/// headers and body as one string.
pub async fn http_get(addr: &str, path: &str) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    Ok(out)
}

/// A raw JSON message for the ingest API.
pub fn json_msg(v: &serde_json::Value) -> pb::SegmentMessage {
    pb::SegmentMessage {
        payload: Some(pb::segment_message::Payload::Json(v.to_string())),
    }
}

/// A membership client on the node at `url`, calling with `key`.
pub async fn membership_at(url: &str, key: &str) -> Result<MembershipClient> {
    let channel = Channel::from_shared(url.to_string())?.connect().await?;
    Ok(
        pb::membership_service_client::MembershipServiceClient::with_interceptor(
            channel,
            Auth(key.to_string()),
        ),
    )
}

pub type MembershipClient =
    pb::membership_service_client::MembershipServiceClient<InterceptedService<Channel, Auth>>;

/// Every member of `segment` on the node at `url`, following page tokens.
pub async fn members_at(url: &str, key: &str, segment: &str) -> Result<Vec<pb::Member>> {
    let mut m = membership_at(url, key).await?;
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let r = m
            .list_members(pb::ListMembersRequest {
                segment: segment.into(),
                page_size: 1000,
                page_token: token,
            })
            .await?
            .into_inner();
        out.extend(r.members);
        if r.next_page_token.is_empty() {
            return Ok(out);
        }
        token = r.next_page_token;
    }
}

/// All members of a segment as (entity, id, account), following page tokens.
pub async fn all_members(node: &Node, segment: &str) -> Result<Vec<(String, String, String)>> {
    Ok(members_at(&node.url(), &node.api_key, segment)
        .await?
        .into_iter()
        .map(|x| (x.entity, x.id, x.account_id))
        .collect())
}
