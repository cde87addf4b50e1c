//! The Lua scripts that make every cluster write atomic, fenced and safe to
//! re-send.
//!
//! Redis runs a script without interleaving other commands, so a check
//! ("is the lease still mine under this epoch?") and the writes it guards
//! happen as one step: this is the resource-side fencing check of
//! Kleppmann's argument, done in the same Redis that stores the data. Every
//! script touches only keys named in `KEYS`, all under one shard's hash tag,
//! so the scripts also run unchanged on Redis Cluster.
//!
//! Why each script is safe to re-send (a reply lost on a dropped connection
//! leaves the caller unsure whether it ran):
//! - `INGEST`: the dedupe entry of each item is written with its `XADD`; a
//!   re-send finds it and answers `Duplicate` with the original seq.
//! - `ACQUIRE`: a re-send by the new holder finds the lease held by its own
//!   node and takes a fresh epoch; epochs may skip, never repeat
//!   (unless Redis loses data; see `lease.rs`).
//! - `RELEASE`: compare-and-delete; a re-send finds nothing to delete.
//! - `COMMIT`: the last commit id and its result are stored with the
//!   writes; a re-send of the same id returns the stored result and writes
//!   nothing (change records are not appended twice).

/// Append items to a shard's stream, deduplicated by message id.
///
/// Dedupe entries are fields of per-shard time-bucket hashes (see
/// `dedupe.rs` for why and for the bucket arithmetic), so a Redis restart
/// reloads a few large hashes instead of one key with its own expiry per
/// message id.
///
/// KEYS: 1 seq counter, 2 event stream, 3 dedupe meta (hash), 4 the bucket
/// written now, 5..3+nb the other buckets of the window, then, when the
/// caller sends them, one key of the per-id layout (before buckets) per item.
/// ARGV: 1 now (ms, the caller's clock), 2 window (ms), 3 the written
/// bucket's TTL (ms), 4 nb (buckets in KEYS), then per item: tenant, message
/// id, payload, dedupe field.
/// Returns `{1, legacy_until, new, seq, new, seq, ...}` with `new` 1 for an
/// accepted item and 0 for a duplicate of `seq`, or `{0, legacy_until}`
/// (nothing written) when per-id keys may still be live and the caller did
/// not send their names. A second occurrence of a field within the batch is
/// a duplicate of the first.
pub(crate) const INGEST: &str = r#"
local now = tonumber(ARGV[1])
local nb = tonumber(ARGV[4])
local n = (#ARGV - 4) / 4
-- Per-id keys of the older layout live one window past the first ingest
-- under this one, and only on a shard that had ingested before it.
local lu = redis.call('HGET', KEYS[3], 'legacy_until')
if not lu then
  lu = 0
  if redis.call('EXISTS', KEYS[1]) == 1 then lu = now + tonumber(ARGV[2]) end
  redis.call('HSET', KEYS[3], 'legacy_until', lu)
end
lu = tonumber(lu)
local legacy = 3 + nb
if now < lu and #KEYS < legacy + n then
  return {0, lu}
end
local fields = {}
for i = 1, n do fields[i] = ARGV[4 * i + 4] end
local prior = {}
for b = 4, 3 + nb do
  local got = redis.call('HMGET', KEYS[b], unpack(fields))
  for i = 1, n do
    if not prior[i] and got[i] then prior[i] = tonumber(got[i]) end
  end
end
if now < lu then
  for i = 1, n do
    if not prior[i] then
      local v = redis.call('GET', KEYS[legacy + i])
      if v then prior[i] = tonumber(v) end
    end
  end
end
local seen = {}
local fresh = 0
for i = 1, n do
  if not prior[i] and not seen[fields[i]] then
    fresh = fresh + 1
    seen[fields[i]] = fresh
  end
end
local out = {1, lu}
if fresh == 0 then
  for i = 1, n do out[#out + 1] = 0; out[#out + 1] = prior[i] end
  return out
end
local first = redis.call('INCRBY', KEYS[1], fresh) - fresh
local writes = {}
local done = {}
for i = 1, n do
  local f = fields[i]
  if prior[i] then
    out[#out + 1] = 0; out[#out + 1] = prior[i]
  elseif done[f] then
    out[#out + 1] = 0; out[#out + 1] = done[f]
  else
    local seq = first + seen[f]
    redis.call('XADD', KEYS[2], string.format('%d-0', seq),
      't', ARGV[4 * i + 1], 'm', ARGV[4 * i + 2], 'p', ARGV[4 * i + 3])
    done[f] = seq
    writes[#writes + 1] = f
    writes[#writes + 1] = seq
    out[#out + 1] = 1; out[#out + 1] = seq
  end
end
redis.call('HSET', KEYS[4], unpack(writes))
redis.call('PEXPIRE', KEYS[4], ARGV[3])
return out
"#;

/// Acquire or renew a shard lease.
///
/// KEYS: 1 lease, 2 epoch counter. ARGV: 1 node id, 2 ttl (ms), 3 the epoch
/// the caller believes it holds ("0" to acquire a free lease).
/// Returns `{1, epoch}` acquired (a new, higher epoch), `{2, epoch}` renewed,
/// `{0, pttl}` held by another node (acquire only), `{-1, 0}` the caller's
/// lease under that epoch is gone (renew only: it must stop serving; it may
/// acquire again with "0").
pub(crate) const ACQUIRE: &str = r#"
local cur = redis.call('GET', KEYS[1])
if ARGV[3] ~= '0' then
  if cur == ARGV[1] .. '#' .. ARGV[3] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return {2, tonumber(ARGV[3])}
  end
  return {-1, 0}
end
if cur and string.sub(cur, 1, #ARGV[1] + 1) ~= ARGV[1] .. '#' then
  return {0, redis.call('PTTL', KEYS[1])}
end
-- Free, or held by this node under an epoch it no longer uses (a re-sent
-- acquire whose reply was lost, or a runner it stopped): take a fresh
-- epoch, so anything still in flight under the old one is fenced off.
local e = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. '#' .. e, 'PX', ARGV[2])
return {1, e}
"#;

/// Release a lease only if it is still `node#epoch` (compare-and-delete).
/// KEYS: 1 lease. ARGV: 1 `node#epoch`. Returns 1 if released, 0 otherwise.
pub(crate) const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"#;

/// The fenced state commit.
///
/// KEYS: 1 lease, 2 account seqs (hash), 3 account states (hash), 4 shard
/// checkpoint (hash: watermark, last commit), 5 change heads (hash),
/// 6.. per-tenant keys (directory hashes and change streams) that items
/// point at by index.
/// ARGV: 1 `node#epoch`, 2 commit id, 3 watermark ("" for none), 4 number of
/// checkpoints, 5 number of directory updates, 6 number of changes, then
/// checkpoints as (field, applied seq, has state "1"/"0", state), directory
/// updates as (key index, contact, present "1"/"0", account), changes as
/// (key index, tenant field, payload).
/// Returns `{'OK', cursors}`, `{'DONE', cursors}` for a re-sent commit id,
/// `{'STALE', lease}` when fenced off, or `{'STALE_CKPT', i, stored}` when
/// checkpoint `i` (0-based) would move an account's seq backwards. A rejected
/// commit writes nothing.
pub(crate) const COMMIT: &str = r#"
-- The commit id embeds node#epoch, so answering a re-send of a commit that
-- landed is safe even after the lease moved on (it writes nothing).
local cid = ARGV[2]
if redis.call('HGET', KEYS[4], 'commit_id') == cid then
  return {'DONE', redis.call('HGET', KEYS[4], 'commit_result') or ''}
end
local lease = redis.call('GET', KEYS[1])
if lease ~= ARGV[1] then
  -- Audit only (fault tests read it): a fenced-off writer tried.
  redis.call('HINCRBY', KEYS[4], 'fenced', 1)
  return {'STALE', lease or ''}
end
-- Audit of accepted commits: epochs must never go back. A commit under an
-- older epoch than one already accepted is a stale owner's write getting
-- through (possible only if Redis lost lease state); it is counted, and
-- the fault checker requires the count to stay 0.
local epoch = tonumber(string.match(ARGV[1], '#(%d+)$') or '0')
local max_epoch = tonumber(redis.call('HGET', KEYS[4], 'max_epoch') or '0')
if epoch < max_epoch then
  redis.call('HINCRBY', KEYS[4], 'stale_accepted', 1)
else
  redis.call('HSET', KEYS[4], 'max_epoch', epoch)
end
redis.call('HINCRBY', KEYS[4], 'commits', 1)
local ncp, ndir, nch = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local base = 7
local running = {}
for i = 0, ncp - 1 do
  local f = ARGV[base + 4 * i]
  local s = tonumber(ARGV[base + 4 * i + 1])
  local stored = running[f]
  if stored == nil then stored = tonumber(redis.call('HGET', KEYS[2], f) or '0') end
  if s < stored then
    return {'STALE_CKPT', string.format('%d', i), string.format('%d', stored)}
  end
  running[f] = s
end
for i = 0, ncp - 1 do
  local f = ARGV[base + 4 * i]
  redis.call('HSET', KEYS[2], f, ARGV[base + 4 * i + 1])
  if ARGV[base + 4 * i + 2] == '1' then
    redis.call('HSET', KEYS[3], f, ARGV[base + 4 * i + 3])
  else
    redis.call('HDEL', KEYS[3], f)
  end
end
base = base + 4 * ncp
for i = 0, ndir - 1 do
  local key = KEYS[tonumber(ARGV[base + 4 * i])]
  if ARGV[base + 4 * i + 2] == '1' then
    redis.call('HSET', key, ARGV[base + 4 * i + 1], ARGV[base + 4 * i + 3])
  else
    redis.call('HDEL', key, ARGV[base + 4 * i + 1])
  end
end
base = base + 4 * ndir
local cursors = {}
for i = 0, nch - 1 do
  local key = KEYS[tonumber(ARGV[base + 3 * i])]
  local c = redis.call('HINCRBY', KEYS[5], ARGV[base + 3 * i + 1], 1)
  redis.call('XADD', key, string.format('%d-0', c), 'p', ARGV[base + 3 * i + 2])
  cursors[#cursors + 1] = string.format('%d', c)
end
if ARGV[3] ~= '' then
  local w = tonumber(redis.call('HGET', KEYS[4], 'watermark') or '0')
  if tonumber(ARGV[3]) > w then redis.call('HSET', KEYS[4], 'watermark', ARGV[3]) end
end
local result = table.concat(cursors, ',')
redis.call('HSET', KEYS[4], 'commit_id', cid, 'commit_result', result, 'owner', ARGV[1])
return {'OK', result}
"#;

/// Create a tenant unless it exists. KEYS: 1 tenants hash. ARGV: 1 id,
/// 2 record. Returns 1 if created, 0 if it already existed.
pub(crate) const CREATE_TENANT: &str = r#"
return redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
"#;

/// Register a hashed API key. KEYS: 1 tenants hash, 2 keys hash.
/// ARGV: 1 tenant, 2 key hash. Returns 1 ok, 0 unknown tenant, -1 the key
/// belongs to another tenant.
pub(crate) const ADD_API_KEY: &str = r#"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
local owner = redis.call('HGET', KEYS[2], ARGV[2])
if owner and owner ~= ARGV[1] then return -1 end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
return 1
"#;

/// Put a segment definition with a revision that is never reused.
/// KEYS: 1 definitions hash, 2 revisions hash. ARGV: 1 key, 2 json.
pub(crate) const PUT_SEGMENT: &str = r#"
local rev = redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
redis.call('HSET', KEYS[1], ARGV[1], rev .. ':' .. ARGV[2])
return rev
"#;
