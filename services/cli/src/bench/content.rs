//! `liveseg bench --content-only --model-dir DIR`: what registering content
//! costs a tenant that already has history, against the peer that any
//! change of definitions pays (a replay of the tenant's log).
//!
//! Both run in-band (the tenant applies no event meanwhile), so their
//! durations are the stall a registration or a definition change causes.
//! Each registration also embeds one text with the node's model; that is in
//! its figure.

use super::node::NodeProcess;
use super::{ingest_all, settle};
use crate::client::Api;
use anyhow::{Context, Result, bail};
use liveseg_proto::pb;
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

const TEXT: &[&str] = &[
    "A practical guide to building a cloud data warehouse: modelling, loading and cost control.",
    "Webinar: how revenue teams forecast pipeline with product usage signals.",
    "Security checklist for SOC 2 audits of a data platform.",
    "Lakehouse benchmark: query latency and cost across table formats.",
];

pub async fn run(lines: &[&str], model_dir: &Path, batch: usize, concurrency: usize) -> Result<()> {
    let ids = clicked_content(lines, TEXT.len());
    if ids.len() < TEXT.len() {
        bail!(
            "the workload's clicks name fewer than {} content ids",
            TEXT.len()
        );
    }
    let extra = ["--model-dir".to_string(), model_dir.display().to_string()];
    let mut node = NodeProcess::start(&extra).await?;
    let api = Api::connect(&node.url(), &node.api_key).await?;
    let (_, acked) = ingest_all(&api, lines, batch, concurrency).await?;
    settle(&api).await?;
    let contacts = api
        .admin()
        .stats(pb::StatsRequest {})
        .await?
        .into_inner()
        .resident_contacts;
    println!(
        "| content registration on a tenant with {acked} events, {contacts} contacts | path | seconds |\n|---|---|---|"
    );
    let first = register(&api, &ids[0], TEXT[0]).await?;
    println!("| 1st content (profiles switch on) | replay of the log | {first:.3} |");
    let definition = format!(
        "{{\"key\":\"bench_affinity\",\"name\":\"Bench affinity\",\"entity\":\"contact\",\
         \"condition\":{{\"affinity\":{{\"content\":\"{}\",\"at_least\":0.5}}}}}}",
        ids[0]
    );
    let started = Instant::now();
    api.segments()
        .apply_segment(pb::ApplySegmentRequest { definition })
        .await
        .context("applying the affinity segment")?;
    let apply = started.elapsed().as_secs_f64();
    println!("| peer: apply an affinity segment | replay of the log | {apply:.3} |");
    let mut rejudges = Vec::new();
    for (id, text) in ids.iter().zip(TEXT).skip(1) {
        let t = register(&api, id, text).await?;
        println!("| another content, affinity segment live | judge state again | {t:.3} |");
        rejudges.push(t);
    }
    let rejudge = rejudges.iter().sum::<f64>() / rejudges.len() as f64;
    println!(
        "| ratio replay (mean of the two above) / judge again (mean) | | {:.1}x |\n",
        (first + apply) / 2.0 / rejudge
    );
    node.stop().await
}

/// The `n` content ids the workload's clicks name most often.
fn clicked_content(lines: &[&str], n: usize) -> Vec<String> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for l in lines.iter().filter(|l| l.contains("Email Link Clicked")) {
        let Some(at) = l.find("\"content_id\":\"") else {
            continue;
        };
        let rest = &l[at + "\"content_id\":\"".len()..];
        if let Some(end) = rest.find('"') {
            *counts.entry(&rest[..end]).or_default() += 1;
        }
    }
    let mut by_count: Vec<(&str, usize)> = counts.into_iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    by_count
        .into_iter()
        .take(n)
        .map(|(id, _)| id.to_string())
        .collect()
}

/// Registers one item, waiting while the model loads; seconds of the call
/// that succeeded.
async fn register(api: &Api, id: &str, text: &str) -> Result<f64> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let started = Instant::now();
        let r = api
            .content()
            .register_content(pb::RegisterContentRequest {
                items: vec![pb::ContentItem {
                    id: id.to_string(),
                    text: text.to_string(),
                    ..Default::default()
                }],
            })
            .await;
        match r {
            Ok(r) => {
                let took = started.elapsed().as_secs_f64();
                if let Some(e) = r.into_inner().results.iter().find(|r| !r.error.is_empty()) {
                    bail!("registering {id}: {}", e.error);
                }
                return Ok(took);
            }
            Err(s) if s.code() == tonic::Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(s) => bail!("registering {id}: {s}"),
        }
    }
}
