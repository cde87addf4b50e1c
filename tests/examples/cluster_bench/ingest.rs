//! Ingest through a fresh cluster of `n` nodes (or, as the peer, one
//! standalone node on its embedded store): acknowledged events/s,
//! per-request latency, time until everything acknowledged is applied,
//! and the CPU each kind of process used meanwhile.

use crate::load::{self, Batches, TenantLoad};
use crate::sys::{self, CpuSnap, CpuUse};
use anyhow::{Result, ensure};
use liveseg_proto::pb;
use liveseg_tests::cluster::{Cluster, RedisFsync};
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::Channel;

#[derive(Debug, Clone)]
pub struct IngestRun {
    /// Cluster nodes; 0 for the standalone peer.
    pub nodes: usize,
    pub retries: usize,
    pub acked_per_s: f64,
    pub applied_per_s: f64,
    /// From the last acknowledgement until everything is applied.
    pub apply_lag: Duration,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// CPU while requests were being acknowledged.
    pub cpu_ingest: CpuUse,
    /// CPU microseconds per event from the first request until everything
    /// was applied: (all nodes, redis-server, bench client).
    pub us_per_event: (f64, f64, f64),
    /// Shards each node served.
    pub shards_per_node: Vec<usize>,
    /// Events each node applied (the owners of the shards).
    pub applied_per_node: Vec<u64>,
    /// `sys::calibrate` right before the setup started.
    pub speed: f64,
    /// AOF rewrites Redis forked during the run.
    pub aof_rewrites: u64,
}

/// What a measurement needs of the system under test.
struct Target<'a> {
    channels: Vec<Channel>,
    admins: Vec<pb::admin_service_client::AdminServiceClient<Channel>>,
    /// A key Stats accepts.
    stats_key: &'a str,
    keys: Vec<String>,
    node_pids: Vec<u32>,
    redis_pid: Option<u32>,
}

async fn create_tenants(
    admin: &mut pb::admin_service_client::AdminServiceClient<
        tonic::service::interceptor::InterceptedService<Channel, liveseg_tests::Auth>,
    >,
    tenants: &[TenantLoad],
) -> Result<Vec<String>> {
    let mut keys = Vec::new();
    for t in tenants {
        let r = admin
            .create_tenant(pb::CreateTenantRequest {
                name: t.name.clone(),
            })
            .await?
            .into_inner();
        keys.push(r.api_key);
    }
    Ok(keys)
}

pub async fn run(
    n: usize,
    shards: u32,
    tenants: &[TenantLoad],
    batches: Arc<Batches>,
    concurrency: usize,
    hz: f64,
) -> Result<IngestRun> {
    let speed = sys::calibrate();
    let cluster = Cluster::start(n, shards, RedisFsync::Always).await?;
    let keys = create_tenants(&mut cluster.admin().await?, tenants).await?;
    load::settle_placement(&cluster, n).await?;
    let mut shards_per_node = Vec::new();
    for slot in 0..n {
        shards_per_node.push(cluster.leases_held_by(&[slot])?);
    }
    let target = Target {
        channels: load::channels(&cluster).await?,
        admins: load::admins(&cluster).await?,
        stats_key: &cluster.api_key,
        keys,
        node_pids: cluster.nodes.iter().filter_map(|x| x.pid()).collect(),
        redis_pid: cluster.redis.pid(),
    };
    let rewrites = load::redis_info(&cluster, "persistence", "aof_rewrites")?;
    let mut r = measure(&target, batches, concurrency, hz).await?;
    r.nodes = n;
    r.shards_per_node = shards_per_node;
    r.speed = speed;
    r.aof_rewrites = load::redis_info(&cluster, "persistence", "aof_rewrites")?
        + load::redis_info(&cluster, "persistence", "aof_rewrite_in_progress")?
        - rewrites;
    Ok(r)
}

/// The peer: one `liveseg serve` without `--cluster` (embedded redb
/// store, group commit with fsync), same tenants, batches and concurrency.
pub async fn run_standalone(
    tenants: &[TenantLoad],
    batches: Arc<Batches>,
    concurrency: usize,
    hz: f64,
) -> Result<IngestRun> {
    let speed = sys::calibrate();
    let dir = tempfile::Builder::new()
        .prefix("liveseg-bench-standalone")
        .tempdir()?;
    let node =
        liveseg_tests::Node::start(&dir.path().join("data"), &["--checkpoint-interval", "1s"])
            .await?;
    let keys = create_tenants(&mut node.admin_with(&node.admin_key).await?, tenants).await?;
    let channel = Channel::from_shared(node.url())?
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(60))
        .connect()
        .await?;
    let target = Target {
        channels: vec![channel.clone()],
        admins: vec![pb::admin_service_client::AdminServiceClient::new(channel)],
        stats_key: &node.api_key,
        keys,
        node_pids: node
            .pid()
            .and_then(|p| u32::try_from(p).ok())
            .into_iter()
            .collect(),
        redis_pid: None,
    };
    let mut r = measure(&target, batches, concurrency, hz).await?;
    r.nodes = 0;
    r.shards_per_node = vec![1];
    r.speed = speed;
    Ok(r)
}

async fn measure(
    t: &Target<'_>,
    batches: Arc<Batches>,
    concurrency: usize,
    hz: f64,
) -> Result<IngestRun> {
    let s0 = CpuSnap::take(&t.node_pids, t.redis_pid);
    let d = load::drive(&t.channels, &t.keys, batches.clone(), concurrency).await?;
    let s1 = CpuSnap::take(&t.node_pids, t.redis_pid);
    ensure!(
        d.acked == batches.events && d.invalid == 0,
        "acknowledged {} of {} events ({} invalid)",
        d.acked,
        batches.events,
        d.invalid
    );
    let stats = load::wait_applied(
        &t.admins,
        t.stats_key,
        d.acked as u64,
        Duration::from_secs(600),
    )
    .await?;
    let s2 = CpuSnap::take(&t.node_pids, t.redis_pid);
    let head: u64 = stats.iter().map(|s| s.log_head).sum();
    ensure!(
        head == d.acked as u64,
        "the logs hold {head} events, {} were acknowledged",
        d.acked
    );
    let applied_wall = (s2.at - s0.at).as_secs_f64();
    let all = CpuUse::between(&s0, &s2, hz);
    let per = |cores: f64| cores * applied_wall / d.acked as f64 * 1e6;
    Ok(IngestRun {
        nodes: 0,
        retries: d.retries,
        acked_per_s: d.acked as f64 / d.wall.as_secs_f64(),
        applied_per_s: d.acked as f64 / applied_wall,
        apply_lag: s2.at - s1.at,
        p50: sys::quantile(&d.latencies, 0.50),
        p99: sys::quantile(&d.latencies, 0.99),
        max: d.latencies.last().copied().unwrap_or_default(),
        cpu_ingest: CpuUse::between(&s0, &s1, hz),
        us_per_event: (per(all.nodes), per(all.redis), per(all.client)),
        shards_per_node: Vec::new(),
        applied_per_node: stats.iter().map(|s| s.events_applied).collect(),
        speed: 0.0,
        aof_rewrites: 0,
    })
}
