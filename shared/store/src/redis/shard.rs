//! One shard's event log and state in Redis: [`EventLog`] over the shard's
//! stream and [`StateStore`] whose every commit is fenced by the lease.
//!
//! Contract differences from the embedded store, both consequences of
//! talking to a server over a network:
//! - `append` writes in chunks of [`APPEND_CHUNK`] items, one script each
//!   (so no script blocks Redis for long). An `Err` therefore means
//!   *indeterminate*: some chunks may be written. Re-sending the same batch
//!   is always safe; written items come back `Duplicate` with their seq.
//! - Dedupe entries live in time buckets that Redis expires (`dedupe.rs`):
//!   a duplicate is caught for at least the window, measured on Redis's
//!   clock (`now_ms` is not used unless `DedupeClock::Caller`), and at most
//!   1.5 windows; `prune_dedupe` has nothing to do.

use super::keys::{self, scoped, unscope};
use super::{Fence, RedisStore};
use super::{dedupe, scripts};
use crate::error::{Result, StoreError};
use crate::traits::{
    AppendItem, AppendOutcome, CheckpointImage, CommitBatch, EventLog, LogEntry, Seq, StateStore,
};
use std::collections::HashMap;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

static INGEST: LazyLock<::redis::Script> = LazyLock::new(|| ::redis::Script::new(scripts::INGEST));
static COMMIT: LazyLock<::redis::Script> = LazyLock::new(|| ::redis::Script::new(scripts::COMMIT));

/// Items per ingest script call.
pub const APPEND_CHUNK: usize = 256;

/// Back-off between re-sends of one commit while Redis is unreachable or
/// still loading its data set after a restart. Re-sends continue for as long
/// as the owner's lease deadline allows (same commit id each time, so a
/// commit that did land is not applied twice): failing the commit instead
/// would fail the whole runtime and reload the shard once Redis is back.
const COMMIT_BACKOFF_MIN: std::time::Duration = std::time::Duration::from_millis(10);
const COMMIT_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_millis(200);

/// The store of one shard under one ownership (fence). The fence can be
/// replaced by the next epoch of the same owner ([`ShardStore::renew_fence`]):
/// a shard whose lease lapsed while Redis was away is resumed, not reloaded.
pub struct ShardStore {
    redis: RedisStore,
    shard: u32,
    prefix: String,
    fence: std::sync::RwLock<Fence>,
    commits: AtomicU64,
}

/// `(stream id, [field, value, ...])` as XRANGE/XREAD return entries.
type RawEntry = (String, Vec<Vec<u8>>);

impl ShardStore {
    pub(crate) fn new(redis: RedisStore, shard: u32, fence: Fence) -> Self {
        ShardStore {
            prefix: keys::shard(shard),
            redis,
            shard,
            fence: std::sync::RwLock::new(fence),
            commits: AtomicU64::new(0),
        }
    }

    /// The fence writes go out under now.
    pub fn fence(&self) -> Fence {
        self.fence.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether the owner still believes it holds the lease of the current fence.
    pub fn fence_valid(&self) -> bool {
        (self.fence().valid)()
    }

    /// Writes go out under `next` from now on. The caller has established
    /// that nobody else held the shard since the current fence (the next
    /// epoch of the same node), so what this store's owner holds in memory
    /// is still the shard's state.
    pub fn renew_fence(&self, next: Fence) {
        *self.fence.write().unwrap_or_else(|p| p.into_inner()) = next;
    }

    /// How many commits Redis has accepted for this shard, from anyone:
    /// equal readings before and after something prove nobody wrote the
    /// shard's state (checkpoints, directory, change log) in between.
    pub fn commit_count(&self) -> Result<u64> {
        let v: Option<u64> = self.redis.with_conn(|c| {
            ::redis::cmd("HGET")
                .arg(self.key("ckpt"))
                .arg("commits")
                .query(c)
        })?;
        Ok(v.unwrap_or(0))
    }

    /// The shard number.
    pub fn shard(&self) -> u32 {
        self.shard
    }

    /// The `node#epoch` this store writes under.
    pub fn token(&self) -> String {
        self.fence().token
    }

    fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    fn dir_key(&self, tenant: &str) -> String {
        self.key(&format!("dir:{}", scoped(tenant, "")))
    }

    fn changes_key(&self, tenant: &str) -> String {
        self.key(&format!("ch:{}", scoped(tenant, "")))
    }

    /// Waits up to `block_ms` for entries after `after` on a dedicated
    /// connection (its read timeout must exceed `block_ms`). This is how an
    /// owner tails its shard: new events are pushed to it by Redis.
    pub fn read_blocking(
        &self,
        conn: &mut ::redis::Connection,
        after: Seq,
        limit: usize,
        block_ms: u64,
    ) -> Result<Vec<LogEntry>> {
        let reply: Option<Vec<(String, Vec<RawEntry>)>> = ::redis::cmd("XREAD")
            .arg("COUNT")
            .arg(limit.max(1))
            .arg("BLOCK")
            .arg(block_ms)
            .arg("STREAMS")
            .arg(self.key("ev"))
            .arg(format!("{after}-0"))
            .query(conn)?;
        let entries = reply
            .into_iter()
            .flatten()
            .flat_map(|(_, entries)| entries)
            .collect();
        decode_events(entries)
    }

    /// The fenced commit under an explicit commit id. Re-sending the same id
    /// (as after a lost reply) returns the first result and writes nothing.
    pub fn commit_as(&self, batch: &CommitBatch, commit_id: &str) -> Result<Vec<u64>> {
        self.commit_under(&self.fence(), batch, commit_id)
    }

    /// [`commit_as`](Self::commit_as) under one fence, read once: a commit
    /// and its re-sends never mix two epochs.
    fn commit_under(
        &self,
        fence: &Fence,
        batch: &CommitBatch,
        commit_id: &str,
    ) -> Result<Vec<u64>> {
        let mut inv = COMMIT.prepare_invoke();
        inv.key(self.key("lease"))
            .key(self.key("aseq"))
            .key(self.key("astate"))
            .key(self.key("ckpt"))
            .key(self.key("chead"));
        // Per-tenant keys get KEYS indexes from 6 on.
        let mut tenant_keys: HashMap<String, usize> = HashMap::new();
        let mut key_index = |k: String, inv: &mut ::redis::ScriptInvocation| -> usize {
            let next = 6 + tenant_keys.len();
            *tenant_keys.entry(k.clone()).or_insert_with(|| {
                inv.key(k);
                next
            })
        };
        let mut args: Vec<Vec<u8>> = Vec::new();
        for cp in &batch.checkpoints {
            args.push(scoped(&cp.tenant, &cp.account).into_bytes());
            args.push(cp.applied_seq.to_string().into_bytes());
            args.push(if cp.state.is_some() {
                b"1".to_vec()
            } else {
                b"0".to_vec()
            });
            args.push(cp.state.clone().unwrap_or_default());
        }
        for d in &batch.directory {
            let idx = key_index(self.dir_key(&d.tenant), &mut inv);
            args.push(idx.to_string().into_bytes());
            args.push(d.contact.clone().into_bytes());
            args.push(if d.account.is_some() {
                b"1".to_vec()
            } else {
                b"0".to_vec()
            });
            args.push(d.account.clone().unwrap_or_default().into_bytes());
        }
        for ch in &batch.changes {
            let idx = key_index(self.changes_key(&ch.tenant), &mut inv);
            args.push(idx.to_string().into_bytes());
            args.push(scoped(&ch.tenant, "").into_bytes());
            args.push(ch.payload.clone());
        }
        inv.arg(&fence.token)
            .arg(commit_id)
            .arg(batch.watermark.map(|w| w.to_string()).unwrap_or_default())
            .arg(batch.checkpoints.len())
            .arg(batch.directory.len())
            .arg(batch.changes.len());
        for a in &args {
            inv.arg(a.as_slice());
        }
        let mut attempt = 0;
        let mut backoff = COMMIT_BACKOFF_MIN;
        let reply: Vec<String> = loop {
            attempt += 1;
            match self.redis.with_conn(|c| inv.invoke(c)) {
                Ok(r) => break r,
                // Re-send only while the owner still believes in its lease,
                // and only failures that say nothing about the commit itself
                // (`is_transient_redis`): the commit id makes re-sending safe.
                Err(e) if e.is_transient_redis() && (fence.valid)() => {
                    if attempt == 1 || attempt % 10 == 0 {
                        tracing::warn!(shard = self.shard, attempt, error = %e, "commit re-sent");
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(COMMIT_BACKOFF_MAX);
                }
                Err(e) => return Err(e),
            }
        };
        match reply.first().map(String::as_str) {
            Some("OK" | "DONE") => reply
                .get(1)
                .map(String::as_str)
                .unwrap_or_default()
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.parse()
                        .map_err(|_| StoreError::Corrupt(format!("change cursor {s:?}")))
                })
                .collect(),
            Some("STALE") => Err(StoreError::Fenced {
                shard: self.shard,
                presented: fence.token.clone(),
                current: reply.get(1).cloned().unwrap_or_default(),
            }),
            Some("STALE_CKPT") => {
                let i: usize = reply.get(1).and_then(|s| s.parse().ok()).unwrap_or(0);
                let stored = reply.get(2).and_then(|s| s.parse().ok()).unwrap_or(0);
                let cp = batch.checkpoints.get(i);
                Err(StoreError::StaleCheckpoint {
                    tenant: cp.map(|c| c.tenant.clone()).unwrap_or_default(),
                    account: cp.map(|c| c.account.clone()).unwrap_or_default(),
                    stored,
                    presented: cp.map_or(0, |c| c.applied_seq),
                })
            }
            other => Err(StoreError::Internal(format!(
                "commit script answered {other:?}"
            ))),
        }
    }
}

fn decode_events(raw: Vec<RawEntry>) -> Result<Vec<LogEntry>> {
    raw.into_iter()
        .map(|(id, fields)| {
            let seq = stream_seq(&id)?;
            let mut tenant = None;
            let mut payload = None;
            let mut it = fields.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                match k.as_slice() {
                    b"t" => tenant = Some(v),
                    b"p" => payload = Some(v),
                    _ => {}
                }
            }
            let tenant = tenant
                .and_then(|t| String::from_utf8(t).ok())
                .ok_or_else(|| StoreError::Corrupt(format!("stream entry {id}: no tenant")))?;
            let payload = payload
                .ok_or_else(|| StoreError::Corrupt(format!("stream entry {id}: no payload")))?;
            Ok(LogEntry {
                seq,
                tenant,
                payload,
            })
        })
        .collect()
}

/// `"<seq>-0"` → seq.
fn stream_seq(id: &str) -> Result<Seq> {
    id.split_once('-')
        .and_then(|(ms, _)| ms.parse().ok())
        .ok_or_else(|| StoreError::Corrupt(format!("unexpected stream id {id:?}")))
}

impl EventLog for ShardStore {
    fn append(&self, items: &[AppendItem], now_ms: i64) -> Result<Vec<AppendOutcome>> {
        let window = self.redis.options().dedupe_window_ms;
        let now_ms = self.redis.dedupe_now_ms(now_ms)?;
        let buckets: Vec<String> = dedupe::buckets(now_ms, window)
            .into_iter()
            .map(|b| self.key(&format!("dd:{b}")))
            .collect();
        let ttl = dedupe::written_ttl_ms(now_ms, window);
        let mut out = Vec::with_capacity(items.len());
        for chunk in items.chunks(APPEND_CHUNK) {
            let fields: Vec<String> = chunk
                .iter()
                .map(|it| scoped(&it.tenant, &it.message_id))
                .collect();
            let mut legacy = self.redis.legacy_dedupe().needed(self.shard, now_ms);
            let replies = loop {
                let mut inv = INGEST.prepare_invoke();
                inv.key(self.key("seq"))
                    .key(self.key("ev"))
                    .key(self.key("ddmeta"));
                for b in &buckets {
                    inv.key(b);
                }
                if legacy {
                    for f in &fields {
                        inv.key(self.key(&format!("d:{f}")));
                    }
                }
                inv.arg(now_ms)
                    .arg(dedupe::window(window))
                    .arg(ttl)
                    .arg(buckets.len());
                for (it, f) in chunk.iter().zip(&fields) {
                    inv.arg(&it.tenant)
                        .arg(&it.message_id)
                        .arg(&it.payload)
                        .arg(f);
                }
                let reply: Vec<i64> = self.redis.with_conn(|c| inv.invoke(c))?;
                let (status, until) = match reply.as_slice() {
                    [status, until, ..] => (*status, *until),
                    _ => {
                        return Err(StoreError::Internal(format!(
                            "ingest script answered {reply:?}"
                        )));
                    }
                };
                self.redis.legacy_dedupe().learn(self.shard, until);
                match status {
                    1 => break reply,
                    // Per-id keys may still be live: send their names.
                    0 if !legacy => legacy = true,
                    _ => {
                        return Err(StoreError::Internal(format!(
                            "ingest script answered {status} with per-id key names sent"
                        )));
                    }
                }
            };
            let outcomes = &replies[2..];
            if outcomes.len() != 2 * chunk.len() {
                return Err(StoreError::Internal(format!(
                    "ingest script answered {} outcomes for {} items",
                    outcomes.len() / 2,
                    chunk.len()
                )));
            }
            out.extend(outcomes.chunks_exact(2).map(|pair| {
                let seq = pair[1] as u64;
                if pair[0] == 1 {
                    AppendOutcome::Accepted { seq }
                } else {
                    AppendOutcome::Duplicate { seq }
                }
            }));
        }
        Ok(out)
    }

    fn read_after(&self, after: Seq, limit: usize) -> Result<Vec<LogEntry>> {
        let raw: Vec<RawEntry> = self.redis.with_conn(|c| {
            ::redis::cmd("XRANGE")
                .arg(self.key("ev"))
                .arg(format!("{}-0", after + 1))
                .arg("+")
                .arg("COUNT")
                .arg(limit.max(1))
                .query(c)
        })?;
        decode_events(raw)
    }

    fn head(&self) -> Result<Seq> {
        let v: Option<Seq> = self
            .redis
            .with_conn(|c| ::redis::cmd("GET").arg(self.key("seq")).query(c))?;
        Ok(v.unwrap_or(0))
    }

    /// Bucket hashes expire by themselves.
    fn prune_dedupe(&self, _older_than_ms: i64) -> Result<usize> {
        Ok(0)
    }
}

impl StateStore for ShardStore {
    fn commit(&self, batch: &CommitBatch) -> Result<Vec<u64>> {
        let fence = self.fence();
        if !(fence.valid)() {
            return Err(StoreError::Fenced {
                shard: self.shard,
                presented: fence.token.clone(),
                current: "(local lease deadline passed; not sent)".into(),
            });
        }
        let n = self.commits.fetch_add(1, Ordering::Relaxed);
        self.commit_under(&fence, batch, &format!("{}/{n}", fence.token))
    }

    fn load_checkpoint(&self, tenant: &str, account: &str) -> Result<Option<(Seq, Vec<u8>)>> {
        let f = scoped(tenant, account);
        let (seq, state): (Option<Seq>, Option<Vec<u8>>) = self.redis.with_conn(|c| {
            ::redis::pipe()
                .atomic()
                .cmd("HGET")
                .arg(self.key("aseq"))
                .arg(&f)
                .cmd("HGET")
                .arg(self.key("astate"))
                .arg(&f)
                .query(c)
        })?;
        Ok(seq.zip(state))
    }

    fn load_checkpoints(&self, keys: &[(String, String)]) -> Result<Vec<Option<CheckpointImage>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let fields: Vec<String> = keys.iter().map(|(t, a)| scoped(t, a)).collect();
        // One atomic round trip for the whole chunk: both hashes are read at
        // the same instant, so a seq always pairs with its own state.
        type Chunk = (Vec<Option<Seq>>, Vec<Option<Vec<u8>>>);
        let (seqs, states): Chunk = self.redis.with_conn(|c| {
            ::redis::pipe()
                .atomic()
                .cmd("HMGET")
                .arg(self.key("aseq"))
                .arg(&fields)
                .cmd("HMGET")
                .arg(self.key("astate"))
                .arg(&fields)
                .query(c)
        })?;
        if seqs.len() != keys.len() || states.len() != keys.len() {
            return Err(StoreError::Corrupt(format!(
                "HMGET of {} checkpoints answered {} seqs and {} states",
                keys.len(),
                seqs.len(),
                states.len()
            )));
        }
        Ok(seqs
            .into_iter()
            .zip(states)
            .map(|(seq, state)| seq.zip(state))
            .collect())
    }

    fn checkpoint_index(&self) -> Result<Vec<(String, String, Seq)>> {
        let all: Vec<(String, Seq)> = self
            .redis
            .with_conn(|c| ::redis::cmd("HGETALL").arg(self.key("aseq")).query(c))?;
        let mut out = Vec::with_capacity(all.len());
        for (field, seq) in all {
            let (t, a) = unscope(&field)
                .ok_or_else(|| StoreError::Corrupt(format!("account field {field:?}")))?;
            out.push((t.to_owned(), a.to_owned(), seq));
        }
        out.sort();
        Ok(out)
    }

    fn directory_lookup(&self, tenant: &str, contact: &str) -> Result<Option<String>> {
        self.redis.with_conn(|c| {
            ::redis::cmd("HGET")
                .arg(self.dir_key(tenant))
                .arg(contact)
                .query(c)
        })
    }

    fn directory_all(&self, tenant: &str) -> Result<Vec<(String, String)>> {
        self.redis
            .with_conn(|c| ::redis::cmd("HGETALL").arg(self.dir_key(tenant)).query(c))
    }

    fn changes_after(&self, tenant: &str, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        let raw: Vec<RawEntry> = self.redis.with_conn(|c| {
            ::redis::cmd("XRANGE")
                .arg(self.changes_key(tenant))
                .arg(format!("{}-0", after + 1))
                .arg("+")
                .arg("COUNT")
                .arg(limit.max(1))
                .query(c)
        })?;
        raw.into_iter()
            .map(|(id, fields)| {
                let cursor = stream_seq(&id)?;
                let payload = fields
                    .into_iter()
                    .nth(1)
                    .ok_or_else(|| StoreError::Corrupt(format!("change {id}: no payload")))?;
                Ok((cursor, payload))
            })
            .collect()
    }

    fn change_head(&self, tenant: &str) -> Result<u64> {
        let v: Option<u64> = self.redis.with_conn(|c| {
            ::redis::cmd("HGET")
                .arg(self.key("chead"))
                .arg(scoped(tenant, ""))
                .query(c)
        })?;
        Ok(v.unwrap_or(0))
    }

    fn watermark(&self) -> Result<Seq> {
        let v: Option<Seq> = self.redis.with_conn(|c| {
            ::redis::cmd("HGET")
                .arg(self.key("ckpt"))
                .arg("watermark")
                .query(c)
        })?;
        Ok(v.unwrap_or(0))
    }
}
