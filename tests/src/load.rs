//! The fault tests' client side: a load generator that records every
//! request (ok / failed / indeterminate) and retries with the same
//! messageIds, and a prober that measures how long each tenant could not
//! be queried.
//!
//! Every probe event is the one and only `Fault Probe` track event of its
//! contact. Two segments make loss and double application visible through
//! the public API: `probe_seen` (at least one probe) must hold every
//! acknowledged contact, and `probe_twice` (at least two) must stay empty.

use crate::cluster::Cluster;
use crate::{Auth, json_msg};
use anyhow::Result;
use liveseg_cluster::journal::mono_ns;
use liveseg_proto::pb;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::transport::Channel;

pub const SEEN: &str = "probe_seen";
pub const TWICE: &str = "probe_twice";

pub async fn install_probe_segments(cluster: &Cluster, key: &str) -> Result<()> {
    let url = cluster
        .live_urls()
        .first()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no live node"))?;
    let channel = Channel::from_shared(url)?.connect().await?;
    let segs = pb::segment_service_client::SegmentServiceClient::with_interceptor(
        channel,
        Auth(key.into()),
    );
    for (key, at_least) in [(SEEN, 1), (TWICE, 2)] {
        let def = json!({
            "key": key, "name": key, "entity": "contact",
            "condition": {"events": {"event": {"kind": "custom", "name": "Fault Probe"}, "within": "365d", "at_least": at_least}}
        });
        // Definitions run on the shard owner: retry while shards settle.
        crate::poll(Duration::from_secs(30), "segment applied", || {
            let mut s = segs.clone();
            let d = def.to_string();
            async move {
                s.apply_segment(pb::ApplySegmentRequest { definition: d })
                    .await
                    .ok()
            }
        })
        .await?;
    }
    Ok(())
}

/// What happened to one request attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Outcome {
    /// Answered: every item accepted or a duplicate (durable).
    Ok,
    /// Refused before anything was written (e.g. RESOURCE_EXHAUSTED, bad key).
    Failed,
    /// No answer, or an error after which the write may have landed.
    Indeterminate,
    /// The reply was dropped on purpose (a lost reply); re-sent as is.
    ReplyDropped,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Attempt {
    pub batch: u64,
    pub node: String,
    pub outcome: Outcome,
    pub start_ns: i64,
    pub end_ns: i64,
}

/// Everything the generator saw.
#[derive(Default)]
pub struct Ledger {
    /// tenant -> contacts whose probe was acknowledged.
    pub acked: BTreeMap<String, Vec<String>>,
    pub attempts: Vec<Attempt>,
    /// Items answered `Duplicate` (re-sends of something durable).
    pub duplicates: u64,
    /// Batches given up after every retry failed (their items may or may not be durable).
    pub abandoned: u64,
}

/// Nodes the clients may call; the scenario updates it as it injects faults.
pub type Targets = Arc<Mutex<Vec<String>>>;

pub struct LoadConfig {
    pub tenants: Vec<(String, String)>,
    pub workers: usize,
    pub batch: usize,
    /// Every n-th batch has its first reply dropped and is re-sent.
    pub drop_reply_every: u64,
}

impl Ledger {
    pub fn acked_events(&self) -> usize {
        self.acked.values().map(Vec::len).sum()
    }
}

/// Runs until `stop` turns true, recording into `ledger`.
pub async fn generate(
    cfg: LoadConfig,
    targets: Targets,
    stop: tokio::sync::watch::Receiver<bool>,
    ledger: Arc<Mutex<Ledger>>,
) {
    let cfg = Arc::new(cfg);
    let mut tasks = Vec::new();
    for w in 0..cfg.workers {
        let (cfg, targets, ledger, stop) =
            (cfg.clone(), targets.clone(), ledger.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            worker(w, &cfg, &targets, &ledger, stop).await;
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

async fn worker(
    w: usize,
    cfg: &LoadConfig,
    targets: &Targets,
    ledger: &Mutex<Ledger>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut n: u64 = 0;
    while !*stop.borrow() {
        let batch_id = (w as u64) << 32 | n;
        let (tenant, key) = &cfg.tenants[(n as usize + w) % cfg.tenants.len()];
        let contacts: Vec<String> = (0..cfg.batch).map(|i| format!("c{w}-{n}-{i}")).collect();
        let messages: Vec<pb::SegmentMessage> = contacts
            .iter()
            .enumerate()
            .map(|(i, c)| {
                json_msg(&json!({
                    "type": "track", "event": "Fault Probe",
                    "messageId": format!("p-{c}"), "userId": c,
                    "context": {"groupId": format!("a{}", i % 7)}
                }))
            })
            .collect();
        let drop_first = cfg.drop_reply_every > 0 && n.is_multiple_of(cfg.drop_reply_every);
        let acked =
            send_until_answered(batch_id, key, &messages, drop_first, targets, ledger, &stop).await;
        let mut l = ledger.lock().unwrap_or_else(|p| p.into_inner());
        match acked {
            Some(dups) => {
                l.duplicates += dups;
                l.acked.entry(tenant.clone()).or_default().extend(contacts);
            }
            None => l.abandoned += 1,
        }
        n += 1;
    }
}

/// Sends one batch until a node answers it (same messageIds every time).
/// Returns the number of duplicates in the answer, or `None` if stopped
/// before any answer.
#[allow(clippy::too_many_arguments)]
async fn send_until_answered(
    batch: u64,
    key: &str,
    messages: &[pb::SegmentMessage],
    drop_first: bool,
    targets: &Targets,
    ledger: &Mutex<Ledger>,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Option<u64> {
    let mut attempt = 0usize;
    // A batch in flight is finished even after stop (up to a deadline), so
    // every acknowledged item is in the ledger.
    let give_up = mono_ns() + 60_000_000_000;
    loop {
        if mono_ns() > give_up || (*stop.borrow() && attempt == 0) {
            return None;
        }
        let node = {
            let t = targets.lock().unwrap_or_else(|p| p.into_inner());
            if t.is_empty() {
                None
            } else {
                Some(t[(batch as usize + attempt) % t.len()].clone())
            }
        };
        attempt += 1;
        let Some(node) = node else {
            // Every node is down or paused: back off until one is back.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let start_ns = mono_ns();
        let result = ingest(&node, key, messages).await;
        let outcome = match &result {
            Ok(_) if drop_first && attempt == 1 => Outcome::ReplyDropped,
            Ok(_) => Outcome::Ok,
            Err(code) if *code == tonic::Code::ResourceExhausted => Outcome::Failed,
            Err(_) => Outcome::Indeterminate,
        };
        ledger
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .attempts
            .push(Attempt {
                batch,
                node,
                outcome,
                start_ns,
                end_ns: mono_ns(),
            });
        match (outcome, result) {
            (Outcome::Ok, Ok(r)) => return Some(r.duplicates as u64),
            (Outcome::ReplyDropped, _) => continue,
            // Client back-off before re-sending the same batch.
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn ingest(
    url: &str,
    key: &str,
    messages: &[pb::SegmentMessage],
) -> Result<pb::IngestResponse, tonic::Code> {
    let channel = Channel::from_shared(url.to_string())
        .map_err(|_| tonic::Code::InvalidArgument)?
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(3))
        .connect()
        .await
        .map_err(|_| tonic::Code::Unavailable)?;
    let mut c =
        pb::ingest_service_client::IngestServiceClient::with_interceptor(channel, Auth(key.into()));
    let r = c
        .ingest(pb::IngestRequest {
            messages: messages.to_vec(),
        })
        .await
        .map_err(|s| s.code())?
        .into_inner();
    if r.invalid > 0 {
        // A probe is always valid; an invalid item is a harness bug.
        return Err(tonic::Code::InvalidArgument);
    }
    Ok(r)
}

/// Per tenant, the instants (mono ns) of each probe and whether it answered.
#[derive(Default, Debug)]
pub struct Availability {
    pub samples: BTreeMap<String, Vec<(i64, bool)>>,
}

impl Availability {
    /// Each outage: from the last good answer before a run of failures (or
    /// the first sample) to the first good answer after it (or the last
    /// sample, when it never recovered), ms, per tenant.
    pub fn outages_ms(&self) -> Vec<f64> {
        let mut out = Vec::new();
        for samples in self.samples.values() {
            let Some(&(first, _)) = samples.first() else {
                continue;
            };
            let mut last_ok = first;
            let mut failing = false;
            for &(t, ok) in samples {
                if ok {
                    if failing {
                        out.push((t - last_ok) as f64 / 1e6);
                    }
                    failing = false;
                    last_ok = t;
                } else {
                    failing = true;
                }
            }
            if let (true, Some(&(end, _))) = (failing, samples.last()) {
                out.push((end - last_ok) as f64 / 1e6);
            }
        }
        out
    }

    /// Whether every tenant answered at or after `since_ns`.
    pub fn all_answered_since(&self, since_ns: i64) -> bool {
        !self.samples.is_empty()
            && self
                .samples
                .values()
                .all(|s| s.iter().any(|&(t, ok)| ok && t >= since_ns))
    }
}

/// Queries every tenant every `every` through the live nodes until stopped.
/// Each tenant is probed by its own task: a probe that hangs (through a
/// node stopped by SIGSTOP, until its timeout) delays only that tenant's
/// next sample. Probing the tenants in turn, as this did until session 18,
/// spaced every tenant's samples by such a wait, and an outage measured
/// from the last good sample could include up to a timeout of the prober's
/// own waiting.
pub async fn probe(
    tenants: Vec<(String, String)>,
    targets: Targets,
    every: Duration,
    stop: tokio::sync::watch::Receiver<bool>,
    shared: Arc<Mutex<Availability>>,
) {
    // A JoinSet aborts the tenants' tasks if the run is dropped early.
    let mut probers = tokio::task::JoinSet::new();
    let count = tenants.len().max(1) as u32;
    for (i, (tenant, key)) in tenants.into_iter().enumerate() {
        let prober = TenantProber {
            tenant,
            key,
            offset: i,
            targets: targets.clone(),
            shared: shared.clone(),
        };
        // Staggered over one period, so the tenants' probes do not all
        // connect at once.
        let start = tokio::time::Instant::now() + every * i as u32 / count;
        probers.spawn(prober.run(start, every, stop.clone()));
    }
    while let Some(done) = probers.join_next().await {
        if let Err(e) = done
            && e.is_panic()
        {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

/// One tenant's probes, each through the next live node in turn.
struct TenantProber {
    tenant: String,
    key: String,
    /// Where in the node rotation this tenant starts, so tenants spread.
    offset: usize,
    targets: Targets,
    shared: Arc<Mutex<Availability>>,
}

impl TenantProber {
    async fn run(
        self,
        start: tokio::time::Instant,
        every: Duration,
        stop: tokio::sync::watch::Receiver<bool>,
    ) {
        // Diagnosing long outages: LIVESEG_PROBE_LOG=1 prints each failed
        // probe, the last good one before failures (where the checker's
        // outage starts) and the first good one after (where it ends).
        let log_failures = std::env::var_os("LIVESEG_PROBE_LOG").is_some();
        let mut failing = false;
        // Paces the probes; a slow one (a timeout) delays the next, no burst.
        let mut pace = tokio::time::interval_at(start, every);
        pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let tenant = &self.tenant;
        let mut round = 0usize;
        // Stopped, or the run that owns the sender is gone.
        while !*stop.borrow() && stop.has_changed().is_ok() {
            pace.tick().await;
            let node = {
                let t = self.targets.lock().unwrap_or_else(|p| p.into_inner());
                (!t.is_empty()).then(|| t[(round + self.offset) % t.len()].clone())
            };
            round += 1;
            let ok = match node {
                Some(n) => match query(&n, &self.key).await {
                    Ok(()) => {
                        if std::mem::take(&mut failing) && log_failures {
                            eprintln!("probe {:.3} s {tenant} via {n}: ok", mono_ns() as f64 / 1e9);
                        }
                        true
                    }
                    Err(e) => {
                        if !std::mem::replace(&mut failing, true) && log_failures {
                            // Where the checker's outage starts.
                            if let Some((t, true)) = self.last_sample() {
                                eprintln!("probe {:.3} s {tenant}: last ok", t as f64 / 1e9);
                            }
                        }
                        if log_failures {
                            eprintln!(
                                "probe {:.3} s {tenant} via {n}: {e}",
                                mono_ns() as f64 / 1e9
                            );
                        }
                        false
                    }
                },
                None => false,
            };
            self.shared
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .samples
                .entry(tenant.clone())
                .or_default()
                .push((mono_ns(), ok));
        }
    }

    fn last_sample(&self) -> Option<(i64, bool)> {
        self.shared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .samples
            .get(&self.tenant)
            .and_then(|s| s.last().copied())
    }
}

async fn query(url: &str, key: &str) -> Result<(), String> {
    let ep = Channel::from_shared(url.to_string()).map_err(|e| e.to_string())?;
    let channel = ep
        .connect_timeout(Duration::from_millis(300))
        .timeout(Duration::from_millis(800))
        .connect()
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let mut m = pb::membership_service_client::MembershipServiceClient::with_interceptor(
        channel,
        Auth(key.into()),
    );
    m.list_members(pb::ListMembersRequest {
        segment: SEEN.into(),
        page_size: 1,
        page_token: String::new(),
    })
    .await
    .map(|_| ())
    .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
}
