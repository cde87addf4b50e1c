//! `liveseg insight`: lookalikes, clusters and send timing from a running
//! node's live state (InsightService). The offline counterparts over an
//! event history are `liveseg model lookalike | cluster | score`.

use std::io::{self, Write};

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use liveseg_proto::pb;
use serde::Serialize;

use crate::client::{Api, rpc_error};
use crate::exit::usage;
use crate::output::{Column, OutputFormat, col, print_items};

#[derive(Subcommand, Debug)]
pub enum InsightCommand {
    /// The contacts outside a segment most like its members.
    Lookalikes(LookalikesArgs),
    /// Discover clusters of contacts (k-means), each described.
    Clusters(ClustersArgs),
    /// Best send hour (UTC) and fatigue of contacts.
    SendTime(SendTimeArgs),
}

#[derive(Args, Debug)]
pub struct LookalikesArgs {
    /// The seed: a contact segment.
    #[arg(long, value_name = "KEY")]
    pub seed_segment: String,
    /// How many lookalikes (at most 1000).
    #[arg(short = 'n', long, default_value_t = 20)]
    pub limit: u32,
    /// Share of interest (content) similarity in the score, 0 to 1; default
    /// 0.3 when the seed members have interest profiles.
    #[arg(long)]
    pub interest_weight: Option<f32>,
}

#[derive(Args, Debug)]
pub struct ClustersArgs {
    #[arg(long, default_value_t = 6)]
    pub k: u32,
    /// euclidean (plain k-means) or cosine (spherical).
    #[arg(long, default_value = "euclidean")]
    pub metric: String,
    /// Seed of the k-means++ initialisation.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Features named per cluster.
    #[arg(long, default_value_t = 3)]
    pub top: u32,
    /// Example members per cluster.
    #[arg(long, default_value_t = 5)]
    pub examples: u32,
    /// Save this cluster's rule as a live contact segment (with --key).
    #[arg(long, value_name = "CLUSTER", requires = "key")]
    pub save: Option<u32>,
    /// The saved segment's key.
    #[arg(long, value_name = "KEY")]
    pub key: Option<String>,
    /// The saved segment's name (default: the cluster's).
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Args, Debug)]
pub struct SendTimeArgs {
    /// Contact ids.
    #[arg(required = true)]
    pub contacts: Vec<String>,
}

pub async fn run(cmd: &InsightCommand, api: &Api, format: OutputFormat) -> Result<()> {
    match cmd {
        InsightCommand::Lookalikes(a) => lookalikes(a, api, format).await,
        InsightCommand::Clusters(a) => clusters(a, api, format).await,
        InsightCommand::SendTime(a) => send_time(a, api, format).await,
    }
}

#[derive(Serialize)]
struct LookalikeRow {
    rank: usize,
    contact: String,
    account: String,
    score: f64,
    feature_similarity: f64,
    interest_similarity: Option<f64>,
    shared: String,
}

const LOOKALIKE_COLUMNS: [Column; 6] = [
    col("RANK", "rank"),
    col("CONTACT", "contact"),
    col("ACCOUNT", "account"),
    col("SCORE", "score"),
    col("INTEREST", "interest_similarity"),
    col("CLOSEST ON", "shared"),
];

/// Four decimals are all a cosine says; JSON keeps them stable.
fn round4(x: f32) -> f64 {
    (f64::from(x) * 10_000.0).round() / 10_000.0
}

async fn lookalikes(a: &LookalikesArgs, api: &Api, format: OutputFormat) -> Result<()> {
    let resp = api
        .insight()
        .find_lookalikes(pb::FindLookalikesRequest {
            seed_segment: a.seed_segment.clone(),
            limit: a.limit,
            interest_weight: a.interest_weight,
        })
        .await
        .map_err(|s| rpc_error("finding lookalikes", &s))?
        .into_inner();
    let rows: Vec<LookalikeRow> = resp
        .lookalikes
        .into_iter()
        .enumerate()
        .map(|(i, l)| LookalikeRow {
            rank: i + 1,
            contact: l.contact_id,
            account: l.account_id,
            score: round4(l.score),
            feature_similarity: round4(l.feature_similarity),
            interest_similarity: l.interest_similarity.map(round4),
            shared: l
                .shared_features
                .iter()
                .map(|f| f.feature.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
        .collect();
    let mut out = io::stdout().lock();
    if !format.is_machine() {
        writeln!(
            out,
            "{} seed members of `{}`, {} candidates, interest weight {}, as of {}",
            resp.seed_members, resp.seed_segment, resp.candidates, resp.interest_weight, resp.at
        )?;
    }
    print_items(&mut out, format, &LOOKALIKE_COLUMNS, &rows, "no candidates")?;
    Ok(())
}

#[derive(Serialize)]
struct ClusterRow {
    cluster: u32,
    name: String,
    size: u64,
    share: f64,
    summary: String,
    examples: Vec<String>,
    /// The rule's precision/recall against the cluster, e.g. "0.82/0.75".
    rule: String,
    rule_condition: Option<serde_json::Value>,
    rule_skipped: Vec<String>,
}

const CLUSTER_COLUMNS: [Column; 6] = [
    col("CLUSTER", "cluster"),
    col("SIZE", "size"),
    col("NAME", "name"),
    col("WHAT SETS IT APART", "summary"),
    col("RULE P/R", "rule"),
    col("EXAMPLES", "examples"),
];

async fn clusters(a: &ClustersArgs, api: &Api, format: OutputFormat) -> Result<()> {
    let resp = api
        .insight()
        .discover_clusters(pb::DiscoverClustersRequest {
            k: a.k,
            metric: a.metric.clone(),
            seed: Some(a.seed),
            top_features: a.top,
            examples: a.examples,
            max_contacts: 0,
        })
        .await
        .map_err(|s| rpc_error("discovering clusters", &s))?
        .into_inner();
    let rows: Vec<ClusterRow> = resp
        .clusters
        .into_iter()
        .map(|c| ClusterRow {
            cluster: c.cluster,
            name: c.name,
            size: c.size,
            share: (c.share * 1000.0).round() / 1000.0,
            summary: c.summary,
            examples: c.example_contacts,
            rule: if c.rule_condition_json.is_empty() {
                "-".into()
            } else {
                format!("{:.2}/{:.2}", c.rule_precision, c.rule_recall)
            },
            rule_condition: serde_json::from_str(&c.rule_condition_json).ok(),
            rule_skipped: c.rule_skipped,
        })
        .collect();
    let mut out = io::stdout().lock();
    if !format.is_machine() {
        writeln!(
            out,
            "{} contacts{} as of {}; inertia {:.1}, {} iterations{}",
            resp.contacts,
            if resp.sampled { " (a sample)" } else { "" },
            resp.at,
            resp.inertia,
            resp.iterations,
            resp.silhouette
                .map_or(String::new(), |s| format!(", silhouette {s:.3}"))
        )?;
    }
    print_items(&mut out, format, &CLUSTER_COLUMNS, &rows, "no clusters")?;
    if let (Some(n), Some(key)) = (a.save, &a.key) {
        let Some(c) = rows.iter().find(|c| c.cluster == n) else {
            bail!(usage(format!(
                "--save: no cluster {n} (0 to {})",
                rows.len().saturating_sub(1)
            )));
        };
        let Some(condition) = &c.rule_condition else {
            bail!(
                "cluster {n} cannot be saved: none of its distinguishing features ({}) has a condition",
                c.rule_skipped.join(", ")
            );
        };
        let definition = serde_json::json!({
            "key": key,
            "name": a.name.clone().unwrap_or_else(|| c.name.clone()),
            "description": format!(
                "Cluster {n} of k-means (k = {}, seed {}): {}. As a rule: precision {}, recall {}.",
                a.k, a.seed, c.summary, c.rule.split('/').next().unwrap_or(""),
                c.rule.split('/').nth(1).unwrap_or("")
            ),
            "entity": "contact",
            "condition": condition,
        });
        let saved = api
            .segments()
            .apply_segment(pb::ApplySegmentRequest {
                definition: definition.to_string(),
            })
            .await
            .map_err(|s| rpc_error("saving the cluster as a segment", &s))?
            .into_inner();
        eprintln!(
            "saved cluster {n} as segment `{}` (revision {}); rule precision/recall {}",
            saved.key, saved.revision, c.rule
        );
    }
    Ok(())
}

#[derive(Serialize)]
struct TimingRow {
    contact: String,
    account: String,
    best_hour_utc: Option<u32>,
    confidence: Option<f64>,
    basis: String,
    fatigue: String,
    p_unsubscribe_7d: Option<f64>,
    error: String,
}

const TIMING_COLUMNS: [Column; 6] = [
    col("CONTACT", "contact"),
    col("HOUR (UTC)", "best_hour_utc"),
    col("CONFIDENCE", "confidence"),
    col("BASIS", "basis"),
    col("FATIGUE", "fatigue"),
    col("ERROR", "error"),
];

/// A `SendTiming` as one line of text (explain prints it).
pub struct TimingLine<'a>(pub &'a pb::SendTiming);

impl std::fmt::Display for TimingLine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = self.0;
        write!(
            f,
            "best send hour {:02}:00 UTC (confidence {:.2}, from {} data; {} own opens/clicks)",
            t.best_hour_utc, t.confidence, t.basis, t.contact_events
        )?;
        match &t.fatigue {
            Some(fat) => write!(
                f,
                "; fatigue {}: P(unsubscribe_7d) {:.3}, {:.2}x the tenant mean (model {})",
                fat.level, fat.p_unsubscribe_7d, fat.ratio_to_base_rate, fat.model_version
            ),
            None => write!(f, "; fatigue unknown (no unsubscribe_7d score)"),
        }
    }
}

async fn send_time(a: &SendTimeArgs, api: &Api, format: OutputFormat) -> Result<()> {
    let resp = api
        .insight()
        .get_send_timing(pb::GetSendTimingRequest {
            contact_ids: a.contacts.clone(),
        })
        .await
        .map_err(|s| rpc_error("reading send timing", &s))?
        .into_inner();
    let rows: Vec<TimingRow> = resp
        .timings
        .into_iter()
        .map(|t| {
            let ok = t.error.is_empty();
            TimingRow {
                contact: t.contact_id,
                account: t.account_id,
                best_hour_utc: ok.then_some(t.best_hour_utc),
                confidence: ok.then_some((t.confidence * 100.0).round() / 100.0),
                basis: t.basis,
                fatigue: t
                    .fatigue
                    .as_ref()
                    .map_or(String::new(), |f| f.level.clone()),
                p_unsubscribe_7d: t.fatigue.as_ref().map(|f| round4(f.p_unsubscribe_7d)),
                error: t.error,
            }
        })
        .collect();
    let mut out = io::stdout().lock();
    print_items(&mut out, format, &TIMING_COLUMNS, &rows, "no contacts")?;
    Ok(())
}
