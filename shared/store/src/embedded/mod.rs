//! The embedded (standalone) backend: one redb database file in a data directory.
//!
//! - `mod.rs` (this file): opening, the directory lock, the table layout and
//!   the [`Lease`] implementation.
//! - `log.rs`: [`EventLog`](crate::EventLog) (append, read, prune).
//! - `chunk.rs`: encoding of the log's multi-entry rows.
//! - `dedupe.rs`: dedupe keys (hashes), the in-memory front (pending keys,
//!   filter) and the on-disk index rows.
//! - `state.rs`: [`StateStore`](crate::StateStore) (checkpoints, directory, change feeds).
//! - `catalog.rs`: [`Catalog`](crate::Catalog) (tenants, hashed API keys, segments).
//!
//! Every write transaction uses `Durability::Immediate`, i.e. it is fsync'd
//! before `commit` returns, so "returned Ok" means "survives a crash".
//!
//! Tenant scoping: tenant-owned tables use redb tuple keys whose first element
//! is the tenant id. redb encodes tuples with explicit length prefixes and
//! compares them element by element, so `("a", "b:c")` and `("a:b", "c")` are
//! different keys and a range over one tenant never reaches into another.

mod catalog;
pub(crate) use catalog::hash_api_key;
mod chunk;
mod dedupe;
mod index;
mod log;
#[cfg(test)]
mod log_tests;
mod state;
#[cfg(test)]
mod tests;

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use redb::{
    Database, Durability, ReadTransaction, ReadableTable, TableDefinition, WriteTransaction,
};

use self::dedupe::LogState;
use crate::error::{Result, StoreError};
use crate::traits::Lease;

/// Name of the database file inside the data directory.
pub const DB_FILE: &str = "liveseg.redb";
/// Name of the lock file inside the data directory.
pub const LOCK_FILE: &str = "LOCK";

/// On-disk layout version, checked at open so an incompatible future layout
/// fails loudly instead of being misread.
///
/// - 1: string-keyed dedupe table plus a by-time index (3 inserts per event).
/// - 2: interim development layouts of 3 (never released; refused too).
/// - 3: the log is stored in chunks of entries that carry their hashed
///   dedupe key and acceptance time; the dedupe index is keyed by that hash,
///   kept partly in memory, maintained in bulk as runs and base rows, and
///   pruned by walking the log (no by-time index).
const SCHEMA_VERSION: u64 = 3;

/// Small counters: `"log_head"`, `"replay_watermark"`, `"schema_version"`.
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub(crate) const META_LOG_HEAD: &str = "log_head";
pub(crate) const META_WATERMARK: &str = "replay_watermark";
const META_SCHEMA_VERSION: &str = "schema_version";
/// Lowest log seq the dedupe pruner has not looked at yet (see `log.rs`).
pub(crate) const META_PRUNE_CURSOR: &str = "dedupe_prune_cursor";
/// first seq of a chunk -> chunk of consecutive log entries, each with its
/// dedupe key, tenant and payload, plus the chunk's acceptance time (see
/// `chunk.rs`). Log order is acceptance order, so the log doubles as the
/// dedupe window's time index.
pub(crate) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("event_log");
/// Dedupe index, base part: lowest key of a row -> sorted
/// `(key, seq, accepted_ms)` entries, where a key is a 128-bit hash of
/// (tenant, message id). See `dedupe.rs`.
pub(crate) const DEDUPE: TableDefinition<u128, &[u8]> = TableDefinition::new("dedupe_index");
/// Dedupe index, recent part: (bucket, slot) -> sorted entries moved out of
/// memory by one flush of the bucket. Slots `0..runs` of a bucket are live
/// (oldest first); higher slots are stale leftovers, overwritten later. See
/// `dedupe.rs`.
pub(crate) const DEDUPE_RUNS: TableDefinition<(u32, u8), &[u8]> =
    TableDefinition::new("dedupe_runs");
/// dedupe bucket -> (log head up to which the bucket's keys are all in the
/// index, number of live runs, whether it has base rows). Missing =
/// (0, 0, false). See `dedupe.rs`.
pub(crate) const DEDUPE_FLUSHED: TableDefinition<u32, (u64, u8, bool)> =
    TableDefinition::new("dedupe_flushed");
/// (tenant, account) -> (applied_seq, state); `None` state is a deletion
/// tombstone that still remembers `applied_seq` for fencing and replay.
pub(crate) const CHECKPOINTS: TableDefinition<(&str, &str), CheckpointValue> =
    TableDefinition::new("checkpoints");
/// Value of [`CHECKPOINTS`]: (applied_seq, state or tombstone).
pub(crate) type CheckpointValue = (u64, Option<&'static [u8]>);
/// (tenant, contact) -> account.
pub(crate) const DIRECTORY: TableDefinition<(&str, &str), &str> = TableDefinition::new("directory");
/// (tenant, cursor) -> change payload.
pub(crate) const CHANGES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("changes");
/// tenant -> highest change cursor assigned.
pub(crate) const CHANGE_HEADS: TableDefinition<&str, u64> = TableDefinition::new("change_heads");
/// tenant id -> (name, created_ms).
pub(crate) const TENANTS: TableDefinition<&str, (&str, i64)> = TableDefinition::new("tenants");
/// hex SHA-256 of an API key -> (tenant, label).
pub(crate) const API_KEYS: TableDefinition<&str, (&str, &str)> = TableDefinition::new("api_keys");
/// (tenant, segment key) -> (definition json, revision).
pub(crate) const SEGMENTS: TableDefinition<(&str, &str), (&str, u64)> =
    TableDefinition::new("segments");
/// (tenant, segment key) -> last revision issued; survives deletes so a
/// re-created segment never reuses a revision a cache may have seen.
pub(crate) const SEGMENT_REVISIONS: TableDefinition<(&str, &str), u64> =
    TableDefinition::new("segment_revisions");

/// (tenant, content id) -> content record json (text, metadata, embedding).
pub(crate) const CONTENT: TableDefinition<(&str, &str), &str> = TableDefinition::new("content");

/// Default dedupe window: 7 days.
pub const DEFAULT_DEDUPE_WINDOW_MS: i64 = 7 * 24 * 60 * 60 * 1000;

/// Default for [`StoreOptions::dedupe_buffer_entries`].
pub const DEFAULT_DEDUPE_BUFFER_ENTRIES: usize = 256 * 1024;
/// Default for [`StoreOptions::dedupe_filter_bytes`].
pub const DEFAULT_DEDUPE_FILTER_BYTES: usize = 16 << 20;

/// Options for [`EmbeddedStore::open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// A message id seen within this many ms before `now_ms` is a duplicate.
    /// Entries older than this are treated as expired by `append` even before
    /// `prune_dedupe` removes them, so behaviour does not depend on when
    /// pruning last ran.
    pub dedupe_window_ms: i64,
    /// redb's page cache. Bounded so the store does not grow the process to
    /// redb's 1 GiB default; the OS page cache still serves reads. redb
    /// reserves a tenth of it as the write buffer for the dirty pages of the
    /// open transaction: an append whose dirty pages exceed that spills
    /// pages to the file early and can write some of them twice, so this
    /// should be at least 10x the bytes of the largest append (default
    /// 64 MiB: ~6 MiB of write buffer, enough for an 8192-event group of
    /// ~500-byte events plus its index maintenance).
    pub cache_bytes: usize,
    /// About how many recently accepted dedupe keys are held only in memory
    /// (their log entries make them durable) before being merged into the
    /// on-disk dedupe index, a slice of the key space at a time. Larger
    /// values make appends cheaper on a big store (each index page rewritten
    /// absorbs more keys) but cost ~70 bytes of memory per entry and make
    /// `open` scan that many log entries to rebuild them. Must be >= 1.
    pub dedupe_buffer_entries: usize,
    /// Size of the in-memory filter that lets most new message ids skip the
    /// on-disk dedupe lookup. Fixed at open (it does not grow): about 2
    /// bytes per key in the dedupe window keeps false positives under 1%;
    /// beyond that lookups degrade gradually towards one index read per
    /// event. 0 disables the filter.
    pub dedupe_filter_bytes: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            dedupe_window_ms: DEFAULT_DEDUPE_WINDOW_MS,
            cache_bytes: 64 << 20,
            dedupe_buffer_entries: DEFAULT_DEDUPE_BUFFER_ENTRIES,
            dedupe_filter_bytes: DEFAULT_DEDUPE_FILTER_BYTES,
        }
    }
}

/// The embedded store: implements [`EventLog`](crate::EventLog),
/// [`StateStore`](crate::StateStore), [`Catalog`](crate::Catalog) and [`Lease`]
/// over one redb file. Cheap to share behind an `Arc`; redb serialises write
/// transactions internally, so concurrent callers are safe.
pub struct EmbeddedStore {
    // Field order matters: the database must be closed before the directory
    // lock is released (fields drop in declaration order).
    db: Database,
    /// In-memory dedupe state of the event log (`dedupe.rs`); also
    /// serialises appends and prunes, which redb would serialise anyway.
    log_state: Mutex<LogState>,
    opts: StoreOptions,
    dir: PathBuf,
    _lock: File,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("dir", &self.dir)
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Open (creating if needed) the store in `dir`.
    ///
    /// Takes an exclusive advisory lock on `dir/LOCK` first; if another owner
    /// holds it, fails with [`StoreError::Locked`]. The lock is held until the
    /// store is dropped (the OS also releases it if the process dies).
    pub fn open(dir: &Path, opts: StoreOptions) -> Result<Self> {
        if opts.dedupe_window_ms < 0 {
            return Err(StoreError::InvalidInput(format!(
                "dedupe_window_ms must be >= 0, got {}",
                opts.dedupe_window_ms
            )));
        }
        if opts.dedupe_buffer_entries == 0 {
            return Err(StoreError::InvalidInput(
                "dedupe_buffer_entries must be >= 1".to_owned(),
            ));
        }
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| StoreError::io(&lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(StoreError::Locked {
                    path: dir.to_path_buf(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(StoreError::io(&lock_path, e)),
        }

        let db_path = dir.join(DB_FILE);
        let db = redb::Builder::new()
            .set_cache_size(opts.cache_bytes)
            .create(&db_path)
            .map_err(|e| match e {
                // Only reachable if something bypassed our LOCK file.
                redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked {
                    path: dir.to_path_buf(),
                },
                other => other.into(),
            })?;
        let mut store = EmbeddedStore {
            db,
            log_state: Mutex::new(LogState::empty(&opts)),
            opts,
            dir: dir.to_path_buf(),
            _lock: lock,
        };
        store.init_schema()?;
        let state = store.load_log_state()?;
        *store
            .log_state
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = state;
        tracing::info!(dir = %dir.display(), "opened embedded store");
        Ok(store)
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &StoreOptions {
        &self.opts
    }

    /// Create every table up front so read transactions never see
    /// `TableDoesNotExist`, and check the layout version.
    fn init_schema(&self) -> Result<()> {
        let txn = self.write_txn()?;
        {
            let mut meta = txn.open_table(META)?;
            let version = meta.get(META_SCHEMA_VERSION)?.map(|g| g.value());
            match version {
                None => {
                    meta.insert(META_SCHEMA_VERSION, SCHEMA_VERSION)?;
                }
                Some(SCHEMA_VERSION) => {}
                Some(other) => {
                    // Dropping `txn` uncommitted leaves the file untouched.
                    return Err(StoreError::Corrupt(format!(
                        "store at {} has schema version {other}, this build understands only \
                         {SCHEMA_VERSION} (there is no migration: the layout changed before the \
                         first release; move the data directory away to start a fresh store)",
                        self.dir.display()
                    )));
                }
            }
            txn.open_table(LOG)?;
            txn.open_table(DEDUPE)?;
            txn.open_table(DEDUPE_FLUSHED)?;
            txn.open_table(DEDUPE_RUNS)?;
            txn.open_table(CHECKPOINTS)?;
            txn.open_table(DIRECTORY)?;
            txn.open_table(CHANGES)?;
            txn.open_table(CHANGE_HEADS)?;
            txn.open_table(TENANTS)?;
            txn.open_table(API_KEYS)?;
            txn.open_table(SEGMENTS)?;
            txn.open_table(SEGMENT_REVISIONS)?;
            txn.open_table(CONTENT)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// A write transaction that fsyncs on commit. Dropping it without
    /// committing rolls everything back, which is how every error path
    /// guarantees "nothing written".
    pub(crate) fn write_txn(&self) -> Result<WriteTransaction> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate);
        Ok(txn)
    }

    pub(crate) fn read_txn(&self) -> Result<ReadTransaction> {
        Ok(self.db.begin_read()?)
    }
}

impl Lease for EmbeddedStore {
    /// Always 1: the embedded store has exactly one owner for its lifetime.
    fn epoch(&self) -> u64 {
        1
    }

    /// Always true: holding an open `EmbeddedStore` means holding the OS lock.
    fn is_held(&self) -> bool {
        true
    }
}

/// `n + 1`, or an error instead of wrapping (unreachable in practice).
pub(crate) fn next_counter(n: u64, what: &str) -> Result<u64> {
    n.checked_add(1)
        .ok_or_else(|| StoreError::Internal(format!("{what} counter overflowed u64")))
}
