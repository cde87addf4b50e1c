//! A runtime: the live state of one unit of ownership, which is the whole
//! store of a standalone node or one shard of a cluster node. It holds the
//! unit's tenants, account actors, dispatcher, outbox and periodic duties
//! (checkpoints, passivation, timer wake-ups).
//!
//! Starting one recovers: it loads every checkpointed account, replays the
//! log after the watermark, and rebuilds tenants whose checkpoints were
//! shaped by other definitions. Entries then arrive through `dispatch` from
//! whoever owns intake: the group committer (standalone) or the shard's
//! stream tail (cluster). `shutdown` hands off cleanly; `abort` stops
//! without writing anything more.

use crate::actors::ActorPool;
use crate::auth::ADMIN_TENANT;
use crate::clock::SharedClock;
use crate::config::NodeConfig;
use crate::dispatch::{Command, Dispatcher, Progress};
use crate::error::{NodeError, Result};
use crate::registry::{AccountKey, Registry};
use crate::tenant::{IndexKey, TenantState, Tenants};
use liveseg_core::{Directory, Millis, SegmentDefinition, SegmentSet};
use liveseg_store::{Catalog, EventLog, Seq, StateStore};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// Whether a runtime may still answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Serving,
    /// Stopped on purpose (handoff, shutdown, lost lease).
    Stopped,
    /// The dispatcher stopped on an error; nothing more is applied.
    Failed(String),
}

/// A predicate shared with the cluster layer (the shard fence's deadline).
pub type Check = Arc<dyn Fn() -> bool + Send + Sync>;

/// What a runtime is built from.
pub struct RuntimeParts {
    /// The shard, in cluster mode.
    pub shard: Option<u32>,
    pub catalog: Arc<dyn Catalog>,
    pub state: Arc<dyn StateStore>,
    pub log: Arc<dyn EventLog>,
    pub clock: SharedClock,
    pub config: NodeConfig,
    pub pool: Arc<ActorPool>,
    /// False once answers could be stale (the shard lease's local deadline).
    pub valid: Check,
    /// Which tenants belong to this runtime.
    pub owns: Arc<dyn Fn(&str) -> bool + Send + Sync>,
}

pub struct Runtime {
    pub shard: Option<u32>,
    pub tenants: Arc<Tenants>,
    pub registry: Arc<Registry>,
    pub state: Arc<dyn StateStore>,
    pub log: Arc<dyn EventLog>,
    /// In-band commands and entries for the dispatcher.
    pub dispatch: mpsc::Sender<Command>,
    pub progress: Arc<Progress>,
    /// Serialises definition changes (read-modify-write of a tenant's set).
    definitions_lock: tokio::sync::Mutex<()>,
    valid: Check,
    health: watch::Sender<Health>,
    tasks: Mutex<Option<Tasks>>,
}

struct Tasks {
    dispatcher: JoinHandle<Result<()>>,
    outbox: JoinHandle<()>,
    outbox_stop: oneshot::Sender<()>,
    periodic: Vec<JoinHandle<()>>,
}

/// Loads one tenant's definitions (catalog) and contact directory (store).
pub fn load_tenant(catalog: &dyn Catalog, state: &dyn StateStore, id: &str) -> Result<TenantState> {
    let set = tenant_set(catalog, id)?;
    Ok(TenantState::new(id, set, read_directory(state, id)?))
}

/// A tenant's compiled definitions and content library, from the catalog.
fn tenant_set(catalog: &dyn Catalog, id: &str) -> Result<SegmentSet> {
    let mut defs: Vec<SegmentDefinition> = Vec::new();
    for (key, json, _) in catalog.segments(id)? {
        defs.push(
            serde_json::from_str(&json)
                .map_err(|e| NodeError::Internal(format!("stored definition {key}: {e}")))?,
        );
    }
    let content = crate::content::library(catalog, id)?;
    SegmentSet::compile_with(&defs, Arc::new(content))
        .map_err(|e| NodeError::Internal(format!("stored definitions do not compile: {e:?}")))
}

/// The whole contact directory of a tenant: timed, since it grows with the
/// tenant and is a large part of a shard load once tenants are large.
fn read_directory(state: &dyn StateStore, id: &str) -> Result<Directory> {
    let started = std::time::Instant::now();
    let directory = Directory::from_entries(state.directory_all(id)?);
    tracing::info!(
        tenant = id,
        contacts = directory.len(),
        directory_ms = started.elapsed().as_millis() as u64,
        "tenant directory read"
    );
    Ok(directory)
}

impl Runtime {
    /// Recovers the unit's state and starts its dispatcher, outbox and
    /// periodic duties.
    pub async fn start(parts: RuntimeParts) -> Result<Arc<Runtime>> {
        let RuntimeParts {
            shard,
            catalog,
            state,
            log,
            clock,
            config,
            pool,
            valid,
            owns,
        } = parts;
        let (c, s, o) = (catalog.clone(), state.clone(), owns.clone());
        let tenants = Arc::new(Tenants::new(Box::new(move |id: &str| {
            if id == ADMIN_TENANT || !o(id) {
                return Ok(None);
            }
            load_tenant(c.as_ref(), s.as_ref(), id).map(Some)
        })));
        // Phases of recovery, timed for the `recovered` line. The tenants'
        // directories are read on a blocking thread while the account
        // checkpoints are restored: both are store reads that grow with the
        // tenant, neither needs the other, and only the replay of the log
        // tail needs the directory.
        let phase = std::time::Instant::now();
        let mut owned = Vec::new();
        for t in catalog.tenants()? {
            if t.id != ADMIN_TENANT && owns(&t.id) {
                let set = tenant_set(catalog.as_ref(), &t.id)?;
                tenants.insert(Arc::new(TenantState::new(&t.id, set, Directory::default())));
                owned.push(t.id);
            }
        }
        let directories = {
            let state = state.clone();
            tokio::task::spawn_blocking(move || {
                owned
                    .into_iter()
                    .map(|id| read_directory(state.as_ref(), &id).map(|d| (id, d)))
                    .collect::<Result<Vec<_>>>()
            })
        };
        let tenants_ms = phase.elapsed().as_millis() as u64;
        let (outbox_tx, outbox_rx) = crate::outbox::channel();
        let registry = Arc::new(Registry::new(
            pool,
            state.clone(),
            clock.clone(),
            outbox_tx,
            config.mailbox_capacity,
        ));
        let (outbox_stop, outbox_stop_rx) = oneshot::channel();
        let progress = Arc::new(Progress::default());
        // Changes are written while the lease holds and no handoff froze
        // the runtime; otherwise the outbox carries them.
        let writable: Check = {
            let (valid, progress) = (valid.clone(), progress.clone());
            Arc::new(move || valid() && !progress.frozen.load(Ordering::Acquire))
        };
        let outbox = tokio::spawn(crate::outbox::run_writer(
            outbox_rx,
            state.clone(),
            tenants.clone(),
            writable,
            outbox_stop_rx,
        ));

        // Recovery: every checkpointed account, then the log after the watermark.
        let sleepers: Arc<Mutex<BTreeSet<(Millis, AccountKey)>>> = Arc::default();
        let phase = std::time::Instant::now();
        let stale = restore_accounts(state.as_ref(), &tenants, &registry)?;
        let restore_ms = phase.elapsed().as_millis() as u64;
        let phase = std::time::Instant::now();
        let directories = directories
            .await
            .map_err(|e| NodeError::Internal(format!("reading tenant directories: {e}")))??;
        for (id, directory) in directories {
            if let Some(t) = tenants.get(&id) {
                *t.directory.write().unwrap_or_else(|p| p.into_inner()) = directory;
            }
        }
        // Only the part of the directory reads that restoring did not hide.
        let directory_wait_ms = phase.elapsed().as_millis() as u64;
        let watermark = state.watermark()?;
        let mut dispatcher = Dispatcher::new(
            tenants.clone(),
            registry.clone(),
            state.clone(),
            log.clone(),
            clock.clone(),
            progress.clone(),
            sleepers.clone(),
            watermark,
        );
        let phase = std::time::Instant::now();
        let replayed = dispatcher.recover().await?;
        let replay_ms = phase.elapsed().as_millis() as u64;
        for id in stale {
            if let Some(t) = tenants.get(&id) {
                let set = (*t.set()).clone();
                crate::rebuild::rebuild_tenant(&dispatcher, &t, set).await?;
            }
        }
        let phase = std::time::Instant::now();
        build_index(&registry, &tenants).await;
        tracing::info!(
            shard,
            replayed,
            watermark,
            accounts = registry.len(),
            tenants_ms,
            restore_ms,
            directory_wait_ms,
            replay_ms,
            index_ms = phase.elapsed().as_millis() as u64,
            "recovered"
        );

        // Small on purpose: each entry batch can hold thousands of events, and
        // a deep queue only adds memory and latency, not throughput.
        let (dispatch_tx, dispatch_rx) = mpsc::channel::<Command>(4);
        let (health, _) = watch::channel(Health::Serving);
        let health_on_exit = health.clone();
        let dispatcher = tokio::spawn(async move {
            let r = dispatcher.run(dispatch_rx).await;
            if let Err(e) = &r {
                tracing::error!(shard, error = %e, "dispatcher stopped; this unit serves nothing more");
                health_on_exit.send_replace(Health::Failed(e.to_string()));
            }
            r
        });
        let runtime = Arc::new(Runtime {
            shard,
            tenants,
            registry,
            state,
            log,
            dispatch: dispatch_tx,
            progress,
            definitions_lock: tokio::sync::Mutex::new(()),
            valid,
            health,
            tasks: Mutex::new(None),
        });
        let periodic = crate::periodic::spawn_for(&runtime, clock, &config, sleepers);
        *runtime.tasks.lock().unwrap_or_else(|p| p.into_inner()) = Some(Tasks {
            dispatcher,
            outbox,
            outbox_stop,
            periodic,
        });
        Ok(runtime)
    }

    /// Serving, and (in cluster mode) still within the shard lease.
    pub fn is_valid(&self) -> bool {
        *self.health.borrow() == Health::Serving && (self.valid)()
    }

    /// The first tenant whose installed definitions or content library
    /// differ from the catalog's, if any: a change whose catalog write
    /// landed (Redis applies a command it received even after the caller
    /// timed out) but whose install never ran. A fresh load compiles what
    /// the catalog holds, so a resumed runtime must agree with it.
    pub fn differs_from_catalog(&self, catalog: &dyn Catalog) -> Result<Option<String>> {
        for t in self.tenants.all() {
            let stored = tenant_set(catalog, &t.id)?;
            let installed = t.set();
            if stored.fingerprint() != installed.fingerprint()
                || stored.content.len() != installed.content.len()
            {
                return Ok(Some(t.id.to_string()));
            }
        }
        Ok(None)
    }

    /// Orders freezes and thaws: take one when deciding, synchronously, and
    /// pass it to `freeze` or `thaw`, so a request overtaken on its way to
    /// the dispatcher by a later one is ignored.
    pub fn next_freeze_request(&self) -> u64 {
        self.progress.freeze_requests.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Freezes the runtime for a handoff (`Command::Freeze`): a checkpoint,
    /// then no writes until `thaw`. Returns the position checkpointed, or
    /// `None` if it was frozen already. A definition or content change
    /// under way finishes first (it holds the definitions lock from before
    /// it stores anything until its install), and one that comes after is
    /// refused (`lock_definitions`).
    pub async fn freeze(&self, request: u64) -> Result<Option<Seq>> {
        let _definitions = if self.is_frozen() {
            None
        } else {
            Some(self.definitions_lock.lock().await)
        };
        self.ask(|reply| Command::Freeze { request, reply }).await
    }

    /// Writes again after a freeze, first the changes carried meanwhile.
    pub async fn thaw(&self, request: u64) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.dispatch
            .send(Command::Thaw { request, reply: tx })
            .await
            .map_err(|_| NodeError::Moved(self.shard))?;
        rx.await.map_err(|_| NodeError::Moved(self.shard))?;
        self.registry.outbox().flush().await?;
        Ok(())
    }

    /// Whether a handoff froze the runtime.
    pub fn is_frozen(&self) -> bool {
        self.progress.frozen.load(Ordering::Acquire)
    }

    /// Takes the lock of definition changes, unless the runtime is frozen
    /// for a handoff: then the change is refused before anything is stored
    /// (the catalog would otherwise hold a set the runtime never installs).
    pub async fn lock_definitions(&self) -> Result<tokio::sync::MutexGuard<'_, ()>> {
        let guard = self.definitions_lock.lock().await;
        if self.is_frozen() {
            return Err(crate::dispatch::handing_off());
        }
        Ok(guard)
    }

    /// An error for answers this runtime must not give any more.
    pub fn check(&self) -> Result<()> {
        if self.is_valid() {
            Ok(())
        } else {
            Err(NodeError::Moved(self.shard))
        }
    }

    pub fn health(&self) -> watch::Receiver<Health> {
        self.health.subscribe()
    }

    /// The last log position handed to the dispatcher.
    pub fn dispatched(&self) -> Seq {
        self.progress.dispatched.load(Ordering::Acquire)
    }

    /// Sends a command that answers on a oneshot and waits for the answer.
    pub async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T>>) -> Command,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.dispatch
            .send(make(tx))
            .await
            .map_err(|_| NodeError::Moved(self.shard))?;
        rx.await.map_err(|_| NodeError::Moved(self.shard))?
    }

    /// Graceful stop: everything sent to the dispatcher before this call is
    /// applied and checkpointed (with its changes durable first), then the
    /// actors stop and the outbox drains. Returns whether the final
    /// checkpoint landed.
    pub async fn shutdown(&self) -> Result<()> {
        let Some(tasks) = self.take_tasks() else {
            return Ok(());
        };
        for p in &tasks.periodic {
            p.abort();
        }
        let (tx, rx) = oneshot::channel();
        let checkpointed = match self.dispatch.send(Command::Shutdown(tx)).await {
            Ok(()) => rx.await.unwrap_or(Err(NodeError::ShuttingDown)),
            Err(_) => Err(NodeError::ShuttingDown),
        };
        let result = match tasks.dispatcher.await {
            Ok(r) => r.and(checkpointed.map(|_| ())),
            Err(e) => Err(NodeError::Internal(format!("dispatcher task: {e}"))),
        };
        self.health.send_replace(Health::Stopped);
        self.registry.stop().await;
        let _ = tasks.outbox_stop.send(());
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), tasks.outbox).await;
        result
    }

    /// Stops at once and writes nothing more (the lease is gone or going).
    pub async fn abort(&self) {
        self.health.send_replace(Health::Stopped);
        let Some(tasks) = self.take_tasks() else {
            return;
        };
        for p in &tasks.periodic {
            p.abort();
        }
        tasks.dispatcher.abort();
        tasks.outbox.abort();
        self.registry.stop().await;
    }

    fn take_tasks(&self) -> Option<Tasks> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// Checkpoints read per round trip during recovery: large enough that a
/// shard of 20k accounts loads in a few dozen reads, small enough that one
/// reply stays a few megabytes.
const RESTORE_CHUNK: usize = 1000;

/// Activates every checkpointed account of the unit's tenants, loading the
/// images in bulk. Returns the tenants whose checkpoints were shaped by other
/// definitions (they are rebuilt from the log).
fn restore_accounts(
    state: &dyn StateStore,
    tenants: &Tenants,
    registry: &Registry,
) -> Result<BTreeSet<String>> {
    let keys: Vec<(String, String)> = state
        .checkpoint_index()?
        .into_iter()
        .filter(|(tenant, _, _)| tenants.get(tenant).is_some())
        .map(|(tenant, account, _)| (tenant, account))
        .collect();
    let mut stale = BTreeSet::new();
    for chunk in keys.chunks(RESTORE_CHUNK) {
        let images = state.load_checkpoints(chunk)?;
        for ((tenant, account), image) in chunk.iter().zip(images) {
            let Some(t) = tenants.get(tenant) else {
                continue;
            };
            if stale.contains(tenant) {
                continue;
            }
            match registry.restore(&t, account, image) {
                Err(NodeError::StaleShape(_)) => {
                    stale.insert(tenant.clone());
                }
                Err(e) => return Err(e),
                Ok(_) => {}
            }
        }
    }
    Ok(stale)
}

/// Questions in flight while the membership index is built: one at a time
/// would cost a thread hop per account.
const INDEX_CONCURRENCY: usize = 256;

/// Fills each tenant's membership index from its resident accounts.
async fn build_index(registry: &Registry, tenants: &Tenants) {
    use futures::StreamExt;
    let answers = futures::stream::iter(registry.resident(None))
        .map(|(key, actor)| async move { (key, actor.ask(crate::host::Query::Members).await) })
        .buffer_unordered(INDEX_CONCURRENCY);
    futures::pin_mut!(answers);
    // Every tenant's entries are gathered first and go into its index in
    // one bulk build: inserting hundreds of thousands of string keys one
    // by one into a B-tree was half of a shard's load (perf: key compares
    // and node shifts), a sort of a flat vector and a bottom-up build are
    // a fraction of that.
    let mut entries: HashMap<Arc<str>, Vec<IndexKey>> = HashMap::new();
    while let Some((key, answer)) = answers.next().await {
        if let Ok(crate::host::Answer::Members(members)) = answer {
            let out = entries.entry(key.0.clone()).or_default();
            out.extend(members.into_iter().map(|(segment, contact)| match contact {
                Some(c) => (segment, key.1.clone(), liveseg_core::Entity::Contact, c),
                None => (
                    segment,
                    key.1.clone(),
                    liveseg_core::Entity::Account,
                    key.1.clone(),
                ),
            }));
        }
    }
    for (tenant, keys) in entries {
        if let Some(t) = tenants.get(&tenant) {
            let mut built = sorted_set(keys);
            let mut index = t.index.write().unwrap_or_else(|p| p.into_inner());
            // The outbox may index the replay's changes before or after
            // this: it applies them in order, each predates the answers
            // (nothing reaches an actor until the dispatcher starts, after
            // this), so either way the index ends as the actors' state.
            index.append(&mut built);
        }
    }
}

/// A set of `keys` built bottom-up: `collect` sorts (one pass over input
/// already in order), drops repeats and builds the tree without searching
/// it. The unstable sort first is the cheaper one for shuffled input.
fn sorted_set(mut keys: Vec<IndexKey>) -> BTreeSet<IndexKey> {
    keys.sort_unstable();
    keys.into_iter().collect()
}

/// Wakes passivated accounts whose timers come due.
pub(crate) fn wake_due(
    sleepers: &Mutex<BTreeSet<(Millis, AccountKey)>>,
    now: Millis,
) -> Vec<AccountKey> {
    let mut s = sleepers.lock().unwrap_or_else(|p| p.into_inner());
    let mut due = Vec::new();
    while let Some((t, _)) = s.first() {
        if *t > now {
            break;
        }
        if let Some((_, k)) = s.pop_first() {
            due.push(k);
        }
    }
    due
}

#[cfg(test)]
mod tests {
    use super::*;
    use liveseg_core::Entity;

    fn key(segment: &str, account: &str, entity: Entity, id: &str) -> IndexKey {
        (segment.into(), account.into(), entity, id.into())
    }

    #[test]
    fn a_bulk_built_index_equals_one_built_key_by_key_and_keeps_what_was_there() {
        let keys = vec![
            key("b", "acct2", Entity::Contact, "c9"),
            key("a", "acct1", Entity::Account, "acct1"),
            key("b", "acct1", Entity::Contact, "c3"),
            key("a", "acct1", Entity::Contact, "c1"),
            key("b", "acct2", Entity::Contact, "c9"),
            key("a", "acct10", Entity::Contact, "c0"),
        ];
        let one_by_one: BTreeSet<IndexKey> = keys.iter().cloned().collect();
        let built = sorted_set(keys.clone());
        assert_eq!(built, one_by_one);
        assert_eq!(built.len(), 5, "the repeated key is kept once");

        // What the outbox indexed before the bulk append stays, once.
        let mut index: BTreeSet<IndexKey> = [
            key("b", "acct1", Entity::Contact, "c3"),
            key("c", "acct3", Entity::Contact, "c7"),
        ]
        .into_iter()
        .collect();
        index.append(&mut sorted_set(keys));
        assert_eq!(index.len(), 6);
        assert!(index.contains(&key("c", "acct3", Entity::Contact, "c7")));
    }
}
