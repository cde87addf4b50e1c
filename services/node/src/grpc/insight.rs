//! InsightService: lookalikes, clusters and send timing over the live
//! account actors (`crate::insight` holds the per-account halves).
//!
//! Every call scatters one read-only question to each account of the
//! tenant (passivated accounts are loaded, as for any query, and passivate
//! again when idle) with a bounded number in flight, then merges.

use super::{Scope, tenant_of};
use crate::clock::SharedClock;
use crate::host::{Answer, Query};
use crate::insight::{self, LookalikeProbe, ProbeError, Summary};
use crate::runtime::Runtime;
use crate::server::NodeInner;
use crate::tenant::TenantState;
use liveseg_core::cluster_rules::{RuleTest, Split, cluster_rule};
use liveseg_core::features::feature_names;
use liveseg_core::send_time::{best_hour, fatigue};
use liveseg_core::time::format_rfc3339;
use liveseg_core::{Entity, Millis};
use liveseg_learn::kmeans::{self, KMeansOptions, Metric};
use liveseg_proto::pb;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tonic::{Request, Response, Status};

const DEFAULT_LIMIT: u32 = 20;
const MAX_LIMIT: u32 = 1000;
const MAX_TIMING_CONTACTS: usize = 1000;
/// How long the tenant-wide send-hour and fatigue baseline is reused, on
/// the node's clock (so tests move past it with a manual clock).
const BASELINE_TTL_MS: liveseg_core::Millis = 60_000;

pub struct InsightApi(pub Arc<NodeInner>);

/// The tenant keeps contact features only while a definition reads scores.
fn require_features(tenant: &TenantState) -> Result<(), Status> {
    if tenant.set().tracks_scores {
        return Ok(());
    }
    Err(Status::failed_precondition(
        "contact features are kept only while a segment has a `score` condition \
         (e.g. `score: {target: click_7d, at_least: 0}`); apply one, and the tenant's \
         state is rebuilt with features",
    ))
}

/// Asks every account of the tenant `q`; answers in no particular order.
async fn scatter(rt: &Runtime, tenant: &TenantState, q: Query) -> Result<Vec<Answer>, Status> {
    let accounts = tenant
        .directory
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .accounts();
    super::membership::ask_each(rt, tenant, accounts, q).await
}

async fn summary(
    rt: &Runtime,
    tenant: &TenantState,
    seed: Option<usize>,
) -> Result<Summary, Status> {
    let mut total = Summary::default();
    for a in scatter(rt, tenant, Query::InsightSummary { seed }).await? {
        if let Answer::InsightSummary(s) = a {
            total.merge(*s);
        }
    }
    Ok(total)
}

/// The tenant-wide baseline of send timing (hours, mean unsubscribe
/// score). Computed (a scatter over every account) on the first call;
/// after `BASELINE_TTL_MS` (or at once, if it holds no unsubscribe scores)
/// the old one is still served while one background task recomputes it, so
/// no call after the first waits for the scatter.
async fn baseline(
    rt: &Arc<Runtime>,
    tenant: &Arc<TenantState>,
    clock: &SharedClock,
) -> Result<Arc<Summary>, Status> {
    let cached = tenant
        .insight_baseline
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    match cached {
        // A baseline without scores predates them (scores arrive after the
        // model is trained): refresh it at once rather than after the minute.
        Some((at, s))
            if clock.now().saturating_sub(at) < BASELINE_TTL_MS && s.unsubscribe_rows > 0 =>
        {
            Ok(s)
        }
        Some((_, stale)) => {
            if !tenant.insight_refreshing.swap(true, Ordering::AcqRel) {
                let (rt, tenant, clock) = (rt.clone(), tenant.clone(), clock.clone());
                tokio::spawn(async move {
                    match summary(&rt, &tenant, None).await {
                        Ok(fresh) => store_baseline(&clock, &tenant, Arc::new(fresh)),
                        Err(e) => {
                            tracing::warn!(error = %e.message(), "send-time baseline refresh failed")
                        }
                    }
                    tenant.insight_refreshing.store(false, Ordering::Release);
                });
            }
            Ok(stale)
        }
        None => {
            let fresh = Arc::new(summary(rt, tenant, None).await?);
            store_baseline(clock, tenant, fresh.clone());
            Ok(fresh)
        }
    }
}

fn store_baseline(clock: &SharedClock, tenant: &TenantState, fresh: Arc<Summary>) {
    *tenant
        .insight_baseline
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = Some((clock.now(), fresh));
}

/// One contact's timing against `base`; the error names the item.
pub async fn send_timing(
    rt: &Runtime,
    tenant: &TenantState,
    base: &Summary,
    contact: &str,
    field: &str,
) -> pb::SendTiming {
    let mut out = pb::SendTiming {
        contact_id: contact.into(),
        ..Default::default()
    };
    let Some(account) = tenant.account_of(contact) else {
        out.error = format!("{field}: contact '{contact}' not found");
        return out;
    };
    out.account_id = account.clone();
    let answer =
        super::membership::ask(rt, tenant, &account, Query::SendTiming(contact.into())).await;
    let timing = match answer {
        Ok(Answer::SendTiming(Some(t))) => t,
        Ok(_) => {
            out.error = format!("{field}: contact '{contact}' keeps no features");
            return out;
        }
        Err(s) => {
            out.error = format!("{field}: {}", s.message());
            return out;
        }
    };
    let hour = best_hour(
        &timing.contact_hours,
        &timing.account_hours,
        &base.hours_u32(),
    );
    out.best_hour_utc = u32::from(hour.hour);
    out.confidence = hour.confidence;
    out.contact_events = hour.contact_events;
    out.basis = format!("{:?}", hour.basis).to_lowercase();
    out.fatigue = timing.unsubscribe.map(|slot| {
        let f = fatigue(slot.scored.probability, base.unsubscribe_mean());
        pb::Fatigue {
            level: f.level.into(),
            p_unsubscribe_7d: f.p_unsubscribe_7d,
            ratio_to_base_rate: f.ratio_to_base_rate,
            model_version: slot.scored.version.to_string(),
        }
    });
    out
}

/// Explain's send timing for a contact: `None` when features are not kept.
pub async fn explain_timing(
    rt: &Arc<Runtime>,
    tenant: &Arc<TenantState>,
    clock: &SharedClock,
    contact: &str,
) -> Option<pb::SendTiming> {
    if !tenant.set().tracks_scores {
        return None;
    }
    let base = baseline(rt, tenant, clock).await.ok()?;
    let t = send_timing(rt, tenant, &base, contact, "id").await;
    t.error.is_empty().then_some(t)
}

fn at(now: Millis) -> String {
    format_rfc3339(now)
}

#[tonic::async_trait]
impl pb::insight_service_server::InsightService for InsightApi {
    #[tracing::instrument(skip_all, fields(tenant))]
    async fn find_lookalikes(
        &self,
        req: Request<pb::FindLookalikesRequest>,
    ) -> Result<Response<pb::FindLookalikesResponse>, Status> {
        let Scope { rt, tenant } = tenant_of(&self.0, &req)?;
        let r = req.into_inner();
        let limit = match r.limit {
            0 => DEFAULT_LIMIT,
            n if n > MAX_LIMIT => {
                return Err(Status::invalid_argument(format!(
                    "limit: {n} is more than {MAX_LIMIT}"
                )));
            }
            n => n,
        };
        if let Some(w) = r.interest_weight
            && !(0.0..=1.0).contains(&w)
        {
            return Err(Status::invalid_argument(format!(
                "interest_weight: {w} is not within [0, 1]"
            )));
        }
        let set = tenant.set();
        let seed = match set.index_of(&r.seed_segment) {
            None if r.seed_segment.is_empty() => {
                return Err(Status::invalid_argument("seed_segment: required"));
            }
            None => {
                return Err(Status::not_found(format!(
                    "seed_segment: segment '{}' not found",
                    r.seed_segment
                )));
            }
            Some(0) => {
                return Err(Status::invalid_argument(
                    "seed_segment: suppressed contacts have no features to seed with",
                ));
            }
            Some(i) if set.segments[i].def.entity != Entity::Contact => {
                return Err(Status::invalid_argument(format!(
                    "seed_segment: '{}' is an account segment; lookalikes are contacts",
                    r.seed_segment
                )));
            }
            Some(i) => i,
        };
        require_features(&tenant)?;
        let now = self.0.clock.now();
        let total = summary(&rt, &tenant, Some(seed)).await?;
        let probe =
            LookalikeProbe::new(&total, seed, r.interest_weight, limit as usize).map_err(|e| {
                match e {
                    ProbeError::NoSeeds => Status::failed_precondition(format!(
                        "seed_segment: '{}' has no members with features",
                        r.seed_segment
                    )),
                    ProbeError::Profile(e) => {
                        Status::failed_precondition(format!("seed_segment: {e}"))
                    }
                }
            })?;
        let weight = probe.interest_weight;
        let mut hits = Vec::new();
        for a in scatter(&rt, &tenant, Query::Lookalikes(Arc::new(probe))).await? {
            if let Answer::Lookalikes(h) = a {
                hits.extend(h);
            }
        }
        let found = insight::merge_hits(hits, limit as usize);
        Ok(Response::new(pb::FindLookalikesResponse {
            seed_segment: r.seed_segment,
            seed_members: u32::try_from(total.seeds.len()).unwrap_or(u32::MAX),
            candidates: total.rows.saturating_sub(total.seeds.len() as u64),
            interest_weight: weight,
            lookalikes: found
                .into_iter()
                .map(|h| pb::Lookalike {
                    contact_id: h.contact,
                    account_id: h.account,
                    score: h.score,
                    feature_similarity: h.feature_similarity,
                    interest_similarity: h.interest_similarity,
                    shared_features: h
                        .shared
                        .into_iter()
                        .map(|(feature, contribution)| pb::SharedFeature {
                            feature,
                            contribution,
                        })
                        .collect(),
                })
                .collect(),
            at: at(now),
        }))
    }

    #[tracing::instrument(skip_all, fields(tenant))]
    async fn discover_clusters(
        &self,
        req: Request<pb::DiscoverClustersRequest>,
    ) -> Result<Response<pb::DiscoverClustersResponse>, Status> {
        let Scope { rt, tenant } = tenant_of(&self.0, &req)?;
        let r = req.into_inner();
        let opts = cluster_options(&r)?;
        let top = match r.top_features {
            0 => 3,
            n @ 1..=10 => n as usize,
            n => {
                return Err(Status::invalid_argument(format!(
                    "top_features: {n} is more than 10"
                )));
            }
        };
        let examples = match r.examples {
            0 => 5,
            n @ 1..=100 => n as usize,
            n => {
                return Err(Status::invalid_argument(format!(
                    "examples: {n} is more than 100"
                )));
            }
        };
        let max_contacts = match r.max_contacts {
            0 => 200_000,
            n => n as usize,
        };
        require_features(&tenant)?;
        let now = self.0.clock.now();
        let mut rows: Vec<(String, Vec<f32>)> = Vec::new();
        for a in scatter(&rt, &tenant, Query::FeatureRows).await? {
            if let Answer::FeatureRows(r) = a {
                rows.extend(r);
            }
        }
        let sampled = rows.len() > max_contacts;
        if sampled {
            // A fixed sample: the same contacts whichever node answers.
            rows.sort_by_cached_key(|(id, _)| liveseg_core::event::stable_hash(id));
            rows.truncate(max_contacts);
        }
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        if rows.len() < opts.k {
            return Err(Status::failed_precondition(format!(
                "k: {} clusters need at least {} contacts with features; the tenant has {}",
                opts.k,
                opts.k,
                rows.len()
            )));
        }
        let reply = tokio::task::spawn_blocking(move || clusters(rows, &opts, top, examples))
            .await
            .map_err(|e| Status::internal(format!("clustering: {e}")))??;
        Ok(Response::new(pb::DiscoverClustersResponse {
            sampled,
            at: at(now),
            ..reply
        }))
    }

    #[tracing::instrument(skip_all, fields(tenant))]
    async fn get_send_timing(
        &self,
        req: Request<pb::GetSendTimingRequest>,
    ) -> Result<Response<pb::GetSendTimingResponse>, Status> {
        let Scope { rt, tenant } = tenant_of(&self.0, &req)?;
        let r = req.into_inner();
        if r.contact_ids.is_empty() || r.contact_ids.len() > MAX_TIMING_CONTACTS {
            return Err(Status::invalid_argument(format!(
                "contact_ids: {} given; 1 to {MAX_TIMING_CONTACTS} per call",
                r.contact_ids.len()
            )));
        }
        require_features(&tenant)?;
        let base = baseline(&rt, &tenant, &self.0.clock).await?;
        let mut timings = Vec::with_capacity(r.contact_ids.len());
        for (i, id) in r.contact_ids.iter().enumerate() {
            let field = format!("contact_ids[{i}]");
            timings.push(send_timing(&rt, &tenant, &base, id, &field).await);
        }
        Ok(Response::new(pb::GetSendTimingResponse { timings }))
    }
}

fn cluster_options(r: &pb::DiscoverClustersRequest) -> Result<KMeansOptions, Status> {
    let k = match r.k {
        0 => 6,
        n @ 2..=50 => n as usize,
        n => {
            return Err(Status::invalid_argument(format!(
                "k: {n} is not within 2 to 50"
            )));
        }
    };
    let metric = match r.metric.as_str() {
        "" | "euclidean" => Metric::Euclidean,
        "cosine" => Metric::Cosine,
        other => {
            return Err(Status::invalid_argument(format!(
                "metric: '{other}' is not euclidean or cosine"
            )));
        }
    };
    Ok(KMeansOptions {
        k,
        metric,
        seed: r.seed.unwrap_or(7),
        ..KMeansOptions::default()
    })
}

/// The rule fields of a cluster (`liveseg_core::cluster_rules`), with its
/// precision and recall over the clustered rows.
fn cluster_as_rule(
    d: &kmeans::ClusterDescription,
    rows: &[(String, Vec<f32>)],
    assignments: &[usize],
    names: &[String],
) -> pb::Cluster {
    let splits: Vec<Split<'_>> = d
        .features
        .iter()
        .map(|f| Split {
            feature: &f.feature,
            high: f.direction == kmeans::Direction::High,
            cluster_mean: f.cluster_mean,
            overall_mean: f.overall_mean,
        })
        .collect();
    let Some(rule) = cluster_rule(&splits) else {
        return pb::Cluster {
            rule_skipped: d.features.iter().map(|f| f.feature.clone()).collect(),
            ..Default::default()
        };
    };
    let columns: Vec<(usize, &RuleTest)> = rule
        .tests
        .iter()
        .filter_map(|t| Some((names.iter().position(|n| *n == t.feature)?, t)))
        .collect();
    let (mut matched, mut both) = (0usize, 0usize);
    for ((_, row), a) in rows.iter().zip(assignments) {
        if columns
            .iter()
            .all(|(j, t)| row.get(*j).is_some_and(|v| t.holds(*v)))
        {
            matched += 1;
            both += usize::from(*a == d.cluster);
        }
    }
    let share = |n: usize, of: usize| if of == 0 { 0.0 } else { n as f64 / of as f64 };
    pb::Cluster {
        rule_condition_json: rule.condition.to_string(),
        rule_precision: share(both, matched),
        rule_recall: share(both, d.size),
        rule_skipped: rule.skipped,
        ..Default::default()
    }
}

/// k-means over `rows` (sorted by contact id), described as the offline
/// `liveseg model cluster` describes it.
fn clusters(
    rows: Vec<(String, Vec<f32>)>,
    opts: &KMeansOptions,
    top: usize,
    examples: usize,
) -> Result<pb::DiscoverClustersResponse, Status> {
    let names = feature_names();
    let dim = names.len();
    let x: Vec<f32> = rows.iter().flat_map(|(_, f)| f.iter().copied()).collect();
    let fitted = kmeans::fit(&x, dim, opts)
        .map_err(|e| Status::failed_precondition(format!("k-means: {e}")))?;
    let described = kmeans::describe(&fitted, &x, &names, top)
        .map_err(|e| Status::internal(format!("describing clusters: {e}")))?;
    let silhouette = kmeans::silhouette_sample(&fitted, &x, 2_000, opts.seed).ok();
    let clusters = described
        .into_iter()
        .map(|d| {
            let rule = cluster_as_rule(&d, &rows, &fitted.assignments, &names);
            pb::Cluster {
                cluster: d.cluster as u32,
                name: d.name,
                summary: d.summary,
                size: d.size as u64,
                share: d.share,
                features: d
                    .features
                    .into_iter()
                    .map(|f| pb::ClusterFeature {
                        feature: f.feature,
                        direction: format!("{:?}", f.direction).to_lowercase(),
                        cluster_mean: f.cluster_mean,
                        overall_mean: f.overall_mean,
                        standardized_difference: f.standardized_difference,
                    })
                    .collect(),
                example_contacts: rows
                    .iter()
                    .zip(&fitted.assignments)
                    .filter(|(_, a)| **a == d.cluster)
                    .take(examples)
                    .map(|((id, _), _)| id.clone())
                    .collect(),
                ..rule
            }
        })
        .collect();
    Ok(pb::DiscoverClustersResponse {
        contacts: rows.len() as u64,
        inertia: fitted.inertia,
        iterations: fitted.iterations as u32,
        silhouette,
        clusters,
        ..Default::default()
    })
}
