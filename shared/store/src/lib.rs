//! Durable storage for liveseg: traits plus the embedded (standalone) backend.
//!
//! # Module map
//!
//! - [`error`] — [`StoreError`], the single error type of this crate, and the
//!   [`Result`] alias. Errors are `Clone` so one failed group commit can be
//!   reported to every request that was part of it.
//! - [`traits`] — the backend-neutral storage contracts: [`EventLog`] (the
//!   durable, deduplicated ingest log), [`StateStore`] (account checkpoints,
//!   contact directory and membership-change feed, committed atomically),
//!   [`Catalog`] (tenants, hashed API keys, segment definitions) and [`Lease`]
//!   (shard ownership). All methods are synchronous and the traits are
//!   object-safe, so callers hold `Arc<dyn EventLog>` etc. and run calls on
//!   blocking threads; a Redis backend can implement the same traits later
//!   without touching callers.
//! - [`embedded`] — [`EmbeddedStore`], the standalone backend: one redb file in
//!   a data directory, every write transaction fsync'd, an exclusive OS lock on
//!   the directory so only one process can own it. The event log is stored in
//!   multi-event chunks and deduplicated by a 128-bit hash of
//!   `(tenant, message_id)`, with recent keys in memory and the on-disk index
//!   maintained in bulk (see `embedded/dedupe.rs`).
//! - [`redis`] — the cluster backend: per-shard Redis Streams as the event
//!   log, per-shard account state written only by fenced Lua scripts that
//!   check the shard lease (holder and epoch) inside Redis, shard leases with
//!   monotonically increasing fencing epochs, the shared catalog, and
//!   [`redis::RedisProcess`] to run a real `redis-server` for tests and local
//!   clusters.
//! - [`group_commit`] — [`GroupCommitter`], an async front for
//!   [`EventLog::append`] that coalesces many concurrent small requests into
//!   one transaction (one fsync) on a dedicated thread, with bounded-queue
//!   backpressure ([`StoreError::Overloaded`]) and an in-order commit callback.
//!
//! The store is byte-oriented: payloads, checkpoint state and change records
//! are opaque bytes. It deliberately does not know the segmentation types, so
//! the encoding of those belongs to the crates that own them.

pub mod embedded;
pub mod error;
pub mod group_commit;
pub mod redis;
pub mod traits;

#[cfg(test)]
mod test_support;

pub use embedded::{EmbeddedStore, StoreOptions};
pub use error::{Result, StoreError};
pub use group_commit::{CommitCallback, GroupCommitOptions, GroupCommitter};
pub use traits::{
    AccountCheckpoint, AppendItem, AppendOutcome, Catalog, ChangeRecord, CheckpointImage,
    CommitBatch, DirectoryUpdate, EventLog, Lease, LogEntry, Seq, StateStore, Tenant,
};
