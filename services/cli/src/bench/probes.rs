//! Measurements that need probes: the store-only peer, event-to-change
//! latency at a fixed rate, and time-driven exit lag.

use crate::client::Api;
use anyhow::{Result, anyhow};
use hdrhistogram::Histogram;
use liveseg_proto::pb;
use liveseg_store::{AppendItem, EmbeddedStore, GroupCommitOptions, GroupCommitter, StoreOptions};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_stream::StreamExt;

pub struct Summary {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    pub n: u64,
}

fn summary(h: &Histogram<u64>) -> Summary {
    // Recorded in microseconds; reported in milliseconds.
    let ms = |v: u64| v as f64 / 1000.0;
    Summary {
        p50: ms(h.value_at_quantile(0.5)),
        p99: ms(h.value_at_quantile(0.99)),
        max: ms(h.max()),
        n: h.len(),
    }
}

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The peer: the same batches through the store's group committer alone.
pub async fn store_only(lines: &[&str], batch: usize, concurrency: usize) -> Result<f64> {
    let dir = tempfile::tempdir()?;
    let store = Arc::new(EmbeddedStore::open(dir.path(), StoreOptions::default())?);
    let committer = GroupCommitter::start(store, GroupCommitOptions::default(), Box::new(|_| {}))?;
    let batches: Arc<Vec<Vec<AppendItem>>> = Arc::new(
        lines
            .chunks(batch)
            .enumerate()
            .map(|(b, c)| {
                c.iter()
                    .enumerate()
                    .map(|(i, l)| AppendItem {
                        tenant: "bench".into(),
                        message_id: format!("{b}-{i}"),
                        payload: l.as_bytes().to_vec(),
                    })
                    .collect()
            })
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (batches, next, committer) = (batches.clone(), next.clone(), committer.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            while let Some(b) = batches.get(next.fetch_add(1, Ordering::Relaxed)) {
                n += committer.append(b.clone(), wall_ms()).await?.len();
            }
            Ok::<usize, liveseg_store::StoreError>(n)
        }));
    }
    let mut n = 0;
    for t in tasks {
        n += t.await??;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    committer.shutdown();
    Ok(rate)
}

/// Follows the live tail of the segment every probe enters and exits.
async fn watch_probe_segment(api: &Api) -> Result<tonic::Streaming<pb::MembershipChange>> {
    let req = pb::WatchRequest {
        segment: "engaged_non_target_contacts".into(),
        after_cursor: 0,
        tail_only: true,
    };
    Ok(api.membership().watch(req).await?.into_inner())
}

/// Sends one probe per batch at `rate` events/s (batches of 50) for `dur`;
/// each probe makes a new contact enter `engaged_non_target_contacts`.
pub async fn latency(api: &Api, rate: f64, dur: Duration) -> Result<Summary> {
    let mut watch = watch_probe_segment(api).await?;
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let sent2 = sent.clone();
    let mut client = api.ingest();
    let per_batch = 50usize;
    let interval = Duration::from_secs_f64(per_batch as f64 / rate.max(1.0));
    let sender = tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let started = Instant::now();
        let mut n = 0u64;
        while started.elapsed() < dur {
            tick.tick().await;
            let ts = liveseg_core::time::format_rfc3339(wall_ms() - 1000);
            let mut msgs = Vec::with_capacity(per_batch);
            let probe = format!("lat-{n}");
            for i in 0..per_batch {
                let user = if i == 0 {
                    probe.clone()
                } else {
                    format!("filler-{}", (n as usize * per_batch + i) % 5000)
                };
                let v = serde_json::json!({"type":"track","event":"Product Used","messageId":format!("{probe}-{i}"),"userId":user,"timestamp":ts,"context":{"groupId":format!("latency-acct-{}", n % 500)}});
                msgs.push(pb::SegmentMessage {
                    payload: Some(pb::segment_message::Payload::Json(v.to_string())),
                });
            }
            sent2
                .lock()
                .map_err(|_| anyhow!("lock"))?
                .insert(format!("event:{probe}-0"), Instant::now());
            client.ingest(pb::IngestRequest { messages: msgs }).await?;
            n += 1;
        }
        Ok::<u64, anyhow::Error>(n)
    });
    let mut h = Histogram::<u64>::new(3)?;
    let deadline = Instant::now() + dur + Duration::from_secs(10);
    while Instant::now() < deadline {
        let Ok(Some(Ok(change))) = tokio::time::timeout(Duration::from_secs(1), watch.next()).await
        else {
            if sender.is_finished() && !h.is_empty() {
                break;
            }
            continue;
        };
        if let Some(at) = sent
            .lock()
            .map_err(|_| anyhow!("lock"))?
            .remove(&change.cause)
        {
            h.record(at.elapsed().as_micros() as u64)?;
        }
    }
    sender.await??;
    Ok(summary(&h))
}

/// Engagements dated so their 30-day windows close 3-13 s from now; records
/// how late each exit arrives on Watch against its exact instant.
pub async fn time_exits(api: &Api, count: usize) -> Result<Summary> {
    let mut watch = watch_probe_segment(api).await?;
    let base = wall_ms() - 30 * 86_400_000 + 3_000;
    let step = (10_000 / count.max(1)) as i64;
    let mut client = api.ingest();
    for chunk in (0..count).collect::<Vec<_>>().chunks(500) {
        let msgs = chunk
            .iter()
            .map(|k| {
                let ts = liveseg_core::time::format_rfc3339(base + *k as i64 * step);
                let v = serde_json::json!({"type":"track","event":"Meeting Booked","messageId":format!("exit-{k}"),"userId":format!("exit-{k}"),"timestamp":ts,"context":{"groupId":format!("exit-acct-{}", k % 200)}});
                pb::SegmentMessage { payload: Some(pb::segment_message::Payload::Json(v.to_string())) }
            })
            .collect();
        client.ingest(pb::IngestRequest { messages: msgs }).await?;
    }
    let mut h = Histogram::<u64>::new(3)?;
    let deadline = Instant::now() + Duration::from_secs(40);
    while (h.len() as usize) < count && Instant::now() < deadline {
        let Ok(Some(Ok(change))) = tokio::time::timeout(Duration::from_secs(1), watch.next()).await
        else {
            continue;
        };
        if change.kind == pb::ChangeKind::Exit as i32 && change.id.starts_with("exit-") {
            let instant =
                liveseg_core::time::parse_rfc3339(&change.instant).map_err(|e| anyhow!(e))?;
            h.record(((wall_ms() - instant).max(0) * 1000) as u64)?;
        }
    }
    Ok(summary(&h))
}
