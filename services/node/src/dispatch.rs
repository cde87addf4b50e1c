//! The dispatcher: the single task that takes durable log entries in log
//! order, routes each to its account (contact directory, personal accounts,
//! moves) and delivers them to account actors, batched per account.
//!
//! Everything that must be consistent with a log position runs in-band,
//! as a command between entry batches: checkpoints (all resident accounts +
//! the directory + the replay watermark in one transaction), idle
//! passivation, and rebuilds after a definition change. So a checkpoint
//! always describes one log position, moves included.

use crate::clock::SharedClock;
use crate::error::{NodeError, Result};
use crate::host::Delivery;
use crate::registry::{AccountKey, Loaded, Registry};
use crate::tenant::{TenantState, Tenants};
use liveseg_core::Millis;
use liveseg_store::{
    AccountCheckpoint, CommitBatch, DirectoryUpdate, EventLog, LogEntry, Seq, StateStore,
};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::sync::{mpsc, oneshot};

pub enum Command {
    /// Newly durable entries, in log order, when they became durable, and
    /// the stream tail that read them (`Progress::tail`; 0: standalone).
    Entries(Vec<LogEntry>, std::time::Instant, u64),
    Checkpoint(oneshot::Sender<Result<usize>>),
    /// Flush and stop accounts idle since the instant.
    Passivate(Millis, oneshot::Sender<Result<usize>>),
    /// Reload a passivated account whose timer is due.
    Wake(AccountKey),
    /// Rebuild a tenant's state from the log under a new segment set.
    Redefine {
        tenant: Arc<TenantState>,
        set: Box<liveseg_core::SegmentSet>,
        reply: oneshot::Sender<Result<usize>>,
    },
    /// Judge a tenant's state again under a set that differs only in its
    /// content library (a replay if the shape differs after all).
    Rejudge {
        tenant: Arc<TenantState>,
        set: Box<liveseg_core::SegmentSet>,
        reply: oneshot::Sender<Result<usize>>,
    },
    /// Answers once every entry sent before it has been applied.
    Barrier(oneshot::Sender<Seq>),
    /// A handoff is planned: a checkpoint of everything sent before, then
    /// no more writes (`Progress::frozen`) until `Thaw`. Answers with the
    /// position checkpointed, or `None` if it was frozen already. `request` (`Runtime::next_freeze_request`)
    /// orders it with thaws: an older request than one applied is ignored.
    Freeze {
        request: u64,
        reply: oneshot::Sender<Result<Option<Seq>>>,
    },
    /// The handoff was called off: write again.
    Thaw {
        request: u64,
        reply: oneshot::Sender<()>,
    },
    /// Final checkpoint, then stop (everything sent before it is applied first).
    Shutdown(oneshot::Sender<Result<usize>>),
}

/// Counters the API reads.
#[derive(Default)]
pub struct Progress {
    pub dispatched: AtomicU64,
    pub applied: AtomicU64,
    /// The stream tail whose entries are applied; another tail's are
    /// dropped. Bumped when a shard's lease lapses and when a new tail
    /// starts, so a batch the old tail read before Redis went away never
    /// lands in a resumed runtime unchecked (`cluster::shards`).
    pub tail: AtomicU64,
    /// The last dispatched entry: its seq and `entry_fingerprint`, which a
    /// resume compares with what Redis holds at that seq now.
    pub last_entry: std::sync::Mutex<Option<(Seq, u64)>>,
    /// Frozen for a handoff: entries are still applied and answers given,
    /// but nothing is written (checkpoints, passivation and rebuilds are
    /// refused, the outbox carries its changes), so the shard's state in
    /// Redis stays what the next owner's standby loads.
    pub frozen: AtomicBool,
    /// The last freeze or thaw request handed out (`Command::Freeze`).
    pub freeze_requests: AtomicU64,
}

/// A wake that failed (the store away) is tried again this much later.
const WAKE_RETRY_MS: Millis = 1_000;

pub use crate::log_entry::{decode, entry_fingerprint};

pub struct Dispatcher {
    pub tenants: Arc<Tenants>,
    pub registry: Arc<Registry>,
    pub store: Arc<dyn StateStore>,
    pub log: Arc<dyn EventLog>,
    pub clock: SharedClock,
    pub progress: Arc<Progress>,
    /// Passivated accounts with a pending timer: (due, key).
    pub sleepers: Arc<std::sync::Mutex<BTreeSet<(Millis, AccountKey)>>>,
    /// Contacts whose directory entry changed since the last checkpoint.
    dirty_contacts: HashMap<Arc<str>, HashSet<String>>,
    /// Images taken by a checkpoint whose commit failed (Redis away, the
    /// lease lapsed): the actors are clean, so only these hold what must
    /// still be written. The next checkpoint writes them, newer images of
    /// the same accounts replacing them.
    unwritten: HashMap<(String, String), AccountCheckpoint>,
    dispatched: Seq,
    /// The last freeze or thaw request applied.
    freeze_request: u64,
}

type Groups = Vec<(Arc<TenantState>, String, Vec<Delivery>)>;

impl Dispatcher {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        tenants: Arc<Tenants>,
        registry: Arc<Registry>,
        store: Arc<dyn StateStore>,
        log: Arc<dyn EventLog>,
        clock: SharedClock,
        progress: Arc<Progress>,
        sleepers: Arc<std::sync::Mutex<BTreeSet<(Millis, AccountKey)>>>,
        start_after: Seq,
    ) -> Self {
        // Readers of `progress` (the stream tail's start) see the position
        // even when recovery replays nothing.
        progress.dispatched.store(start_after, Ordering::Release);
        Dispatcher {
            tenants,
            registry,
            store,
            log,
            clock,
            progress,
            sleepers,
            dirty_contacts: HashMap::new(),
            unwritten: HashMap::new(),
            freeze_request: 0,
            dispatched: start_after,
        }
    }

    /// Replays the log after the watermark (restart recovery); accounts skip
    /// what their checkpoints already hold.
    pub async fn recover(&mut self) -> Result<u64> {
        let mut replayed = 0;
        loop {
            let store = self.log.clone();
            let after = self.dispatched;
            let entries = tokio::task::spawn_blocking(move || store.read_after(after, 8192))
                .await
                .map_err(|e| NodeError::Internal(e.to_string()))??;
            if entries.is_empty() {
                return Ok(replayed);
            }
            replayed += entries.len() as u64;
            self.dispatch(entries).await?;
        }
    }

    /// Serves commands until the channel closes; an error is fatal to the node
    /// (crash-only: restart recovers from checkpoints and the log).
    pub async fn run(mut self, mut rx: mpsc::Receiver<Command>) -> Result<()> {
        while let Some(cmd) = rx.recv().await {
            let Some(cmd) = self.unless_frozen(cmd) else {
                continue;
            };
            match cmd {
                Command::Entries(entries, durable_at, tail) => {
                    if tail != 0 && tail != self.progress.tail.load(Ordering::Acquire) {
                        // Read by a tail of an earlier lease: the current
                        // tail reads them again if they are still there.
                        continue;
                    }
                    self.dispatch(entries).await?;
                    // Durable -> applied to its account (all of the batch).
                    metrics::histogram!(liveseg_telemetry::names::APPLY_LAG_SECONDS)
                        .record(durable_at.elapsed().as_secs_f64());
                }
                Command::Checkpoint(reply) => {
                    let r = self.checkpoint().await;
                    // A store that is away (or a lease that lapsed) fails a
                    // checkpoint without losing anything: the images and the
                    // directory changes are kept for the next one, and the
                    // outbox keeps its changes. The runtime keeps serving
                    // while its lease holds, and can be resumed after it.
                    let fatal = fatal(&r);
                    if let Err(e) = &r
                        && fatal.is_none()
                    {
                        tracing::warn!(error = %e, unwritten = self.unwritten.len(), "checkpoint failed; kept for the next one");
                    }
                    let _ = reply.send(r);
                    if let Some(e) = fatal {
                        return Err(NodeError::Internal(format!("checkpoint failed: {e}")));
                    }
                }
                Command::Passivate(cutoff, reply) => {
                    // A failure once the idle actors are stopped is fatal:
                    // their images did not become durable, and only a restart
                    // from the last checkpoint and the log gets that state
                    // back. (The change log is flushed before any stops.)
                    // Not while a failed checkpoint's images wait: one of
                    // them could be older than the final image of an
                    // account passivated now, and overwrite it later.
                    let r = if self.unwritten.is_empty() {
                        self.passivate(cutoff).await
                    } else {
                        Ok(0)
                    };
                    // A change log that is away fails it before any actor
                    // stops (retryable): nothing is lost then.
                    let fatal = fatal(&r);
                    let _ = reply.send(r);
                    if let Some(e) = fatal {
                        return Err(NodeError::Internal(format!("passivation failed: {e}")));
                    }
                }
                Command::Wake(key) => {
                    if let Some(t) = self.tenants.get(&key.0)
                        && let Err(e) = self.registry.get(&t, &key.1, false)
                    {
                        // Its timer is only in this set: keep it while the
                        // store is away, or the account sleeps until its
                        // next event. Any other failure would only repeat.
                        if retryable(&e) {
                            tracing::warn!(error = %e, "waking a passivated account failed; retrying");
                            let retry = self.clock.now() + WAKE_RETRY_MS;
                            self.sleepers
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .insert((retry, key));
                        } else {
                            tracing::error!(error = %e, tenant = %key.0, "waking a passivated account failed; its timer waits for its next event");
                        }
                    }
                }
                Command::Redefine { tenant, set, reply } => {
                    self.rebuild(true, &tenant, *set, reply).await?
                }
                Command::Rejudge { tenant, set, reply } => {
                    self.rebuild(false, &tenant, *set, reply).await?
                }
                Command::Barrier(reply) => {
                    let _ = reply.send(self.dispatched);
                }
                Command::Freeze { request, reply } => self.freeze(request, reply).await?,
                Command::Thaw { request, reply } => self.thaw(request, reply),
                Command::Shutdown(reply) => {
                    // Frozen: the freeze's checkpoint was the final one, and
                    // the next owner's standby holds it.
                    if self.progress.frozen.load(Ordering::Acquire) {
                        let _ = reply.send(Ok(0));
                        return Ok(());
                    }
                    let r = self.checkpoint().await;
                    let failed = r.as_ref().err().map(|e| e.to_string());
                    let _ = reply.send(r);
                    return failed.map_or(Ok(()), |e| {
                        Err(NodeError::Internal(format!("final checkpoint failed: {e}")))
                    });
                }
            }
        }
        // Final checkpoint on shutdown so restart replays nothing (none
        // when frozen: the next owner's standby holds the freeze's).
        if !self.progress.frozen.load(Ordering::Acquire) {
            self.checkpoint().await?;
        }
        Ok(())
    }

    /// Replays (`replay`) or judges again a tenant under `set`. What failed
    /// checkpoints kept is written first (a rebuild writes newer images of
    /// the same accounts); a store that is still away fails the request,
    /// not the runtime.
    async fn rebuild(
        &mut self,
        replay: bool,
        tenant: &Arc<TenantState>,
        set: liveseg_core::SegmentSet,
        reply: oneshot::Sender<Result<usize>>,
    ) -> Result<()> {
        match self.write_unwritten().await {
            Ok(()) if replay => rebuilt(
                crate::rebuild::rebuild_tenant(self, tenant, set).await,
                reply,
            ),
            Ok(()) => rebuilt(
                crate::rebuild::rejudge_tenant(self, tenant, set).await,
                reply,
            ),
            Err(e) if retryable(&e) => {
                let _ = reply.send(Err(e));
                Ok(())
            }
            Err(e) => rebuilt(Err(e), reply),
        }
    }

    pub fn dispatched(&self) -> Seq {
        self.dispatched
    }

    async fn dispatch(&mut self, mut entries: Vec<LogEntry>) -> Result<()> {
        // A resumed shard's new tail may read again what the old tail had
        // already queued (`cluster::shards`): each entry is dispatched once.
        entries.retain(|e| e.seq > self.dispatched);
        let newest = entries
            .iter()
            .max_by_key(|e| e.seq)
            .map(|e| (e.seq, entry_fingerprint(e)));
        let mut groups: Groups = Vec::new();
        let mut slot: HashMap<(Arc<str>, String), usize> = HashMap::new();
        let mut last = self.dispatched;
        let n = entries.len() as u64;
        for entry in entries {
            last = last.max(entry.seq);
            let Some(tenant) = self.tenants.get_or_load(&entry.tenant)? else {
                tracing::error!(seq = entry.seq, "log entry of an unknown tenant skipped");
                continue;
            };
            let event = match decode(&entry.payload) {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!(seq = entry.seq, error = %e, "undecodable log entry skipped");
                    metrics::counter!(liveseg_telemetry::names::INGEST_ERRORS_TOTAL, "kind" => "undecodable").increment(1);
                    continue;
                }
            };
            let route = {
                let mut dir = tenant.directory.write().unwrap_or_else(|p| p.into_inner());
                // The contacts whose directory entry this event may change.
                let mut touched: Vec<String> = event.user_id.iter().cloned().collect();
                if let liveseg_core::EventKind::Alias { previous_id } = &event.kind {
                    touched.push(previous_id.clone());
                }
                let before: Vec<Option<String>> = touched
                    .iter()
                    .map(|u| dir.get(u).map(str::to_string))
                    .collect();
                let route = dir.route(&event);
                for (u, b) in touched.into_iter().zip(before) {
                    if b.as_deref() != dir.get(&u) {
                        self.dirty_contacts
                            .entry(tenant.id.clone())
                            .or_default()
                            .insert(u);
                    }
                }
                route
            };
            let mut arriving = None;
            if let Some(from) = &route.moved_from {
                // Everything before the move reaches the old account first.
                self.flush(std::mem::take(&mut groups)).await?;
                slot.clear();
                if let Loaded::Actor(old) = self.registry.get(&tenant, from, false)? {
                    let uid = event.user_id.clone().unwrap_or_default();
                    arriving = old
                        .take_contact(uid)
                        .await
                        .map_err(|_| NodeError::Internal("account actor died".into()))?;
                }
            }
            let key = (tenant.id.clone(), route.account.clone());
            let i = *slot.entry(key).or_insert_with(|| {
                groups.push((tenant.clone(), route.account.clone(), Vec::new()));
                groups.len() - 1
            });
            groups[i].2.push(Delivery {
                seq: entry.seq,
                event,
                arriving,
            });
        }
        self.flush(groups).await?;
        self.dispatched = last;
        self.progress.dispatched.store(last, Ordering::Release);
        if newest.is_some() {
            *self
                .progress
                .last_entry
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = newest;
        }
        self.progress.applied.fetch_add(n, Ordering::AcqRel);
        Ok(())
    }

    /// Delivers each account's batch and waits for all of them.
    async fn flush(&self, groups: Groups) -> Result<()> {
        let mut pending = Vec::with_capacity(groups.len());
        // The live scorer rescores accounts that received anything but its
        // own score records (`scorer`, between full rounds). They are noted
        // once applied: a refresh that took them before would read the
        // account without these events and not look again.
        let mut touched = Vec::new();
        let tracking = self.registry.tracks_touched();
        for (tenant, account, batch) in groups {
            if tracking
                && batch
                    .iter()
                    .any(|d| !matches!(d.event.kind, liveseg_core::EventKind::Scored(_)))
            {
                touched.push((tenant.id.clone(), account.clone()));
            }
            let actor = match self.registry.get(&tenant, &account, true)? {
                Loaded::Actor(a) => a,
                Loaded::Unknown => {
                    return Err(NodeError::Internal("account could not be created".into()));
                }
            };
            pending.push(async move { actor.apply(batch).await });
        }
        metrics::gauge!(liveseg_telemetry::names::ACTOR_MAILBOX_DEPTH).set(pending.len() as f64);
        for r in futures::future::join_all(pending).await {
            r.map_err(|_| {
                NodeError::Internal("an account actor died; restart to recover from the log".into())
            })?;
        }
        self.registry.note_touched(touched);
        Ok(())
    }

    /// One transaction: every resident account that changed, the directory
    /// changes and the replay watermark.
    pub async fn checkpoint(&mut self) -> Result<usize> {
        let started = std::time::Instant::now();
        let resident = self.registry.resident(None);
        let snaps =
            futures::future::join_all(resident.iter().map(|(_, a)| a.snapshot(false))).await;
        // Images a failed checkpoint took first; this one's replace them.
        let mut images = std::mem::take(&mut self.unwritten);
        for ((key, _), snap) in resident.iter().zip(snaps) {
            match snap {
                Ok(Ok(Some((seq, bytes)))) => {
                    images.insert(
                        (key.0.to_string(), key.1.clone()),
                        AccountCheckpoint {
                            tenant: key.0.to_string(),
                            account: key.1.clone(),
                            applied_seq: seq,
                            state: Some(bytes),
                        },
                    );
                }
                Ok(Ok(None)) | Err(_) => {}
                Ok(Err(e)) => {
                    self.unwritten = images;
                    return Err(NodeError::Internal(e));
                }
            }
        }
        // Changes of everything the checkpoint covers must be durable first.
        if let Err(e) = self.registry.outbox().flush().await {
            self.unwritten = images;
            return Err(e.into());
        }
        let directory = self.directory_updates();
        let n = images.len();
        let batch = CommitBatch {
            checkpoints: images.into_values().collect(),
            directory,
            changes: vec![],
            watermark: Some(self.dispatched),
        };
        let store = self.store.clone();
        let (batch, r) = tokio::task::spawn_blocking(move || {
            let r = store.commit(&batch);
            (batch, r)
        })
        .await
        .map_err(|e| NodeError::Internal(e.to_string()))?;
        if let Err(e) = r {
            self.keep_unwritten(batch);
            return Err(e.into());
        }
        metrics::histogram!(liveseg_telemetry::names::CHECKPOINT_DURATION_SECONDS)
            .record(started.elapsed().as_secs_f64());
        Ok(n)
    }

    /// Writes a failed checkpoint's images before a rebuild writes newer
    /// ones of the same accounts (they would otherwise overwrite them).
    async fn write_unwritten(&mut self) -> Result<()> {
        if self.unwritten.is_empty() {
            return Ok(());
        }
        self.checkpoint().await.map(|_| ())
    }

    /// Keeps what a failed checkpoint commit carried for the next one: its
    /// images, and its directory changes as dirty contacts again (read from
    /// the directory afresh then).
    fn keep_unwritten(&mut self, batch: CommitBatch) {
        for c in batch.checkpoints {
            self.unwritten
                .insert((c.tenant.clone(), c.account.clone()), c);
        }
        for d in batch.directory {
            self.dirty_contacts
                .entry(Arc::from(d.tenant.as_str()))
                .or_default()
                .insert(d.contact);
        }
    }

    fn directory_updates(&mut self) -> Vec<DirectoryUpdate> {
        let mut out = Vec::new();
        for (tenant, contacts) in self.dirty_contacts.drain() {
            if let Some(t) = self.tenants.get(&tenant) {
                let dir = t.directory.read().unwrap_or_else(|p| p.into_inner());
                for c in contacts {
                    let account = dir.get(&c).map(str::to_string);
                    out.push(DirectoryUpdate {
                        tenant: tenant.to_string(),
                        contact: c,
                        account,
                    });
                }
            }
        }
        out
    }
}

/// Answers a rebuild's caller. A failed rebuild is fatal, as a failed
/// passivation is: the tenant's actors were stopped and their images may
/// not have been written, so only a restart (checkpoints + log) restores
/// its state.
fn rebuilt(r: Result<usize>, reply: oneshot::Sender<Result<usize>>) -> Result<()> {
    let failed = r.as_ref().err().map(|e| e.to_string());
    let _ = reply.send(r);
    failed.map_or(Ok(()), |e| {
        Err(NodeError::Internal(format!(
            "rebuilding a tenant failed: {e}"
        )))
    })
}

/// Whether a failed checkpoint left the runtime whole: the store may take
/// the same write later (`error::store_may_recover`) and everything the
/// checkpoint carried is kept. Any other failure (a stale or corrupt image,
/// a Redis out of memory) stops the dispatcher: keeping images for a store
/// that refuses them would only grow memory while the shard serves state
/// nothing makes durable.
fn retryable(e: &NodeError) -> bool {
    match e {
        NodeError::ChangeLog(_) => true,
        NodeError::Store(s) => crate::error::store_may_recover(s),
        _ => false,
    }
}

/// Why a definition change is refused while the shard is frozen.
pub(crate) fn handing_off() -> NodeError {
    NodeError::Unavailable("the shard is being handed off to another node; retry shortly".into())
}

/// The error that must stop the dispatcher, if `r` failed for good.
fn fatal(r: &Result<usize>) -> Option<String> {
    r.as_ref()
        .err()
        .filter(|e| !retryable(e))
        .map(|e| e.to_string())
}

#[path = "dispatch_freeze.rs"]
mod freeze;
#[path = "dispatch_passivate.rs"]
mod passivate;

#[cfg(test)]
#[path = "dispatch_tests.rs"]
mod tests;
