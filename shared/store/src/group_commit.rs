//! Group commit: an async front for [`EventLog::append`].
//!
//! Each `append` on the embedded store is one fsync, which costs the same for
//! one item as for thousands. Under many concurrent small ingest requests,
//! committing each on its own would cap throughput at the disk's fsync rate.
//! [`GroupCommitter`] queues requests on a bounded channel; one dedicated OS
//! thread takes everything queued (up to `max_batch_items`), makes ONE
//! `append` call for all of it, and answers each request through its own
//! oneshot. Latency is at most one commit in progress plus one's own commit.
//!
//! Backpressure: the queue is bounded and `append` uses `try_send`, so when it
//! is full the caller gets [`StoreError::Overloaded`] immediately (to surface as
//! `RESOURCE_EXHAUSTED`) instead of piling up unbounded memory and latency.
//!
//! Ordering: after each successful commit, the `on_committed` callback runs on
//! the committer thread with the newly accepted entries in seq order, BEFORE
//! the requests are answered. Batches are committed one at a time, so the
//! callback sees the whole log in order exactly once, and by the time a client
//! sees its acknowledgement its events have already been dispatched.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use tokio::sync::mpsc::error::{TryRecvError, TrySendError};
use tokio::sync::{mpsc, oneshot};

use crate::error::{Result, StoreError};
use crate::traits::{AppendItem, AppendOutcome, EventLog, LogEntry};

/// Callback invoked on the committer thread after each successful commit with
/// the newly accepted entries (duplicates excluded) in seq order. It should be
/// quick (e.g. hand entries to channels): it delays acknowledgements and the
/// next commit. A panic in it is caught and logged; the commit stands.
pub type CommitCallback = Box<dyn Fn(&[LogEntry]) + Send>;

/// Tuning for [`GroupCommitter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupCommitOptions {
    /// Upper bound on items per combined append (a single larger request is
    /// still committed, alone). Values below 1 are treated as 1.
    pub max_batch_items: usize,
    /// How many requests may wait in the queue before `append` returns
    /// [`StoreError::Overloaded`]. Values below 1 are treated as 1.
    pub queue_capacity: usize,
}

impl Default for GroupCommitOptions {
    fn default() -> Self {
        GroupCommitOptions {
            max_batch_items: 8192,
            queue_capacity: 1024,
        }
    }
}

/// One caller's pending append.
struct Request {
    items: Vec<AppendItem>,
    now_ms: i64,
    reply: oneshot::Sender<Result<Vec<AppendOutcome>>>,
}

/// Handle to the group-commit thread. Clones share the same thread; the
/// thread drains the queue and exits when `shutdown` is called or the last
/// handle is dropped.
#[derive(Clone)]
pub struct GroupCommitter {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for GroupCommitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommitter").finish_non_exhaustive()
    }
}

struct Inner {
    /// `None` once shut down. Behind a mutex (held only for a `try_send`) so
    /// that `shutdown(&self)` can close the channel for every clone at once.
    tx: Mutex<Option<mpsc::Sender<Request>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Lock ignoring poison: the guarded data (an `Option` handle) cannot be left
/// half-updated by a panic.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl GroupCommitter {
    /// Start the committer thread over `log`.
    ///
    /// Fails only if the OS refuses to spawn a thread.
    pub fn start(
        log: Arc<dyn EventLog>,
        opts: GroupCommitOptions,
        on_committed: CommitCallback,
    ) -> Result<Self> {
        let (tx, rx) = mpsc::channel(opts.queue_capacity.max(1));
        let max_items = opts.max_batch_items.max(1);
        let thread = std::thread::Builder::new()
            .name("liveseg-group-commit".to_owned())
            .spawn(move || run(rx, log.as_ref(), max_items, on_committed.as_ref()))
            .map_err(|e| StoreError::io("<group commit thread>", e))?;
        Ok(GroupCommitter {
            inner: Arc::new(Inner {
                tx: Mutex::new(Some(tx)),
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    /// Append `items` as part of the next group commit and wait until it is
    /// durable. Same contract as [`EventLog::append`] for this request's items,
    /// except that dedupe also spans the other requests of the same group
    /// (as it would across separate commits). `now_ms` of a group is the
    /// latest `now_ms` among its requests.
    ///
    /// Errors: [`StoreError::Overloaded`] if the queue is full (nothing
    /// queued), [`StoreError::Closed`] after shutdown, or the commit's error if
    /// the combined append failed (nothing written).
    pub async fn append(&self, items: Vec<AppendItem>, now_ms: i64) -> Result<Vec<AppendOutcome>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        {
            let guard = lock(&self.inner.tx);
            let tx = guard.as_ref().ok_or(StoreError::Closed)?;
            tx.try_send(Request {
                items,
                now_ms,
                reply,
            })
            .map_err(|e| match e {
                TrySendError::Full(_) => StoreError::Overloaded,
                TrySendError::Closed(_) => StoreError::Closed,
            })?;
        }
        // A dropped reply means the thread died before answering.
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Stop accepting requests, let the thread commit everything already
    /// queued, and join it. Affects all clones. Blocks the calling thread for
    /// at most the remaining queued commits; idempotent.
    pub fn shutdown(&self) {
        self.inner.shutdown();
    }
}

impl Inner {
    fn shutdown(&self) {
        // Dropping the only sender closes the channel; the thread drains what
        // is queued, sees `None` and exits.
        drop(lock(&self.tx).take());
        let handle = lock(&self.thread).take();
        if let Some(handle) = handle {
            // Joining ourselves would deadlock (possible if the callback owned
            // the last handle); the thread is exiting anyway in that case.
            if handle.thread().id() == std::thread::current().id() {
                return;
            }
            if handle.join().is_err() {
                tracing::error!("group commit thread panicked");
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The committer thread's loop.
fn run(
    mut rx: mpsc::Receiver<Request>,
    log: &dyn EventLog,
    max_items: usize,
    on_committed: &(dyn Fn(&[LogEntry]) + Send),
) {
    // A request that did not fit in the previous group opens the next one.
    let mut carry: Option<Request> = None;
    loop {
        let first = match carry.take() {
            Some(r) => r,
            None => match rx.blocking_recv() {
                Some(r) => r,
                None => break,
            },
        };
        let mut total = first.items.len();
        let mut group = vec![first];
        while total < max_items {
            match rx.try_recv() {
                Ok(r) if total + r.items.len() > max_items => {
                    carry = Some(r);
                    break;
                }
                Ok(r) => {
                    total += r.items.len();
                    group.push(r);
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        commit_group(log, group, total, on_committed);
    }
    tracing::debug!("group commit thread exiting");
}

/// One combined append for `group`, then the callback, then the replies.
fn commit_group(
    log: &dyn EventLog,
    group: Vec<Request>,
    total: usize,
    on_committed: &(dyn Fn(&[LogEntry]) + Send),
) {
    let now_ms = group.iter().map(|r| r.now_ms).max().unwrap_or(0);
    let requests = group.len();
    let mut items = Vec::with_capacity(total);
    let mut parts = Vec::with_capacity(requests);
    for r in group {
        parts.push((r.items.len(), r.reply));
        items.extend(r.items);
    }

    let result =
        catch_unwind(AssertUnwindSafe(|| log.append(&items, now_ms))).unwrap_or_else(|_| {
            Err(StoreError::Internal(
                "event log append panicked; treat the group as failed".to_owned(),
            ))
        });
    let outcomes = match result {
        Ok(outcomes) if outcomes.len() == items.len() => outcomes,
        Ok(outcomes) => {
            let err = StoreError::Internal(format!(
                "event log returned {} outcomes for {} items",
                outcomes.len(),
                items.len()
            ));
            tracing::error!(error = %err, "group commit contract violation");
            for (_, reply) in parts {
                let _ = reply.send(Err(err.clone()));
            }
            return;
        }
        Err(err) => {
            tracing::warn!(error = %err, requests, items = total, "group commit failed");
            for (_, reply) in parts {
                // The receiver may have given up (cancelled); nothing to do then.
                let _ = reply.send(Err(err.clone()));
            }
            return;
        }
    };
    tracing::trace!(requests, items = total, "group committed");

    let mut accepted: Vec<LogEntry> = outcomes
        .iter()
        .zip(items)
        .filter_map(|(outcome, item)| match outcome {
            AppendOutcome::Accepted { seq } => Some(LogEntry {
                seq: *seq,
                tenant: item.tenant,
                payload: item.payload,
            }),
            AppendOutcome::Duplicate { .. } => None,
        })
        .collect();
    accepted.sort_by_key(|e| e.seq);
    if !accepted.is_empty() && catch_unwind(AssertUnwindSafe(|| on_committed(&accepted))).is_err() {
        tracing::error!(
            first_seq = accepted.first().map(|e| e.seq),
            last_seq = accepted.last().map(|e| e.seq),
            "on_committed callback panicked; the entries are durable but were not dispatched"
        );
    }

    let mut outcomes = outcomes.into_iter();
    for (len, reply) in parts {
        let mine: Vec<AppendOutcome> = outcomes.by_ref().take(len).collect();
        let _ = reply.send(Ok(mine));
    }
}

#[cfg(test)]
mod tests;
