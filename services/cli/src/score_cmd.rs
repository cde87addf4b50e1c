//! `liveseg model score`: every contact of a history scored as of an
//! instant, by the registry's active models, in this process or through a
//! model service (`--model-server`), with each score's top feature
//! contributions, the contact's best send hour and a fatigue signal from
//! the unsubscribe model. JSON lines on stdout; throughput on stderr.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use clap::Args;
use liveseg_core::features::FEATURE_SET;
use liveseg_core::labels::{Target, replay_until};
use liveseg_core::scores::{Scored, TOP_KEPT, percentiles, scored_message};
use liveseg_core::send_time::{Fatigue, SendHour, best_hour, fatigue};
use liveseg_core::time::{Millis, format_rfc3339};
use liveseg_learn::ModelArtifact;
use liveseg_learn::registry::Registry;
use liveseg_proto::pb;
use liveseg_proto::pb::propensity_service_client::PropensityServiceClient;
use serde::Serialize;

use crate::exit::usage;
use crate::propensity_cmd::{RegistryArgs, read_history};

/// Rows per Score call.
const BATCH: usize = 2_000;

#[derive(Args, Debug)]
pub struct ScoreArgs {
    /// Segment-Spec JSONL history.
    #[arg(long, value_name = "FILE")]
    pub events: PathBuf,
    #[command(flatten)]
    pub content: crate::content_file::ContentFileArgs,
    /// Score a send of this content id (in --content) to every contact;
    /// default: the content of each contact's latest send.
    #[arg(long, value_name = "ID", requires = "content")]
    pub for_content: Option<String>,
    /// Score as of this instant (RFC 3339; events at or before it count); default: the latest event.
    #[arg(long, value_parser = liveseg_core::time::parse_rfc3339)]
    pub at: Option<Millis>,
    /// Targets to score (comma-separated, or all): those with an active model.
    #[arg(long, default_value = "all")]
    pub target: String,
    /// Only these contacts (repeat the flag).
    #[arg(long = "contact", value_name = "ID")]
    pub contacts: Vec<String>,
    /// Feature contributions per score.
    #[arg(long, default_value_t = 3)]
    pub top: u32,
    /// Score through this model service (its --registry) instead of loading models here.
    #[arg(long, env = "LIVESEG_MODEL_SERVER", value_name = "URL")]
    pub model_server: Option<String>,
    /// Also write each score as a derived `Propensity Scored` record (Segment-Spec JSONL) here.
    #[arg(long, value_name = "FILE")]
    pub records: Option<PathBuf>,
    /// Send those records to the node (--server, --api-key), where score conditions read them.
    #[arg(long)]
    pub ingest: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Serialize)]
struct TargetScore {
    probability: f32,
    /// Rank among the contacts scored here (0-100, the share scored lower).
    percentile: f32,
    version: String,
    top: Vec<Contribution>,
}

/// A feature's value and its share of the score's log-odds.
#[derive(Serialize)]
struct Contribution {
    feature: String,
    value: f32,
    contribution: f32,
}

#[derive(Serialize)]
struct ContactScores<'a> {
    contact: &'a str,
    account: &'a str,
    at: &'a str,
    scores: BTreeMap<&'static str, TargetScore>,
    send_hour: SendHour,
    #[serde(skip_serializing_if = "Option::is_none")]
    fatigue: Option<Fatigue>,
}

/// Scores `rows` with one target: locally or through the model service.
async fn score_rows(
    remote: Option<&mut PropensityServiceClient<tonic::transport::Channel>>,
    local: Option<&ModelArtifact>,
    target: Target,
    rows: &[(String, Vec<f32>)],
    top: u32,
) -> Result<Vec<TargetScore>> {
    if let Some(client) = remote {
        let mut out = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(BATCH) {
            let reply = client
                .score(pb::ScoreRequest {
                    target: target.name().into(),
                    version: String::new(),
                    feature_set: FEATURE_SET.into(),
                    rows: chunk
                        .iter()
                        .map(|(id, f)| pb::FeatureRow {
                            id: id.clone(),
                            features: f.clone(),
                        })
                        .collect(),
                    top_contributions: top,
                })
                .await
                .map_err(|s| anyhow::anyhow!("model service, {}: {}", target.name(), s.message()))?
                .into_inner();
            for s in reply.scores {
                if !s.error.is_empty() {
                    bail!("model service refused contact {}: {}", s.id, s.error);
                }
                out.push(TargetScore {
                    percentile: 0.0,
                    probability: s.probability,
                    version: reply.version.clone(),
                    top: s
                        .top
                        .into_iter()
                        .map(|c| Contribution {
                            feature: c.feature,
                            value: c.value,
                            contribution: c.contribution,
                        })
                        .collect(),
                });
            }
        }
        return Ok(out);
    }
    let Some(model) = local else {
        bail!("no model for {}", target.name())
    };
    Ok(rows
        .iter()
        .map(|(_, f)| {
            let s = model.score(f);
            let mut order: Vec<usize> = (0..f.len()).collect();
            order.sort_by(|a, b| {
                s.contributions[*b]
                    .abs()
                    .total_cmp(&s.contributions[*a].abs())
            });
            TargetScore {
                percentile: 0.0,
                probability: s.probability,
                version: model.meta.version.clone(),
                top: order
                    .into_iter()
                    .take(top as usize)
                    .map(|j| Contribution {
                        feature: model.meta.feature_names[j].clone(),
                        value: f[j],
                        contribution: s.contributions[j],
                    })
                    .collect(),
            }
        })
        .collect())
}

/// The derived records of every score: one `Propensity Scored` per
/// contact and target, stamped at the scoring instant.
fn derived_records(
    ids: &[&String],
    at: Millis,
    by_target: &[(Target, Vec<TargetScore>)],
) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        for (target, scores) in by_target {
            let s = &scores[i];
            let scored = Scored {
                target: *target,
                probability: s.probability,
                version: s.version.as_str().into(),
                top: s
                    .top
                    .iter()
                    .take(TOP_KEPT)
                    .map(|c| (c.feature.as_str().into(), c.contribution))
                    .collect(),
                percentile: Some(s.percentile),
            };
            let line = scored_message(id, at, &scored);
            out.extend(line.to_string().into_bytes());
            out.push(b'\n');
        }
    }
    out
}

pub async fn run(a: &ScoreArgs, global: &crate::args::GlobalArgs) -> Result<()> {
    let (events, latest) = read_history(&a.events)?;
    let at = a.at.unwrap_or(latest);
    let library = a.content.library()?;
    let for_content = match &a.for_content {
        Some(id) => match library.content(id) {
            Some(item) => Some(item.key),
            None => bail!(usage(format!(
                "--for-content: '{id}' is not in the --content file"
            ))),
        },
        None => None,
    };
    let replay = replay_until(events, at, library);
    let registry = Registry::open(&a.registry.registry)?;
    let wanted = crate::propensity_cmd::targets(&a.target)?;
    // Which targets have an active model, and each one's validation base rate.
    let mut models: Vec<(Target, Option<ModelArtifact>)> = Vec::new();
    let mut base_rates = HashMap::new();
    for t in wanted {
        if let Some(m) = registry.active(t.name())? {
            base_rates.insert(t, m.meta.validation.base_rate);
            let local = a.model_server.is_none().then_some(m);
            models.push((t, local));
        }
    }
    if models.is_empty() {
        bail!(
            "no active models in {}: `liveseg model train --activate` first",
            a.registry.registry.display()
        );
    }
    let mut remote = match &a.model_server {
        Some(url) => Some(
            PropensityServiceClient::connect(url.clone())
                .await
                .with_context(|| format!("connecting to the model service at {url}"))?,
        ),
        None => None,
    };

    let mut ids: Vec<&String> = if a.contacts.is_empty() {
        replay
            .contacts
            .keys()
            .filter(|c| !replay.suppressed.contains_key(*c))
            .collect()
    } else {
        a.contacts.iter().collect()
    };
    ids.sort();
    let t = at.saturating_add(1); // features see events strictly before t: at inclusive
    let rows: Vec<(String, Vec<f32>)> = ids
        .iter()
        .map(|c| {
            let account = replay.account_of(c);
            let features = match for_content {
                Some(content) => replay.send_features(c, &account, t, Some(content)),
                None => replay.features(c, &account, t),
            };
            ((*c).clone(), features)
        })
        .collect();

    let started = Instant::now();
    let mut by_target = Vec::new();
    for (target, local) in &models {
        let mut scores = score_rows(remote.as_mut(), local.as_ref(), *target, &rows, a.top).await?;
        let probabilities: Vec<f32> = scores.iter().map(|s| s.probability).collect();
        for (s, p) in scores.iter_mut().zip(percentiles(&probabilities)) {
            s.percentile = p;
        }
        by_target.push((*target, scores));
    }
    let secs = started.elapsed().as_secs_f64();

    let mut tenant = [0u32; 24];
    for s in replay.accounts.values() {
        for (h, n) in s.hours.iter().enumerate() {
            tenant[h] += n;
        }
    }
    if a.records.is_some() || a.ingest {
        let records = derived_records(&ids, at, &by_target);
        let tmp;
        let path = match &a.records {
            Some(p) => p.clone(),
            None => {
                tmp = tempfile::NamedTempFile::new().context("a temporary records file")?;
                tmp.path().to_path_buf()
            }
        };
        std::fs::write(&path, records).with_context(|| format!("writing {}", path.display()))?;
        if a.ingest {
            let api = crate::client::Api::from_args(global).await?;
            let summary = crate::ingest::ingest_file(&api, &path, 500, 4, false).await?;
            eprintln!(
                "sent the scores to the node: {} accepted, {} duplicates, {} invalid",
                summary.accepted, summary.duplicates, summary.invalid
            );
            if summary.invalid > 0 {
                bail!("the node refused {} score records", summary.invalid);
            }
        }
    }
    let at_text = format_rfc3339(at);
    let mut out = BufWriter::new(io::stdout().lock());
    let empty = [0u32; 24];
    for (i, id) in ids.iter().enumerate() {
        let account = replay.account_of(id);
        let contact_hours = replay.contacts.get(*id).map_or(&empty, |c| &c.hours);
        let account_hours = replay.accounts.get(&account).map_or(&empty, |s| &s.hours);
        let mut scores = BTreeMap::new();
        let mut fatigue_signal = None;
        for (target, list) in &mut by_target {
            let s = std::mem::replace(
                &mut list[i],
                TargetScore {
                    probability: 0.0,
                    percentile: 0.0,
                    version: String::new(),
                    top: Vec::new(),
                },
            );
            if *target == Target::Unsubscribe7d {
                fatigue_signal = Some(fatigue(s.probability, base_rates[target]));
            }
            scores.insert(target.name(), s);
        }
        let line = ContactScores {
            contact: id,
            account: &account,
            at: &at_text,
            scores,
            send_hour: best_hour(contact_hours, account_hours, &tenant),
            fatigue: fatigue_signal,
        };
        let mut text = serde_json::to_vec(&line)?;
        text.push(b'\n');
        out.write_all(&text)?;
    }
    out.flush()?;
    let n = rows.len() * models.len();
    eprintln!(
        "scored {} contacts x {} targets ({n} scores) in {secs:.3} s: {:.0} contacts/s, {:.0} scores/s {}",
        rows.len(),
        models.len(),
        rows.len() as f64 / secs.max(1e-9),
        n as f64 / secs.max(1e-9),
        if a.model_server.is_some() {
            "through the model service"
        } else {
            "in process"
        }
    );
    Ok(())
}
