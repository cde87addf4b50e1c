//! `liveseg demo`: the README's one-command tour, all in this process.
//!
//! 1. generate a synthetic history ending now (rounded down to the minute),
//! 2. start a standalone node on 127.0.0.1:0 with the system clock,
//! 3. ingest the history over gRPC (with the progress bar),
//! 4. poll the node's stats until it has applied everything (deadline-bound),
//! 5. print the starter segments with member counts and explain a few members,
//! 6. shut the node down cleanly and say where its data and credentials are.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use chrono::{DateTime, DurationRound as _, TimeDelta, Utc};
use clap::Args;
use liveseg_core::presets::presets;
use liveseg_node::{ClockMode, NodeConfig};

use crate::args::GlobalArgs;
use crate::client::Api;
use crate::generate::{GenerateConfig, generate};
use crate::output::{OutputFormat, render_table};
use crate::{admin, explain, ingest, query};

/// How long the node may take to apply what it acknowledged.
const APPLY_DEADLINE: Duration = Duration::from_secs(120);
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Segments whose members the demo explains, in order of preference.
const FEATURED: [&str; 6] = [
    "tier1_pricing_intent",
    "engaged_target_contacts",
    "decaying_customers",
    "sunset_candidates",
    "dormant_high_fit_accounts",
    "engaged_non_target_contacts",
];

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Accounts in the generated workload.
    #[arg(long, default_value_t = 300)]
    pub accounts: usize,
    /// Days of generated history.
    #[arg(long, default_value_t = 120)]
    pub days: u32,
    /// How many members of each of two segments to explain.
    #[arg(long, default_value_t = 3)]
    pub explain: usize,
}

pub async fn run(args: &DemoArgs, global: &GlobalArgs) -> Result<()> {
    // An inherited LIVESEG_DATA_DIR may be a real node's: only reuse a
    // directory named on the command line.
    let data_dir = match (&global.data_dir, global.data_dir_on_command_line) {
        (Some(dir), true) => dir.clone(),
        _ => tempfile::Builder::new()
            .prefix("liveseg-demo-")
            .tempdir()
            .context("creating a temporary data dir")?
            .keep(),
    };
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let events = data_dir.join("demo-events.jsonl");
    let end = Utc::now()
        .duration_trunc(TimeDelta::minutes(1))
        .context("rounding the current time")?;
    generate_history(args, end, &events).await?;

    let config = NodeConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: data_dir.clone(),
        clock: ClockMode::System,
        ..NodeConfig::default()
    };
    let node = liveseg_node::start(config)
        .await
        .context("starting the demo node")?;
    eprintln!("node serving on {}", node.addr);
    // A standalone node always creates (or reads back) its first tenant's key.
    let api_key = node
        .credentials
        .as_ref()
        .map(|c| c.api_key.clone())
        .unwrap_or_default();
    let toured = tour(args, global.output, node.addr, &api_key, &events).await;
    let stopped = node.shutdown().await.context("stopping the demo node");
    toured?;
    stopped?;

    let mut out = io::stdout().lock();
    writeln!(out, "\nnode stopped cleanly")?;
    out.write_all(where_things_are(&data_dir, &events, end).as_bytes())?;
    Ok(())
}

async fn generate_history(args: &DemoArgs, end: DateTime<Utc>, path: &Path) -> Result<()> {
    let cfg = GenerateConfig {
        accounts: args.accounts,
        days: args.days,
        end,
        ..GenerateConfig::default()
    };
    let target = path.to_path_buf();
    let started = Instant::now();
    let stats = tokio::task::spawn_blocking(move || -> Result<_> {
        let file = std::fs::File::create(&target)
            .with_context(|| format!("cannot create {}", target.display()))?;
        let mut out = io::BufWriter::with_capacity(1 << 16, file);
        let stats = generate(&cfg, &mut out).context("generating the demo history")?;
        out.flush().context("writing the demo history")?;
        Ok(stats)
    })
    .await??;
    eprintln!(
        "generated {} events for {} accounts and {} contacts ({} days up to {}) in {:.1} s",
        stats.events,
        stats.accounts,
        stats.contacts,
        args.days,
        end.to_rfc3339(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn tour(
    args: &DemoArgs,
    format: OutputFormat,
    addr: SocketAddr,
    api_key: &str,
    events: &Path,
) -> Result<()> {
    let api = Api::connect(&format!("http://{addr}"), api_key).await?;
    let before = admin::stats(&api).await?.events_applied;
    let summary = ingest::ingest_file(&api, events, 500, 4, !format.is_machine()).await?;
    let mut out = io::stdout().lock();
    out.write_all(ingest::render_summary(&events.display().to_string(), &summary).as_bytes())?;
    out.flush()?;
    wait_until_applied(&api, before + summary.accepted).await?;

    let mut counts = Vec::new();
    let mut members = std::collections::HashMap::new();
    for def in presets() {
        let m = query::all_members(&api, &def.key).await?;
        counts.push(vec![
            def.key.clone(),
            def.entity.as_str().to_string(),
            m.len().to_string(),
            def.name.clone(),
        ]);
        members.insert(def.key, m);
    }
    let suppressed = query::all_members(&api, "suppressed").await?;
    counts.push(vec![
        "suppressed".into(),
        "contact".into(),
        suppressed.len().to_string(),
        "Suppressed (unsubscribed, complained, hard bounce)".into(),
    ]);
    writeln!(out, "\nstarter segments now:")?;
    out.write_all(render_table(&["SEGMENT", "ENTITY", "MEMBERS", "NAME"], counts).as_bytes())?;

    let featured = FEATURED
        .iter()
        .filter(|k| members.get(**k).is_some_and(|m| !m.is_empty()))
        .take(2);
    for key in featured {
        writeln!(out, "\nwhy are they in {key}?")?;
        for m in members.get(*key).into_iter().flatten().take(args.explain) {
            let x = explain::fetch(&api, &m.entity, &m.id, key).await?;
            let mut text = format!("\n{} {} (account {})\n", m.entity, m.id, m.account_id);
            for s in &x.segments {
                text.push_str(&explain::render_segment(s, 3));
            }
            out.write_all(indent(&text).as_bytes())?;
        }
    }
    Ok(())
}

/// Polls the node until it has applied `target` events, within `APPLY_DEADLINE`.
async fn wait_until_applied(api: &Api, target: u64) -> Result<()> {
    let deadline = tokio::time::Instant::now() + APPLY_DEADLINE;
    loop {
        let applied = admin::stats(api).await?.events_applied;
        if applied >= target {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!(
                "the node applied {applied} of {target} events within {} s",
                APPLY_DEADLINE.as_secs()
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| {
            if l.is_empty() {
                "\n".to_string()
            } else {
                format!("  {l}\n")
            }
        })
        .collect()
}

/// Where the demo left its data, and what to try next.
pub fn where_things_are(data_dir: &Path, events: &Path, end: DateTime<Utc>) -> String {
    let dir = data_dir.display();
    let at = end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let credentials: PathBuf = data_dir.join("credentials.json");
    format!(
        "data dir:     {dir}\n\
         credentials:  {}\n\
         events:       {}\n\
         \n\
         try next:\n  \
         liveseg serve --data-dir {dir}\n  \
         liveseg --data-dir {dir} members engaged_target_contacts\n  \
         liveseg replay --events {} --at {at}\n",
        credentials.display(),
        events.display(),
        events.display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_closing_note_names_the_files() {
        let end = DateTime::parse_from_rfc3339("2026-11-01T10:31:00Z")
            .expect("date")
            .with_timezone(&Utc);
        let text = where_things_are(Path::new("/tmp/d"), Path::new("/tmp/d/e.jsonl"), end);
        assert!(
            text.contains("credentials:  /tmp/d/credentials.json\n"),
            "{text}"
        );
        assert!(
            text.contains("replay --events /tmp/d/e.jsonl --at 2026-11-01T10:31:00Z"),
            "{text}"
        );
        assert_eq!(indent("a\n\nb"), "  a\n\n  b\n");
    }
}
