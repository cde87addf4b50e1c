//! Background duties on the node's clock: checkpoints, idle passivation,
//! waking passivated accounts whose timers come due, and pruning the
//! messageId dedupe window.

use crate::dispatch::Command;
use crate::registry::AccountKey;
use crate::server::NodeInner;
use liveseg_core::Millis;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

pub fn spawn_all(
    node: &Arc<NodeInner>,
    sleepers: Arc<Mutex<BTreeSet<(Millis, AccountKey)>>>,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    let n = node.clone();
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(n.config.checkpoint_interval);
        tick.tick().await;
        loop {
            tick.tick().await;
            let (tx, rx) = tokio::sync::oneshot::channel();
            if n.dispatch.send(Command::Checkpoint(tx)).await.is_err() {
                return;
            }
            if let Ok(Err(e)) = rx.await {
                tracing::error!(error = %e, "checkpoint failed");
            }
        }
    }));
    let n = node.clone();
    tasks.push(tokio::spawn(async move {
        let every = (n.config.passivate_after / 4).max(Duration::from_secs(1));
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            let cutoff = n.clock.now() - n.config.passivate_after.as_millis() as Millis;
            let (tx, rx) = tokio::sync::oneshot::channel();
            if n.dispatch
                .send(Command::Passivate(cutoff, tx))
                .await
                .is_err()
            {
                return;
            }
            match rx.await {
                Ok(Ok(k)) if k > 0 => tracing::debug!(accounts = k, "passivated idle accounts"),
                Ok(Err(e)) => tracing::warn!(error = %e, "passivation failed"),
                _ => {}
            }
        }
    }));
    let n = node.clone();
    tasks.push(tokio::spawn(async move {
        // Polls the sleeper set: its earliest instant can move when accounts passivate.
        loop {
            let next = sleepers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .first()
                .map(|(t, _)| *t);
            let wait = match next {
                Some(t) => n.clock.sleep_until(t),
                None => n.clock.sleep_until(n.clock.now() + 1_000),
            };
            let _ = tokio::time::timeout(Duration::from_secs(1), wait).await;
            for key in crate::server::wake_due(&sleepers, n.clock.now()) {
                if n.dispatch.send(Command::Wake(key)).await.is_err() {
                    return;
                }
            }
        }
    }));
    let n = node.clone();
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let cutoff = n.clock.now() - n.config.dedupe_window.as_millis() as Millis;
            let store = n.store.clone();
            let _ = tokio::task::spawn_blocking(move || {
                liveseg_store::EventLog::prune_dedupe(store.as_ref(), cutoff)
            })
            .await;
        }
    }));
    tasks
}
