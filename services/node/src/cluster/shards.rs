//! The serving side of cluster membership: one [`Runtime`] per shard this
//! node holds the lease of, started, drained and stopped by the member's
//! control loop through [`ShardHost`].
//!
//! A shard's runtime recovers from the shard's checkpoints and stream
//! (every write fenced by the lease), then a tail thread feeds it new
//! events with blocking `XREAD`s. Failures stay inside the shard: a runtime
//! whose dispatcher stops on an error is restarted from Redis while the
//! lease is still valid; the rest of the node keeps serving.

use super::backoff::RestartBackoff;
use super::parked::ParkedRuntimes;
use crate::actors::ActorPool;
use crate::clock::SharedClock;
use crate::config::NodeConfig;
use crate::runtime::{Health, Runtime, RuntimeParts};
use liveseg_cluster::member::{DrainDone, ShardHost, StopReason};
use liveseg_cluster::placement::shard_of;
use liveseg_store::Catalog;
use liveseg_store::redis::{Fence, RedisStore, ShardStore};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod handoff;
mod resume;
mod standby;
#[cfg(test)]
mod tests;

/// Pause before retrying a failed shard load or tail read.
pub(super) const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// What every shard runtime of this node is built from.
pub struct ShardContext {
    pub redis: RedisStore,
    pub catalog: Arc<dyn Catalog>,
    pub clock: SharedClock,
    pub config: NodeConfig,
    pub pool: Arc<ActorPool>,
    pub shards: u32,
    /// The operator vouches that Redis never loses an acknowledged write
    /// (`--redis-durable`): required to resume a parked runtime, and to
    /// load standbys at all.
    pub redis_durable: bool,
    pub handle: tokio::runtime::Handle,
    /// This member's id (the node part of its fences).
    pub node_id: String,
    /// How long a standby waits for its activation, and a shard whose
    /// standby load failed waits for the next: enough for death detection
    /// and a lease to run out, twice.
    pub standby_for: Duration,
}

enum Slot {
    /// Activated; its runtime is recovering.
    Loading { generation: u64 },
    Active {
        generation: u64,
        runtime: Arc<Runtime>,
        /// The runtime's store; its fence is renewed when the runtime resumes.
        store: Arc<ShardStore>,
        /// Set to stop the shard's tail thread.
        tail_stop: Arc<AtomicBool>,
    },
    /// Handing off: final checkpoint in progress; serves nothing, and is
    /// kept so a drain that times out can still be aborted.
    Draining {
        generation: u64,
        runtime: Arc<Runtime>,
    },
}

impl Slot {
    fn generation(&self) -> u64 {
        match self {
            Slot::Loading { generation }
            | Slot::Active { generation, .. }
            | Slot::Draining { generation, .. } => *generation,
        }
    }
}

/// The shards this node serves.
pub struct ShardRuntimes {
    ctx: ShardContext,
    slots: Mutex<HashMap<u32, Slot>>,
    /// Runtimes whose lease lapsed, waiting to resume (`parked`).
    parked: ParkedRuntimes,
    /// Tells a load apart from a later activation of the same shard.
    generations: AtomicU64,
    /// Loads started (not resumes, not standbys): tests tell a takeover
    /// from a load by it.
    loads: AtomicU64,
    /// Pauses of supervised restarts of failing shards.
    restarts: RestartBackoff,
    /// Standby loads under way, each with the activation waiting for it.
    standbys: standby::InFlight,
}

impl ShardRuntimes {
    pub fn new(ctx: ShardContext) -> Arc<Self> {
        Arc::new(ShardRuntimes {
            ctx,
            slots: Mutex::new(HashMap::new()),
            parked: ParkedRuntimes::default(),
            generations: AtomicU64::new(0),
            loads: AtomicU64::new(0),
            restarts: RestartBackoff::default(),
            standbys: Default::default(),
        })
    }

    pub fn shard_count(&self) -> u32 {
        self.ctx.shards
    }

    /// The serving runtime of `shard`, if this node has one.
    pub fn runtime(&self, shard: u32) -> Option<Arc<Runtime>> {
        match self.lock().get(&shard) {
            Some(Slot::Active { runtime, .. }) => Some(runtime.clone()),
            _ => None,
        }
    }

    /// Every serving runtime.
    pub fn local(&self) -> Vec<Arc<Runtime>> {
        self.lock()
            .values()
            .filter_map(|s| match s {
                Slot::Active { runtime, .. } => Some(runtime.clone()),
                Slot::Loading { .. } | Slot::Draining { .. } => None,
            })
            .collect()
    }

    /// Shards activated here, serving or still loading.
    pub fn held(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.lock().keys().copied().collect();
        v.sort_unstable();
        v
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn start_loading(self: &Arc<Self>, shard: u32, fence: Fence) {
        let generation = self.next_generation();
        // With the slot in place, in one step: if a standby of this shard
        // is loading, the activation takes it over when it is done
        // (`standby`) rather than loading a second time.
        let (previous, waits) = self.standbys.activate(shard, generation, &fence, || {
            self.lock().insert(shard, Slot::Loading { generation })
        });
        // The member stops a shard before it activates it again, so nothing
        // should be here; if something is, it must not keep running unseen.
        if let Some(old) = previous {
            self.stop_slot(shard, old);
        }
        if !waits {
            self.take_over_or_load(shard, fence, generation);
        }
    }

    fn next_generation(&self) -> u64 {
        self.generations.fetch_add(1, Ordering::AcqRel) + 1
    }

    fn spawn_load(self: &Arc<Self>, shard: u32, fence: Fence, generation: u64, after: Duration) {
        let this = self.clone();
        self.ctx.handle.spawn(async move {
            tokio::time::sleep(after).await;
            this.load(shard, fence, generation).await
        });
    }

    /// Stops whatever a removed slot was running, writing nothing more.
    fn stop_slot(&self, shard: u32, slot: Slot) {
        let runtime = match slot {
            Slot::Loading { .. } => return,
            Slot::Active {
                runtime, tail_stop, ..
            } => {
                tail_stop.store(true, Ordering::Release);
                runtime
            }
            Slot::Draining { runtime, .. } => runtime,
        };
        tracing::info!(shard, "shard runtime stopped");
        self.ctx.handle.spawn(async move { runtime.abort().await });
    }

    fn is_current(&self, shard: u32, generation: u64) -> bool {
        self.lock()
            .get(&shard)
            .is_some_and(|s| s.generation() == generation)
    }

    /// Recovers the shard's runtime (retrying while the lease is valid and
    /// the activation current), then starts its tail and its supervisor.
    async fn load(self: Arc<Self>, shard: u32, fence: Fence, generation: u64) {
        self.loads.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let store = Arc::new(self.ctx.redis.shard(shard, fence.clone()));
        let runtime = loop {
            if !self.is_current(shard, generation) || !(fence.valid)() {
                return;
            }
            match self.start_runtime(shard, &store).await {
                Ok(rt) => break rt,
                Err(e) => {
                    tracing::warn!(shard, error = %e, "loading the shard failed; retrying");
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
        };
        let tail_stop = Arc::new(AtomicBool::new(false));
        let current = {
            let mut slots = self.lock();
            let current = slots.get(&shard).map(Slot::generation) == Some(generation);
            if current {
                slots.insert(
                    shard,
                    Slot::Active {
                        generation,
                        runtime: runtime.clone(),
                        store: store.clone(),
                        tail_stop: tail_stop.clone(),
                    },
                );
            }
            current
        };
        if !current {
            // Deactivated or drained while loading: it never served. Said
            // out loud because it is a whole load thrown away: a shard that
            // moves on while it loads costs a second handoff.
            tracing::info!(
                shard,
                load_ms = started.elapsed().as_millis() as u64,
                "shard load discarded: the activation ended while it loaded"
            );
            runtime.abort().await;
            return;
        }
        tracing::info!(
            shard,
            token = store.token(),
            load_ms = started.elapsed().as_millis() as u64,
            "shard serving"
        );
        metrics::histogram!(liveseg_telemetry::names::SHARD_LOAD_SECONDS)
            .record(started.elapsed().as_secs_f64());
        self.serve(shard, generation, runtime, store, fence, tail_stop);
    }

    /// Recovers a runtime of `shard` from `store` (checkpoints, directories,
    /// stream tail, index).
    async fn start_runtime(
        &self,
        shard: u32,
        store: &Arc<ShardStore>,
    ) -> crate::error::Result<Arc<Runtime>> {
        let shards = self.ctx.shards;
        // The store's fence, not the one at the start: a resumed runtime's
        // (and a standby's) fence changes.
        let valid: crate::runtime::Check = {
            let store = store.clone();
            Arc::new(move || store.fence_valid())
        };
        let parts = RuntimeParts {
            shard: Some(shard),
            catalog: self.ctx.catalog.clone(),
            state: store.clone(),
            log: store.clone(),
            clock: self.ctx.clock.clone(),
            config: self.ctx.config.clone(),
            pool: self.ctx.pool.clone(),
            valid,
            owns: Arc::new(move |tenant: &str| shard_of(tenant, shards) == shard),
        };
        // Recovery makes many blocking Redis calls (checkpoints, the
        // directory, the stream tail): keep them off the async workers.
        match tokio::runtime::Handle::current().runtime_flavor() {
            tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(Runtime::start(parts))
            }),
            _ => Runtime::start(parts).await,
        }
    }

    /// Starts a serving runtime's tail and supervisor, and stamps the end
    /// of the move.
    fn serve(
        self: &Arc<Self>,
        shard: u32,
        generation: u64,
        runtime: Arc<Runtime>,
        store: Arc<ShardStore>,
        fence: Fence,
        tail_stop: Arc<AtomicBool>,
    ) {
        // A new tail generation: whatever an earlier tail still sends is dropped.
        let tail = runtime.progress.tail.fetch_add(1, Ordering::AcqRel) + 1;
        super::tail::spawn_tail(
            store,
            self.ctx.redis.clone(),
            runtime.clone(),
            (runtime.dispatched(), tail),
            tail_stop,
        );
        let node = fence.node().to_string();
        let this = self.clone();
        self.ctx.handle.spawn(async move {
            this.supervise(shard, generation, runtime, fence).await;
        });
        // Placement's settle period counts from now. Off the serving path,
        // and best effort: without the stamp the leader counts the shard as
        // loading, and holds it from balancing for at most
        // `placement::LOADING_PERIODS` settle periods.
        let coordinator = liveseg_cluster::coordinator::Coordinator::new(self.ctx.redis.clone());
        self.ctx.handle.spawn_blocking(move || {
            if let Err(e) = coordinator.note_serving(shard, &node) {
                tracing::warn!(shard, error = %e, "recording the end of the move failed");
            }
        });
    }

    /// Restarts a runtime whose dispatcher failed, if it is still current.
    async fn supervise(
        self: Arc<Self>,
        shard: u32,
        generation: u64,
        runtime: Arc<Runtime>,
        fence: Fence,
    ) {
        let mut health = runtime.health();
        let failed = match health.wait_for(|h| *h != Health::Serving).await {
            Ok(h) => matches!(*h, Health::Failed(_)),
            Err(_) => false,
        };
        if !failed {
            return;
        }
        // Only the activation this supervisor watches is restarted: the
        // member may have stopped and re-activated the shard meanwhile.
        let restart = {
            let mut slots = self.lock();
            match slots.get(&shard) {
                Some(Slot::Active { generation: g, .. }) if *g == generation => {
                    let next = self.next_generation();
                    slots
                        .insert(shard, Slot::Loading { generation: next })
                        .map(|old| (old, next))
                }
                _ => None,
            }
        };
        let Some((old, next)) = restart else {
            return;
        };
        self.stop_slot(shard, old);
        if (fence.valid)() {
            tracing::warn!(
                shard,
                "restarting the shard from its checkpoints and stream"
            );
            let pause = self.restarts.next(shard, Instant::now());
            self.spawn_load(shard, fence, next, pause);
        }
    }
}

/// The [`ShardHost`] the member's control loop drives.
pub struct Host(pub Arc<ShardRuntimes>);

impl ShardHost for Host {
    fn activate(&self, shard: u32, fence: Fence) {
        self.0.start_loading(shard, fence);
    }

    fn deactivate(&self, shard: u32, reason: StopReason) {
        tracing::info!(shard, ?reason, "shard stopped");
        let slot = self.0.lock().remove(&shard);
        match (slot, reason) {
            // The lease lapsed, most often because Redis was away: keep the
            // runtime, in case the next epoch is this node's (`parked`).
            (
                Some(Slot::Active {
                    runtime,
                    store,
                    tail_stop,
                    ..
                }),
                StopReason::DeadlinePassed | StopReason::LeaseLost,
            ) => {
                tail_stop.store(true, Ordering::Release);
                // A batch the tail read before the lease lapsed is not applied now.
                runtime.progress.tail.fetch_add(1, Ordering::AcqRel);
                self.0.park(shard, runtime, store);
            }
            (Some(slot), _) => self.0.stop_slot(shard, slot),
            (None, _) => {}
        }
    }

    fn prepare(&self, shard: u32) {
        self.0.prepare(shard);
    }

    fn standby_ready(&self, shard: u32) -> bool {
        self.0.standby_ready(shard)
    }

    fn freeze(&self, shard: u32, done: DrainDone) {
        self.0.freeze(shard, done);
    }

    fn thaw(&self, shard: u32) {
        self.0.thaw(shard);
    }

    fn drain(&self, shard: u32, done: DrainDone) {
        let draining = {
            let mut slots = self.0.lock();
            match slots.remove(&shard) {
                Some(Slot::Active {
                    generation,
                    runtime,
                    tail_stop,
                    ..
                }) => {
                    tail_stop.store(true, Ordering::Release);
                    slots.insert(
                        shard,
                        Slot::Draining {
                            generation,
                            runtime: runtime.clone(),
                        },
                    );
                    Some((generation, runtime))
                }
                other => {
                    if matches!(other, Some(Slot::Loading { .. })) {
                        tracing::info!(shard, "shard drained while loading: it served nothing");
                    }
                    // Loading (never served) or already draining: nothing to write.
                    if let Some(s @ Slot::Draining { .. }) = other {
                        slots.insert(shard, s);
                    }
                    None
                }
            }
        };
        let Some((generation, runtime)) = draining else {
            done.finish(true);
            return;
        };
        let this = self.0.clone();
        self.0.ctx.handle.spawn(async move {
            let r = runtime.shutdown().await;
            if let Err(e) = &r {
                tracing::warn!(shard, error = %e, "final checkpoint failed; the next owner replays more");
            }
            let mut slots = this.lock();
            if slots.get(&shard).map(Slot::generation) == Some(generation) {
                slots.remove(&shard);
            }
            drop(slots);
            tracing::info!(shard, "shard drained");
            done.finish(r.is_ok());
        });
    }
}
