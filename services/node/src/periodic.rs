//! Background duties of a runtime on the node's clock: checkpoints, idle
//! passivation and waking passivated accounts whose timers come due. Each
//! runs in-band through the runtime's dispatcher and ends when it stops.

use crate::clock::SharedClock;
use crate::config::NodeConfig;
use crate::dispatch::Command;
use crate::registry::AccountKey;
use crate::runtime::Runtime;
use liveseg_core::Millis;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

pub fn spawn_for(
    rt: &Arc<Runtime>,
    clock: SharedClock,
    config: &NodeConfig,
    sleepers: Arc<Mutex<BTreeSet<(Millis, AccountKey)>>>,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    // Weak: a stopped runtime must not be kept alive by its own duties.
    let weak = Arc::downgrade(rt);
    let every = config.checkpoint_interval;
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(rt) = weak.upgrade() else { return };
            // A runtime parked after its lease lapsed writes nothing until
            // it is resumed under the next epoch (`cluster::shards`).
            if !rt.is_valid() {
                continue;
            }
            match rt.ask(Command::Checkpoint).await {
                Ok(_) => {}
                Err(crate::error::NodeError::Moved(_)) => return,
                // The dispatcher says whether it kept the checkpoint for the
                // next one or stopped (logged as an error there).
                Err(e) => tracing::warn!(shard = rt.shard, error = %e, "checkpoint failed"),
            }
        }
    }));
    let weak = Arc::downgrade(rt);
    let passivate_after = config.passivate_after;
    let c = clock.clone();
    tasks.push(tokio::spawn(async move {
        let every = (passivate_after / 4).max(Duration::from_secs(1));
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(rt) = weak.upgrade() else { return };
            if !rt.is_valid() {
                continue;
            }
            let cutoff = c.now() - passivate_after.as_millis() as Millis;
            match rt.ask(|tx| Command::Passivate(cutoff, tx)).await {
                Ok(k) if k > 0 => tracing::debug!(accounts = k, "passivated idle accounts"),
                Ok(_) => {}
                Err(crate::error::NodeError::Moved(_)) => return,
                Err(e) => tracing::warn!(error = %e, "passivation failed"),
            }
        }
    }));
    let weak = Arc::downgrade(rt);
    tasks.push(tokio::spawn(async move {
        // Polls the sleeper set: its earliest instant can move when accounts passivate.
        loop {
            let next = sleepers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .first()
                .map(|(t, _)| *t);
            let wait = match next {
                Some(t) => clock.sleep_until(t),
                None => clock.sleep_until(clock.now() + 1_000),
            };
            let _ = tokio::time::timeout(Duration::from_secs(1), wait).await;
            let Some(rt) = weak.upgrade() else { return };
            // Parked (its lease lapsed, Redis away): the sleepers wait for
            // the resume, or go with the runtime if it is dropped.
            if !rt.is_valid() {
                continue;
            }
            for key in crate::runtime::wake_due(&sleepers, clock.now()) {
                if rt.dispatch.send(Command::Wake(key)).await.is_err() {
                    return;
                }
            }
        }
    }));
    tasks
}
