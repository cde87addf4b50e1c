//! Recovery after kill -9 of a shard owner, against the state the shard
//! holds: two nodes, one tenant with `accounts` accounts; ingest, wait
//! until applied, checkpoint, kill the owner of the tenant's shard, then
//! measure from the kill:
//! - lease left: the victim's last recorded lease deadline (journal);
//! - takeover: the survivor's acquisition of the shard (journal);
//! - load: the survivor's `shard serving ... load_ms=` (checkpoint read +
//!   tail replay), with the shards it took over that hold no data as peer;
//! - client-visible: the first ListMembers through the survivor that
//!   answers the same first page as before the kill (polled every 20 ms).

use crate::load::{self, TenantLoad};
use crate::sys;
use anyhow::{Context, Result, ensure};
use liveseg_cluster::journal::{Kind, mono_ns};
use liveseg_cluster::placement::shard_of;
use liveseg_proto::pb;
use liveseg_tests::Auth;
use liveseg_tests::cluster::{Cluster, RedisFsync, read_journals};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// The starter segments every tenant gets.
const PRESETS: &[&str] = &[
    "engaged_target_contacts",
    "engaged_non_target_contacts",
    "dormant_high_fit_accounts",
    "decaying_customers",
    "sunset_candidates",
    "tier1_pricing_intent",
];

#[derive(Debug, Clone)]
pub struct RecoveryRun {
    pub accounts: usize,
    pub contacts: u64,
    pub events: usize,
    /// Checkpoint RPC on the owner (every account changed since the last one).
    pub checkpoint: Duration,
    pub checkpointed_accounts: u32,
    /// Redis memory of the shard's account states and event stream.
    pub state_bytes: u64,
    pub stream_bytes: u64,
    pub lease_left_ms: f64,
    pub takeover_ms: f64,
    pub load_ms: f64,
    /// Slowest load of the shards without data the survivor took over.
    pub empty_load_ms: f64,
    pub first_answer_ms: f64,
    pub same_answer_ms: f64,
    /// The victim was also the coordinator leader (placement then waits
    /// for a new leader).
    pub victim_led: bool,
    pub accounts_before: u64,
    pub accounts_after: u64,
    /// AOF rewrites Redis forked from the kill until the answer (each
    /// competes for the cores with the recovery).
    pub aof_rewrites: u64,
    /// CPU seconds from the kill until the same answer: survivor, redis.
    pub cpu_survivor_s: f64,
    pub cpu_redis_s: f64,
}

type Members = pb::membership_service_client::MembershipServiceClient<
    tonic::service::interceptor::InterceptedService<Channel, Auth>,
>;

async fn first_page(m: &Members, segment: &str) -> Result<Vec<String>, tonic::Status> {
    let r = m
        .clone()
        .list_members(pb::ListMembersRequest {
            segment: segment.into(),
            page_size: 50,
            page_token: String::new(),
        })
        .await?
        .into_inner();
    Ok(r.members.into_iter().map(|x| x.id).collect())
}

pub async fn run(
    shards: u32,
    tenant: &TenantLoad,
    batch: usize,
    concurrency: usize,
    hz: f64,
    kill_leader: bool,
) -> Result<RecoveryRun> {
    let mut cluster = Cluster::start(2, shards, RedisFsync::Always).await?;
    load::settle_placement(&cluster, 2).await?;
    // A tenant name whose shard's owner is (or is not) the leader.
    let leader = cluster.leader()?.context("no coordinator leader")?;
    let mut k = 0;
    let (name, shard) = loop {
        let name = format!("{}x{k}", tenant.name);
        let shard = shard_of(&name, shards);
        if (cluster.lease_holder(shard)? == Some(leader)) == kill_leader {
            break (name, shard);
        }
        k += 1;
    };
    let key = cluster
        .admin()
        .await?
        .create_tenant(pb::CreateTenantRequest { name })
        .await?
        .into_inner()
        .api_key;
    let channels = load::channels(&cluster).await?;
    let admins = load::admins(&cluster).await?;
    let batches = Arc::new(load::batches(std::slice::from_ref(tenant), batch));
    let d = load::drive(&channels, std::slice::from_ref(&key), batches, concurrency).await?;
    ensure!(
        d.acked == tenant.lines.len(),
        "not every event acknowledged"
    );
    load::wait_applied(
        &admins,
        &cluster.api_key,
        d.acked as u64,
        Duration::from_secs(600),
    )
    .await?;

    let owner = cluster
        .lease_holder(shard)?
        .context("the tenant's shard has no owner")?;
    let survivor = 1 - owner;
    let (mut checkpoint, mut checkpointed_accounts) = (Duration::ZERO, 0);
    for (slot, a) in admins.iter().enumerate() {
        let mut req = tonic::Request::new(pb::CheckpointRequest {});
        req.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", cluster.admin_key).parse()?,
        );
        let started = Instant::now();
        let r = a.clone().checkpoint(req).await?.into_inner();
        if slot == owner {
            checkpoint = started.elapsed();
            checkpointed_accounts = r.accounts;
        }
    }
    let before = load::stats(&admins, &cluster.api_key).await?;
    let contacts = before[owner].resident_contacts;
    let (state_bytes, stream_bytes) = shard_bytes(&cluster, shard)?;

    let channel = Channel::from_shared(cluster.nodes[survivor].url())?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_millis(300))
        .timeout(Duration::from_secs(2))
        .connect()
        .await?;
    let members: Members = pb::membership_service_client::MembershipServiceClient::with_interceptor(
        channel,
        Auth(key.clone()),
    );
    // A segment with members: its first page must come back unchanged.
    let mut reference = None;
    for seg in PRESETS {
        let page = first_page(&members, seg).await?;
        if !page.is_empty() {
            reference = Some((*seg, page));
            break;
        }
    }
    let (segment, page) = reference.context("every starter segment is empty")?;
    let log_offset = std::fs::metadata(&cluster.nodes[survivor].log)?.len();

    let survivor_pid = cluster.nodes[survivor].pid().unwrap_or(0);
    let redis_pid = cluster.redis.pid().unwrap_or(0);
    let cpu0 = (
        sys::proc_ticks(survivor_pid),
        sys::proc_ticks_with(redis_pid, true),
    );
    let victim_led = cluster.leader()? == Some(owner);
    let rewrites = load::redis_info(&cluster, "persistence", "aof_rewrites")?;
    let killed_at = mono_ns();
    let killed = Instant::now();
    cluster.kill9(owner);
    let mut first_answer = None;
    let deadline = killed + Duration::from_secs(60);
    let mut pace = tokio::time::interval(Duration::from_millis(20));
    let same_answer = loop {
        pace.tick().await;
        ensure!(
            Instant::now() < deadline,
            "no answer within 60 s of the kill"
        );
        if let Ok(p) = first_page(&members, segment).await {
            let at = killed.elapsed();
            first_answer.get_or_insert(at);
            if p == page {
                break at;
            }
        }
    };
    let cpu1 = (
        sys::proc_ticks(survivor_pid),
        sys::proc_ticks_with(redis_pid, true),
    );
    let first_answer = first_answer.unwrap_or(same_answer);
    // Rewrites finished since the kill (including one running at the
    // kill) plus one still running.
    let rewrites = load::redis_info(&cluster, "persistence", "aof_rewrites")?
        + load::redis_info(&cluster, "persistence", "aof_rewrite_in_progress")?
        - rewrites;

    // Ownership journals: the victim's last lease deadline and the new
    // owner's acquisition of the shard.
    let records = read_journals(&cluster.journals())?;
    let victim = format!("n{owner}-");
    let lease_end = records
        .iter()
        .filter(|r| r.shard == shard && r.node.starts_with(&victim))
        .filter_map(|r| r.deadline_ns)
        .max()
        .context("the victim journaled no lease")?;
    let acquired = records
        .iter()
        .filter(|r| {
            r.shard == shard
                && r.kind == Kind::Acquire
                && r.mono_ns > killed_at
                && !r.node.starts_with(&victim)
        })
        .map(|r| r.mono_ns)
        .min()
        .context("no takeover in the journals")?;
    let (load_ms, empty_load_ms) = load_times(&cluster.nodes[survivor].log, log_offset, shard)?;
    let after = load::stats(&admins[survivor..=survivor], &cluster.api_key).await?;
    Ok(RecoveryRun {
        accounts: tenant.accounts,
        contacts,
        events: tenant.lines.len(),
        checkpoint,
        checkpointed_accounts,
        state_bytes,
        stream_bytes,
        lease_left_ms: (lease_end - killed_at) as f64 / 1e6,
        takeover_ms: (acquired - killed_at) as f64 / 1e6,
        load_ms: load_ms.context("the survivor logged no `shard serving` for the shard")?,
        empty_load_ms,
        first_answer_ms: first_answer.as_secs_f64() * 1e3,
        same_answer_ms: same_answer.as_secs_f64() * 1e3,
        victim_led,
        accounts_before: before[owner].resident_accounts,
        aof_rewrites: rewrites,
        accounts_after: after.first().map_or(0, |s| s.resident_accounts),
        cpu_survivor_s: cpu1.0.saturating_sub(cpu0.0) as f64 / hz,
        cpu_redis_s: cpu1.1.saturating_sub(cpu0.1) as f64 / hz,
    })
}

/// `MEMORY USAGE` of the shard's account states and of its event stream.
fn shard_bytes(cluster: &Cluster, shard: u32) -> Result<(u64, u64)> {
    let prefix = liveseg_store::redis::keys::shard(shard);
    let store = cluster.redis_store()?;
    let usage = |key: String| -> Result<u64> {
        let v: Option<u64> = store
            .with_conn(|c| {
                ::redis::cmd("MEMORY")
                    .arg("USAGE")
                    .arg(&key)
                    .arg("SAMPLES")
                    .arg(0)
                    .query(c)
            })
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(v.unwrap_or(0))
    };
    Ok((
        usage(format!("{prefix}astate"))?,
        usage(format!("{prefix}ev"))?,
    ))
}

/// From the survivor's log after `offset`: the load time of `shard` and
/// the slowest load among the other shards it started serving.
fn load_times(log: &std::path::Path, offset: u64, shard: u32) -> Result<(Option<f64>, f64)> {
    let text = std::fs::read(log)?;
    let tail = String::from_utf8_lossy(text.get(offset as usize..).unwrap_or_default());
    let field = |line: &str, name: &str| -> Option<u64> {
        let at = line.find(&format!(" {name}="))? + name.len() + 2;
        line[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    let (mut mine, mut empty) = (None, 0.0f64);
    for line in tail.lines().filter(|l| l.contains("shard serving")) {
        let (Some(s), Some(ms)) = (field(line, "shard"), field(line, "load_ms")) else {
            continue;
        };
        if s == u64::from(shard) {
            mine = Some(ms as f64);
        } else {
            empty = empty.max(ms as f64);
        }
    }
    Ok((mine, empty))
}
