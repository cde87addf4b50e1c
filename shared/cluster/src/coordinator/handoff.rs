//! Handoff intents in Redis: make-before-break for planned moves.
//!
//! A planned move (rebalance, scale-out, a graceful leave) used to be
//! break-before-make: the owner drained and released, and only then did the
//! new owner load the shard (O(state), seconds), answering nothing
//! meanwhile. Now the leader first writes an *intent* (shard, from, to),
//! the owner freezes the shard (final checkpoint, then no more writes,
//! still answering) and stamps `frozen`, the target loads a standby from
//! that checkpoint and stamps `ready`, and only then does the leader write
//! the assignment. The shard is unavailable for a release and an
//! acquisition, not for a load.
//!
//! Layout: one hash, `handoff`. Field `<shard>` holds `from to id since_ms`
//! (the intent; `id` is unique per intent, `since_ms` on Redis's clock);
//! fields `<shard>:frozen` and `<shard>:ready` hold the id they stamp
//! (`<id>!` for an owner that could not freeze). The leader replaces the
//! intents every round (fenced by its lease; an intent kept keeps its id,
//! time and stamps) and the hash expires unless renewed, so an owner whose
//! leader died thaws. Nothing here carries safety: the target serves from
//! its standby only if the shard's commit count did not move since the
//! standby's load began.
//!
//! A leaving node marks itself (`leaving:<node>`, refreshed while it
//! leaves): the leader stops placing shards on it but, since it still
//! answers, hands its shards off like any planned move.

use super::{Coordinator, key};
use liveseg_store::Result;
use std::collections::BTreeMap;
use std::sync::LazyLock;

/// Replace the intents if the caller leads under its epoch. An intent
/// whose (from, to) is unchanged keeps its id, time and stamps; a new one
/// gets a fresh id and Redis's time; stamps of dropped or replaced intents
/// go.
/// KEYS: 1 leader lease, 2 handoff hash, 3 id counter. ARGV: 1
/// `leader#epoch`, 2 TTL (ms), then (shard, from, to) triples. Returns 1,
/// or -1 when not the leader.
const INTENTS: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local keep = {}
for i = 3, #ARGV, 3 do
  local shard, from, to = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local old = redis.call('HGET', KEYS[2], shard)
  local same = false
  if old then
    local f, d = string.match(old, '^(%S+) (%S+) ')
    same = (f == from and d == to)
  end
  if not same then
    local id = redis.call('INCR', KEYS[3])
    redis.call('HSET', KEYS[2], shard, from .. ' ' .. to .. ' ' .. id .. ' ' .. now)
    redis.call('HDEL', KEYS[2], shard .. ':frozen', shard .. ':ready')
  end
  keep[shard] = true
end
local all = redis.call('HKEYS', KEYS[2])
for _, f in ipairs(all) do
  local shard = string.match(f, '^(%d+)')
  if shard and not keep[shard] then redis.call('HDEL', KEYS[2], f) end
end
if #ARGV > 2 then redis.call('PEXPIRE', KEYS[2], ARGV[2]) end
return 1
"#;

/// Stamp an intent if it is still the one with that id and names the
/// caller on the stamp's side. KEYS: 1 handoff hash. ARGV: 1 shard, 2 id,
/// 3 node, 4 `frozen` or `ready`, 5 the value. Returns 1, or 0 when the
/// intent is gone or another.
const STAMP: &str = r#"
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
local from, to, id = string.match(v, '^(%S+) (%S+) (%S+) ')
if id ~= ARGV[2] then return 0 end
if (ARGV[4] == 'frozen' and from ~= ARGV[3]) or (ARGV[4] == 'ready' and to ~= ARGV[3]) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1] .. ':' .. ARGV[4], ARGV[5])
return 1
"#;

static INTENTS_SCRIPT: LazyLock<::redis::Script> = LazyLock::new(|| ::redis::Script::new(INTENTS));
static STAMP_SCRIPT: LazyLock<::redis::Script> = LazyLock::new(|| ::redis::Script::new(STAMP));

/// Where an intent's owner stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freeze {
    /// Not stamped yet.
    Pending,
    /// Frozen: final checkpoint written, no more writes.
    Frozen,
    /// The owner could not freeze (its host cannot, or the checkpoint
    /// failed): nothing to wait for.
    Refused,
}

/// One handoff intent as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handoff {
    pub from: String,
    pub to: String,
    /// Unique per intent: stamps name it.
    pub id: u64,
    /// When the leader first wrote it (Redis's clock, ms).
    pub since_ms: i64,
    pub owner: Freeze,
    /// The target has a standby loaded after the freeze.
    pub ready: bool,
}

impl Handoff {
    /// This intent with the given stamps.
    pub fn with_stamps(self, owner: Freeze, ready: bool) -> Self {
        Handoff {
            owner,
            ready,
            ..self
        }
    }
}

/// The intents and Redis's time when they were read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Handoffs {
    pub now_ms: i64,
    pub intents: BTreeMap<u32, Handoff>,
}

/// Which side of an intent a stamp is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stamp {
    /// The owner froze the shard (`true`), or could not (`false`).
    Frozen(bool),
    /// The target's standby is loaded.
    Ready,
}

fn parse(fields: &BTreeMap<String, String>) -> BTreeMap<u32, Handoff> {
    let mut out = BTreeMap::new();
    for (field, value) in fields {
        let Ok(shard) = field.parse::<u32>() else {
            continue;
        };
        let parts: Vec<&str> = value.split(' ').collect();
        let [from, to, id, since] = parts[..] else {
            continue;
        };
        let (Ok(id), Ok(since_ms)) = (id.parse::<u64>(), since.parse::<i64>()) else {
            continue;
        };
        let stamp = |side: &str| fields.get(&format!("{shard}:{side}"));
        let owner = match stamp("frozen") {
            Some(v) if *v == id.to_string() => Freeze::Frozen,
            Some(v) if *v == format!("{id}!") => Freeze::Refused,
            _ => Freeze::Pending,
        };
        let ready = stamp("ready").is_some_and(|v| *v == id.to_string());
        out.insert(
            shard,
            Handoff {
                from: from.to_string(),
                to: to.to_string(),
                id,
                since_ms,
                owner,
                ready,
            },
        );
    }
    out
}

impl Coordinator {
    /// Replaces the handoff intents with `intents` (shard, from, to) for
    /// `ttl_ms` if `leader` still leads under `epoch`; an empty list clears
    /// them. Returns whether the write was the leader's.
    pub fn write_handoffs(
        &self,
        leader: &str,
        epoch: u64,
        intents: &[(u32, String, String)],
        ttl_ms: u64,
    ) -> Result<bool> {
        let mut inv = INTENTS_SCRIPT.prepare_invoke();
        inv.key(key("lease"))
            .key(key("handoff"))
            .key(key("handoff:id"))
            .arg(format!("{leader}#{epoch}"))
            .arg(ttl_ms.max(1));
        for (shard, from, to) in intents {
            inv.arg(*shard).arg(from).arg(to);
        }
        let r: i64 = self.redis.with_conn(|c| inv.invoke(c))?;
        Ok(r == 1)
    }

    /// The handoff intents now, with their stamps.
    pub fn handoffs(&self) -> Result<Handoffs> {
        let ((secs, micros), fields): ((i64, i64), BTreeMap<String, String>) =
            self.redis.with_conn(|c| {
                ::redis::pipe()
                    .cmd("TIME")
                    .cmd("HGETALL")
                    .arg(key("handoff"))
                    .query(c)
            })?;
        Ok(Handoffs {
            now_ms: secs * 1000 + micros / 1000,
            intents: parse(&fields),
        })
    }

    /// Stamps intent `id` of `shard` from `node`'s side. Returns false when
    /// that intent is gone, replaced, or does not name `node` on that side.
    pub fn stamp_handoff(&self, shard: u32, id: u64, node: &str, stamp: Stamp) -> Result<bool> {
        let (side, value) = match stamp {
            Stamp::Frozen(true) => ("frozen", id.to_string()),
            Stamp::Frozen(false) => ("frozen", format!("{id}!")),
            Stamp::Ready => ("ready", id.to_string()),
        };
        let mut inv = STAMP_SCRIPT.prepare_invoke();
        inv.key(key("handoff"))
            .arg(shard)
            .arg(id)
            .arg(node)
            .arg(side)
            .arg(value);
        let r: i64 = self.redis.with_conn(|c| inv.invoke(c))?;
        Ok(r == 1)
    }

    /// Marks `node` as leaving for `ttl_ms` (refreshed while it leaves).
    pub fn mark_leaving(&self, node: &str, ttl_ms: u64) -> Result<()> {
        self.redis.with_conn(|c| {
            ::redis::cmd("SET")
                .arg(key(&format!("leaving:{node}")))
                .arg(1)
                .arg("PX")
                .arg(ttl_ms.max(1))
                .query::<()>(c)
        })
    }

    /// Which of `nodes` are leaving.
    pub fn leaving(&self, nodes: &[String]) -> Result<Vec<String>> {
        if nodes.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = nodes.iter().map(|n| key(&format!("leaving:{n}"))).collect();
        let marks: Vec<Option<String>> = self
            .redis
            .with_conn(|c| ::redis::cmd("MGET").arg(&keys).query(c))?;
        Ok(nodes
            .iter()
            .zip(marks)
            .filter(|(_, m)| m.is_some())
            .map(|(n, _)| n.clone())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::{Freeze, parse};
    use std::collections::BTreeMap;

    #[test]
    fn stamps_count_only_for_the_intent_they_name() {
        let fields: BTreeMap<String, String> = [
            ("3", "a b 7 1000"),
            ("3:frozen", "7"),
            ("3:ready", "6"),
            ("4", "b c 8 1200"),
            ("4:frozen", "8!"),
            ("4:ready", "8"),
            ("5", "garbled"),
            ("6:frozen", "9"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let read = parse(&fields);
        assert_eq!(read.len(), 2);
        assert_eq!(read[&3].owner, Freeze::Frozen);
        assert!(!read[&3].ready, "a ready stamp of an earlier intent");
        assert_eq!((read[&3].id, read[&3].since_ms), (7, 1000));
        assert_eq!(read[&4].owner, Freeze::Refused);
        assert!(read[&4].ready);
        assert_eq!((read[&4].from.as_str(), read[&4].to.as_str()), ("b", "c"));
    }
}
