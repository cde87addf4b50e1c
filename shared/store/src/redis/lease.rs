//! Shard leases: acquire, renew and release, each one script, each with a
//! fencing epoch that only ever grows (`seg:{sN}:epoch` is never deleted).
//! That holds while Redis keeps its writes (`appendfsync always`, no
//! failover); a Redis that lost data can hand an epoch out again, which is
//! why members quarantine new acquisitions after a Redis restart
//! (`liveseg_cluster::member`).
//!
//! The TTL here is Redis's (wall clock, not monotonic). Owners therefore
//! keep their own, earlier, monotonic deadline and stop serving before Redis
//! could give the lease away; the epoch check inside every write makes a
//! late owner harmless even if that margin fails.

use super::RedisStore;
use super::keys;
use super::scripts;
use crate::error::{Result, StoreError};
use std::sync::LazyLock;

static ACQUIRE: LazyLock<::redis::Script> =
    LazyLock::new(|| ::redis::Script::new(scripts::ACQUIRE));
static RELEASE: LazyLock<::redis::Script> =
    LazyLock::new(|| ::redis::Script::new(scripts::RELEASE));

/// What an acquire or renew did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseOutcome {
    /// Newly acquired under this (higher than any before) epoch.
    Acquired {
        /// The fencing epoch.
        epoch: u64,
    },
    /// Still held; the TTL was extended.
    Renewed {
        /// The fencing epoch (unchanged).
        epoch: u64,
    },
    /// Another node holds it for about this many more milliseconds.
    HeldByOther {
        /// Remaining TTL in Redis.
        pttl_ms: i64,
    },
    /// The caller's lease had expired (or was taken): it must stop serving.
    Lost,
}

/// Lease operations over one Redis.
#[derive(Clone)]
pub struct ShardLeases {
    redis: RedisStore,
}

impl ShardLeases {
    pub(crate) fn new(redis: RedisStore) -> Self {
        ShardLeases { redis }
    }

    /// Acquires a free lease (`held_epoch == None`) or renews the caller's
    /// (`Some(epoch)`), with `ttl_ms` from now in Redis.
    pub fn acquire(
        &self,
        shard: u32,
        node: &str,
        ttl_ms: u64,
        held_epoch: Option<u64>,
    ) -> Result<LeaseOutcome> {
        self.acquire_at(&keys::shard(shard), node, ttl_ms, held_epoch)
    }

    /// [`acquire`](Self::acquire) for any lease whose `lease` and `epoch`
    /// keys share `prefix` (the coordinator leader uses `seg:{coord}:`).
    pub fn acquire_at(
        &self,
        prefix: &str,
        node: &str,
        ttl_ms: u64,
        held_epoch: Option<u64>,
    ) -> Result<LeaseOutcome> {
        if node.is_empty() || node.contains('#') {
            return Err(StoreError::InvalidInput(format!(
                "node id {node:?} must be non-empty and contain no '#'"
            )));
        }
        let (code, value): (i64, i64) = self.redis.with_conn(|c| {
            ACQUIRE
                .key(format!("{prefix}lease"))
                .key(format!("{prefix}epoch"))
                .arg(node)
                .arg(ttl_ms.max(1))
                .arg(held_epoch.unwrap_or(0))
                .invoke(c)
        })?;
        Ok(match code {
            1 => LeaseOutcome::Acquired {
                epoch: value as u64,
            },
            2 => LeaseOutcome::Renewed {
                epoch: value as u64,
            },
            0 => LeaseOutcome::HeldByOther { pttl_ms: value },
            _ => LeaseOutcome::Lost,
        })
    }

    /// Releases the lease if it is still `node#epoch`; returns whether it was.
    pub fn release(&self, shard: u32, node: &str, epoch: u64) -> Result<bool> {
        self.release_at(&keys::shard(shard), node, epoch)
    }

    /// [`release`](Self::release) for the lease under `prefix`.
    pub fn release_at(&self, prefix: &str, node: &str, epoch: u64) -> Result<bool> {
        let released: i64 = self.redis.with_conn(|c| {
            RELEASE
                .key(format!("{prefix}lease"))
                .arg(format!("{node}#{epoch}"))
                .invoke(c)
        })?;
        Ok(released == 1)
    }

    /// The current lease value `node#epoch`, if any.
    pub fn holder(&self, shard: u32) -> Result<Option<String>> {
        let p = keys::shard(shard);
        self.redis
            .with_conn(|c| ::redis::cmd("GET").arg(format!("{p}lease")).query(c))
    }

    /// The last epoch handed out for the shard (0 if never acquired).
    pub fn last_epoch(&self, shard: u32) -> Result<u64> {
        let p = keys::shard(shard);
        let e: Option<u64> = self
            .redis
            .with_conn(|c| ::redis::cmd("GET").arg(format!("{p}epoch")).query(c))?;
        Ok(e.unwrap_or(0))
    }
}
