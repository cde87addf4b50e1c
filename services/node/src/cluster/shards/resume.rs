//! Taking a kept runtime over instead of loading: a runtime parked after
//! this node's lease lapsed (`parked`), or a standby loaded ahead of the
//! lease (`standby`). Redis is asked first whether the runtime still holds
//! what a load would; the runtime is then resumed under the new fence with
//! a tail from where it stopped.

use super::standby;
use super::{ShardRuntimes, Slot};
use crate::cluster::parked::{PARK_FOR, Parked};
use crate::dispatch::Command;
use crate::runtime::{Health, Runtime};
use liveseg_store::redis::{Fence, ShardStore};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

impl ShardRuntimes {
    /// Continues a parked runtime or standby of `shard` if there is one
    /// this activation may take over, else loads.
    pub(super) fn take_over_or_load(self: &Arc<Self>, shard: u32, fence: Fence, generation: u64) {
        match self.parked.take(shard) {
            Some(p) if p.continues_with(&fence) && self.ctx.redis_durable => {
                // Redis is asked on a task: this runs on the member's thread.
                let this = self.clone();
                self.ctx
                    .handle
                    .spawn(async move { this.resume_or_load(shard, p, fence, generation).await });
            }
            parked => {
                if let Some(p) = parked {
                    tracing::info!(shard, token = %fence.token, standby = p.standby.is_some(), "parked shard runtime dropped: the shard comes back under another ownership");
                    self.discard(p);
                }
                self.spawn_load(shard, fence, generation, Duration::ZERO);
            }
        }
    }

    /// Resumes `p` if Redis and the catalog still agree with its runtime
    /// (`parked::agrees_with`), else drops it and loads.
    pub(super) async fn resume_or_load(
        self: Arc<Self>,
        shard: u32,
        p: Parked,
        fence: Fence,
        generation: u64,
    ) {
        // Everything queued before is applied or dropped (the tail that read
        // it is of the lapsed lease): nothing moves `seen` until the new tail.
        let (tx, rx) = tokio::sync::oneshot::channel();
        let barrier = match p.runtime.dispatch.send(Command::Barrier(tx)).await {
            Ok(()) => rx.await.map_err(|_| "the dispatcher stopped".to_string()),
            Err(_) => Err("the dispatcher stopped".to_string()),
        };
        let (redis, catalog) = (self.ctx.redis.clone(), self.ctx.catalog.clone());
        // The check runs on a blocking thread, then `p` comes back with it.
        let check = tokio::task::spawn_blocking(move || {
            let r = barrier.and_then(|seen| {
                crate::cluster::parked::agrees_with(&redis, &p, catalog.as_ref(), seen)
            });
            (p, r)
        })
        .await;
        let (p, check) = match check {
            Ok(done) => done,
            // The check panicked and took `p` with it: nothing to resume.
            Err(e) => {
                tracing::warn!(shard, error = %e, "the takeover check did not finish; loading the shard");
                self.load(shard, fence, generation).await;
                return;
            }
        };
        match check {
            Ok(()) => self.resume(shard, p, fence, generation),
            Err(why) => {
                tracing::warn!(shard, token = %fence.token, standby = p.standby.is_some(), reason = %why, "parked shard runtime dropped; loading the shard");
                standby::count_unused(&p);
                p.runtime.abort().await;
                self.load(shard, fence, generation).await;
            }
        }
    }

    /// Continues a parked runtime or standby under `fence`: no load, a new
    /// tail from where the dispatcher is.
    fn resume(self: &Arc<Self>, shard: u32, p: Parked, fence: Fence, generation: u64) {
        let tail_stop = Arc::new(AtomicBool::new(false));
        let thaw;
        {
            let mut slots = self.lock();
            if slots.get(&shard).map(Slot::generation) != Some(generation) {
                drop(slots);
                tracing::info!(
                    shard,
                    "parked shard runtime dropped: the activation ended before it resumed"
                );
                self.discard(p);
                return;
            }
            p.store.renew_fence(fence.clone());
            // Before the slot serves (a freeze may come for it at once).
            thaw = p.runtime.next_freeze_request();
            slots.insert(
                shard,
                Slot::Active {
                    generation,
                    runtime: p.runtime.clone(),
                    store: p.store.clone(),
                    tail_stop: tail_stop.clone(),
                },
            );
        }
        if p.standby.is_some() {
            tracing::info!(
                shard,
                token = %fence.token,
                ready_ms = p.since.elapsed().as_millis() as u64,
                "shard serving from its standby: nobody wrote it since the standby loaded"
            );
            standby::count(standby::USED);
        } else {
            tracing::info!(
                shard,
                token = %fence.token,
                parked_ms = p.since.elapsed().as_millis() as u64,
                "shard resumed: nobody held it since this node's lease lapsed"
            );
            metrics::counter!(liveseg_telemetry::names::SHARD_RESUMES_TOTAL).increment(1);
        }
        // Changes the runtime carried while it could not write (a standby's
        // replay, time-driven exits while parked or frozen) are indexed
        // only once written: write them now rather than with the next
        // batch. A runtime frozen for a handoff before its lease lapsed
        // writes again (the thaw is in-band, ordered with freezes by its
        // request number, taken before the slot served).
        let runtime = p.runtime.clone();
        self.ctx.handle.spawn(async move {
            if let Err(e) = runtime.thaw(thaw).await {
                tracing::warn!(shard, error = %e, "writing carried changes failed; they go with the next batch");
            }
        });
        self.serve(shard, generation, p.runtime, p.store, fence, tail_stop);
    }

    /// Keeps the runtime of an active slot whose lease lapsed, for
    /// [`PARK_FOR`], in case this node gets the shard's next epoch.
    pub(super) fn park(
        self: &Arc<Self>,
        shard: u32,
        runtime: Arc<Runtime>,
        store: Arc<ShardStore>,
    ) {
        // A failed runtime could never resume: free it now.
        if *runtime.health().borrow() != Health::Serving {
            tracing::info!(
                shard,
                "shard runtime stopped: its lease lapsed after it failed"
            );
            self.ctx.handle.spawn(async move { runtime.abort().await });
            return;
        }
        let id = self.next_generation();
        let displaced = self.parked.park(
            shard,
            Parked {
                runtime,
                store,
                id,
                since: Instant::now(),
                standby: None,
            },
        );
        if let Some(old) = displaced {
            self.discard(old);
        }
        tracing::info!(shard, "shard runtime parked: its lease lapsed");
        self.drop_parked_after(shard, id, PARK_FOR);
    }

    /// Drops the runtime parked as `id` (lapsed or standby) if it is still
    /// parked after `after`: the shard did not come back to this node.
    pub(super) fn drop_parked_after(self: &Arc<Self>, shard: u32, id: u64, after: Duration) {
        let this = self.clone();
        self.ctx.handle.spawn(async move {
            tokio::time::sleep(after).await;
            if let Some(p) = this.parked.take_if(shard, id) {
                tracing::info!(
                    shard,
                    standby = p.standby.is_some(),
                    "parked shard runtime dropped: the shard was not activated here"
                );
                standby::count_unused(&p);
                p.runtime.abort().await;
            }
        });
    }
}
