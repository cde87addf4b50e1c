//! A node's part in handoffs (make-before-break for planned moves; the
//! protocol is in `liveseg_cluster::coordinator::handoff`).
//!
//! As the owner, a shard is frozen (`Runtime::freeze`: a checkpoint, then
//! no writes, still answering) while the next owner loads a standby, and
//! its drain then writes nothing; if the move is called off it is thawed.
//! As the target, a standby is loaded once the owner froze the shard, and
//! reported ready while Redis's commit count for the shard is still the one
//! its load began at, which the freeze keeps still. The takeover then
//! serves from the standby under the usual check (`parked::agrees_with`).
//! Without `redis_durable` no standby could be used, so nothing freezes
//! and moves go as before (drain, release, load).

use super::ShardRuntimes;
use liveseg_cluster::member::DrainDone;
use std::time::Instant;

fn count(kind: &'static str) {
    metrics::counter!(liveseg_telemetry::names::SHARD_FREEZES_TOTAL, "kind" => kind).increment(1);
}

impl ShardRuntimes {
    /// Freezes the serving runtime of `shard`, then reports on `done`; a
    /// frozen one says so at once. Refused unless Redis keeps every write:
    /// the target's standby could not be used otherwise. (No runtime
    /// serving, say one restarting, is refused too, but not counted: the
    /// member asks again every step.)
    pub(super) fn freeze(&self, shard: u32, done: DrainDone) {
        let Some(runtime) = self.runtime(shard) else {
            done.finish(false);
            return;
        };
        if !self.ctx.redis_durable {
            count("failed");
            done.finish(false);
            return;
        }
        // Taken here, in the member's order of calls (see `thaw`).
        let request = runtime.next_freeze_request();
        let redis = self.ctx.redis.clone();
        // Asked again every step while the intent stands: Redis's setting
        // is read when there is something to freeze.
        let check = !runtime.is_frozen();
        self.ctx.handle.spawn(async move {
            let started = Instant::now();
            let durable = if check {
                tokio::task::spawn_blocking(move || redis.durable_writes()).await
            } else {
                Ok(Ok(true))
            };
            if !matches!(durable, Ok(Ok(true))) {
                tracing::warn!(shard, "not freezing for a handoff: redis does not report appendfsync always");
                count("failed");
                done.finish(false);
                return;
            }
            match runtime.freeze(request).await {
                Ok(None) => done.finish(true),
                Ok(Some(at)) => {
                    tracing::info!(
                        shard,
                        at,
                        freeze_ms = started.elapsed().as_millis() as u64,
                        "shard frozen for a handoff: checkpointed, writing nothing more"
                    );
                    count("frozen");
                    done.finish(true);
                }
                Err(e) => {
                    tracing::warn!(shard, error = %e, "freezing for a handoff failed; the move goes without");
                    count("failed");
                    done.finish(false);
                }
            }
        });
    }

    /// Thaws the serving runtime of `shard` (a called-off handoff). A
    /// runtime parked meanwhile is thawed when it resumes.
    pub(super) fn thaw(&self, shard: u32) {
        let Some(runtime) = self.runtime(shard) else {
            return;
        };
        if runtime.is_frozen() {
            count("thawed");
        }
        // Taken now: a freeze asked for earlier but still on its way is
        // ignored when it arrives after this thaw, and this thaw is
        // ignored if a later freeze got there first.
        let request = runtime.next_freeze_request();
        self.ctx.handle.spawn(async move {
            match runtime.thaw(request).await {
                Ok(()) => tracing::info!(shard, "shard thawed: the handoff was called off"),
                Err(e) => {
                    tracing::warn!(shard, error = %e, "thawing: carried changes go with the next batch")
                }
            }
        });
    }

    /// Whether a standby of `shard` is parked and nobody committed to the
    /// shard since its load began; a stale one is dropped. Blocking.
    pub(super) fn standby_ready(&self, shard: u32) -> bool {
        let Some((id, at_load, store)) = self.parked.standby(shard) else {
            return false;
        };
        match store.commit_count() {
            Ok(now) if now == at_load => true,
            Ok(_) => {
                if let Some(p) = self.parked.take_if(shard, id) {
                    tracing::info!(
                        shard,
                        "standby dropped: the shard was written since it loaded"
                    );
                    self.discard(p);
                }
                false
            }
            Err(e) => {
                tracing::warn!(shard, error = %e, "reading the shard's commit count failed");
                false
            }
        }
    }
}
