//! The crate's error type.

use std::path::PathBuf;
use std::sync::Arc;

use crate::traits::Seq;

/// Result alias used throughout the store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Everything that can go wrong in the store.
///
/// The type is `Clone` (underlying I/O and backend errors are behind `Arc`)
/// because the [`GroupCommitter`](crate::GroupCommitter) has to hand the same
/// failure to every request that shared the failed transaction.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another process (or another handle in this process) already owns the
    /// data directory. Two owners would both assign sequence numbers and
    /// corrupt the log's ordering guarantees, so the second open is refused.
    #[error(
        "store directory {} is locked by another owner (is another liveseg process running on it?)",
        path.display()
    )]
    Locked {
        /// The data directory that is locked.
        path: PathBuf,
    },

    /// A filesystem operation on the data directory failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory being accessed.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: Arc<std::io::Error>,
    },

    /// The storage engine reported an error; the transaction was rolled back.
    #[error("storage backend error: {0}")]
    Backend(#[source] Arc<redb::Error>),

    /// A checkpoint would move an account's `applied_seq` backwards. This is the
    /// embedded analogue of a fencing-epoch failure: a writer working from an
    /// older view must not overwrite newer state. The whole batch was rejected.
    #[error(
        "stale checkpoint for tenant {tenant:?} account {account:?}: applied_seq {presented} \
         is lower than the stored {stored}; the whole commit batch was rejected"
    )]
    StaleCheckpoint {
        /// Tenant of the rejected checkpoint.
        tenant: String,
        /// Account of the rejected checkpoint.
        account: String,
        /// `applied_seq` currently stored.
        stored: Seq,
        /// `applied_seq` that was presented.
        presented: Seq,
    },

    /// The object to create already exists.
    #[error("{kind} {id:?} already exists")]
    AlreadyExists {
        /// What kind of object (e.g. "tenant").
        kind: &'static str,
        /// Its identifier.
        id: String,
    },

    /// A referenced object does not exist.
    #[error("{kind} {id:?} not found")]
    NotFound {
        /// What kind of object (e.g. "tenant").
        kind: &'static str,
        /// Its identifier.
        id: String,
    },

    /// The caller passed an argument the store cannot accept.
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// The group-commit queue is full. Callers should surface this as
    /// `RESOURCE_EXHAUSTED` so clients back off instead of queueing unboundedly.
    #[error("store overloaded: the commit queue is full, retry later")]
    Overloaded,

    /// The group committer has been shut down (or its thread died), so the
    /// request was not, and will not be, written.
    #[error("group committer is shut down; the request was not written")]
    Closed,

    /// Data read back from disk does not have the expected shape.
    #[error("corrupt store data: {0}")]
    Corrupt(String),

    /// Redis could not be reached or answered with an error. The write may
    /// or may not have happened; every Redis write of this crate is safe to
    /// re-send, so callers retry or report the outcome as indeterminate.
    #[error("redis error: {0}")]
    Redis(#[source] Arc<redis::RedisError>),

    /// A write was fenced off: the shard's lease in Redis is not held by this
    /// writer under this epoch (another node took the shard over, or the
    /// lease expired). Nothing was written; the writer must stop serving the
    /// shard and reload it if it acquires the lease again.
    #[error("stale owner of shard {shard}: presented {presented:?}, lease is {current:?}")]
    Fenced {
        /// Shard whose lease was checked.
        shard: u32,
        /// `node#epoch` the writer presented.
        presented: String,
        /// The lease value in Redis (empty if none).
        current: String,
    },

    /// A broken internal invariant (a bug), reported instead of panicking.
    #[error("internal store error: {0}")]
    Internal(String),
}

impl StoreError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.into(),
            source: Arc::new(source),
        }
    }

    /// Whether Redis may accept the same write later: it was unreachable,
    /// timed out, dropped the connection, was loading its dataset, was busy
    /// with a long script, or lacked the replicas it requires. A refusal it
    /// would repeat (out of memory, a failing disk, a script error) is not,
    /// and neither is any other error.
    pub fn is_transient_redis(&self) -> bool {
        match self {
            StoreError::Redis(r) => {
                r.is_io_error()
                    || r.is_timeout()
                    || r.is_connection_dropped()
                    || r.is_connection_refusal()
                    || matches!(r.retry_method(), redis::RetryMethod::WaitAndRetry)
                    || matches!(r.code(), Some("BUSY" | "NOREPLICAS"))
            }
            _ => false,
        }
    }
}

impl From<redis::RedisError> for StoreError {
    fn from(e: redis::RedisError) -> Self {
        StoreError::Redis(Arc::new(e))
    }
}

impl From<redb::Error> for StoreError {
    fn from(e: redb::Error) -> Self {
        StoreError::Backend(Arc::new(e))
    }
}

/// redb has one error type per operation; all of them convert into
/// `redb::Error`, which is what we keep.
macro_rules! from_redb {
    ($($t:ty),* $(,)?) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Backend(Arc::new(redb::Error::from(e)))
            }
        }
    )*};
}

from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
);
