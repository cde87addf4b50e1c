//! Cluster mode computes what standalone mode computes, and its change
//! stream survives shard moves:
//! - the same generated history ingested into a standalone node and into a
//!   3-node cluster (through different nodes) gives the same members for
//!   every starter segment;
//! - a watch that is interrupted by a crash of the shard's owner resumes by
//!   cursor on any node with no gap and no repeat.

use anyhow::{Context, Result};
use liveseg_cluster::placement::shard_of;
use liveseg_proto::pb;
use liveseg_store::StateStore;
use liveseg_tests::cluster::{Cluster, RedisFsync};
use liveseg_tests::scenario::Run;
use liveseg_tests::{Auth, Node, json_msg, liveseg_bin, members_at, membership_at, poll};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tonic::transport::Channel;

const CLOCK: &str = "manual:2026-11-01T00:00:00Z";

fn generated_history(dir: &std::path::Path) -> Result<Vec<serde_json::Value>> {
    let path = dir.join("events.jsonl");
    let ok = std::process::Command::new(liveseg_bin())
        .args(["generate", "--accounts", "40", "--days", "60", "--out"])
        .arg(&path)
        .status()?
        .success();
    anyhow::ensure!(ok, "liveseg generate failed");
    std::fs::read_to_string(&path)?
        .lines()
        .map(|l| Ok(serde_json::from_str(l)?))
        .collect()
}

async fn ingest(url: &str, key: &str, events: &[serde_json::Value]) -> Result<()> {
    let channel = Channel::from_shared(url.to_string())?.connect().await?;
    let mut c =
        pb::ingest_service_client::IngestServiceClient::with_interceptor(channel, Auth(key.into()));
    for chunk in events.chunks(500) {
        let r = c
            .ingest(pb::IngestRequest {
                messages: chunk.iter().map(json_msg).collect(),
            })
            .await?
            .into_inner();
        anyhow::ensure!(r.invalid == 0, "invalid items: {:?}", r.results);
    }
    Ok(())
}

async fn members(url: &str, key: &str, segment: &str) -> Result<BTreeSet<(String, String)>> {
    Ok(members_at(url, key, segment)
        .await?
        .into_iter()
        .map(|m| (m.entity, m.id))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn standalone_and_cluster_replays_give_the_same_memberships() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let events = generated_history(dir.path())?;
    let standalone = Node::start(&dir.path().join("standalone"), &["--clock", CLOCK]).await?;
    let mut cluster = Cluster::start_with(3, 8, RedisFsync::Always, &["--clock", CLOCK]).await?;
    let (first, second) = events.split_at(events.len() / 2);
    // A contact that joins one account, engages, and moves to another: its
    // state must follow it across the handoff below.
    let mover: Vec<serde_json::Value> = vec![
        serde_json::json!({"type":"group","messageId":"mv-1","userId":"mover","groupId":"acct_00001","timestamp":"2026-10-30T00:00:00Z","traits":{"target":true}}),
        serde_json::json!({"type":"track","event":"Email Opened","messageId":"mv-2","userId":"mover","properties":{"email_id":"e-mv"},"timestamp":"2026-10-30T01:00:00Z","context":{"groupId":"acct_00001"}}),
        serde_json::json!({"type":"group","messageId":"mv-3","userId":"mover","groupId":"acct_00002","timestamp":"2026-10-30T02:00:00Z"}),
    ];
    for part in [first, &mover[..], second] {
        ingest(&standalone.url(), &standalone.api_key, part).await?;
    }
    // Spread the same history over the cluster's nodes (any node takes any
    // event), with a graceful handoff of the tenant's shard in the middle.
    let urls = cluster.live_urls();
    let half = first.len().div_ceil(2);
    for (i, part) in first.chunks(half).enumerate() {
        ingest(&urls[i % urls.len()], &cluster.api_key, part).await?;
    }
    ingest(&urls[2], &cluster.api_key, &mover).await?;
    let owner = cluster
        .lease_holder(shard_of("default", 8))?
        .context("no owner")?;
    let status = cluster.terminate(owner).await?;
    assert!(status.success(), "graceful stop failed: {status}");
    cluster
        .wait_all_shards_served(Duration::from_secs(40))
        .await?;
    let urls = cluster.live_urls();
    ingest(&urls[0], &cluster.api_key, second).await?;
    standalone.settle().await?;
    let segments: Vec<String> = standalone
        .segments()
        .await?
        .list_presets(pb::ListPresetsRequest {})
        .await?
        .into_inner()
        .segments
        .into_iter()
        .map(|s| s.key)
        .collect();
    assert!(segments.len() >= 6, "{segments:?}");
    let mut compared = 0;
    for segment in &segments {
        let expected = members(&standalone.url(), &standalone.api_key, segment).await?;
        // Each query through a different node (forwarded to the owner).
        let url = urls[compared % urls.len()].clone();
        let got = poll(Duration::from_secs(60), "cluster memberships", || {
            let (url, key, seg, expected) = (&url, &cluster.api_key, segment, &expected);
            async move {
                let got = members(url, key, seg).await.ok()?;
                (got == *expected).then_some(got)
            }
        })
        .await
        .with_context(|| format!("segment {segment}: the cluster never matched standalone"))?;
        compared += got.len();
    }
    assert!(
        compared > 0,
        "no segment had members; the comparison is vacuous"
    );
    let moved = membership_at(&urls[0], &cluster.api_key)
        .await?
        .get_contact_segments(pb::GetContactSegmentsRequest {
            contact_id: "mover".into(),
        })
        .await?
        .into_inner();
    assert_eq!(moved.account_id, "acct_00002");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_resumes_by_cursor_across_an_owner_crash() -> Result<()> {
    let mut c = Cluster::start(3, 8, RedisFsync::Always).await?;
    let tenants = c.tenants_with_probes(1).await?;
    let (tenant, key) = tenants[0].clone();
    let shard = shard_of(&tenant, 8);
    let owner = c.lease_holder(shard)?.context("no owner")?;
    // Watch through a node that does not own the shard (forwarded).
    let via = (owner + 1) % 3;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let urls = vec![c.nodes[via].url(), c.nodes[(owner + 2) % 3].url()];
    let seen = Arc::new(AtomicU64::new(0));
    let watcher = tokio::spawn(watch_with_resume(urls, key.clone(), seen.clone(), stop_rx));
    let run = Run::start(&c, tenants.clone(), 0);
    run.wait_progress(300, Duration::from_secs(40)).await?;
    // The shard's owner now (a late rebalance may have moved it since):
    // killing it breaks the watch, directly or through the forwarding node.
    let victim = c.lease_holder(shard)?.context("no owner")?;
    c.kill9(victim);
    run.retarget(&c);
    c.wait_all_shards_served(Duration::from_secs(40)).await?;
    run.wait_progress(300, Duration::from_secs(40)).await?;
    let (ledger, _) = run.finish().await?;
    let acked = ledger.acked_events() as u64;
    assert!(acked > 0);
    // Every acknowledged probe makes its contact enter probe_seen (replays
    // after the crash may repeat some): the stream is complete once its
    // head covers them all, and the watcher has caught up once it saw it.
    let log = c
        .redis_store()?
        .shard(shard, liveseg_store::redis::Fence::new("reader", 0));
    let head = poll(Duration::from_secs(60), "watcher caught up", || {
        let head = log.change_head(&tenant).unwrap_or(0);
        let caught_up = head >= acked && seen.load(Ordering::Acquire) >= head;
        async move { caught_up.then_some(head) }
    })
    .await?;
    let _ = stop_tx.send(true);
    let (cursors, resumes) = watcher.await??;
    assert!(resumes >= 1, "the watch was never interrupted by the crash");
    let expected: Vec<u64> = (1..=head).collect();
    assert_eq!(
        cursors.len(),
        expected.len(),
        "gap or repeat in the change stream"
    );
    assert_eq!(cursors, expected);
    Ok(())
}

/// Follows the tenant's change stream, resuming after the last cursor on
/// the next node whenever the stream breaks. Returns (cursors, resumes).
async fn watch_with_resume(
    urls: Vec<String>,
    key: String,
    seen: Arc<AtomicU64>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(Vec<u64>, usize)> {
    let mut cursors = Vec::new();
    let mut resumes = 0;
    let mut attempt = 0usize;
    while !*stop.borrow() {
        let url = &urls[attempt % urls.len()];
        attempt += 1;
        let after = cursors.last().copied().unwrap_or(0);
        let opened = async {
            let mut m = membership_at(url, &key).await?;
            anyhow::Ok(
                m.watch(pb::WatchRequest {
                    segment: String::new(),
                    after_cursor: after,
                    tail_only: false,
                })
                .await?
                .into_inner(),
            )
        }
        .await;
        let Ok(mut stream) = opened else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let mut stop_rx = stop.clone();
        loop {
            tokio::select! {
                _ = stop_rx.changed() => return Ok((cursors, resumes)),
                next = stream.message() => match next {
                    Ok(Some(change)) => {
                        cursors.push(change.cursor);
                        seen.store(change.cursor, Ordering::Release);
                    }
                    Ok(None) | Err(_) => {
                        resumes += 1;
                        break;
                    }
                },
            }
        }
    }
    Ok((cursors, resumes))
}
