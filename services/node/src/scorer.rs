//! The live scorer: keeps the propensity scores that segment conditions
//! read up to date, without ever blocking an account actor.
//!
//! Every `every`, for each tenant whose definitions read scores, it asks
//! each resident account actor for its contacts' feature rows and latest
//! scores (a read-only query answered from the actor's own state by the
//! shared feature code), reads the same from the checkpoints of passivated
//! accounts (without waking them), sends the rows in batches to the model
//! service's `PropensityService`, and ingests each new score as a derived
//! `Propensity Scored` record through the ordinary ingest path. The record
//! is logged before any actor applies it, so a replay, a restart or a new
//! shard owner reproduces exactly the scores members were judged on,
//! whichever model is active later.
//!
//! A score is written when the contact has none yet, or when it moved by at
//! least `min_change` (or its rank by a point) from the latest score in the
//! contact's state, so time passing (days-since features) does not flood
//! the log, and a restarted node or a new shard owner does not rewrite
//! scores that did not change. Percentile ranks cover every contact of the
//! tenant (a tenant lives on one shard, so on one node).
//!
//! Between full rounds, every `refresh` (1 s by default) it rescores only
//! the contacts of accounts that received events since it last looked
//! (the dispatcher notes them; its own score records do not count), ranked
//! against the last full round's distribution: a click moves its contact's
//! score within about a second, not at the next round.

use crate::host::{Answer, Query};
use crate::ingest::Input;
use crate::runtime::Runtime;
use crate::server::{NodeInner, Units};
use crate::tenant::TenantState;
use liveseg_core::Millis;
use liveseg_core::features::FEATURE_SET;
use liveseg_core::labels::Target;
use liveseg_core::scores::{Scored, TOP_KEPT, percentiles, scored_message};
use liveseg_core::{Account, SegmentSet};
use liveseg_proto::pb;
use liveseg_proto::pb::propensity_service_client::PropensityServiceClient;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

/// Rows per Score call.
const BATCH: usize = 2_000;

#[derive(Clone, Debug)]
pub struct ScoringConfig {
    /// The model service serving `PropensityService` (`liveseg model serve --registry`).
    pub server: String,
    pub every: Duration,
    /// Smallest change of a probability worth a new record.
    pub min_change: f32,
    /// Between full rounds, accounts that received events are rescored this
    /// often (ranked against the last full round); zero: full rounds only.
    pub refresh: Duration,
    /// Longest wait for one Score call: a hung model service fails the
    /// pass (its accounts are retried) instead of stalling every tenant.
    pub timeout: Duration,
}

/// Why a tenant's scoring pass failed.
struct PassError {
    message: String,
    /// The model service did not answer (down, restarting, or slower than
    /// the timeout): the tick stops there instead of waiting on it again
    /// for every other tenant, and reconnects at the next.
    unreachable: bool,
}

impl From<String> for PassError {
    fn from(message: String) -> Self {
        PassError {
            message,
            unreachable: false,
        }
    }
}

impl PassError {
    fn of_call(target: Target, status: tonic::Status) -> Self {
        use tonic::Code;
        PassError {
            message: format!("{}: {}", target.name(), status.message()),
            unreachable: matches!(
                status.code(),
                Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled
            ),
        }
    }
}

/// A client of the model service's `PropensityService` with the pass's
/// deadlines.
async fn connect(config: &ScoringConfig) -> Result<PropensityServiceClient<Channel>, String> {
    let channel = Endpoint::from_shared(config.server.clone())
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(2))
        .timeout(config.timeout)
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(PropensityServiceClient::new(channel))
}

/// Per tenant and target, the probabilities of the last full round,
/// sorted: what a contact rescored between rounds is ranked against.
type Reference = HashMap<(Arc<str>, Target), Vec<f32>>;

/// 100 times the share of `sorted` not strictly above `p` (the rank
/// `percentiles` gives within a round).
fn rank_against(sorted: &[f32], p: f32) -> f32 {
    let higher = sorted.len() - sorted.partition_point(|x| *x <= p);
    100.0 * (1.0 - higher as f32 / sorted.len().max(1) as f32)
}

/// A percentile rank that moved this much is worth a new record.
const MIN_PERCENTILE_CHANGE: f32 = 1.0;

/// A contact's features and, per requested target, the latest score in
/// its state: (probability, percentile, stamped at).
#[derive(Debug, Clone)]
pub struct ScoringRow {
    pub contact: String,
    pub account: String,
    pub features: Vec<f32>,
    pub last: Vec<Option<(f32, f32, Millis)>>,
}

/// The scoring rows of an account at instant `t` (unsuppressed contacts
/// with features), whether it is resident or read from a checkpoint.
pub fn scoring_rows(
    account: &Account,
    set: &SegmentSet,
    targets: &[Target],
    t: Millis,
) -> Vec<ScoringRow> {
    account
        .contact_features(set, t)
        .map(|(c, features)| ScoringRow {
            contact: c.id.to_string(),
            account: account.core.id.to_string(),
            features,
            last: targets
                .iter()
                .map(|target| {
                    let slots = c.scores.as_deref()?;
                    let latest = slots
                        .slots
                        .iter()
                        .filter(|s| s.scored.target == *target)
                        .max_by_key(|s| s.ts)?;
                    // A score without a rank is rewritten with one.
                    let pct = latest.scored.percentile.unwrap_or(f32::NEG_INFINITY);
                    Some((latest.scored.probability, pct, latest.ts))
                })
                .collect(),
        })
        .collect()
}

pub fn spawn(inner: Weak<NodeInner>, config: ScoringConfig) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut client: Option<PropensityServiceClient<Channel>> = None;
        let period = match config.refresh {
            d if d.is_zero() => config.every,
            d => d.min(config.every),
        };
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reference = Reference::new();
        let mut last_full: Option<std::time::Instant> = None;
        loop {
            tick.tick().await;
            let Some(inner) = inner.upgrade() else { return };
            if client.is_none() {
                match connect(&config).await {
                    Ok(c) => client = Some(c),
                    Err(e) => {
                        tracing::warn!(server = %config.server, error = %e, "scorer cannot reach the model service");
                        metrics::counter!("liveseg_scorer_failures_total", "stage" => "connect")
                            .increment(1);
                        continue;
                    }
                }
            }
            let Some(c) = client.as_mut() else { continue };
            let started = std::time::Instant::now();
            let full = last_full.is_none_or(|t| t.elapsed() >= config.every);
            let (mut failed, mut unreachable) = (false, false);
            'tick: for rt in runtimes(&inner) {
                rt.registry.track_touched();
                for tenant in rt.tenants.all() {
                    let targets = tenant.set().score_targets.clone();
                    if targets.is_empty() {
                        continue;
                    }
                    // Taken either way: a full round covers them.
                    let touched = rt.registry.take_touched(&tenant.id);
                    // A tenant not ranked yet gets its full round now.
                    let full = full
                        || !targets
                            .iter()
                            .all(|t| reference.contains_key(&(tenant.id.clone(), *t)));
                    let rows = if full {
                        tenant_rows(&inner, &rt, &tenant, &targets).await
                    } else if touched.is_empty() {
                        continue;
                    } else {
                        account_rows(&rt, &tenant, &touched, &targets).await
                    };
                    let scored = match rows {
                        Ok(rows) => {
                            let round = Round {
                                tenant: &tenant,
                                targets: &targets,
                                full,
                            };
                            score_rows(&inner, &round, rows, &config, c, &mut reference).await
                        }
                        Err(e) => Err(PassError::from(e)),
                    };
                    if let Err(e) = scored {
                        tracing::warn!(tenant = %tenant.id, error = %e.message, "scoring pass failed; its accounts are retried");
                        metrics::counter!("liveseg_scorer_failures_total", "stage" => "pass")
                            .increment(1);
                        failed = true;
                        // The next refresh tries them again: a full round
                        // may be `every` away, and a model service that
                        // restarted must not cost the touches it missed.
                        let keys = touched.into_iter().map(|a| (tenant.id.clone(), a));
                        rt.registry.note_touched(keys.collect());
                        if e.unreachable {
                            // Tenants not reached keep their touches.
                            unreachable = true;
                            break 'tick;
                        }
                    }
                }
            }
            if failed {
                // Reconnect next round: the service may have restarted.
                client = None;
            }
            match (full, unreachable) {
                // Not a round: the next tick that reaches the service
                // starts it again, rather than `every` later.
                (true, true) => {}
                (true, false) => {
                    last_full = Some(started);
                    metrics::histogram!("liveseg_scorer_round_seconds")
                        .record(started.elapsed().as_secs_f64());
                    metrics::counter!("liveseg_scorer_rounds_total").increment(1);
                }
                (false, _) => {
                    metrics::counter!("liveseg_scorer_refreshes_total").increment(1);
                }
            }
        }
    })
}

/// Every contact of the tenant with features: from the resident actors,
/// then from the checkpoints of the accounts that are not resident.
async fn tenant_rows(
    inner: &NodeInner,
    rt: &Runtime,
    tenant: &TenantState,
    targets: &[Target],
) -> Result<Vec<ScoringRow>, String> {
    let targets: Arc<[Target]> = targets.into();
    let mut rows = Vec::new();
    // Accounts answered for, so that none is left out of the ranking (a
    // missing account would move every other contact's rank): an actor can
    // stop (passivate) between the listing and the question, and a
    // passivated account can wake (a timer) before its checkpoint is read.
    let mut covered: HashSet<String> = HashSet::new();
    for (key, actor) in rt.registry.resident(Some(&tenant.id)) {
        if let Ok(Answer::ScoringRows(r)) = actor.ask(Query::ScoringRows(targets.clone())).await {
            rows.extend(r);
            covered.insert(key.1);
        }
    }
    let accounts = tenant
        .directory
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .accounts();
    let passive = rt
        .registry
        .passive_accounts(tenant, &accounts)
        .map_err(|e| format!("reading passivated accounts: {e}"))?;
    let t = inner.clock.now().saturating_add(1);
    let resident = rows.len();
    let set = tenant.set();
    for account in &passive {
        if covered.insert(account.core.id.to_string()) {
            rows.extend(scoring_rows(account, &set, &targets, t));
        }
    }
    let from_checkpoints = rows.len() - resident;
    // The rest the way queries ask (loading the account if need be).
    let missing: Vec<String> = accounts
        .into_iter()
        .filter(|a| !covered.contains(a))
        .collect();
    rows.extend(account_rows(rt, tenant, &missing, &targets).await?);
    // Contacts scored from checkpoints in the latest round.
    metrics::gauge!("liveseg_scorer_passive_contacts").set(from_checkpoints as f64);
    Ok(rows)
}

/// The contacts of `accounts` (those that received events since the last
/// look), from their actors.
async fn account_rows(
    rt: &Runtime,
    tenant: &TenantState,
    accounts: &[String],
    targets: &[Target],
) -> Result<Vec<ScoringRow>, String> {
    let q = Query::ScoringRows(targets.into());
    let answers = crate::grpc::membership::ask_each(rt, tenant, accounts.to_vec(), q)
        .await
        .map_err(|s| format!("asking accounts: {}", s.message()))?;
    Ok(answers
        .into_iter()
        .flat_map(|a| match a {
            Answer::ScoringRows(r) => r,
            _ => Vec::new(),
        })
        .collect())
}

/// What one scoring pass covers.
struct Round<'a> {
    tenant: &'a TenantState,
    targets: &'a [Target],
    /// Every contact of the tenant (ranks among them become the reference),
    /// or only those of touched accounts (ranked against the reference).
    full: bool,
}

fn runtimes(inner: &NodeInner) -> Vec<Arc<Runtime>> {
    match &inner.units {
        Units::Standalone { runtime, .. } => vec![runtime.clone()],
        Units::Cluster(c) => c.shards.local(),
    }
}

async fn score_rows(
    inner: &NodeInner,
    round: &Round<'_>,
    rows: Vec<ScoringRow>,
    config: &ScoringConfig,
    client: &mut PropensityServiceClient<Channel>,
    reference: &mut Reference,
) -> Result<(), PassError> {
    let (tenant, targets) = (round.tenant, round.targets);
    if rows.is_empty() {
        return Ok(());
    }
    // Why records were written, for the log: no previous score, the
    // probability moved, only the rank moved.
    let mut why = [0usize; 3];
    let now = inner.clock.now();
    let mut records = Vec::new();
    for (ti, target) in targets.iter().enumerate() {
        // (row, score, version) of every contact the model service scored.
        let mut scored_rows = Vec::with_capacity(rows.len());
        // The first reply's version is pinned for the rest of the round, so
        // an activation mid-round cannot mix models in one ranking.
        let mut version = String::new();
        for (first, chunk) in rows.chunks(BATCH).enumerate().map(|(i, c)| (i * BATCH, c)) {
            let reply = client
                .score(pb::ScoreRequest {
                    target: target.name().into(),
                    version: version.clone(),
                    feature_set: FEATURE_SET.into(),
                    rows: chunk
                        .iter()
                        .map(|r| pb::FeatureRow {
                            id: r.contact.clone(),
                            features: r.features.clone(),
                        })
                        .collect(),
                    top_contributions: TOP_KEPT as u32,
                })
                .await
                .map_err(|s| PassError::of_call(*target, s))?
                .into_inner();
            if reply.scores.len() != chunk.len() {
                return Err(format!(
                    "{}: {} scores for {} rows",
                    target.name(),
                    reply.scores.len(),
                    chunk.len()
                )
                .into());
            }
            // The load the scorer puts on the model service, by kind of
            // pass: a refresh should send only the touched accounts.
            let kind = if round.full { "full" } else { "refresh" };
            metrics::counter!("liveseg_scorer_rows_total", "kind" => kind)
                .increment(chunk.len() as u64);
            version.clone_from(&reply.version);
            for (i, s) in reply.scores.into_iter().enumerate() {
                if s.error.is_empty() {
                    scored_rows.push((first + i, s, reply.version.clone()));
                } else {
                    tracing::warn!(contact = %chunk[i].contact, error = %s.error, "score refused");
                }
            }
        }
        // Percentile ranks among everyone scored in a full round
        // (top_percent); between rounds, against the last full round.
        let probabilities: Vec<f32> = scored_rows.iter().map(|(_, s, _)| s.probability).collect();
        let key = (tenant.id.clone(), *target);
        let ranks = if round.full {
            let mut sorted = probabilities.clone();
            sorted.sort_by(f32::total_cmp);
            reference.insert(key, sorted);
            percentiles(&probabilities)
        } else {
            let Some(sorted) = reference.get(&key) else {
                continue;
            };
            probabilities
                .iter()
                .map(|p| rank_against(sorted, *p))
                .collect()
        };
        for ((row, s, version), percentile) in scored_rows.into_iter().zip(ranks) {
            let contact = &rows[row].contact;
            // One score per contact and clock instant, never stamped ahead
            // of the clock (a manual or coarse clock that has not moved
            // waits for the next instant), and only when it moved from the
            // latest score the contact's state holds.
            if rows[row]
                .last
                .get(ti)
                .copied()
                .flatten()
                .is_some_and(|(p, pct, at)| {
                    at >= now
                        || ((p - s.probability).abs() < config.min_change
                            && (pct - percentile).abs() < MIN_PERCENTILE_CHANGE)
                })
            {
                continue;
            }
            match rows[row].last.get(ti).copied().flatten() {
                None => why[0] += 1,
                Some((p, _, _)) if (p - s.probability).abs() >= config.min_change => why[1] += 1,
                Some(_) => why[2] += 1,
            }
            let scored = Scored {
                target: *target,
                probability: s.probability,
                version: version.as_str().into(),
                top: s
                    .top
                    .into_iter()
                    .map(|c| (c.feature.into(), c.contribution))
                    .collect(),
                percentile: Some(percentile),
            };
            records.push(Input::from(scored_message(contact, now, &scored)));
        }
    }
    if records.is_empty() {
        return Ok(());
    }
    let n = records.len();
    // In batches the ingest limits accept, like any client's.
    let per_batch = inner.ingestor.limits.max_batch_items.max(1);
    let mut results = Vec::with_capacity(n);
    let mut records = records.into_iter().peekable();
    while records.peek().is_some() {
        let batch: Vec<_> = records.by_ref().take(per_batch).map(Ok).collect();
        results.extend(
            inner
                .ingestor
                .ingest(&tenant.id, batch)
                .await
                .map_err(|e| format!("ingesting scores: {e}"))?,
        );
    }
    for r in results
        .iter()
        .filter(|r| r.status == crate::ingest::Status::Invalid)
    {
        tracing::warn!(field = %r.field, reason = %r.reason, "a score record was refused");
    }
    metrics::counter!("liveseg_scorer_records_total").increment(n as u64);
    tracing::info!(
        tenant = %tenant.id,
        records = n,
        full = round.full,
        rows = rows.len(),
        no_previous = why[0],
        probability_moved = why[1],
        rank_moved = why[2],
        "scores written"
    );
    Ok(())
}
