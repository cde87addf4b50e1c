//! The outbox: membership changes from every actor of a runtime are made
//! durable in the change log (batched, one commit per batch), given their
//! cursor, applied to the membership index and then broadcast to watchers,
//! in emission order per account.
//!
//! A checkpoint first flushes the outbox (`OutboxSender::flush`), so no
//! checkpoint ever covers an event whose changes are not yet durable: after
//! a crash or a handoff, replay from the checkpoint produces again exactly
//! the changes that never reached the log (delivery is at least once). A
//! batch whose commit fails is kept and sent again, first, with the next
//! one; a commit whose reply was lost may so be written twice (at least
//! once, as above).

use crate::tenant::{FeedItem, Tenants};
use liveseg_core::Change;
use liveseg_store::{ChangeRecord, CommitBatch, StateStore};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

enum Message {
    /// Changes of one tenant from one actor, in emission order.
    Changes(Arc<str>, Vec<Change>),
    /// Answers once everything sent before it is durable, or with the
    /// error of the commit that left changes owed.
    Flush(oneshot::Sender<Result<(), FlushError>>),
}

/// Why changes are still owed.
#[derive(Clone, Debug)]
pub struct FlushError {
    pub message: String,
    /// Redis was away or the lease lapsed: the same changes may go through
    /// later. Otherwise (Redis refuses them, the outbox is gone) they will not.
    pub transient: bool,
}

impl From<FlushError> for crate::error::NodeError {
    fn from(e: FlushError) -> Self {
        if e.transient {
            crate::error::NodeError::ChangeLog(e.message)
        } else {
            crate::error::NodeError::Internal(format!("change log: {}", e.message))
        }
    }
}

impl FlushError {
    fn of(e: &liveseg_store::StoreError) -> Self {
        FlushError {
            message: e.to_string(),
            transient: crate::error::store_may_recover(e),
        }
    }

    fn permanent(message: String) -> Self {
        FlushError {
            message,
            transient: false,
        }
    }
}

/// Handle the actors use; sending never blocks an actor.
#[derive(Clone)]
pub struct OutboxSender {
    /// Closed by dropping every sender; the writer then drains and ends.
    tx: mpsc::UnboundedSender<Message>,
}

impl OutboxSender {
    pub fn send(&self, tenant: Arc<str>, changes: Vec<Change>) {
        if self.tx.send(Message::Changes(tenant, changes)).is_err() {
            tracing::warn!("outbox closed; changes will be regenerated on replay");
        }
    }

    /// Waits until every change sent before this call is durable.
    pub async fn flush(&self) -> Result<(), FlushError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Message::Flush(tx))
            .map_err(|_| FlushError::permanent("the outbox is closed".into()))?;
        rx.await
            .map_err(|_| FlushError::permanent("the outbox stopped before flushing".into()))?
    }
}

pub struct OutboxReceiver(mpsc::UnboundedReceiver<Message>);

pub fn channel() -> (OutboxSender, OutboxReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    (OutboxSender { tx }, OutboxReceiver(rx))
}

/// Most changes per change-log commit.
const MAX_BATCH: usize = 16_384;

/// Runs until `stop` fires (then drains what was sent) or every sender is dropped.
/// `writable` says whether the runtime may write now: while it may not (a
/// standby loaded ahead of its lease, a runtime parked after its lease
/// lapsed) changes are carried without trying, and go out with the first
/// batch or flush after it may.
pub async fn run_writer(
    rx: OutboxReceiver,
    store: Arc<dyn StateStore>,
    tenants: Arc<Tenants>,
    writable: crate::runtime::Check,
    mut stop: oneshot::Receiver<()>,
) {
    let mut rx = rx.0;
    let mut stopping = false;
    // The last commit's failure while changes are still owed, reported to
    // the next flush.
    let mut failure: Option<FlushError> = None;
    // Changes whose commit failed (Redis away, or the lease lapsed), kept in
    // order and sent first with the next batch: the runtime outlives a
    // store outage, and a resumed shard must not miss them. Bounded by what
    // the accounts emit while nothing is applied (timers only), or, for a
    // standby (loaded ahead of its lease), by its replay of the log tail.
    let mut carried: Vec<(Arc<str>, Change)> = Vec::new();
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
        let Some(first) = next else { break };
        let mut pending: Vec<(Arc<str>, Change)> = std::mem::take(&mut carried);
        let mut flushes = Vec::new();
        let mut take = |m: Message, pending: &mut Vec<(Arc<str>, Change)>| match m {
            Message::Changes(tenant, changes) => {
                pending.extend(changes.into_iter().map(|c| (tenant.clone(), c)));
            }
            Message::Flush(reply) => flushes.push(reply),
        };
        take(first, &mut pending);
        while pending.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(m) => take(m, &mut pending),
                Err(_) => break,
            }
        }
        if !pending.is_empty() && !writable() {
            failure = Some(FlushError {
                message: "the shard's lease is not held; changes are kept".into(),
                transient: true,
            });
            carried = pending;
        } else if !pending.is_empty() {
            match commit(&store, &tenants, pending).await {
                // Everything carried went out with it: nothing is owed.
                Ok(()) => failure = None,
                Err((e, batch)) => {
                    tracing::error!(error = %e.message, transient = e.transient, changes = batch.len(), "change log commit failed; the changes are kept and sent with the next batch");
                    metrics::counter!(liveseg_telemetry::names::INGEST_ERRORS_TOTAL, "kind" => "change_log")
                        .increment(1);
                    failure = Some(e);
                    carried = batch;
                }
            }
        }
        if !flushes.is_empty() {
            let result = failure.take().map_or(Ok(()), Err);
            for reply in flushes {
                let _ = reply.send(result.clone());
            }
        }
    }
}

/// Makes one batch durable, then indexes and broadcasts it. On failure the
/// batch comes back with the error, to be sent again.
async fn commit(
    store: &Arc<dyn StateStore>,
    tenants: &Tenants,
    batch: Vec<(Arc<str>, Change)>,
) -> Result<(), (FlushError, Vec<(Arc<str>, Change)>)> {
    let records: Vec<ChangeRecord> = batch
        .iter()
        .map(|(t, c)| ChangeRecord {
            tenant: t.to_string(),
            payload: serde_json::to_vec(c).unwrap_or_default(),
        })
        .collect();
    let store = store.clone();
    let done = tokio::task::spawn_blocking(move || {
        store.commit(&CommitBatch {
            checkpoints: vec![],
            directory: vec![],
            changes: records,
            watermark: None,
        })
    })
    .await;
    let cursors = match done {
        Ok(Ok(cursors)) => cursors,
        Ok(Err(e)) => return Err((FlushError::of(&e), batch)),
        Err(e) => {
            let e = FlushError::permanent(format!("change log task: {e}"));
            return Err((e, batch));
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
    Ok(())
}
