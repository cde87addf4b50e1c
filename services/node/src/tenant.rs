//! Per-tenant runtime state shared by the dispatcher, the outbox and the
//! API: the compiled segment set, the contact directory, the membership
//! index behind ListMembers, and the live change feed behind Watch.
//!
//! Tenant isolation: every lookup starts from a `TenantState` chosen by the
//! caller's API key; nothing here is reachable by tenant id from a request.

use liveseg_core::{Change, Directory, Entity, SegmentSet};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::broadcast;

/// A membership change with its durable cursor.
#[derive(Debug, Clone)]
pub struct FeedItem {
    pub cursor: u64,
    pub change: Change,
}

/// (segment, account, entity, id): ordered so a segment's members page by (account, id).
pub type IndexKey = (String, String, Entity, String);

pub struct TenantState {
    pub id: Arc<str>,
    pub set: RwLock<Arc<SegmentSet>>,
    /// Contact -> account; written by the dispatcher only.
    pub directory: RwLock<Directory>,
    /// Every current membership, kept from the change feed.
    pub index: RwLock<BTreeSet<IndexKey>>,
    /// Live changes for Watch; a lagging watcher falls back to the durable log.
    pub feed: broadcast::Sender<Arc<FeedItem>>,
    /// Send timing's tenant-wide baseline and when it was computed, on the
    /// node's clock (`grpc::insight`).
    pub insight_baseline: Mutex<Option<(liveseg_core::Millis, Arc<crate::insight::Summary>)>>,
    /// A background refresh of that baseline is running.
    pub insight_refreshing: AtomicBool,
}

impl TenantState {
    pub fn new(id: &str, set: SegmentSet, directory: Directory) -> Self {
        TenantState {
            id: id.into(),
            set: RwLock::new(Arc::new(set)),
            directory: RwLock::new(directory),
            index: RwLock::new(BTreeSet::new()),
            feed: broadcast::channel(4096).0,
            insight_baseline: Mutex::new(None),
            insight_refreshing: AtomicBool::new(false),
        }
    }

    pub fn set(&self) -> Arc<SegmentSet> {
        self.set
            .read()
            .map(|s| s.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    pub fn account_of(&self, contact: &str) -> Option<String> {
        let dir = self.directory.read().unwrap_or_else(|p| p.into_inner());
        dir.get(contact).map(str::to_string)
    }

    /// Applies a change to the membership index (idempotent).
    pub fn index_change(&self, c: &Change) {
        let key = (c.segment.clone(), c.account.clone(), c.entity, c.id.clone());
        let mut index = self.index.write().unwrap_or_else(|p| p.into_inner());
        match c.kind {
            liveseg_core::ChangeKind::Enter => index.insert(key),
            liveseg_core::ChangeKind::Exit => index.remove(&key),
        };
    }
}

/// Builds a tenant's state from the catalog and the store, or `None` when
/// the tenant does not belong here (another shard).
pub type TenantLoader =
    Box<dyn Fn(&str) -> Result<Option<TenantState>, crate::error::NodeError> + Send + Sync>;

/// All tenants of one runtime, loaded on first use.
pub struct Tenants {
    map: RwLock<HashMap<String, Arc<TenantState>>>,
    loader: TenantLoader,
}

impl Tenants {
    pub fn new(loader: TenantLoader) -> Self {
        Tenants {
            map: RwLock::new(HashMap::new()),
            loader,
        }
    }

    /// The tenant, loaded if this runtime has not seen it yet (a tenant
    /// created after the runtime started, possibly on another node).
    pub fn get_or_load(
        &self,
        id: &str,
    ) -> Result<Option<Arc<TenantState>>, crate::error::NodeError> {
        if let Some(t) = self.get(id) {
            return Ok(Some(t));
        }
        let Some(loaded) = (self.loader)(id)? else {
            return Ok(None);
        };
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        // Another caller may have loaded it meanwhile: keep the first.
        Ok(Some(
            map.entry(id.to_string())
                .or_insert_with(|| Arc::new(loaded))
                .clone(),
        ))
    }

    pub fn get(&self, id: &str) -> Option<Arc<TenantState>> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    pub fn insert(&self, t: Arc<TenantState>) {
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(t.id.to_string(), t);
    }

    pub fn all(&self) -> Vec<Arc<TenantState>> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }
}
