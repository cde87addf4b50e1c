//! `liveseg bench`: the figures in BENCHMARKS.md, measured side by side
//! with a peer in the same run so ratios hold when absolute times drift.
//!
//! - replay: engine events/s vs bare JSON parsing of the same lines;
//! - ingest: durable, acknowledged events/s through gRPC vs the store's
//!   group committer alone (the floor any ingest path pays);
//! - latency: event -> membership change seen on Watch, at half that load;
//! - time-driven exits: how late each exit is against its exact instant;
//! - memory: resident bytes per contact of the node process.
//!
//! The node runs as a separate process (this binary's `serve`), so its
//! memory is measured alone.
//!
//! With `--content-only --model-dir DIR` it measures instead what
//! registering content costs a tenant with history (`content`).

mod content;
mod node;
mod probes;

use crate::client::Api;
use crate::generate::{GenerateConfig, generate};
use anyhow::{Context, Result};
use clap::Args;
use liveseg_core::event::{Limits, parse_message};
use liveseg_core::{Engine, SegmentSet};
use liveseg_proto::pb;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Accounts in the workload (12,500 x 8 contacts is about 100k contacts).
    #[arg(long, default_value_t = 12_500)]
    pub accounts: usize,
    #[arg(long, default_value_t = 8)]
    pub contacts_per_account: usize,
    /// Days of history.
    #[arg(long, default_value_t = 90)]
    pub days: u32,
    /// Concurrent ingest requests in flight.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Messages per ingest request.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// How long the latency run lasts.
    #[arg(long, default_value = "15s", value_parser = crate::args::parse_duration)]
    pub latency_for: Duration,
    /// Time-driven exits to observe.
    #[arg(long, default_value_t = 2000)]
    pub exits: usize,
    /// Only measure content registration (needs `--model-dir`).
    #[arg(long, requires = "model_dir")]
    pub content_only: bool,
    /// The embedding model's files, for `--content-only`.
    #[arg(long)]
    pub model_dir: Option<std::path::PathBuf>,
}

pub async fn run(args: BenchArgs) -> Result<()> {
    let now = chrono::Utc::now();
    let end = now - chrono::Duration::minutes(1);
    let cfg = GenerateConfig {
        accounts: args.accounts,
        contacts_per_account: args.contacts_per_account,
        days: args.days,
        end,
        ..GenerateConfig::default()
    };
    eprintln!(
        "generating {} accounts x {} contacts x {} days ...",
        cfg.accounts, cfg.contacts_per_account, cfg.days
    );
    let mut buf = Vec::new();
    let stats = generate(&cfg, &mut buf)?;
    let text = String::from_utf8(buf).context("generated workload is not UTF-8")?;
    let lines: Vec<&str> = text.lines().collect();
    println!("# liveseg bench\n");
    if let (true, Some(dir)) = (args.content_only, &args.model_dir) {
        println!(
            "workload: {} events, {} accounts, {} contacts, {} days\n",
            stats.events, stats.accounts, stats.contacts, cfg.days
        );
        return content::run(&lines, dir, args.batch, args.concurrency).await;
    }
    println!(
        "workload: {} events, {} accounts, {} contacts, {} days; machine: {} cores\n",
        stats.events,
        stats.accounts,
        stats.contacts,
        cfg.days,
        num_cpus()
    );

    let (engine_rate, parse_rate) = replay(&lines)?;
    println!("| replay (in-process engine, 1 thread) | events/s |\n|---|---|");
    println!("| `liveseg replay` engine: parse + validate + apply | {engine_rate:.0} |");
    println!("| peer: serde_json parse only, same lines | {parse_rate:.0} |");
    println!(
        "| ratio engine / parse-only | {:.2} |",
        engine_rate / parse_rate
    );
    let cli_rate = replay_command(&text, &cfg.end.to_rfc3339(), lines.len())?;
    println!(
        "| `liveseg replay --events FILE --at T` end to end (parallel parsing, file on disk) | {cli_rate:.0} |\n"
    );

    let store_rate = probes::store_only(&lines, args.batch, args.concurrency).await?;
    let node = node::NodeProcess::start(&[]).await?;
    let rss_before = node.rss_bytes();
    let api = Api::connect(&node.url(), &node.api_key).await?;
    let started = Instant::now();
    let (ingest_rate, acked) = ingest_all(&api, &lines, args.batch, args.concurrency).await?;
    settle(&api).await?;
    let applied_at = started.elapsed().as_secs_f64();
    println!("| durable ingest (gRPC, acks after fsync) | events/s |\n|---|---|");
    println!(
        "| node: validate + group commit + ack ({} in flight x {}) | {ingest_rate:.0} |",
        args.concurrency, args.batch
    );
    println!(
        "| node: until all applied to account actors | {:.0} |",
        acked as f64 / applied_at
    );
    println!("| peer: store group committer alone, same batches | {store_rate:.0} |");
    println!(
        "| ratio node / store alone | {:.2} |\n",
        ingest_rate / store_rate
    );

    let rss_after = node.rss_bytes();
    let contacts = api
        .admin()
        .stats(pb::StatsRequest {})
        .await?
        .into_inner()
        .resident_contacts
        .max(1);
    // At rest: a restarted node holds exactly the recovered state, without
    // the high-water marks of ingest buffers the allocator keeps.
    let mut node = node.restart().await?;
    let rss_rest = node.rss_bytes();
    let api = Api::connect(&node.url(), &node.api_key).await?;
    let per = |rss: u64| rss.saturating_sub(rss_before) as f64 / contacts as f64;
    println!("| memory (node process RSS) | value |\n|---|---|");
    println!("| empty node | {:.1} MiB |", rss_before as f64 / 1048576.0);
    println!(
        "| right after ingest (incl. allocator high-water of ingest buffers) | {:.1} MiB ({:.0} bytes/contact) |",
        rss_after as f64 / 1048576.0,
        per(rss_after)
    );
    println!(
        "| at rest: restarted, every account recovered and resident | {:.1} MiB |",
        rss_rest as f64 / 1048576.0
    );
    println!("| contacts resident | {contacts} |");
    println!(
        "| resident bytes per contact at rest | {:.0} |\n",
        per(rss_rest)
    );

    let rate = ingest_rate / 2.0;
    let lat = probes::latency(&api, rate, args.latency_for).await?;
    println!("| event -> membership change on Watch, at {rate:.0} events/s | ms |\n|---|---|");
    println!(
        "| p50 | {:.2} |\n| p99 | {:.2} |\n| max | {:.2} |\n| samples | {} |\n",
        lat.p50, lat.p99, lat.max, lat.n
    );

    let exits = probes::time_exits(&api, args.exits).await?;
    println!("| time-driven exit lag (emitted on Watch vs exact instant) | ms |\n|---|---|");
    println!(
        "| p50 | {:.2} |\n| p99 | {:.2} |\n| max | {:.2} |\n| exits | {} |\n",
        exits.p50, exits.p99, exits.max, exits.n
    );
    node.stop().await?;
    Ok(())
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs this binary's `liveseg replay` over the workload written to a file.
fn replay_command(text: &str, at: &str, events: usize) -> Result<f64> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("events.jsonl");
    std::fs::write(&file, text)?;
    let exe = std::env::current_exe()?;
    let started = Instant::now();
    let out = std::process::Command::new(exe)
        .args(["replay", "--events"])
        .arg(&file)
        .args(["--at", at])
        .output()?;
    let secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        out.status.success(),
        "liveseg replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(events as f64 / secs)
}

/// Replay over the lines (as `liveseg replay` does) vs parse-only.
fn replay(lines: &[&str]) -> Result<(f64, f64)> {
    let started = Instant::now();
    let mut n = 0usize;
    for l in lines {
        let v: serde_json::Value = serde_json::from_str(l)?;
        n += usize::from(v.is_object());
    }
    let parse_rate = n as f64 / started.elapsed().as_secs_f64();
    let set = SegmentSet::compile(&liveseg_core::presets::presets())
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let mut engine = Engine::new(set);
    let mut out = Vec::new();
    let limits = Limits::default();
    let started = Instant::now();
    let mut last = 0;
    for l in lines {
        let v: serde_json::Value = serde_json::from_str(l)?;
        if let Ok(e) = parse_message(&v, i64::MAX / 2, &limits) {
            last = e.ts;
            engine.apply(&e, e.ts, &mut out);
            out.clear();
        }
    }
    engine.advance_all(last, &mut out);
    let engine_rate = lines.len() as f64 / started.elapsed().as_secs_f64();
    Ok((engine_rate, parse_rate))
}

/// Sends every line in batches with `concurrency` requests in flight;
/// returns acknowledged events/s and the count.
async fn ingest_all(
    api: &Api,
    lines: &[&str],
    batch: usize,
    concurrency: usize,
) -> Result<(f64, usize)> {
    let batches: Arc<Vec<Vec<pb::SegmentMessage>>> = Arc::new(
        lines
            .chunks(batch)
            .map(|c| {
                c.iter()
                    .map(|l| pb::SegmentMessage {
                        payload: Some(pb::segment_message::Payload::Json((*l).to_string())),
                    })
                    .collect()
            })
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (batches, next, mut client) = (batches.clone(), next.clone(), api.ingest());
        tasks.push(tokio::spawn(async move {
            let mut acked = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(b) = batches.get(i) else {
                    return Ok::<usize, anyhow::Error>(acked);
                };
                loop {
                    match client
                        .ingest(pb::IngestRequest {
                            messages: b.clone(),
                        })
                        .await
                    {
                        Ok(r) => {
                            let r = r.into_inner();
                            acked += (r.accepted + r.duplicates) as usize;
                            break;
                        }
                        Err(s) if s.code() == tonic::Code::ResourceExhausted => {
                            tokio::time::sleep(Duration::from_millis(5)).await
                        }
                        Err(s) => return Err(anyhow::anyhow!("ingest failed: {s}")),
                    }
                }
            }
        }));
    }
    let mut acked = 0;
    for t in tasks {
        acked += t.await??;
    }
    Ok((acked as f64 / started.elapsed().as_secs_f64(), acked))
}

/// Waits until the node has applied everything it acknowledged.
async fn settle(api: &Api) -> Result<()> {
    let started = Instant::now();
    let mut admin = api.admin();
    loop {
        let s = admin.stats(pb::StatsRequest {}).await?.into_inner();
        if s.applied_seq >= s.log_head {
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(1800),
            "events were not applied within 30 minutes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
