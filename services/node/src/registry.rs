//! The account registry: get-or-spawn of account actors (loading the
//! checkpoint when there is one), and the bookkeeping for idle passivation.
//! Accounts are only created by the dispatcher for events that passed
//! validation and authentication; queries never create accounts.

use crate::actor::AccountActor;
use crate::actors::{AccountRef, ActorPool};
use crate::clock::SharedClock;
use crate::error::NodeError;
use crate::host::{AccountHost, Checkpoint};
use crate::outbox::OutboxSender;
use crate::tenant::TenantState;
use liveseg_core::event::stable_hash;
use liveseg_core::{Account, Millis};
use liveseg_store::{CheckpointImage, StateStore};

/// Checkpoints read per store call by `passive_accounts`.
const PASSIVE_CHUNK: usize = 1000;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

pub type AccountKey = (Arc<str>, String);

struct Slot {
    actor: AccountRef,
    last_used: Millis,
}

/// The resident actor of `key`, if it is still alive (a dead one is dropped).
fn resident(
    slots: &mut HashMap<AccountKey, Slot>,
    key: &AccountKey,
    now: Millis,
) -> Option<AccountRef> {
    if let Some(slot) = slots.get_mut(key) {
        if slot.actor.connected() {
            slot.last_used = now;
            return Some(slot.actor.clone());
        }
        slots.remove(key);
        metrics::gauge!(liveseg_telemetry::names::RESIDENT_ACCOUNTS).decrement(1.0);
    }
    None
}

pub struct Registry {
    /// Accounts that received events since the live scorer last took
    /// them; `None` until a scorer asks (`track_touched`).
    touched: Mutex<Option<std::collections::HashSet<AccountKey>>>,
    /// Set once `touched` is tracked: the dispatcher's per-batch check
    /// stays a load without a lock when no scorer runs.
    tracking: AtomicBool,
    /// Shared by every runtime of the node.
    pool: Arc<ActorPool>,
    /// Set by `stop`: no account is spawned after it.
    closed: AtomicBool,
    slots: Mutex<HashMap<AccountKey, Slot>>,
    store: Arc<dyn StateStore>,
    clock: SharedClock,
    outbox: OutboxSender,
    mailbox_capacity: usize,
}

/// What loading an account found.
pub enum Loaded {
    Actor(AccountRef),
    /// No checkpoint and `create` was false.
    Unknown,
}

impl Registry {
    pub fn new(
        pool: Arc<ActorPool>,
        store: Arc<dyn StateStore>,
        clock: SharedClock,
        outbox: OutboxSender,
        mailbox_capacity: usize,
    ) -> Self {
        Registry {
            touched: Mutex::new(None),
            tracking: AtomicBool::new(false),
            pool,
            closed: AtomicBool::new(false),
            slots: Mutex::new(HashMap::new()),
            store,
            clock,
            outbox,
            mailbox_capacity,
        }
    }

    /// The account's actor, spawned from its checkpoint if not resident.
    pub fn get(
        &self,
        tenant: &TenantState,
        account: &str,
        create: bool,
    ) -> Result<Loaded, NodeError> {
        self.get_with(tenant, account, create, || {
            self.store.load_checkpoint(&tenant.id, account)
        })
    }

    /// Recovery's path: spawns the account from a checkpoint image that was
    /// loaded in bulk with its neighbours, unless it is already resident.
    pub fn restore(
        &self,
        tenant: &TenantState,
        account: &str,
        image: Option<CheckpointImage>,
    ) -> Result<Loaded, NodeError> {
        self.get_with(tenant, account, false, || Ok(image))
    }

    fn get_with(
        &self,
        tenant: &TenantState,
        account: &str,
        create: bool,
        image: impl FnOnce() -> liveseg_store::Result<Option<CheckpointImage>>,
    ) -> Result<Loaded, NodeError> {
        let key: AccountKey = (tenant.id.clone(), account.to_string());
        let now = self.clock.now();
        // Held across the checkpoint load on purpose: an account must never be
        // activated twice, and loads are one short read.
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(actor) = resident(&mut slots, &key, now) {
            return Ok(Loaded::Actor(actor));
        }
        let image = image()?;
        self.activate(&mut slots, tenant, key, image, create, now)
    }

    fn activate(
        &self,
        slots: &mut HashMap<AccountKey, Slot>,
        tenant: &TenantState,
        key: AccountKey,
        image: Option<CheckpointImage>,
        create: bool,
        now: Millis,
    ) -> Result<Loaded, NodeError> {
        let set = tenant.set();
        let host = match image {
            Some((_, bytes)) => {
                // State is a function of the log and the definitions: an
                // image this build cannot read (another state format),
                // shaped by other definitions or judged under another
                // content library (registered while this state was away) is
                // rebuilt from the log.
                let image = match Checkpoint::decode(&bytes) {
                    Ok(image) if image.fits(&set) => image,
                    Ok(_) => return Err(NodeError::StaleShape(tenant.id.to_string())),
                    Err(e) => {
                        tracing::warn!(account = %key.1, error = %e, "checkpoint unreadable; rebuilding the tenant from the log");
                        return Err(NodeError::StaleShape(tenant.id.to_string()));
                    }
                };
                AccountHost::new(
                    tenant.id.clone(),
                    set,
                    image.account.restore(),
                    image.applied_seq,
                )
            }
            None if create => AccountHost::new(
                tenant.id.clone(),
                set.clone(),
                Account::new(&key.1, &set),
                0,
            ),
            None => return Ok(Loaded::Unknown),
        };
        let actor = AccountActor::new(
            host,
            self.clock.clone(),
            self.outbox.clone(),
            self.mailbox_capacity,
        );
        let placement = stable_hash(&format!("{}\u{0}{}", tenant.id, key.1));
        if self.closed.load(Ordering::Acquire) {
            return Err(NodeError::ShuttingDown);
        }
        let actor = self.pool.spawn(placement, actor);
        slots.insert(
            key,
            Slot {
                actor: actor.clone(),
                last_used: now,
            },
        );
        // Several registries (one per shard) share the gauge: count, don't set.
        metrics::gauge!(liveseg_telemetry::names::RESIDENT_ACCOUNTS).increment(1.0);
        Ok(Loaded::Actor(actor))
    }

    /// Resident actors, optionally of one tenant.
    pub fn resident(&self, tenant: Option<&str>) -> Vec<(AccountKey, AccountRef)> {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .iter()
            .filter(|(k, _)| tenant.is_none_or(|t| k.0.as_ref() == t))
            .map(|(k, s)| (k.clone(), s.actor.clone()))
            .collect()
    }

    /// The state of those `accounts` of `tenant` that are not resident,
    /// read from their checkpoints (a passivated account's final image)
    /// without spawning actors; images of another shape are skipped (the
    /// account is rebuilt when it wakes).
    pub fn passive_accounts(
        &self,
        tenant: &TenantState,
        accounts: &[String],
    ) -> Result<Vec<Account>, NodeError> {
        let keys: Vec<(String, String)> = {
            let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            accounts
                .iter()
                .filter(|a| {
                    !slots
                        .get(&(tenant.id.clone(), (*a).clone()))
                        .is_some_and(|s| s.actor.connected())
                })
                .map(|a| (tenant.id.to_string(), a.clone()))
                .collect()
        };
        let set = tenant.set();
        let mut out = Vec::new();
        for chunk in keys.chunks(PASSIVE_CHUNK) {
            for (_, bytes) in self.store.load_checkpoints(chunk)?.into_iter().flatten() {
                if let Ok(image) = Checkpoint::decode(&bytes)
                    && image.fits(&set)
                {
                    out.push(image.account.restore());
                }
            }
        }
        Ok(out)
    }

    /// Starts (or keeps) recording which accounts receive events.
    pub fn track_touched(&self) {
        self.touched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(Default::default);
        self.tracking.store(true, Ordering::Release);
    }

    /// Whether a scorer asked for touched accounts (`track_touched`).
    pub fn tracks_touched(&self) -> bool {
        self.tracking.load(Ordering::Acquire)
    }

    /// Records that `keys` received events (a no-op unless tracked).
    pub fn note_touched(&self, keys: Vec<AccountKey>) {
        if keys.is_empty() || !self.tracking.load(Ordering::Acquire) {
            return;
        }
        if let Some(set) = self
            .touched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            set.extend(keys);
        }
    }

    /// The accounts of `tenant` touched since the last call, forgotten.
    pub fn take_touched(&self, tenant: &str) -> Vec<String> {
        let mut guard = self.touched.lock().unwrap_or_else(|p| p.into_inner());
        let Some(set) = guard.as_mut() else {
            return Vec::new();
        };
        let mine: Vec<AccountKey> = set.iter().filter(|k| &*k.0 == tenant).cloned().collect();
        for k in &mine {
            set.remove(k);
        }
        mine.into_iter().map(|k| k.1).collect()
    }

    /// Accounts not used since `cutoff`.
    pub fn idle(&self, cutoff: Millis) -> Vec<(AccountKey, AccountRef)> {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .iter()
            .filter(|(_, s)| s.last_used < cutoff)
            .map(|(k, s)| (k.clone(), s.actor.clone()))
            .collect()
    }

    pub fn remove(&self, key: &AccountKey) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if slots.remove(key).is_some() {
            metrics::gauge!(liveseg_telemetry::names::RESIDENT_ACCOUNTS).decrement(1.0);
        }
    }

    pub fn outbox(&self) -> &OutboxSender {
        &self.outbox
    }

    pub fn len(&self) -> usize {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops every actor of this registry without images and spawns no
    /// more; the actor threads stay up for the node's other runtimes.
    pub async fn stop(&self) {
        self.closed.store(true, Ordering::Release);
        let slots: Vec<Slot> = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.drain().map(|(_, s)| s).collect()
        };
        metrics::gauge!(liveseg_telemetry::names::RESIDENT_ACCOUNTS).decrement(slots.len() as f64);
        futures::future::join_all(slots.iter().map(|s| s.actor.stop())).await;
    }
}
