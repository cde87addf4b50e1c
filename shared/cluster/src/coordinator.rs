//! The coordinator's state in Redis: node heartbeats, the leader lease and
//! the shard assignment table the leader writes.
//!
//! The leader only decides *intent* (which node should own which shard).
//! Safety comes from the per-shard leases: a node named in the table still
//! has to acquire the shard's lease, which it cannot while the previous
//! owner holds it. So a stale or duelling leader can cause churn, never
//! double ownership; and every table write is fenced by the leader's own
//! epoch anyway, so a deposed leader cannot overwrite its successor.
//!
//! Liveness is judged on Redis's clock (`TIME` inside the scripts), so
//! nodes with skewed wall clocks agree on who is alive.

use liveseg_store::redis::RedisStore;
use liveseg_store::redis::keys::COORDINATOR;
use liveseg_store::{Result, StoreError};
use std::collections::BTreeMap;
use std::sync::LazyLock;

mod handoff;
pub use handoff::{Freeze, Handoff, Handoffs, Stamp};

/// Record a heartbeat, and when the node's current run of heartbeats
/// began: its first one, or its first after a silence longer than the
/// death-detection time (a pause, a lost connection, a Redis restart).
/// KEYS: 1 nodes zset, 2 addresses hash, 3 live-since hash.
/// ARGV: 1 node id, 2 address, 3 forget nodes silent this long (ms),
/// 4 death-detection time (ms). Returns Redis's time in ms.
const HEARTBEAT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local last = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not last or now - tonumber(last) > tonumber(ARGV[4]) then
  redis.call('HSET', KEYS[3], ARGV[1], now)
end
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
for _, id in ipairs(old) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
  redis.call('HDEL', KEYS[3], id)
end
return now
"#;

/// Nodes heard from within the last ARGV[1] ms. KEYS: 1 nodes zset.
const LIVE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], now - tonumber(ARGV[1]), '+inf')
"#;

/// Write assignment changes if the caller is the leader under its epoch,
/// stamping each changed shard with Redis's time (placement's settle rule
/// reads it back, whichever node leads then).
/// A changed shard's serving stamp is cleared: its new owner has not served
/// it yet.
/// KEYS: 1 leader lease, 2 assignment hash, 3 version, 4 move times hash,
/// 5 serving times hash.
/// ARGV: 1 `leader#epoch`, then (shard, node or "") pairs. Returns the new
/// version, or -1 when the caller is not (or no longer) the leader.
const ASSIGN: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 2, #ARGV, 2 do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', KEYS[2], ARGV[i])
  else
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  end
  redis.call('HSET', KEYS[4], ARGV[i], now)
  redis.call('HDEL', KEYS[5], ARGV[i])
end
return redis.call('INCR', KEYS[3])
"#;

/// A shard started serving at its owner: stamp Redis's time, so placement
/// can tell a shard still loading after its move from one serving, and
/// count the settle period from when the move finished (drain, lease, load)
/// rather than from when it was decided. Only the owner the table names
/// now may stamp: a late stamp from an earlier owner (say one paused, then
/// failed over) must not make a loading shard look served.
/// KEYS: 1 assignment hash, 2 serving times hash. ARGV: 1 shard, 2 node.
/// Returns the stamp, or -1 when the table names another owner.
const SERVING: &str = r#"
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return -1 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[2], ARGV[1], now)
return now
"#;

/// Name the standbys of shards whose owner looks dead (placement's
/// `standby_names`), replacing earlier names, if the caller leads under
/// its epoch. The names expire on their own: a leader renames them every
/// round while the suspicion lasts and until the shards are placed, and
/// placement reads them (a shard without a live owner goes to its
/// standby node).
/// KEYS: 1 leader lease, 2 standby hash. ARGV: 1 `leader#epoch`, 2 TTL
/// (ms), then (shard, node) pairs. Returns 1, or -1 when not the leader.
const STANDBY: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
redis.call('DEL', KEYS[2])
if #ARGV > 2 then
  redis.call('HSET', KEYS[2], unpack(ARGV, 3))
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return 1
"#;

static HEARTBEAT_SCRIPT: LazyLock<::redis::Script> =
    LazyLock::new(|| ::redis::Script::new(HEARTBEAT));
static LIVE_SCRIPT: LazyLock<::redis::Script> = LazyLock::new(|| ::redis::Script::new(LIVE));
static ASSIGN_SCRIPT: LazyLock<::redis::Script> = LazyLock::new(|| ::redis::Script::new(ASSIGN));
static SERVING_SCRIPT: LazyLock<::redis::Script> = LazyLock::new(|| ::redis::Script::new(SERVING));
static STANDBY_SCRIPT: LazyLock<::redis::Script> = LazyLock::new(|| ::redis::Script::new(STANDBY));

fn key(suffix: &str) -> String {
    format!("{COORDINATOR}{suffix}")
}

/// The assignment table as last read: shard → node, and its version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assignment {
    /// Incremented on every leader write.
    pub version: u64,
    /// Owner per shard; absent shards are unassigned.
    pub owners: BTreeMap<u32, String>,
}

/// When shards last moved, read for a placement round.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MoveTimes {
    /// Redis's time at the read (ms).
    pub now_ms: i64,
    /// Shard → the time of its last assignment change (ms).
    pub moved_at: BTreeMap<u32, i64>,
    /// Shard → when it last started serving at an owner (ms).
    pub serving_at: BTreeMap<u32, i64>,
    /// Node → when its current run of heartbeats began (ms).
    pub live_since: BTreeMap<String, i64>,
}

/// Access to the coordinator keys.
#[derive(Clone)]
pub struct Coordinator {
    redis: RedisStore,
}

impl Coordinator {
    /// Over one Redis.
    pub fn new(redis: RedisStore) -> Self {
        Coordinator { redis }
    }

    /// Checks (or, the first time, records) the cluster's shard count:
    /// account-to-shard mapping depends on it, so every node must agree.
    pub fn ensure_shard_count(&self, shards: u32) -> Result<()> {
        let (set, current): (i64, u32) = self.redis.with_conn(|c| {
            ::redis::pipe()
                .atomic()
                .cmd("SETNX")
                .arg(key("shards"))
                .arg(shards)
                .cmd("GET")
                .arg(key("shards"))
                .query(c)
        })?;
        if set == 0 && current != shards {
            return Err(StoreError::InvalidInput(format!(
                "this cluster runs with {current} shards; the node was configured with {shards} \
                 (the shard count can only change with a full restart of an empty cluster)"
            )));
        }
        Ok(())
    }

    /// Records that `node` (serving at `addr`) is alive; forgets nodes
    /// silent for `forget_after_ms`. Returns Redis's time (ms).
    pub fn heartbeat(
        &self,
        node: &str,
        addr: &str,
        forget_after_ms: u64,
        dead_after_ms: u64,
    ) -> Result<i64> {
        self.redis.with_conn(|c| {
            HEARTBEAT_SCRIPT
                .key(key("nodes"))
                .key(key("addr"))
                .key(key("since"))
                .arg(node)
                .arg(addr)
                .arg(forget_after_ms)
                .arg(dead_after_ms)
                .invoke(c)
        })
    }

    /// Removes `node` from the live set at once (the end of a graceful
    /// leave): the leader reassigns what it still owns on its next round.
    pub fn leave(&self, node: &str) -> Result<()> {
        self.redis.with_conn(|c| {
            ::redis::pipe()
                .atomic()
                .cmd("ZREM")
                .arg(key("nodes"))
                .arg(node)
                .cmd("HDEL")
                .arg(key("since"))
                .arg(node)
                .cmd("DEL")
                .arg(key(&format!("leaving:{node}")))
                .query::<(i64, i64, i64)>(c)
        })?;
        Ok(())
    }

    /// Nodes with a heartbeat within `dead_after_ms`, sorted.
    pub fn live_nodes(&self, dead_after_ms: u64) -> Result<Vec<String>> {
        let mut nodes: Vec<String> = self
            .redis
            .with_conn(|c| LIVE_SCRIPT.key(key("nodes")).arg(dead_after_ms).invoke(c))?;
        nodes.sort();
        Ok(nodes)
    }

    /// The serving address a node registered.
    pub fn address(&self, node: &str) -> Result<Option<String>> {
        self.redis
            .with_conn(|c| ::redis::cmd("HGET").arg(key("addr")).arg(node).query(c))
    }

    /// The assignment table and its version.
    pub fn assignment(&self) -> Result<Assignment> {
        let (version, owners): (Option<u64>, Vec<(u32, String)>) = self.redis.with_conn(|c| {
            ::redis::pipe()
                .atomic()
                .cmd("GET")
                .arg(key("ver"))
                .cmd("HGETALL")
                .arg(key("assign"))
                .query(c)
        })?;
        Ok(Assignment {
            version: version.unwrap_or(0),
            owners: owners.into_iter().collect(),
        })
    }

    /// Redis's time now and when each shard last changed owner, both in ms
    /// on Redis's clock (so a new leader judges settling as its predecessor
    /// would, whatever the nodes' own clocks say).
    pub fn move_times(&self) -> Result<MoveTimes> {
        type Times = Vec<(u32, i64)>;
        type Reply = ((i64, i64), Times, Times, Vec<(String, i64)>);
        let ((secs, micros), moved, serving, since): Reply = self.redis.with_conn(|c| {
            ::redis::pipe()
                .cmd("TIME")
                .cmd("HGETALL")
                .arg(key("moved"))
                .cmd("HGETALL")
                .arg(key("serving"))
                .cmd("HGETALL")
                .arg(key("since"))
                .query(c)
        })?;
        Ok(MoveTimes {
            now_ms: secs * 1000 + micros / 1000,
            moved_at: moved.into_iter().collect(),
            serving_at: serving.into_iter().collect(),
            live_since: since.into_iter().collect(),
        })
    }

    /// Just the version, to skip re-reading an unchanged table.
    pub fn assignment_version(&self) -> Result<u64> {
        let v: Option<u64> = self
            .redis
            .with_conn(|c| ::redis::cmd("GET").arg(key("ver")).query(c))?;
        Ok(v.unwrap_or(0))
    }

    /// Records that `shard` started serving at `node`, its owner in the
    /// table (placement's settle period counts from then). Returns the
    /// stamp (Redis's time, ms), or `None` if the table names another owner.
    pub fn note_serving(&self, shard: u32, node: &str) -> Result<Option<i64>> {
        let mut inv = SERVING_SCRIPT.prepare_invoke();
        inv.key(key("assign"))
            .key(key("serving"))
            .arg(shard)
            .arg(node);
        let stamp: i64 = self.redis.with_conn(|c| inv.invoke(c))?;
        Ok((stamp >= 0).then_some(stamp))
    }

    /// Writes `changes` (shard → new owner, `None` = unassigned) if `leader`
    /// still leads under `epoch`. Returns the new version, or `None` if the
    /// write was fenced off (this node is not the leader any more).
    pub fn write_assignment(
        &self,
        leader: &str,
        epoch: u64,
        changes: &[(u32, Option<String>)],
    ) -> Result<Option<u64>> {
        let mut inv = ASSIGN_SCRIPT.prepare_invoke();
        inv.key(key("lease"))
            .key(key("assign"))
            .key(key("ver"))
            .key(key("moved"))
            .key(key("serving"))
            .arg(format!("{leader}#{epoch}"));
        for (shard, owner) in changes {
            inv.arg(*shard).arg(owner.as_deref().unwrap_or(""));
        }
        let v: i64 = self.redis.with_conn(|c| inv.invoke(c))?;
        Ok(u64::try_from(v).ok())
    }

    /// Names `standbys` (shard → node) for `ttl_ms` if `leader` still leads
    /// under `epoch`; an empty list clears the names. Returns whether the
    /// write was the leader's.
    pub fn write_standby(
        &self,
        leader: &str,
        epoch: u64,
        standbys: &[(u32, String)],
        ttl_ms: u64,
    ) -> Result<bool> {
        let mut inv = STANDBY_SCRIPT.prepare_invoke();
        inv.key(key("lease"))
            .key(key("standby"))
            .arg(format!("{leader}#{epoch}"))
            .arg(ttl_ms.max(1));
        for (shard, node) in standbys {
            inv.arg(*shard).arg(node);
        }
        let r: i64 = self.redis.with_conn(|c| inv.invoke(c))?;
        Ok(r == 1)
    }

    /// The standbys the leader names now: shard → node.
    pub fn standby(&self) -> Result<BTreeMap<u32, String>> {
        let all: Vec<(u32, String)> = self
            .redis
            .with_conn(|c| ::redis::cmd("HGETALL").arg(key("standby")).query(c))?;
        Ok(all.into_iter().collect())
    }

    /// The leader lease's key prefix (for [`liveseg_store::redis::ShardLeases::acquire_at`]).
    pub fn leader_prefix() -> &'static str {
        COORDINATOR
    }

    /// Who leads now (`node#epoch`), if anyone.
    pub fn leader(&self) -> Result<Option<String>> {
        self.redis
            .with_conn(|c| ::redis::cmd("GET").arg(key("lease")).query(c))
    }
}
