//! How long a Redis restart takes to load a shard set's data: the part of
//! every Redis kill -9 outage that grows with the data.
//!
//! ```text
//! cargo run --release -p liveseg-store --example redis_reload
//! ```
//!
//! Appends `EVENTS` events (default 2,000,000; ~350-byte payloads, UUID-like
//! ids, batches of 100 from 8 writers over 8 shards, wall-clock `now`)
//! through `ShardStore::append`, so Redis holds what the cluster writes: the
//! stream entries and a dedupe entry per message id. Then, `ROUNDS` times
//! (default 3), each: `kill -9` and restart as left by the fill (an AOF base
//! plus the commands since its last rewrite), then `BGREWRITEAOF`, `kill -9`
//! and restart (all in the base). Restart time is until Redis answers PING,
//! which it refuses while loading.
//!
//! Run it at two commits to compare dedupe layouts; the file builds against
//! any commit that has `RedisProcess` (the fill only uses `EventLog::append`).

#![allow(clippy::unwrap_used)]

use liveseg_store::redis::{Fence, Fsync, RedisOptions, RedisProcess, RedisStore};
use liveseg_store::{AppendItem, EventLog};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn info(store: &RedisStore, section: &str, field: &str) -> String {
    let text: String = store
        .with_conn(|c| ::redis::cmd("INFO").arg(section).query(c))
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or("?")
        .trim()
        .to_owned()
}

fn wait_rewrite(store: &RedisStore) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while info(store, "persistence", "aof_rewrite_in_progress") != "0"
        || info(store, "persistence", "aof_rewrite_scheduled") != "0"
    {
        assert!(Instant::now() < deadline, "AOF rewrite did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn fill(store: &RedisStore, events: usize) -> f64 {
    let writers = 8;
    let per_writer = events / writers;
    let start = Instant::now();
    std::thread::scope(|s| {
        for w in 0..writers {
            let log = store.shard(w as u32, Fence::new("bench", 1));
            s.spawn(move || {
                let mut i = 0;
                while i < per_writer {
                    let n = 100.min(per_writer - i);
                    let items: Vec<AppendItem> = (i..i + n)
                        .map(|k| {
                            let mut payload = format!(
                                "{{\"type\":\"track\",\"event\":\"Email Opened\",\"userId\":\"u{k}\"}}"
                            )
                            .into_bytes();
                            payload.resize(350, b' ');
                            AppendItem {
                                tenant: "bench".into(),
                                message_id: format!("{w:08x}-{k:04x}-4000-8000-{:012x}", k * 7919),
                                payload,
                            }
                        })
                        .collect();
                    log.append(&items, wall_ms()).unwrap();
                    i += n;
                }
            });
        }
    });
    events as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let events = env("EVENTS", 2_000_000);
    let rounds = env("ROUNDS", 3);
    let mut p = RedisProcess::start(Fsync::EverySec).unwrap();
    let store = RedisStore::connect(RedisOptions::new(p.url())).unwrap();
    let rate = fill(&store, events);
    wait_rewrite(&store);
    let keys: u64 = store
        .with_conn(|c| ::redis::cmd("DBSIZE").query(c))
        .unwrap();
    println!(
        "filled {events} events at {rate:.0} events/s: {keys} keys, used_memory {}",
        info(&store, "memory", "used_memory_human")
    );
    println!(
        "{:<6} {:>22} {:>22}",
        "round", "restart as left (s)", "restart after rewrite (s)"
    );
    for round in 1..=rounds {
        let t = Instant::now();
        p.restart().unwrap();
        let as_left = t.elapsed().as_secs_f64();
        let store = RedisStore::connect(RedisOptions::new(p.url())).unwrap();
        // A restart may start a rewrite of its own; wait for it, then ask.
        wait_rewrite(&store);
        let _: () = store
            .with_conn(|c| ::redis::cmd("BGREWRITEAOF").query(c))
            .unwrap();
        wait_rewrite(&store);
        let t = Instant::now();
        p.restart().unwrap();
        let rewritten = t.elapsed().as_secs_f64();
        println!("{round:<6} {as_left:>22.2} {rewritten:>22.2}");
    }
}
