//! Segment discovery over an event history, on the same contact features
//! the propensity models read (`liveseg_core::features`):
//!
//! - `liveseg model cluster`: k-means over the contacts' feature vectors,
//!   each cluster described by the features that set it apart;
//! - `liveseg model lookalike`: the non-members most like the members of a
//!   seed segment (cosine to the seed centroid over standardised features;
//!   exact brute force, see `liveseg_learn::neighbours` for when an index
//!   would take over).

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use clap::Args;
use liveseg_core::features::feature_names;
use liveseg_core::labels::{FeatureReplay, replay_until};
use liveseg_core::time::{Millis, format_rfc3339};
use liveseg_core::{Engine, Event};
use liveseg_learn::kmeans::{self, KMeansOptions, Metric};
use liveseg_learn::neighbours::{SeedProfile, Similarity, rank_lookalikes};
use serde::Serialize;

use crate::definitions::compile_with_content;
use crate::exit::usage;
use crate::propensity_cmd::read_history;

#[derive(Args, Debug)]
pub struct ClusterArgs {
    /// Segment-Spec JSONL history.
    #[arg(long, value_name = "FILE")]
    pub events: PathBuf,
    #[command(flatten)]
    pub content: crate::content_file::ContentFileArgs,
    /// Features as of this instant (RFC 3339); default: the latest event.
    #[arg(long, value_parser = liveseg_core::time::parse_rfc3339)]
    pub at: Option<Millis>,
    /// Number of clusters.
    #[arg(long, default_value_t = 6)]
    pub k: usize,
    /// euclidean (plain k-means) or cosine (spherical).
    #[arg(long, default_value = "euclidean")]
    pub metric: String,
    /// Seed of the k-means++ initialisation.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Features named per cluster.
    #[arg(long, default_value_t = 3)]
    pub top: usize,
    /// Write each contact's cluster here as JSON lines.
    #[arg(long, value_name = "FILE")]
    pub assignments: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct LookalikeArgs {
    /// Segment-Spec JSONL history.
    #[arg(long, value_name = "FILE")]
    pub events: PathBuf,
    #[command(flatten)]
    pub content: crate::content_file::ContentFileArgs,
    /// As of this instant (RFC 3339); default: the latest event.
    #[arg(long, value_parser = liveseg_core::time::parse_rfc3339)]
    pub at: Option<Millis>,
    /// The seed: a contact segment (a preset, or one of --segments).
    #[arg(long, value_name = "KEY")]
    pub seed_segment: String,
    /// Segment definitions (JSON or YAML) besides the presets.
    #[arg(long, value_name = "FILE")]
    pub segments: Option<PathBuf>,
    /// How many lookalikes.
    #[arg(short = 'n', long, default_value_t = 20)]
    pub limit: usize,
}

/// Every unsuppressed contact's features at `at` (inclusive), sorted by id.
fn contact_matrix(replay: &FeatureReplay, at: Millis) -> (Vec<String>, Vec<f32>) {
    let mut ids: Vec<String> = replay
        .contacts
        .keys()
        .filter(|c| !replay.suppressed.contains_key(*c))
        .cloned()
        .collect();
    ids.sort();
    let mut x = Vec::with_capacity(ids.len() * feature_names().len());
    for id in &ids {
        x.extend(replay.features(id, &replay.account_of(id), at.saturating_add(1)));
    }
    (ids, x)
}

fn load(events: &std::path::Path, at: Option<Millis>) -> Result<(Vec<Event>, Millis)> {
    let (events, latest) = read_history(events)?;
    Ok((events, at.unwrap_or(latest)))
}

#[derive(Serialize)]
struct Assignment<'a> {
    contact: &'a str,
    cluster: usize,
    name: &'a str,
}

pub fn cluster(a: &ClusterArgs) -> Result<()> {
    let metric = match a.metric.as_str() {
        "euclidean" => Metric::Euclidean,
        "cosine" => Metric::Cosine,
        other => bail!(usage(format!(
            "--metric: '{other}' is not euclidean or cosine"
        ))),
    };
    let (events, at) = load(&a.events, a.at)?;
    let replay = replay_until(events, at, a.content.library()?);
    let (ids, x) = contact_matrix(&replay, at);
    let names = feature_names();
    let opts = KMeansOptions {
        k: a.k,
        metric,
        seed: a.seed,
        ..KMeansOptions::default()
    };
    let c = kmeans::fit(&x, names.len(), &opts).context("k-means")?;
    let described = kmeans::describe(&c, &x, &names, a.top).context("describing clusters")?;
    let silhouette = kmeans::silhouette_sample(&c, &x, 2_000, a.seed).ok();
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "{} contacts as of {}, k = {}, {:?}; inertia {:.1}, {} iterations{}",
        ids.len(),
        format_rfc3339(at),
        a.k,
        metric,
        c.inertia,
        c.iterations,
        silhouette.map_or(String::new(), |s| format!(
            ", silhouette {s:.3} (2,000-row sample)"
        ))
    )?;
    for d in &described {
        writeln!(
            out,
            "cluster {}  {:>6} contacts ({:>5.1}%)  {}\n           {}",
            d.cluster,
            d.size,
            100.0 * d.share,
            d.name,
            d.summary
        )?;
    }
    if let Some(path) = &a.assignments {
        let file =
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut w = BufWriter::new(file);
        for (id, cluster) in ids.iter().zip(&c.assignments) {
            let name = described
                .iter()
                .find(|d| d.cluster == *cluster)
                .map_or("", |d| d.name.as_str());
            serde_json::to_writer(
                &mut w,
                &Assignment {
                    contact: id,
                    cluster: *cluster,
                    name,
                },
            )?;
            w.write_all(b"\n")?;
        }
        w.flush()?;
    }
    Ok(())
}

/// Z-scores each column over all rows, so no feature's units dominate.
fn standardise(x: &mut [f32], dim: usize) {
    let n = (x.len() / dim).max(1) as f64;
    for j in 0..dim {
        let col = || x.iter().skip(j).step_by(dim).map(|v| f64::from(*v));
        let mean = col().sum::<f64>() / n;
        let var = col().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
        let sd = if var > 1e-12 { var.sqrt() } else { 1.0 };
        for v in x.iter_mut().skip(j).step_by(dim) {
            *v = ((f64::from(*v) - mean) / sd) as f32;
        }
    }
}

#[derive(Serialize)]
struct Lookalike<'a> {
    contact: &'a str,
    account: String,
    similarity: f32,
}

pub fn lookalike(a: &LookalikeArgs) -> Result<()> {
    let set = compile_with_content(a.segments.as_deref(), &a.content, false)?;
    let (events, at) = load(&a.events, a.at)?;
    // The seed segment's members at `at`, by the engine itself.
    // The same library feeds the features below: read (and embed) it once.
    let library = set.content.clone();
    let mut engine = Engine::new(set);
    let mut sorted: Vec<&Event> = events.iter().filter(|e| e.ts <= at).collect();
    sorted.sort_by_key(|e| e.ts);
    let mut changes = Vec::new();
    for e in sorted {
        engine.apply(e, e.ts, &mut changes);
        changes.clear();
    }
    engine.advance_all(at, &mut changes);
    let members: HashSet<String> = engine
        .memberships()
        .into_iter()
        .filter(|m| m.segment == a.seed_segment && m.entity == "contact")
        .map(|m| m.id)
        .collect();
    if members.is_empty() {
        bail!(
            "segment `{}` has no contact members at {}",
            a.seed_segment,
            format_rfc3339(at)
        );
    }
    let replay = replay_until(events, at, library);
    let (ids, mut x) = contact_matrix(&replay, at);
    let dim = feature_names().len();
    standardise(&mut x, dim);
    let seeds: Vec<f32> = ids
        .iter()
        .enumerate()
        .filter(|(_, id)| members.contains(*id))
        .flat_map(|(i, _)| x[i * dim..(i + 1) * dim].iter().copied())
        .collect();
    let profile = SeedProfile::from_rows(&seeds, dim, Similarity::Cosine)?;
    let found = rank_lookalikes(&profile, &x, dim, a.limit, |i| members.contains(&ids[i]))?;
    eprintln!(
        "{} seed members of `{}`, {} candidates, as of {}",
        profile.seed_count(),
        a.seed_segment,
        ids.len() - members.len().min(ids.len()),
        format_rfc3339(at)
    );
    let mut out = BufWriter::new(io::stdout().lock());
    for n in found {
        let id = &ids[n.index];
        let line = Lookalike {
            contact: id,
            account: replay.account_of(id),
            similarity: n.score,
        };
        let mut text = serde_json::to_vec(&line)?;
        text.push(b'\n');
        out.write_all(&text)?;
    }
    out.flush()?;
    Ok(())
}
