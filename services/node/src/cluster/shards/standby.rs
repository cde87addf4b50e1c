//! Standby loads: a shard loaded before this node holds its lease.
//!
//! When a shard's owner goes silent, the leader names the node the shard
//! would go to if the owner were dead, and that node's member asks the
//! host to `prepare` it (`liveseg_cluster::member`). A crash takeover
//! otherwise waits for death detection and the old lease (about a lease
//! TTL), and only then loads; a standby loads during that wait.
//!
//! The load only reads. Its store's fence is never valid, so the runtime
//! writes nothing (the outbox carries the replay's changes, periodic duties
//! skip it) and answers nothing. Once loaded it is parked (`Parked` with
//! `standby`). When this node acquires the lease, the activation takes it
//! over if Redis agrees (`parked::standby_agrees_with`: no commit since
//! the load began, the entry it applied last still in place, the catalog
//! unchanged): its fence is renewed and its tail starts where its replay
//! ended. Otherwise it is dropped and the shard loads as usual. An
//! activation that comes while the standby still loads waits for it rather
//! than loading the shard a second time. A standby that is not activated
//! within [`STANDBY_FOR`] is dropped.

use super::ShardRuntimes;
use crate::cluster::parked::Parked;
use crate::runtime::Runtime;
use liveseg_store::redis::{Fence, ShardStore};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a standby waits for its activation: death detection plus a
/// lease of the production timers (6 s + 10 s), with room.
const STANDBY_FOR: Duration = Duration::from_secs(30);

/// Values of the `kind` label of `liveseg_shard_standbys_total`.
const LOADED: &str = "loaded";
pub(super) const USED: &str = "used";
const UNUSED: &str = "unused";

/// Standby loads under way: shard → the activation waiting for it, if any.
#[derive(Default)]
pub(super) struct InFlight(Mutex<HashMap<u32, Option<(u64, Fence)>>>);

impl InFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Option<(u64, Fence)>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a standby load of `shard`; false if one is under way.
    fn start(&self, shard: u32) -> bool {
        let mut map = self.lock();
        if map.contains_key(&shard) {
            return false;
        }
        map.insert(shard, None);
        true
    }

    /// If a standby of `shard` is loading, makes activation `generation`
    /// (under `fence`) wait for it, and says so.
    pub(super) fn await_for(&self, shard: u32, generation: u64, fence: &Fence) -> bool {
        match self.lock().get_mut(&shard) {
            Some(waiting) => {
                *waiting = Some((generation, fence.clone()));
                true
            }
            None => false,
        }
    }

    /// Ends the load of `shard`: the activation waiting for it, if any.
    fn finish(&self, shard: u32) -> Option<(u64, Fence)> {
        self.lock().remove(&shard).flatten()
    }
}

pub(super) fn count(kind: &'static str) {
    metrics::counter!(liveseg_telemetry::names::SHARD_STANDBYS_TOTAL, "kind" => kind).increment(1);
}

/// Counts a parked runtime dropped unused, if it was a standby.
pub(super) fn count_unused(p: &Parked) {
    if p.standby.is_some() {
        count(UNUSED);
    }
}

impl ShardRuntimes {
    /// Loads a standby of `shard`, unless this node already has the shard
    /// in any form (serving, loading, draining, parked) or loads one.
    pub(super) fn prepare(self: &Arc<Self>, shard: u32) {
        if self.lock().contains_key(&shard) || self.parked.holds(shard) {
            return;
        }
        if !self.standbys.start(shard) {
            return;
        }
        let this = self.clone();
        self.ctx
            .handle
            .spawn(async move { this.load_standby(shard).await });
    }

    async fn load_standby(self: Arc<Self>, shard: u32) {
        let started = Instant::now();
        tracing::info!(shard, "standby load started: the shard's owner is silent");
        let store = Arc::new(self.ctx.redis.shard(
            shard,
            Fence {
                token: format!("{}#standby", self.ctx.node_id),
                valid: Arc::new(|| false),
            },
        ));
        let loaded = self.read_standby(shard, &store).await;
        let waiting = self.standbys.finish(shard);
        let (commits, runtime) = match loaded {
            Ok(loaded) => loaded,
            Err(e) => {
                tracing::warn!(shard, error = %e, "standby load failed");
                if let Some((generation, fence)) = waiting {
                    self.spawn_load(shard, fence, generation, Duration::ZERO);
                }
                return;
            }
        };
        count(LOADED);
        tracing::info!(
            shard,
            load_ms = started.elapsed().as_millis() as u64,
            activated = waiting.is_some(),
            "standby loaded"
        );
        let id = self.next_generation();
        let p = Parked {
            runtime,
            store,
            id,
            since: Instant::now(),
            standby: Some(commits),
        };
        if let Some((generation, fence)) = waiting {
            // The lease came while this loaded: take over now, if Redis agrees.
            if p.continues_with(&fence) && self.ctx.redis_durable {
                self.resume_or_load(shard, p, fence, generation).await;
            } else {
                count(UNUSED);
                p.runtime.abort().await;
                self.load(shard, fence, generation).await;
            }
            return;
        }
        if self.lock().contains_key(&shard) {
            // Activated without waiting (it raced `prepare`): not needed.
            count(UNUSED);
            p.runtime.abort().await;
            return;
        }
        if let Some(old) = self.parked.park(shard, p) {
            count_unused(&old);
            old.runtime.abort().await;
        }
        let this = self.clone();
        self.ctx.handle.spawn(async move {
            tokio::time::sleep(STANDBY_FOR).await;
            if let Some(p) = this.parked.take_if(shard, id) {
                tracing::info!(shard, "standby dropped: the shard was not activated here");
                count(UNUSED);
                p.runtime.abort().await;
            }
        });
    }

    /// The shard's commit count, then a runtime recovered from its store.
    /// The count is read first: a commit while the runtime reads changes
    /// it, and the takeover then refuses the standby.
    async fn read_standby(
        &self,
        shard: u32,
        store: &Arc<ShardStore>,
    ) -> Result<(u64, Arc<Runtime>), String> {
        let s = store.clone();
        let commits = tokio::task::spawn_blocking(move || s.commit_count())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let runtime = self
            .start_runtime(shard, store)
            .await
            .map_err(|e| e.to_string())?;
        Ok((commits, runtime))
    }
}
