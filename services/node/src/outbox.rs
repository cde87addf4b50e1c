//! The outbox: membership changes from every actor are made durable in the
//! change log (batched, one fsync per batch), given their cursor, applied to
//! the membership index and then broadcast to watchers, in emission order
//! per account.
//!
//! Delivery is at least once around a crash: changes made durable after the
//! last checkpoint are produced again when the log tail is replayed.

use crate::tenant::{FeedItem, Tenants};
use liveseg_core::Change;
use liveseg_store::{ChangeRecord, CommitBatch, StateStore};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Handle the actors use; sending never blocks an actor.
#[derive(Clone)]
pub struct OutboxSender {
    /// Closed by dropping every sender; the writer then drains and ends.
    tx: mpsc::UnboundedSender<ChangeBatch>,
}

impl OutboxSender {
    pub fn send(&self, tenant: Arc<str>, changes: Vec<Change>) {
        if self.tx.send((tenant, changes)).is_err() {
            tracing::warn!("outbox closed; changes will be regenerated on replay");
        }
    }
}

/// Changes of one tenant from one actor, in emission order.
pub type ChangeBatch = (Arc<str>, Vec<Change>);

pub fn channel() -> (OutboxSender, mpsc::UnboundedReceiver<ChangeBatch>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (OutboxSender { tx }, rx)
}

/// Runs until `stop` fires (then drains what was sent) or every sender is dropped.
pub async fn run_writer(
    mut rx: mpsc::UnboundedReceiver<ChangeBatch>,
    store: Arc<dyn StateStore>,
    tenants: Arc<Tenants>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let mut pending: Vec<(Arc<str>, Change)> = Vec::new();
    let mut stopping = false;
    loop {
        let next = if stopping {
            rx.recv().await
        } else {
            tokio::select! {
                m = rx.recv() => m,
                _ = &mut stop => {
                    // Refuse new changes, then drain what is already queued.
                    stopping = true;
                    rx.close();
                    rx.recv().await
                }
            }
        };
        let Some((tenant, changes)) = next else { break };
        pending.extend(changes.into_iter().map(|c| (tenant.clone(), c)));
        while let Ok((tenant, changes)) = rx.try_recv() {
            pending.extend(changes.into_iter().map(|c| (tenant.clone(), c)));
            if pending.len() >= 16_384 {
                break;
            }
        }
        let batch = std::mem::take(&mut pending);
        let records: Vec<ChangeRecord> = batch
            .iter()
            .map(|(t, c)| ChangeRecord {
                tenant: t.to_string(),
                payload: serde_json::to_vec(c).unwrap_or_default(),
            })
            .collect();
        let store2 = store.clone();
        let commit = tokio::task::spawn_blocking(move || {
            store2.commit(&CommitBatch {
                checkpoints: vec![],
                directory: vec![],
                changes: records,
                watermark: None,
            })
        })
        .await;
        let cursors = match commit {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "change log commit failed; changes will be regenerated on replay");
                metrics::counter!(liveseg_telemetry::names::INGEST_ERRORS_TOTAL, "kind" => "change_log").increment(1);
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "change log task failed");
                continue;
            }
        };
        for ((tenant, change), cursor) in batch.into_iter().zip(cursors) {
            let kind = change.kind.as_str();
            metrics::counter!(liveseg_telemetry::names::MEMBERSHIP_CHANGES_TOTAL, "kind" => kind)
                .increment(1);
            if let Some(t) = tenants.get(&tenant) {
                t.index_change(&change);
                // No receivers is fine: nobody is watching.
                let _ = t.feed.send(Arc::new(FeedItem { cursor, change }));
            }
        }
    }
}
