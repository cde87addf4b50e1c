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
//! over if Redis agrees (`parked::agrees_with`: no commit since
//! the load began, the entry it applied last still in place, the catalog
//! unchanged): its fence is renewed and its tail starts where its replay
//! ended. Otherwise it is dropped and the shard loads as usual. An
//! activation that comes while the standby still loads waits for it rather
//! than loading the shard a second time. A standby that is not activated
//! within `ShardContext::standby_for` is dropped, and a shard whose standby
//! load failed gets no other for as long. Standbys need the operator's word
//! that Redis keeps every write (`redis_durable`), as resumes do: without
//! it none could be used, so none is loaded.

use super::ShardRuntimes;
use crate::cluster::parked::Parked;
use crate::runtime::Runtime;
use liveseg_store::redis::{Fence, ShardStore};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Values of the `kind` label of `liveseg_shard_standbys_total`.
const LOADED: &str = "loaded";
pub(super) const USED: &str = "used";
const UNUSED: &str = "unused";

/// An activation (generation and fence) waiting for a standby load.
type Waiting = Option<(u64, Fence)>;

/// Standby loads under way (shard → the activation waiting for it, if
/// any), and when each shard's last standby load failed.
#[derive(Default)]
pub(super) struct InFlight {
    loading: Mutex<HashMap<u32, Waiting>>,
    failed: Mutex<HashMap<u32, Instant>>,
}

impl InFlight {
    pub(super) fn loading(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Waiting>> {
        self.loading.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn failed(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Instant>> {
        self.failed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a standby load of `shard`; false if one is under way, the
    /// last one failed less than `pause` ago, or `held` (checked under the
    /// same lock as the registration and `settle_standby`'s parking, so no
    /// second load can slip in between) says the node has the shard.
    fn start(&self, shard: u32, pause: Duration, held: impl FnOnce() -> bool) -> bool {
        if self
            .failed()
            .get(&shard)
            .is_some_and(|at| at.elapsed() < pause)
        {
            return false;
        }
        let mut loading = self.loading();
        if loading.contains_key(&shard) || held() {
            return false;
        }
        loading.insert(shard, None);
        true
    }

    /// Puts activation `generation`'s slot in place (`insert`, returning
    /// what it displaced) and, if a standby of `shard` is loading, makes the
    /// activation wait for it, in one step against `settle_standby`.
    /// Returns the displaced slot and whether the activation waits.
    pub(super) fn activate<T>(
        &self,
        shard: u32,
        generation: u64,
        fence: &Fence,
        insert: impl FnOnce() -> T,
    ) -> (T, bool) {
        let mut loading = self.loading();
        let displaced = insert();
        match loading.get_mut(&shard) {
            Some(waiting) => {
                *waiting = Some((generation, fence.clone()));
                (displaced, true)
            }
            None => (displaced, false),
        }
    }
}

/// Ends a standby load however its task ends: a load that panics or is
/// cancelled still frees the shard and hands a waiting activation a load.
struct LoadGuard {
    runtimes: Arc<ShardRuntimes>,
    shard: u32,
    finished: bool,
}

impl Drop for LoadGuard {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // Failed or panicked: no other standby of the shard for a while.
        self.runtimes
            .standbys
            .failed()
            .insert(self.shard, Instant::now());
        let waiting = self
            .runtimes
            .standbys
            .loading()
            .remove(&self.shard)
            .flatten();
        if let Some((generation, fence)) = waiting {
            self.runtimes
                .spawn_load(self.shard, fence, generation, Duration::ZERO);
        }
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

/// What became of a finished standby load.
enum Outcome {
    /// Parked as `id` to wait for its activation, with what it displaced.
    Parked(u64, Option<Parked>),
    /// An activation waits for it: take it over.
    TakeOver(Parked, u64, Fence),
    /// Not wanted any more: stop it.
    Drop(Parked),
}

impl ShardRuntimes {
    /// Drops a parked runtime nobody will use (counted if it was a
    /// standby); its stop runs on its own task.
    pub(super) fn discard(&self, p: Parked) {
        count_unused(&p);
        self.ctx
            .handle
            .spawn(async move { p.runtime.abort().await });
    }

    /// Loads a standby of `shard`, unless standbys could not be used
    /// (`redis_durable`), or this node already has the shard in any form
    /// (serving, loading, draining, a standby parked) or loads one. A
    /// runtime parked after this node's own lease of the shard lapsed is
    /// dropped first: the shard is named another node's now (a suspect's,
    /// or a frozen owner's), so it was most likely held since, and that
    /// runtime would then never resume, while it keeps the standby from
    /// loading. (If nobody held it after all, a standby load replaces a
    /// resume: slower, never unsafe.) (In a mix
    /// run a node woken from SIGSTOP kept such runtimes of the shards it
    /// had lost, and when their new owner was killed it loaded them in
    /// full, 3 s, instead of from standbys.)
    pub(super) fn prepare(self: &Arc<Self>, shard: u32) {
        if !self.ctx.redis_durable {
            return;
        }
        if let Some(old) = self.parked.take_lapsed(shard) {
            tracing::info!(
                shard,
                "parked shard runtime dropped: the shard is named elsewhere now; loading a standby"
            );
            self.discard(old);
        }
        let held = || self.lock().contains_key(&shard) || self.parked.holds(shard);
        if !self.standbys.start(shard, self.ctx.standby_for, held) {
            return;
        }
        let guard = LoadGuard {
            runtimes: self.clone(),
            shard,
            finished: false,
        };
        self.ctx
            .handle
            .spawn(async move { guard.runtimes.clone().load_standby(guard).await });
    }

    async fn load_standby(self: Arc<Self>, mut guard: LoadGuard) {
        let shard = guard.shard;
        let started = Instant::now();
        tracing::info!(
            shard,
            "standby load started: the shard's owner is silent, or froze it for this node"
        );
        let store = Arc::new(self.ctx.redis.shard(
            shard,
            Fence {
                token: format!("{}#standby", self.ctx.node_id),
                valid: Arc::new(|| false),
            },
        ));
        let loaded = self.read_standby(shard, &store).await;
        let (commits, runtime) = match loaded {
            Ok(loaded) => loaded,
            Err(e) => {
                tracing::warn!(shard, error = %e, "standby load failed");
                // The guard marks the failure and hands a waiting
                // activation a load.
                return;
            }
        };
        count(LOADED);
        let p = Parked {
            runtime,
            store,
            id: self.next_generation(),
            since: Instant::now(),
            standby: Some(commits),
        };
        let outcome = self.settle_standby(shard, p);
        guard.finished = true;
        tracing::info!(
            shard,
            load_ms = started.elapsed().as_millis() as u64,
            activated = matches!(outcome, Outcome::TakeOver(..)),
            "standby loaded"
        );
        match outcome {
            Outcome::Parked(id, displaced) => {
                self.drop_parked_after(shard, id, self.ctx.standby_for);
                if let Some(old) = displaced {
                    count_unused(&old);
                    old.runtime.abort().await;
                }
            }
            Outcome::TakeOver(p, generation, fence) => {
                if !self.is_current(shard, generation) {
                    count(UNUSED);
                    p.runtime.abort().await;
                } else if p.continues_with(&fence) {
                    self.resume_or_load(shard, p, fence, generation).await;
                } else {
                    count(UNUSED);
                    p.runtime.abort().await;
                    self.load(shard, fence, generation).await;
                }
            }
            Outcome::Drop(p) => {
                count(UNUSED);
                p.runtime.abort().await;
            }
        }
    }

    /// Ends the load's registration and parks the standby in one step
    /// under the registration lock (`InFlight::start` checks what is parked
    /// under it too, so no second load can start between), unless an
    /// activation waits for it or the shard was activated here without
    /// waiting (it raced `prepare`).
    fn settle_standby(&self, shard: u32, p: Parked) -> Outcome {
        let mut loading = self.standbys.loading();
        if let Some((generation, fence)) = loading.remove(&shard).flatten() {
            return Outcome::TakeOver(p, generation, fence);
        }
        if self.lock().contains_key(&shard) {
            return Outcome::Drop(p);
        }
        let id = p.id;
        let displaced = self.parked.park(shard, p);
        Outcome::Parked(id, displaced)
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
