//! The Redis cluster backend.
//!
//! # Key schema
//!
//! Every per-shard key carries the shard's hash tag `{sN}`, so all keys one
//! script touches hash to one slot and the scripts run on Redis Cluster too.
//! Tenant-scoped fields and keys embed the tenant as `<len>:<tenant>`, a
//! length prefix, so no tenant, account or contact id can alias another's.
//!
//! | key | type | written by |
//! |---|---|---|
//! | `seg:{sN}:seq` | int: last assigned seq | `INGEST` |
//! | `seg:{sN}:ev` | stream, ids `<seq>-0`: the shard's event log | `INGEST` |
//! | `seg:{sN}:dd:<bucket>` | hash `<len>:<tenant><message id>` → seq, expires (`dedupe.rs`) | `INGEST` |
//! | `seg:{sN}:ddmeta` | hash: `legacy_until` (per-id dedupe keys of the older layout) | `INGEST` |
//! | `seg:{sN}:d:<len>:<tenant><message id>` | older layout: dedupe key → seq, `PX window`; read, not written | `INGEST` |
//! | `seg:{sN}:epoch` | int: fencing epoch source, never deleted | `ACQUIRE` |
//! | `seg:{sN}:lease` | `node#epoch`, `PX ttl` | `ACQUIRE` / `RELEASE` |
//! | `seg:{sN}:aseq` / `seg:{sN}:astate` | hash account → applied seq / state | `COMMIT` |
//! | `seg:{sN}:ckpt` | hash: watermark, last commit id and result, owner | `COMMIT` |
//! | `seg:{sN}:chead` | hash tenant → last change cursor | `COMMIT` |
//! | `seg:{sN}:dir:<len>:<tenant>` | hash contact → account | `COMMIT` |
//! | `seg:{sN}:ch:<len>:<tenant>` | stream, ids `<cursor>-0`: membership changes | `COMMIT` |
//! | `seg:{cat}:tenants` / `:keys` / `:segs:<t>` / `:segrev:<t>` | catalog | catalog scripts |
//!
//! Which keys a tenant's data lives under is decided by the caller (the
//! cluster crate maps tenants to shards); this module only needs a shard
//! number.

mod catalog;
mod dedupe;
mod lease;
mod process;
mod scripts;
mod shard;

#[cfg(test)]
mod dedupe_tests;
#[cfg(test)]
mod tests;

pub use lease::{LeaseOutcome, ShardLeases};
pub use process::{Fsync, RedisProcess};
pub use shard::ShardStore;

use crate::error::Result;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Connection settings for the Redis backend.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// `redis://host:port/` of the primary.
    pub url: String,
    /// How long a message id is remembered: a retry with the same id within
    /// this window is answered `Duplicate` (the client idempotency contract;
    /// Redis may remember it up to 1.5 windows, see `dedupe.rs`).
    pub dedupe_window_ms: u64,
    /// Per-command socket timeout. A blocked Redis (or one paused by a fault
    /// test) surfaces as an error instead of a hung caller.
    pub io_timeout: Duration,
    /// Which clock the dedupe window is measured on.
    pub dedupe_clock: DedupeClock,
}

/// The clock of the dedupe window in Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DedupeClock {
    /// Redis's own (`TIME`), as the per-id key TTLs of the older layout
    /// were: the window does not depend on the nodes' clocks, which may be
    /// manual or skewed. The default.
    Server,
    /// The `now_ms` callers pass to `append`, for tests that move time.
    Caller,
}

impl RedisOptions {
    /// Defaults for `url`: 7-day dedupe window (as standalone), 2 s timeout.
    pub fn new(url: impl Into<String>) -> Self {
        RedisOptions {
            url: url.into(),
            dedupe_window_ms: 7 * 24 * 60 * 60 * 1000,
            io_timeout: Duration::from_secs(2),
            dedupe_clock: DedupeClock::Server,
        }
    }
}

/// A handle on one Redis primary: a small pool of synchronous connections
/// shared by the shard stores, leases and catalog of one process.
///
/// Synchronous on purpose: the storage traits are synchronous (callers run
/// them on blocking threads), and a blocking `XREAD` needs its own
/// connection anyway.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: ::redis::Client,
    options: RedisOptions,
    idle: Mutex<Vec<::redis::Connection>>,
    legacy_dedupe: dedupe::LegacyWindow,
    server_clock: dedupe::ServerClock,
}

/// Connections kept idle in the pool; more are opened under load and closed.
const MAX_IDLE: usize = 16;

impl RedisStore {
    /// Connects (and checks the connection with a `PING`).
    pub fn connect(options: RedisOptions) -> Result<Self> {
        let client = ::redis::Client::open(options.url.as_str())?;
        let store = RedisStore {
            inner: Arc::new(Inner {
                client,
                options,
                idle: Mutex::new(Vec::new()),
                legacy_dedupe: dedupe::LegacyWindow::default(),
                server_clock: dedupe::ServerClock::default(),
            }),
        };
        store.with_conn(|c| ::redis::cmd("PING").query::<String>(c))?;
        Ok(store)
    }

    /// The options this store was opened with.
    pub fn options(&self) -> &RedisOptions {
        &self.inner.options
    }

    /// Per shard, whether ingest must still send per-id dedupe key names.
    pub(crate) fn legacy_dedupe(&self) -> &dedupe::LegacyWindow {
        &self.inner.legacy_dedupe
    }

    /// The dedupe clock's time for an append the caller made at `caller_ms`.
    pub(crate) fn dedupe_now_ms(&self, caller_ms: i64) -> Result<i64> {
        match self.inner.options.dedupe_clock {
            DedupeClock::Caller => Ok(caller_ms),
            DedupeClock::Server => self
                .inner
                .server_clock
                .now_ms(|| self.with_conn(|c| ::redis::cmd("TIME").query::<(i64, i64)>(c))),
        }
    }

    /// Runs `f` on a pooled connection. A connection that saw an error is
    /// dropped rather than returned: after a timeout its reply stream may
    /// be out of step with its requests.
    pub fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut ::redis::Connection) -> ::redis::RedisResult<T>,
    ) -> Result<T> {
        let pooled = self
            .inner
            .idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop();
        let mut conn = match pooled {
            Some(c) => c,
            None => self.open(self.inner.options.io_timeout)?,
        };
        let out = f(&mut conn)?;
        let mut idle = self.inner.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
        Ok(out)
    }

    /// A dedicated connection (not pooled), e.g. for blocking reads whose
    /// timeout must exceed the `BLOCK` time.
    pub fn open(&self, timeout: Duration) -> Result<::redis::Connection> {
        let conn = self
            .inner
            .client
            .get_connection_with_timeout(self.inner.options.io_timeout)?;
        conn.set_read_timeout(Some(timeout))?;
        conn.set_write_timeout(Some(timeout))?;
        Ok(conn)
    }

    /// The store of one shard, writing under `node#epoch` of `lease`.
    pub fn shard(&self, shard: u32, fence: Fence) -> ShardStore {
        ShardStore::new(self.clone(), shard, fence)
    }

    /// The shared catalog (tenants, API keys, segment definitions).
    pub fn catalog(&self) -> catalog::RedisCatalog {
        catalog::RedisCatalog::new(self.clone())
    }

    /// Lease operations on shard leases.
    pub fn leases(&self) -> ShardLeases {
        ShardLeases::new(self.clone())
    }

    /// Redis's `run_id`: changes when the server restarts, which the cluster
    /// treats as a reason to re-verify every lease.
    /// Whether Redis acknowledges a write only once it is on disk (AOF on,
    /// `appendfsync always`), so that a restart forgets nothing it
    /// acknowledged. False when that cannot be read (CONFIG disabled).
    pub fn durable_writes(&self) -> Result<bool> {
        let get = |name: &str| -> Result<String> {
            let pair: Vec<String> =
                self.with_conn(|c| ::redis::cmd("CONFIG").arg("GET").arg(name).query(c))?;
            Ok(pair.get(1).cloned().unwrap_or_default())
        };
        Ok(get("appendonly")? == "yes" && get("appendfsync")? == "always")
    }

    pub fn run_id(&self) -> Result<String> {
        let info: String = self.with_conn(|c| ::redis::cmd("INFO").arg("server").query(c))?;
        Ok(info
            .lines()
            .find_map(|l| l.strip_prefix("run_id:"))
            .unwrap_or_default()
            .trim()
            .to_owned())
    }
}

pub use catalog::RedisCatalog;

/// The write credential of a shard store: the owner and epoch its writes
/// are fenced with, plus a local validity check (the owner's monotonic lease
/// deadline), so a writer that already knows it lost the lease does not
/// even send.
#[derive(Clone)]
pub struct Fence {
    /// `node#epoch`, exactly as the lease value in Redis.
    pub token: String,
    /// Whether the owner still believes it holds the lease.
    pub valid: Arc<dyn Fn() -> bool + Send + Sync>,
}

impl Fence {
    /// The node part of the token.
    pub fn node(&self) -> &str {
        self.token
            .rsplit_once('#')
            .map_or(&self.token, |(node, _)| node)
    }

    /// A fence for `node` at `epoch` checked only in Redis.
    pub fn new(node: &str, epoch: u64) -> Self {
        Fence {
            token: format!("{node}#{epoch}"),
            valid: Arc::new(|| true),
        }
    }
}

/// Key names (see the module docs).
pub mod keys {
    /// `seg:{sN}:` prefix of a shard's keys.
    pub fn shard(shard: u32) -> String {
        format!("seg:{{s{shard}}}:")
    }

    /// `<len>:<tenant><rest>`: a tenant-scoped field that cannot alias.
    pub fn scoped(tenant: &str, rest: &str) -> String {
        format!("{}:{tenant}{rest}", tenant.len())
    }

    /// Splits a field made by [`scoped`] into (tenant, rest).
    pub fn unscope(field: &str) -> Option<(&str, &str)> {
        let (len, tail) = field.split_once(':')?;
        let len: usize = len.parse().ok()?;
        if !tail.is_char_boundary(len.min(tail.len())) || tail.len() < len {
            return None;
        }
        Some(tail.split_at(len))
    }

    /// Prefix of the catalog's keys.
    pub const CATALOG: &str = "seg:{cat}:";

    /// Prefix of the coordinator's keys (leader lease, membership,
    /// assignment table).
    pub const COORDINATOR: &str = "seg:{coord}:";
}
