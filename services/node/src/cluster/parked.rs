//! Shard runtimes kept warm after their lease lapsed.
//!
//! An owner stops serving a shard when its local lease deadline passes, or
//! when a renewal finds the lease gone. Most often that is not a move: Redis
//! was away (a restart reloading its dataset answers `BusyLoading` for
//! seconds), or this node paused, and nobody else took the shard. Reloading
//! it then costs a full load (checkpoints, directory, tail, index), for
//! every shard of the node at once.
//!
//! So the runtime is parked instead of dropped: it serves nothing and
//! writes nothing (its fence is invalid; periodic duties skip it), and its
//! failed checkpoint images and change batches stay in memory. If this node
//! then acquires the shard's **next** epoch, nobody held the shard in
//! between (every acquisition takes a new epoch, and epochs only grow while
//! Redis keeps every write, `appendfsync always`), so the stream holds
//! nothing the runtime has not seen except events appended since, which its
//! new tail reads. The runtime resumes under the new fence. Any other
//! epoch, another node in the fence, a failed runtime, or a Redis that may
//! lose writes (the operator has not vouched for it with `redis_durable`,
//! it does not report `appendfsync always`, or its log head is behind what
//! the runtime has seen, as after a failover to a replica that lagged), or
//! a catalog that no longer matches the runtime's definitions and content
//! (a write Redis applied after its caller gave up): the parked runtime is
//! dropped and the shard loads as usual.
//!
//! A standby (`shards::standby`) waits here too: a runtime this node loaded
//! read-only, before it held the lease. It was never any epoch's, so
//! instead of the epoch rule, Redis's commit count for the shard must be
//! the one read before the standby's load began (`agrees_with`).

use crate::runtime::{Health, Runtime};
use liveseg_store::redis::{Fence, RedisStore, ShardStore};
use liveseg_store::{Catalog, EventLog, Seq};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a parked runtime waits for its shard to come back.
pub const PARK_FOR: Duration = Duration::from_secs(60);

/// A runtime whose lease lapsed with its state whole.
pub struct Parked {
    pub runtime: Arc<Runtime>,
    pub store: Arc<ShardStore>,
    /// Tells this parking apart from a later one of the same shard.
    pub id: u64,
    pub since: Instant,
    /// A standby (loaded before this node held the lease, see
    /// `shards::standby`): the shard's commit count when its load began.
    /// `None`: a runtime whose own lease lapsed.
    pub standby: Option<u64>,
}

impl Parked {
    /// Whether `next` may take this runtime over, subject to Redis agreeing
    /// (`agrees_with`): a runtime that has not
    /// failed, of this node, and for a lapsed one the epoch right after its
    /// own (nobody held the shard in between). A standby was never any
    /// epoch's; Redis's commit count proves nobody wrote since its load.
    /// (Whether Redis keeps every write is checked by the caller.)
    pub fn continues_with(&self, next: &Fence) -> bool {
        let held = self.store.fence();
        let epochs = match self.standby {
            Some(_) => true,
            None => matches!(
                (epoch_of(&held.token), epoch_of(&next.token)),
                (Some(a), Some(b)) if b == a + 1
            ),
        };
        held.node() == next.node() && epochs && *self.runtime.health().borrow() == Health::Serving
    }
}

/// Whether Redis and the catalog, read now (under the new lease), still
/// agree with the kept runtime `p`, which dispatched up to `seen`, so that
/// it holds what a load now would, less the stream entries after `seen`
/// that its new tail reads. Blocking.
///
/// Both kinds need a Redis that forgot nothing: the operator vouches for
/// that (`redis_durable`, checked by the caller), Redis reports
/// `appendfsync always` and its log head is not behind `seen` (a Redis
/// that lost writes hands those sequence numbers to other events). And the
/// tenants' definitions and content must match the catalog, which a fresh
/// load would compile. Then, by kind:
/// - a runtime whose lease lapsed: epoch e+1 (checked by the caller)
///   proves nobody else held the shard; Redis must hold at `seen` the very
///   entry the runtime applied last;
/// - a standby: the shard's commit count must be the one read before its
///   load began, proving nobody wrote the shard's state since (checkpoints,
///   directory and change log all go through counted commits). The entry
///   check applies if it replayed any; one that replayed nothing loaded
///   its checkpoints at `seen`, which the unchanged count vouches for.
pub fn agrees_with(
    redis: &RedisStore,
    p: &Parked,
    catalog: &dyn Catalog,
    seen: Seq,
) -> Result<(), String> {
    let durable = redis.durable_writes().map_err(|e| e.to_string())?;
    let head = p.store.head().map_err(|e| e.to_string())?;
    resumable(durable, head, seen)?;
    let local = last_applied(&p.runtime);
    if let Some(at_load) = p.standby {
        let commits = p.store.commit_count().map_err(|e| e.to_string())?;
        unwritten_since(at_load, commits)?;
    }
    if p.standby.is_none() || local.is_some() {
        same_entry(local, seen, entry_at(&p.store, seen)?)?;
    }
    agrees_with_catalog(&p.runtime, catalog)
}

/// The entry `runtime` applied last: its seq and fingerprint.
fn last_applied(runtime: &Runtime) -> Option<(Seq, u64)> {
    *runtime
        .progress
        .last_entry
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// The seq and fingerprint of the entry Redis holds at `seq`, if any.
fn entry_at(store: &ShardStore, seq: Seq) -> Result<Option<(Seq, u64)>, String> {
    Ok(store
        .read_after(seq.saturating_sub(1), 1)
        .map_err(|e| e.to_string())?
        .first()
        .map(|e| (e.seq, crate::dispatch::entry_fingerprint(e))))
}

/// Whether the runtime's definitions and content are the catalog's.
fn agrees_with_catalog(runtime: &Runtime, catalog: &dyn Catalog) -> Result<(), String> {
    match runtime.differs_from_catalog(catalog) {
        Ok(None) => Ok(()),
        Ok(Some(tenant)) => Err(format!(
            "tenant {tenant}'s definitions or content changed in the catalog meanwhile"
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// Whether the shard's commit count is still the one a standby's load
/// began at: any other count means someone (the old owner before it died,
/// or an owner in between) wrote state the standby may not have read.
pub fn unwritten_since(at_load: u64, now: u64) -> Result<(), String> {
    if at_load == now {
        Ok(())
    } else {
        Err(format!(
            "the shard was written since the standby loaded ({} commits)",
            i128::from(now) - i128::from(at_load)
        ))
    }
}

/// Whether Redis, as read now, still holds everything a parked runtime
/// has seen: it fsyncs every write and its log head (the last sequence it
/// handed out) is not behind the runtime's last dispatched one. A Redis
/// that lost writes hands those sequence numbers out again, to other
/// events, which a resumed tail would skip.
pub fn resumable(durable: bool, head: Seq, seen: Seq) -> Result<(), String> {
    if !durable {
        return Err("redis does not fsync every write".into());
    }
    if head < seen {
        return Err(format!(
            "redis's log head {head} is behind the {seen} this runtime dispatched"
        ));
    }
    Ok(())
}

/// Whether the entry Redis holds at `seen` (`remote`: its seq and
/// fingerprint) is the one the runtime applied last (`local`). A Redis that
/// lost writes and took new events since gives the same seqs to other
/// events; the head alone cannot tell. A runtime that has applied nothing
/// since it loaded has nothing to compare, and loads again, unless it has
/// never seen any entry (a shard no tenant writes to): then there is
/// nothing Redis could have lost of what it saw.
pub fn same_entry(
    local: Option<(Seq, u64)>,
    seen: Seq,
    remote: Option<(Seq, u64)>,
) -> Result<(), String> {
    match (local, remote) {
        (None, _) if seen == 0 => Ok(()),
        (Some(l), Some(r)) if l.0 == seen && l == r => Ok(()),
        (Some(l), _) if l.0 != seen => Err(format!(
            "the last applied entry ({}) is not the dispatch position {seen}",
            l.0
        )),
        (None, _) => Err("nothing applied since the load to compare with redis".into()),
        (Some(_), _) => Err(format!(
            "redis holds another entry at {seen} than the one this runtime applied"
        )),
    }
}

/// The epoch of a `node#epoch` token.
pub fn epoch_of(token: &str) -> Option<u64> {
    token.rsplit_once('#').and_then(|(_, e)| e.parse().ok())
}

/// The parked runtimes of a node, one per shard at most.
#[derive(Default)]
pub struct ParkedRuntimes {
    map: Mutex<HashMap<u32, Parked>>,
}

impl ParkedRuntimes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Parked>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Parks `p`, returning what it displaces (to be stopped).
    pub fn park(&self, shard: u32, p: Parked) -> Option<Parked> {
        self.lock().insert(shard, p)
    }

    /// Whether a runtime of `shard` is parked.
    pub fn holds(&self, shard: u32) -> bool {
        self.lock().contains_key(&shard)
    }

    /// The parked runtime of `shard`, if any, left in place.
    #[cfg(test)]
    pub fn runtime_of(&self, shard: u32) -> Option<Arc<Runtime>> {
        self.lock().get(&shard).map(|p| p.runtime.clone())
    }

    /// Whether what is parked for `shard` is a standby.
    #[cfg(test)]
    pub fn standby_of(&self, shard: u32) -> bool {
        self.lock().get(&shard).is_some_and(|p| p.standby.is_some())
    }

    /// Takes the parked runtime of `shard`, if any.
    pub fn take(&self, shard: u32) -> Option<Parked> {
        self.lock().remove(&shard)
    }

    /// The standby parked for `shard`, if any: its parking id, the commit
    /// count its load began at, and its store.
    pub fn standby(&self, shard: u32) -> Option<(u64, u64, Arc<ShardStore>)> {
        let map = self.lock();
        let p = map.get(&shard)?;
        p.standby.map(|at_load| (p.id, at_load, p.store.clone()))
    }

    /// Takes the parked runtime of `shard` if it is one whose lease lapsed
    /// (not a standby).
    pub fn take_lapsed(&self, shard: u32) -> Option<Parked> {
        let mut map = self.lock();
        if map.get(&shard).is_some_and(|p| p.standby.is_none()) {
            map.remove(&shard)
        } else {
            None
        }
    }

    /// Takes the parked runtime of `shard` if it is still parking `id`.
    pub fn take_if(&self, shard: u32, id: u64) -> Option<Parked> {
        let mut map = self.lock();
        if map.get(&shard).is_some_and(|p| p.id == id) {
            map.remove(&shard)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{epoch_of, resumable, same_entry, unwritten_since};

    #[test]
    fn a_resume_needs_the_entry_it_applied_last_at_the_same_seq_in_redis() {
        assert_eq!(same_entry(Some((7, 42)), 7, Some((7, 42))), Ok(()));
        // Lost, then given to another event by a node's ingest meanwhile.
        let other = same_entry(Some((7, 42)), 7, Some((7, 43)));
        assert!(other.is_err_and(|e| e.contains("another entry at 7")));
        assert!(same_entry(Some((7, 42)), 7, Some((8, 42))).is_err());
        assert!(same_entry(Some((7, 42)), 7, None).is_err());
        assert!(same_entry(None, 7, Some((7, 42))).is_err());
        // Never saw an entry: nothing to lose, whatever Redis holds now.
        assert_eq!(same_entry(None, 0, None), Ok(()));
        assert_eq!(same_entry(None, 0, Some((1, 42))), Ok(()));
        assert!(same_entry(Some((6, 42)), 7, Some((7, 42))).is_err());
    }

    #[test]
    fn a_redis_that_may_have_lost_writes_refuses_the_resume() {
        assert_eq!(resumable(true, 1_000, 1_000), Ok(()));
        assert_eq!(resumable(true, 1_010, 1_000), Ok(()));
        let behind = resumable(true, 990, 1_000).err().unwrap_or_default();
        assert!(behind.contains("990 is behind the 1000"), "{behind}");
        let everysec = resumable(false, 1_000, 1_000).err().unwrap_or_default();
        assert!(everysec.contains("fsync"), "{everysec}");
    }

    #[test]
    fn a_standby_serves_only_if_nobody_committed_since_its_load() {
        assert_eq!(unwritten_since(41, 41), Ok(()));
        let later = unwritten_since(41, 43).err().unwrap_or_default();
        assert!(
            later.contains("written since the standby loaded (2 commits)"),
            "{later}"
        );
        // A count that went back (Redis lost commits) refuses as well.
        assert!(unwritten_since(41, 40).is_err());
    }

    #[test]
    fn epochs_come_from_the_last_hash_of_the_token() {
        assert_eq!(epoch_of("n0-17520-1a2#44"), Some(44));
        assert_eq!(epoch_of("odd#name#7"), Some(7));
        assert_eq!(epoch_of("no-epoch"), None);
        assert_eq!(epoch_of("n#x"), None);
    }
}
