//! Backend-neutral storage contracts.
//!
//! Every method is synchronous: the embedded backend does blocking disk I/O
//! (fsync), and a future Redis backend would use a blocking client on the same
//! threads, so async callers run these on blocking threads (or through the
//! [`GroupCommitter`](crate::GroupCommitter)). The traits are object-safe and
//! `Send + Sync` so callers can hold `Arc<dyn Trait>` and never name a backend.
//!
//! Tenant scoping: every key a backend stores is scoped by tenant as a
//! structured component (never a separator character inside a string), so no
//! choice of tenant id, account id or contact id can alias another tenant's
//! data.

use crate::error::Result;

/// Global log sequence number: starts at 1, strictly increasing and gapless
/// per store (0 means "nothing").
pub type Seq = u64;

/// One event to append to the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendItem {
    /// Owning tenant.
    pub tenant: String,
    /// Client-supplied idempotency key; unique per tenant within the dedupe window.
    pub message_id: String,
    /// Opaque encoded event.
    pub payload: Vec<u8>,
}

/// What happened to one [`AppendItem`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Newly written at `seq`.
    Accepted {
        /// Sequence number assigned to the item.
        seq: Seq,
    },
    /// Already in the log (within the dedupe window) at `seq`; nothing written.
    Duplicate {
        /// Sequence number of the original acceptance.
        seq: Seq,
    },
}

impl AppendOutcome {
    /// The sequence number, whether newly assigned or original.
    pub fn seq(&self) -> Seq {
        match *self {
            AppendOutcome::Accepted { seq } | AppendOutcome::Duplicate { seq } => seq,
        }
    }

    /// True if the item was a duplicate.
    pub fn is_duplicate(&self) -> bool {
        matches!(self, AppendOutcome::Duplicate { .. })
    }
}

/// One entry read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Its sequence number.
    pub seq: Seq,
    /// Owning tenant.
    pub tenant: String,
    /// Opaque encoded event.
    pub payload: Vec<u8>,
}

/// The durable, deduplicated ingest log. An event is acknowledged only once
/// `append` has returned, i.e. once it is fsync'd.
pub trait EventLog: Send + Sync {
    /// Durably append a batch in ONE atomic fsync'd transaction.
    ///
    /// Items are deduplicated by `(tenant, message_id)` against the dedupe
    /// window (entries accepted at or after `now_ms - window`) AND within the
    /// batch itself: a second occurrence in the same batch is a `Duplicate` of
    /// the first. Returns one outcome per item, in the same order; accepted
    /// items get consecutive sequence numbers in item order. Items are never
    /// rejected for their content, so one bad neighbour cannot fail a batch;
    /// if this returns `Err`, nothing was written.
    fn append(&self, items: &[AppendItem], now_ms: i64) -> Result<Vec<AppendOutcome>>;

    /// Entries with `seq > after`, in order, at most `limit`.
    fn read_after(&self, after: Seq, limit: usize) -> Result<Vec<LogEntry>>;

    /// Highest assigned seq (0 if empty).
    fn head(&self) -> Result<Seq>;

    /// Drop dedupe entries accepted before `older_than_ms`; returns how many
    /// were dropped. After this, those message ids are accepted again.
    ///
    /// A backend may work in acceptance (log) order and stop at the first
    /// entry accepted at or after `older_than_ms`: if callers' `now_ms` went
    /// backwards, an entry accepted "earlier" behind a later one is then
    /// dropped by a later prune instead. `append` treats entries outside the
    /// window as expired either way.
    fn prune_dedupe(&self, older_than_ms: i64) -> Result<usize>;
}

/// Durable state of one account as of log position `applied_seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountCheckpoint {
    /// Owning tenant.
    pub tenant: String,
    /// Account id (unique within the tenant only).
    pub account: String,
    /// Highest log seq whose effects are included in `state`.
    pub applied_seq: Seq,
    /// Opaque encoded state; `None` deletes the account's state.
    pub state: Option<Vec<u8>>,
}

/// Change to the contact → account directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryUpdate {
    /// Owning tenant.
    pub tenant: String,
    /// Contact id.
    pub contact: String,
    /// Account the contact belongs to; `None` removes the mapping.
    pub account: Option<String>,
}

/// One membership change (opaque), appended to its tenant's change feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRecord {
    /// Owning tenant.
    pub tenant: String,
    /// Opaque encoded change.
    pub payload: Vec<u8>,
}

/// Everything one state commit writes, atomically.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitBatch {
    /// Account checkpoints to write.
    pub checkpoints: Vec<AccountCheckpoint>,
    /// Directory updates to apply.
    pub directory: Vec<DirectoryUpdate>,
    /// Membership changes to append.
    pub changes: Vec<ChangeRecord>,
    /// Replay watermark to record in the same transaction: "every log entry
    /// up to this seq is reflected in checkpoints", so restart replay can
    /// start after it. `None` leaves it unchanged. It never moves backwards:
    /// a lower value than the stored one is ignored (a lower watermark is
    /// still true, just less useful).
    pub watermark: Option<Seq>,
}

/// Account state, contact directory and membership-change feeds.
pub trait StateStore: Send + Sync {
    /// One atomic durable transaction: write checkpoints, apply directory
    /// updates and append the change records (each change gets the next
    /// per-tenant cursor, starting at 1). Returns the cursors assigned, in the
    /// same order as `batch.changes`.
    ///
    /// A checkpoint whose `applied_seq` is LOWER than the stored one for that
    /// account is rejected with [`StoreError::StaleCheckpoint`](crate::StoreError::StaleCheckpoint)
    /// and nothing in the batch is written (the embedded analogue of the
    /// fencing check). An equal `applied_seq` is accepted (idempotent retry).
    fn commit(&self, batch: &CommitBatch) -> Result<Vec<u64>>;

    /// The account's checkpoint `(applied_seq, state)`, or `None` if it has no
    /// state (never written, or deleted).
    fn load_checkpoint(&self, tenant: &str, account: &str) -> Result<Option<(Seq, Vec<u8>)>>;

    /// The checkpoints of many `(tenant, account)` pairs at once, in the same
    /// order. Recovery loads whole shards with it: backends override it to
    /// answer in one round trip instead of one per account.
    fn load_checkpoints(&self, keys: &[(String, String)]) -> Result<Vec<Option<CheckpointImage>>> {
        keys.iter()
            .map(|(t, a)| self.load_checkpoint(t, a))
            .collect()
    }

    /// All checkpoints of all tenants: `(tenant, account, applied_seq)`. Used at
    /// startup to compute the replay start. Deleted accounts are included
    /// (their deletion is a checkpoint too: events up to that seq are applied).
    fn checkpoint_index(&self) -> Result<Vec<(String, String, Seq)>>;

    /// The account a contact belongs to.
    fn directory_lookup(&self, tenant: &str, contact: &str) -> Result<Option<String>>;

    /// All `(contact, account)` pairs of a tenant, in no particular order
    /// (the caller builds a map; sorting 100k+ pairs at every shard load
    /// would be wasted).
    fn directory_all(&self, tenant: &str) -> Result<Vec<(String, String)>>;

    /// Change records with cursor > `after`, at most `limit`: `(cursor, payload)`.
    fn changes_after(&self, tenant: &str, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>>;

    /// Highest change cursor assigned for the tenant (0 if none).
    fn change_head(&self, tenant: &str) -> Result<u64>;

    /// The replay watermark last committed via [`CommitBatch::watermark`]
    /// (0 if none): restart recovery replays the log after it.
    fn watermark(&self) -> Result<Seq>;
}

/// One account's checkpoint: `(applied_seq, state)`.
pub type CheckpointImage = (Seq, Vec<u8>);

/// A tenant of the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// Tenant id (used in every scoped key).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Creation time, ms since the Unix epoch.
    pub created_ms: i64,
}

/// Tenants, API keys and segment definitions.
pub trait Catalog: Send + Sync {
    /// Create a tenant; [`StoreError::AlreadyExists`](crate::StoreError::AlreadyExists) if present.
    fn create_tenant(&self, id: &str, name: &str, now_ms: i64) -> Result<()>;

    /// All tenants, sorted by id.
    fn tenants(&self) -> Result<Vec<Tenant>>;

    /// Register an API key for a tenant. Stores only SHA-256(key) as hex,
    /// never the key, so a copy of the data directory leaks no credentials.
    /// Errors if the tenant does not exist or the key belongs to another tenant.
    fn add_api_key(&self, tenant: &str, key: &str, label: &str) -> Result<()>;

    /// The tenant a presented key belongs to. The key is hashed and the hash
    /// looked up, so the lookup never compares secret bytes directly.
    fn tenant_for_key(&self, key: &str) -> Result<Option<String>>;

    /// Create or replace a segment definition; returns its new revision
    /// (starts at 1, increments on every put, never reused even across deletes).
    fn put_segment(&self, tenant: &str, key: &str, definition_json: &str) -> Result<u64>;

    /// Delete a segment; returns whether it existed.
    fn delete_segment(&self, tenant: &str, key: &str) -> Result<bool>;

    /// `(key, json, revision)` of the tenant's segments, sorted by key.
    fn segments(&self, tenant: &str) -> Result<Vec<(String, String, u64)>>;

    /// Create or replace content records (`(id, json)`: the text, metadata
    /// and embedding), all in one write.
    fn put_contents(&self, tenant: &str, items: &[(String, String)]) -> Result<()>;

    /// `(id, json)` of the tenant's content records, sorted by id.
    fn contents(&self, tenant: &str) -> Result<Vec<(String, String)>>;

    /// Delete a content record; returns whether it existed.
    fn delete_content(&self, tenant: &str, id: &str) -> Result<bool>;
}

/// Ownership of the node's shards. Writes are only valid while the lease is
/// held, under its epoch. The embedded store is single-owner: its lease is
/// always held with epoch 1, backed by an exclusive OS lock on the data
/// directory so two processes cannot open the same store.
pub trait Lease: Send + Sync {
    /// Fencing epoch of the current ownership.
    fn epoch(&self) -> u64;
    /// Whether the lease is currently held.
    fn is_held(&self) -> bool;
}

/// What every backend refuses before writing content records: an empty id
/// or a record that is not JSON (the store keeps records opaque, but this
/// catches encoding bugs before they are persisted). One bad record refuses
/// the whole write.
pub(crate) fn check_content_records(items: &[(String, String)]) -> Result<()> {
    for (id, json) in items {
        if id.is_empty() {
            return Err(crate::error::StoreError::InvalidInput(
                "content id must not be empty".into(),
            ));
        }
        serde_json::from_str::<serde_json::Value>(json).map_err(|e| {
            crate::error::StoreError::InvalidInput(format!(
                "content {id:?} record is not valid JSON: {e}"
            ))
        })?;
    }
    Ok(())
}

/// The content-record contract every [`Catalog`] keeps; `tenant` must exist
/// and `other` must exist and be another tenant.
#[cfg(test)]
pub(crate) fn check_content_catalog(c: &dyn Catalog, tenant: &str, other: &str) {
    use crate::error::StoreError;
    let items = vec![
        ("b".to_string(), "{\"text\":\"B\"}".to_string()),
        ("a".to_string(), "{\"text\":\"A\"}".to_string()),
    ];
    c.put_contents(tenant, &items).unwrap();
    c.put_contents(tenant, &[("a".into(), "{\"text\":\"A2\"}".into())])
        .unwrap();
    assert_eq!(
        c.contents(tenant).unwrap(),
        vec![
            ("a".to_string(), "{\"text\":\"A2\"}".to_string()),
            ("b".to_string(), "{\"text\":\"B\"}".to_string()),
        ],
        "replaced in place, sorted by id"
    );
    assert!(
        c.contents(other).unwrap().is_empty(),
        "tenants are isolated"
    );
    // A bad record refuses the whole write: nothing of it lands.
    let bad = vec![
        ("c".to_string(), "{}".to_string()),
        ("d".to_string(), "not json".to_string()),
    ];
    assert!(matches!(
        c.put_contents(tenant, &bad),
        Err(StoreError::InvalidInput(_))
    ));
    assert!(matches!(
        c.put_contents("no-such-tenant", &items),
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(c.contents(tenant).unwrap().len(), 2);
    assert!(c.delete_content(tenant, "b").unwrap());
    assert!(!c.delete_content(tenant, "b").unwrap());
    assert_eq!(c.contents(tenant).unwrap().len(), 1);
}
