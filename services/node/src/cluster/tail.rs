//! A shard's stream tail: the thread that feeds a serving runtime the
//! events other nodes append to the shard's stream.

use crate::dispatch::Command;
use crate::runtime::Runtime;
use liveseg_store::Seq;
use liveseg_store::redis::{RedisStore, ShardStore};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::shards::RETRY_PAUSE;

/// How long one blocking `XREAD` of a tail waits for new events.
const TAIL_BLOCK_MS: u64 = 250;
/// Most entries per tail read (one dispatcher batch).
const TAIL_BATCH: usize = 4096;

/// Feeds a shard's new events to its dispatcher, in stream order, on a
/// thread of its own (a blocking `XREAD` holds its connection).
pub(super) fn spawn_tail(
    store: Arc<ShardStore>,
    redis: RedisStore,
    runtime: Arc<Runtime>,
    (mut after, tail): (Seq, u64),
    stop: Arc<AtomicBool>,
) {
    let dispatch = runtime.dispatch.clone();
    let shard = store.shard();
    drop(runtime);
    let spawned = std::thread::Builder::new()
        .name(format!("tail-{shard}"))
        .spawn(move || {
            let timeout = redis.options().io_timeout + Duration::from_millis(TAIL_BLOCK_MS);
            let mut conn = None;
            while !stop.load(Ordering::Acquire) {
                let c = match conn.as_mut() {
                    Some(c) => c,
                    None => match redis.open(timeout) {
                        Ok(c) => conn.insert(c),
                        Err(e) => {
                            tracing::warn!(shard, error = %e, "tail cannot reach redis");
                            std::thread::sleep(RETRY_PAUSE);
                            continue;
                        }
                    },
                };
                match store.read_blocking(c, after, TAIL_BATCH, TAIL_BLOCK_MS) {
                    Ok(entries) => {
                        let Some(last) = entries.last().map(|e| e.seq) else {
                            continue;
                        };
                        if stop.load(Ordering::Acquire) {
                            break;
                        }
                        after = last;
                        let cmd = Command::Entries(entries, Instant::now(), tail);
                        // Blocking is the backpressure; an error means the runtime stopped.
                        if dispatch.blocking_send(cmd).is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(shard, error = %e, "tail read failed; reconnecting");
                        conn = None;
                        std::thread::sleep(RETRY_PAUSE);
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(shard, error = %e, "cannot start the shard's tail thread");
    }
}
