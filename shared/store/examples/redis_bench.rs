//! Benchmark of the Redis cluster backend against real `redis-server`s,
//! side by side in one run.
//!
//! ```text
//! cargo run --release -p liveseg-store --example redis_bench
//! ```
//!
//! 1. **Ingest**: `EVENTS` events (default 200,000, ~350-byte payloads,
//!    UUID-like message ids) appended in batches of `BATCH` (default 100)
//!    by `WRITERS` threads (default 8), each batch one `INGEST` script,
//!    against Redis with `appendfsync always` and with `everysec`, and
//!    against the embedded store (one fsync per batch) as the peer. Prints
//!    events/s, batch latency p50/p99 and the ratios.
//! 2. **Recovery vs state size**: for 1,000 / 10,000 / 50,000 accounts of
//!    `STATE_BYTES` (default 2,048) each, committed through fenced commits,
//!    measures what a new owner does on takeover: read the checkpoint
//!    index, load every account's checkpoint, and read a 10,000-event
//!    stream tail.

#![allow(clippy::unwrap_used)]

use liveseg_store::redis::{Fence, Fsync, RedisOptions, RedisProcess, RedisStore};
use liveseg_store::{
    AccountCheckpoint, AppendItem, CommitBatch, EmbeddedStore, EventLog, StateStore, StoreOptions,
};
use std::sync::Arc;
use std::time::Instant;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn payload(i: usize) -> Vec<u8> {
    let mut p = format!(
        "{{\"type\":\"track\",\"event\":\"Email Opened\",\"userId\":\"u{i}\",\"groupId\":\"acct{}\",\
         \"timestamp\":\"2026-11-26T10:00:00Z\",\"properties\":{{\"campaign\":\"q4-launch\"}}}}",
        i % 1000
    )
    .into_bytes();
    p.resize(350, b' ');
    p
}

fn message_id(writer: usize, i: usize) -> String {
    format!("{writer:08x}-{i:04x}-4000-8000-{:012x}", i * 7919)
}

struct Result {
    events_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// `writers` threads each append `per_writer` events in batches via `log_for`.
fn run_ingest(
    writers: usize,
    per_writer: usize,
    batch: usize,
    log_for: &(dyn Fn(usize) -> Arc<dyn EventLog> + Sync),
) -> Result {
    let start = Instant::now();
    let latencies: Vec<Vec<f64>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let log = log_for(w);
                s.spawn(move || {
                    let mut lat = Vec::new();
                    for chunk in (0..per_writer).collect::<Vec<_>>().chunks(batch) {
                        let items: Vec<AppendItem> = chunk
                            .iter()
                            .map(|&i| AppendItem {
                                tenant: "bench".into(),
                                message_id: message_id(w, i),
                                payload: payload(i),
                            })
                            .collect();
                        let t = Instant::now();
                        log.append(&items, 0).unwrap();
                        lat.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                    lat
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let mut all: Vec<f64> = latencies.into_iter().flatten().collect();
    all.sort_by(f64::total_cmp);
    let pct = |q: f64| all[((all.len() - 1) as f64 * q) as usize];
    Result {
        events_per_s: (writers * per_writer) as f64 / elapsed,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
    }
}

fn redis(fsync: Fsync) -> (RedisProcess, RedisStore) {
    let p = RedisProcess::start(fsync).unwrap();
    let s = RedisStore::connect(RedisOptions::new(p.url())).unwrap();
    (p, s)
}

fn main() {
    let events = env("EVENTS", 200_000);
    let batch = env("BATCH", 100);
    let writers = env("WRITERS", 8);
    let state_bytes = env("STATE_BYTES", 2048);
    let per_writer = events / writers;
    println!("ingest: {events} events, batches of {batch}, {writers} writer threads");
    println!(
        "{:<28} {:>12} {:>10} {:>10}",
        "backend", "events/s", "p50 ms", "p99 ms"
    );
    let mut rows = Vec::new();
    for (name, fsync) in [
        ("redis appendfsync always", Fsync::Always),
        ("redis appendfsync everysec", Fsync::EverySec),
    ] {
        let (_p, store) = redis(fsync);
        // Writers spread over 8 shards, as tenants spread over shards.
        let r = run_ingest(writers, per_writer, batch, &|w| {
            Arc::new(store.shard(w as u32 % 8, Fence::new("bench", 1))) as Arc<dyn EventLog>
        });
        println!(
            "{name:<28} {:>12.0} {:>10.2} {:>10.2}",
            r.events_per_s, r.p50_ms, r.p99_ms
        );
        rows.push(r.events_per_s);
    }
    let tmp = tempfile::tempdir().unwrap();
    let embedded: Arc<dyn EventLog> =
        Arc::new(EmbeddedStore::open(tmp.path(), StoreOptions::default()).unwrap());
    let r = run_ingest(writers, per_writer, batch, &|_| embedded.clone());
    println!(
        "{:<28} {:>12.0} {:>10.2} {:>10.2}",
        "embedded (redb, fsync)", r.events_per_s, r.p50_ms, r.p99_ms
    );
    println!(
        "ratios: always/everysec {:.2}, always/embedded {:.2}",
        rows[0] / rows[1],
        rows[0] / r.events_per_s
    );

    println!("\nrecovery (takeover work) vs state size, {state_bytes} B per account");
    println!(
        "{:<10} {:>12} {:>14} {:>16} {:>14}",
        "accounts", "index ms", "load all ms", "tail 10k ev ms", "total ms"
    );
    for accounts in [1_000usize, 10_000, 50_000] {
        let (_p, store) = redis(Fsync::Always);
        let leases = store.leases();
        let epoch = match leases.acquire(0, "bench", 600_000, None).unwrap() {
            liveseg_store::redis::LeaseOutcome::Acquired { epoch } => epoch,
            other => panic!("{other:?}"),
        };
        let shard = store.shard(0, Fence::new("bench", epoch));
        let state = vec![7u8; state_bytes];
        for chunk in (0..accounts).collect::<Vec<_>>().chunks(500) {
            shard
                .commit(&CommitBatch {
                    checkpoints: chunk
                        .iter()
                        .map(|i| AccountCheckpoint {
                            tenant: "bench".into(),
                            account: format!("acct{i}"),
                            applied_seq: 1,
                            state: Some(state.clone()),
                        })
                        .collect(),
                    ..Default::default()
                })
                .unwrap();
        }
        let items: Vec<AppendItem> = (0..10_000)
            .map(|i| AppendItem {
                tenant: "bench".into(),
                message_id: message_id(0, i),
                payload: payload(i),
            })
            .collect();
        shard.append(&items, 0).unwrap();
        let t = Instant::now();
        let index = shard.checkpoint_index().unwrap();
        let t_index = t.elapsed();
        for (tenant, account, _) in &index {
            shard.load_checkpoint(tenant, account).unwrap();
        }
        let t_load = t.elapsed() - t_index;
        let mut after = 0;
        loop {
            let got = shard.read_after(after, 4096).unwrap();
            let Some(last) = got.last() else { break };
            after = last.seq;
        }
        let total = t.elapsed();
        println!(
            "{accounts:<10} {:>12.1} {:>14.1} {:>16.1} {:>14.1}",
            t_index.as_secs_f64() * 1e3,
            t_load.as_secs_f64() * 1e3,
            (total - t_index - t_load).as_secs_f64() * 1e3,
            total.as_secs_f64() * 1e3
        );
    }
}
