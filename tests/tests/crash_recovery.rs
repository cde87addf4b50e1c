//! SIGKILL in the middle of an ingest stream: every acknowledged event
//! survives, each event is applied exactly once, and after restart the live
//! memberships equal a clean `liveseg replay` of the same events.

use anyhow::{Context, Result};
use liveseg_proto::pb;
use liveseg_tests::{Node, all_members, json_msg, liveseg_bin};
use std::collections::{BTreeSet, HashSet};
use std::process::Command;

const END: &str = "2026-11-01T00:00:00Z";
const SEGMENTS: [&str; 7] = [
    "engaged_target_contacts",
    "engaged_non_target_contacts",
    "dormant_high_fit_accounts",
    "decaying_customers",
    "sunset_candidates",
    "tier1_pricing_intent",
    "suppressed",
];

fn generate(dir: &std::path::Path) -> Result<(std::path::PathBuf, Vec<String>)> {
    let file = dir.join("events.jsonl");
    let out = Command::new(liveseg_bin())
        .args([
            "generate",
            "--accounts",
            "40",
            "--contacts-per-account",
            "5",
            "--days",
            "120",
            "--end",
            END,
            "--seed",
            "7",
            "-O",
        ])
        .arg(&file)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "generate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<String> = std::fs::read_to_string(&file)?
        .lines()
        .map(str::to_string)
        .collect();
    Ok((file, lines))
}

fn clean_replay(file: &std::path::Path) -> Result<BTreeSet<(String, String, String, String)>> {
    let out = Command::new(liveseg_bin())
        .args(["replay", "--events"])
        .arg(file)
        .args(["--at", END])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut set = BTreeSet::new();
    for line in String::from_utf8(out.stdout)?.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        set.insert((s("segment"), s("entity"), s("id"), s("account")));
    }
    Ok(set)
}

async fn live_memberships(node: &Node) -> Result<BTreeSet<(String, String, String, String)>> {
    let mut set = BTreeSet::new();
    for seg in SEGMENTS {
        for (entity, id, account) in all_members(node, seg).await? {
            set.insert((seg.to_string(), entity, id, account));
        }
    }
    Ok(set)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_loses_no_acknowledged_event_and_applies_each_once() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (file, lines) = generate(dir.path())?;
    let data = dir.path().join("data");
    let flags = [
        "--clock",
        &format!("manual:{END}"),
        "--checkpoint-interval",
        "150ms",
    ];
    let mut node = Node::start(&data, &flags).await?;
    let batches: Vec<Vec<String>> = lines.chunks(200).map(|c| c.to_vec()).collect();
    let kill_after = batches.len() / 2;

    // One request in flight at a time, so log order is file order.
    let mut acked: Vec<String> = Vec::new();
    let mut ingest = node.ingest().await?;
    for (i, batch) in batches.iter().enumerate() {
        if i == kill_after {
            // Kill while the next request is on the wire.
            let mut c = ingest.clone();
            let req = pb::IngestRequest {
                messages: batch
                    .iter()
                    .map(|l| json_msg(&serde_json::from_str(l).unwrap_or_default()))
                    .collect(),
            };
            let inflight = tokio::spawn(async move { c.ingest(req).await });
            node.kill9();
            let _ = inflight.await; // ok or failed: indeterminate either way
            break;
        }
        let req = pb::IngestRequest {
            messages: batch
                .iter()
                .map(|l| json_msg(&serde_json::from_str(l).unwrap_or_default()))
                .collect(),
        };
        let r = ingest
            .ingest(req)
            .await
            .context("ingest before the kill")?
            .into_inner();
        assert_eq!(
            r.invalid,
            0,
            "{:?}",
            r.results
                .iter()
                .find(|x| x.status == pb::ItemStatus::Invalid as i32)
        );
        for l in batch {
            let v: serde_json::Value = serde_json::from_str(l)?;
            acked.push(v["messageId"].as_str().unwrap_or_default().to_string());
        }
    }
    assert!(!acked.is_empty());

    // Restart on the same data; the client retries everything (same messageIds).
    let node = Node::start(&data, &flags).await?;
    let acked: HashSet<String> = acked.into_iter().collect();
    let mut ingest = node.ingest().await?;
    let mut duplicates_of_acked = 0;
    for batch in &batches {
        let req = pb::IngestRequest {
            messages: batch
                .iter()
                .map(|l| json_msg(&serde_json::from_str(l).unwrap_or_default()))
                .collect(),
        };
        let r = ingest.ingest(req).await?.into_inner();
        for (item, line) in r.results.iter().zip(batch) {
            let v: serde_json::Value = serde_json::from_str(line)?;
            let id = v["messageId"].as_str().unwrap_or_default();
            if acked.contains(id) {
                // Acknowledged before the crash => durable => a duplicate now.
                assert_eq!(
                    item.status,
                    pb::ItemStatus::Duplicate as i32,
                    "acknowledged {id} was lost"
                );
                duplicates_of_acked += 1;
            }
        }
    }
    assert_eq!(duplicates_of_acked, acked.len());
    let stats = node.settle().await?;
    // The restart recovered from a checkpoint plus a replayed log tail.
    let log = std::fs::read_to_string(&node.log)?;
    // The log file holds both runs; the restart's line is the last one.
    let replayed: u64 = log
        .lines()
        .rev()
        .find_map(|l| {
            l.split("replayed=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0);
    assert!(
        replayed > 0,
        "expected a replayed tail after SIGKILL: {}",
        node.log_tail()
    );
    let unique: HashSet<&str> = lines
        .iter()
        .filter_map(|l| l.split("\"messageId\":\"").nth(1)?.split('"').next())
        .collect();
    // Exactly once in the log: one entry per distinct messageId.
    assert_eq!(stats.log_head as usize, unique.len());
    let live = live_memberships(&node).await?;
    let clean = clean_replay(&file)?;
    assert!(!clean.is_empty());
    let missing: Vec<_> = clean.difference(&live).take(5).collect();
    let extra: Vec<_> = live.difference(&clean).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?} ({}\n{})",
        live.len(),
        node.log_tail()
    );
    Ok(())
}
