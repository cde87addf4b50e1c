//! The workload (`liveseg generate`, one deterministic file per tenant) and
//! the ingest driver: a fixed number of batches in flight, spread over
//! every node and tenant, each request timed.

use anyhow::{Context, Result, bail};
use liveseg_proto::pb;
use liveseg_tests::cluster::Cluster;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

/// One tenant's share of the workload.
pub struct TenantLoad {
    pub name: String,
    pub lines: Vec<String>,
    pub accounts: usize,
    pub contacts: usize,
}

/// Runs `liveseg generate` for one tenant (`seed` makes tenants differ).
pub fn generate(
    name: &str,
    accounts: usize,
    days: u32,
    end: &str,
    seed: u64,
) -> Result<TenantLoad> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("events.jsonl");
    let out = std::process::Command::new(liveseg_tests::liveseg_bin())
        .args(["generate", "--accounts", &accounts.to_string()])
        .args(["--days", &days.to_string(), "--end", end])
        .args(["--seed", &seed.to_string(), "-O"])
        .arg(&file)
        .output()
        .context("running liveseg generate")?;
    if !out.status.success() {
        bail!(
            "liveseg generate failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // "generated N events (A accounts, C contacts) to ..."
    let stderr = String::from_utf8_lossy(&out.stderr);
    let contacts = stderr
        .split_once("accounts, ")
        .and_then(|(_, r)| r.split_whitespace().next())
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let lines = std::fs::read_to_string(&file)?
        .lines()
        .map(str::to_owned)
        .collect();
    Ok(TenantLoad {
        name: name.into(),
        lines,
        accounts,
        contacts,
    })
}

/// Batches of every tenant, interleaved (round-robin over tenants), so
/// every shard receives load throughout the run.
pub struct Batches {
    /// (tenant index, messages)
    pub batches: Vec<(usize, Vec<pb::SegmentMessage>)>,
    pub events: usize,
}

pub fn batches(tenants: &[TenantLoad], size: usize) -> Batches {
    let per: Vec<Vec<Vec<pb::SegmentMessage>>> = tenants
        .iter()
        .map(|t| {
            t.lines
                .chunks(size)
                .map(|c| {
                    c.iter()
                        .map(|l| pb::SegmentMessage {
                            payload: Some(pb::segment_message::Payload::Json(l.clone())),
                        })
                        .collect()
                })
                .collect()
        })
        .collect();
    let rounds = per.iter().map(Vec::len).max().unwrap_or(0);
    let mut iters: Vec<_> = per.into_iter().map(Vec::into_iter).collect();
    let mut out = Vec::new();
    for _ in 0..rounds {
        for (t, it) in iters.iter_mut().enumerate() {
            if let Some(b) = it.next() {
                out.push((t, b));
            }
        }
    }
    Batches {
        events: tenants.iter().map(|t| t.lines.len()).sum(),
        batches: out,
    }
}

/// What the driver saw.
#[derive(Debug, Default)]
pub struct Driven {
    pub acked: usize,
    pub invalid: usize,
    /// Refusals (RESOURCE_EXHAUSTED / UNAVAILABLE) that were retried.
    pub retries: usize,
    /// Latency of each answered request, sorted.
    pub latencies: Vec<Duration>,
    pub wall: Duration,
}

/// Connects to every live node once (HTTP/2 channels are shared by the
/// in-flight requests).
pub async fn channels(cluster: &Cluster) -> Result<Vec<Channel>> {
    let mut out = Vec::new();
    for url in cluster.live_urls() {
        out.push(
            Channel::from_shared(url)?
                .tcp_nodelay(true)
                .timeout(Duration::from_secs(60))
                .connect()
                .await?,
        );
    }
    Ok(out)
}

/// Sends every batch with `concurrency` requests in flight; batch `i` goes
/// to node `(i + i / tenants) % nodes`, so each node sees every tenant.
pub async fn drive(
    nodes: &[Channel],
    keys: &[String],
    batches: Arc<Batches>,
    concurrency: usize,
) -> Result<Driven> {
    let auth: Arc<Vec<MetadataValue<_>>> = Arc::new(
        keys.iter()
            .map(|k| MetadataValue::try_from(format!("Bearer {k}")))
            .collect::<Result<_, _>>()?,
    );
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (batches, next, auth) = (batches.clone(), next.clone(), auth.clone());
        let clients: Vec<_> = nodes
            .iter()
            .map(|c| pb::ingest_service_client::IngestServiceClient::new(c.clone()))
            .collect();
        let tenants = keys.len().max(1);
        tasks.push(tokio::spawn(async move {
            let mut d = Driven::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((tenant, messages)) = batches.batches.get(i) else {
                    return Ok::<Driven, anyhow::Error>(d);
                };
                let mut client = clients[(i + i / tenants) % clients.len()].clone();
                let mut attempts = 0;
                loop {
                    let mut req = tonic::Request::new(pb::IngestRequest {
                        messages: messages.clone(),
                    });
                    req.metadata_mut()
                        .insert("authorization", auth[*tenant].clone());
                    let sent = Instant::now();
                    match client.ingest(req).await {
                        Ok(r) => {
                            d.latencies.push(sent.elapsed());
                            let r = r.into_inner();
                            d.acked += (r.accepted + r.duplicates) as usize;
                            d.invalid += r.invalid as usize;
                            break;
                        }
                        Err(s)
                            if attempts < 200
                                && matches!(
                                    s.code(),
                                    tonic::Code::ResourceExhausted | tonic::Code::Unavailable
                                ) =>
                        {
                            attempts += 1;
                            d.retries += 1;
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        Err(s) => bail!("ingest failed: {s}"),
                    }
                }
            }
        }));
    }
    let mut all = Driven::default();
    for t in tasks {
        let d = t.await??;
        all.acked += d.acked;
        all.invalid += d.invalid;
        all.retries += d.retries;
        all.latencies.extend(d.latencies);
    }
    all.wall = started.elapsed();
    all.latencies.sort_unstable();
    Ok(all)
}

/// Waits until placement has reached its fixed point for the `n` running
/// nodes (another placement round would move nothing) and every shard's
/// lease is held by its assigned owner: `Cluster::start` returns once
/// every shard is served, which can be before the later nodes got theirs.
pub async fn settle_placement(cluster: &Cluster, n: usize) -> Result<()> {
    use liveseg_cluster::coordinator::Coordinator;
    use liveseg_cluster::placement::{Node, PlacementInput, Settling, plan};
    let coordinator = Coordinator::new(cluster.redis_store()?);
    liveseg_tests::poll(Duration::from_secs(60), "placement fixed point", || {
        let done = (|| -> Option<()> {
            let live = coordinator.live_nodes(1500).ok()?;
            let a = coordinator.assignment().ok()?;
            let current: Vec<Option<String>> = (0..cluster.shards)
                .map(|s| a.owners.get(&s).cloned())
                .collect();
            let nodes: Vec<Node> = live
                .iter()
                .map(|id| Node {
                    id: id.clone(),
                    weight: 1,
                })
                .collect();
            let p = plan(&PlacementInput {
                shards: cluster.shards,
                live: &nodes,
                current: &current,
                max_moves: 16,
                load_factor: 1.1,
                // The fixed point the leader reaches once every shard has
                // settled.
                settling: Settling::NONE,
                standby: &[],
            });
            (live.len() == n && p.moves.is_empty()).then_some(())
        })();
        async move { done }
    })
    .await?;
    cluster.wait_balanced(Duration::from_secs(60)).await
}

/// Admin clients of every live node (any valid key may read Stats).
pub async fn admins(
    cluster: &Cluster,
) -> Result<Vec<pb::admin_service_client::AdminServiceClient<Channel>>> {
    Ok(channels(cluster)
        .await?
        .into_iter()
        .map(pb::admin_service_client::AdminServiceClient::new)
        .collect())
}

/// Stats of every node, each summing the shards it serves.
pub async fn stats(
    admins: &[pb::admin_service_client::AdminServiceClient<Channel>],
    key: &str,
) -> Result<Vec<pb::NodeStats>> {
    let mut out = Vec::new();
    for a in admins {
        let mut req = tonic::Request::new(pb::StatsRequest {});
        req.metadata_mut()
            .insert("authorization", format!("Bearer {key}").parse()?);
        out.push(a.clone().stats(req).await?.into_inner());
    }
    Ok(out)
}

/// Polls Stats of every node until every shard has applied all it holds
/// and the logs hold at least `accepted` events; returns the last stats.
pub async fn wait_applied(
    admins: &[pb::admin_service_client::AdminServiceClient<Channel>],
    key: &str,
    accepted: u64,
    deadline: Duration,
) -> Result<Vec<pb::NodeStats>> {
    liveseg_tests::poll(deadline, "every acknowledged event applied", || async {
        let s = stats(admins, key).await.ok()?;
        let head: u64 = s.iter().map(|x| x.log_head).sum();
        let applied: u64 = s.iter().map(|x| x.applied_seq).sum();
        (head >= accepted && applied >= head).then_some(s)
    })
    .await
}

/// A numeric field of Redis `INFO <section>` (0 if absent).
pub fn redis_info(cluster: &Cluster, section: &str, field: &str) -> Result<u64> {
    let text: String = cluster
        .redis_store()?
        .with_conn(|c| ::redis::cmd("INFO").arg(section).query(c))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0))
}
