//! The members' test harness: a recording serving side and a cluster of
//! members over one real `redis-server`. Each test binary uses part of it.
#![allow(dead_code)]

use super::eventually;
use liveseg_cluster::coordinator::Coordinator;
use liveseg_cluster::journal::{self, Interval};
use liveseg_cluster::member::{DrainDone, Member, MemberConfig, ShardHost, StopReason};
use liveseg_store::redis::{Fence, Fsync, RedisOptions, RedisProcess, RedisStore};
use liveseg_store::{CommitBatch, StateStore};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const SHARDS: u32 = 24;

/// Takes the leader lease as `node` for `ttl_ms`, as a leader would;
/// returns its epoch.
pub fn lead_as(store: &RedisStore, node: &str, ttl_ms: u64) -> u64 {
    use liveseg_store::redis::LeaseOutcome;
    match store
        .leases()
        .acquire_at(Coordinator::leader_prefix(), node, ttl_ms, None)
    {
        Ok(LeaseOutcome::Acquired { epoch }) => epoch,
        other => panic!("leader lease: {other:?}"),
    }
}

/// A serving side that only keeps the fences; a drain makes a real fenced
/// final commit before reporting done.
pub struct RecordingHost {
    pub redis: RedisStore,
    pub active: Mutex<BTreeMap<u32, Fence>>,
    pub stops: Mutex<Vec<(u32, StopReason)>>,
    /// When each shard was last activated, and every drain (shard, instant).
    pub activated: Mutex<BTreeMap<u32, Instant>>,
    pub drains: Mutex<Vec<(u32, Instant)>>,
    /// Every standby request (shard, instant).
    pub prepared: Mutex<Vec<(u32, Instant)>>,
    /// Every handoff: standby requests, freezes and thaws (shard, instant).
    pub handoff_prepared: Mutex<Vec<(u32, Instant)>>,
    pub frozen: Mutex<Vec<(u32, Instant)>>,
    pub thawed: Mutex<Vec<(u32, Instant)>>,
    /// Whether a standby prepared for a handoff says it is ready.
    pub ready: AtomicBool,
    /// Whether this host can freeze a shard for a handoff.
    pub can_freeze: AtomicBool,
}

impl RecordingHost {
    pub fn new(redis: RedisStore) -> Arc<Self> {
        Arc::new(RecordingHost {
            redis,
            active: Mutex::default(),
            stops: Mutex::default(),
            activated: Mutex::default(),
            drains: Mutex::default(),
            prepared: Mutex::default(),
            handoff_prepared: Mutex::default(),
            frozen: Mutex::default(),
            thawed: Mutex::default(),
            ready: AtomicBool::new(true),
            can_freeze: AtomicBool::new(true),
        })
    }

    /// The last of `events` of `shard` at or before `t`.
    pub fn last_before(
        events: &Mutex<Vec<(u32, Instant)>>,
        shard: u32,
        t: Instant,
    ) -> Option<Instant> {
        events
            .lock()
            .unwrap()
            .iter()
            .filter(|(s, at)| *s == shard && *at <= t)
            .map(|(_, at)| *at)
            .max()
    }

    /// The shards of `events` (first instant of each).
    pub fn first(events: &Mutex<Vec<(u32, Instant)>>) -> BTreeMap<u32, Instant> {
        let mut out = BTreeMap::new();
        for (s, at) in events.lock().unwrap().iter() {
            out.entry(*s).or_insert(*at);
        }
        out
    }

    pub fn active(&self) -> BTreeSet<u32> {
        self.active.lock().unwrap().keys().copied().collect()
    }

    pub fn fence(&self, shard: u32) -> Option<Fence> {
        self.active.lock().unwrap().get(&shard).cloned()
    }
}

impl ShardHost for RecordingHost {
    fn activate(&self, shard: u32, fence: Fence) {
        // Serving at once (nothing to load), stamped as a node stamps it.
        let _ = Coordinator::new(self.redis.clone()).note_serving(shard, fence.node());
        self.active.lock().unwrap().insert(shard, fence);
        self.activated.lock().unwrap().insert(shard, Instant::now());
    }

    fn deactivate(&self, shard: u32, reason: StopReason) {
        self.active.lock().unwrap().remove(&shard);
        self.stops.lock().unwrap().push((shard, reason));
    }

    fn prepare(&self, shard: u32) {
        self.prepared.lock().unwrap().push((shard, Instant::now()));
    }

    fn prepare_handoff(&self, shard: u32) {
        self.handoff_prepared
            .lock()
            .unwrap()
            .push((shard, Instant::now()));
    }

    fn standby_ready(&self, shard: u32) -> bool {
        self.ready.load(Ordering::Acquire)
            && self
                .handoff_prepared
                .lock()
                .unwrap()
                .iter()
                .any(|(s, _)| *s == shard)
    }

    fn freeze(&self, shard: u32, done: DrainDone) {
        self.frozen.lock().unwrap().push((shard, Instant::now()));
        done.finish(self.can_freeze.load(Ordering::Acquire));
    }

    fn thaw(&self, shard: u32) {
        self.thawed.lock().unwrap().push((shard, Instant::now()));
    }

    fn drain(&self, shard: u32, done: DrainDone) {
        self.drains.lock().unwrap().push((shard, Instant::now()));
        let fence = self.active.lock().unwrap().remove(&shard);
        let committed = fence.is_some_and(|f| {
            self.redis
                .shard(shard, f)
                .commit(&CommitBatch {
                    watermark: Some(0),
                    ..Default::default()
                })
                .is_ok()
        });
        done.finish(committed);
    }
}

pub struct Cluster {
    pub redis: RedisProcess,
    pub store: RedisStore,
    pub dir: tempfile::TempDir,
    /// Death detection of the members started from now on.
    pub dead_after: Duration,
    /// Whether those members vouch for Redis's durability (no quarantine
    /// after a restart).
    pub redis_durable: bool,
}

impl Cluster {
    pub fn new() -> Self {
        let redis = RedisProcess::start(Fsync::Always).unwrap();
        let store = RedisStore::connect(RedisOptions::new(redis.url())).unwrap();
        Cluster {
            redis,
            store,
            dir: tempfile::tempdir().unwrap(),
            dead_after: MemberConfig::test("", "", SHARDS).dead_after,
            redis_durable: false,
        }
    }

    pub fn journal(&self, node: &str) -> PathBuf {
        self.dir.path().join(format!("{node}.jsonl"))
    }

    pub fn member(&self, node: &str) -> (Member, Arc<RecordingHost>) {
        let host = RecordingHost::new(self.store.clone());
        let mut config = MemberConfig::test(node, &format!("addr-of-{node}"), SHARDS);
        config.journal = Some(self.journal(node));
        config.dead_after = self.dead_after;
        config.redis_durable = self.redis_durable;
        let m = Member::start(self.store.clone(), config, host.clone()).unwrap();
        (m, host)
    }

    pub fn intervals(&self) -> Vec<Interval> {
        journal::intervals(&all_records(self))
    }

    /// Members "a", "b" and "c", once each holds a fair share of the shards.
    #[allow(clippy::type_complexity)]
    pub fn three_spread(
        &self,
    ) -> (
        (Member, Arc<RecordingHost>),
        (Member, Arc<RecordingHost>),
        (Member, Arc<RecordingHost>),
    ) {
        let (a, ha) = self.member("a");
        let (b, hb) = self.member("b");
        let (m3, h3) = self.member("c");
        // Members join once their start quarantine is over, so two of them
        // can converge before the third joins: wait for the spread placement.
        eventually(Duration::from_secs(20), "3 members own all shards", || {
            converged(&[(&a, &ha), (&b, &hb), (&m3, &h3)])
                && [&ha, &hb, &h3].iter().all(|h| h.active().len() >= 4)
        });
        ((a, ha), (b, hb), (m3, h3))
    }

    /// Members "a" and "b", once they own every shard between them.
    #[allow(clippy::type_complexity)]
    pub fn two_converged(&self) -> ((Member, Arc<RecordingHost>), (Member, Arc<RecordingHost>)) {
        let (a, ha) = self.member("a");
        let (b, hb) = self.member("b");
        // Both must have joined (each joins after its start quarantine).
        eventually(Duration::from_secs(20), "2 members own all shards", || {
            converged(&[(&a, &ha), (&b, &hb)]) && !ha.active().is_empty() && !hb.active().is_empty()
        });
        ((a, ha), (b, hb))
    }
}

/// Every record of every member's journal.
pub fn all_records(c: &Cluster) -> Vec<journal::Record> {
    let paths: Vec<PathBuf> = std::fs::read_dir(c.dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let refs: Vec<&std::path::Path> = paths.iter().map(PathBuf::as_path).collect();
    journal::read(&refs).unwrap()
}

impl Cluster {
    pub fn assert_no_double_ownership(&self) {
        let intervals = self.intervals();
        assert!(
            intervals.len() >= SHARDS as usize,
            "journals cover every shard"
        );
        let overlap = journal::double_ownership_ns(&intervals);
        assert!(
            overlap.values().all(|ns| *ns == 0),
            "double ownership (ns per shard): {overlap:?}"
        );
    }
}

/// Every shard active on exactly one of `hosts`, the one the table names.
pub fn converged(members: &[(&Member, &RecordingHost)]) -> bool {
    let mut seen = BTreeMap::new();
    for (m, h) in members {
        let view = m.view();
        for s in h.active() {
            if seen.insert(s, ()).is_some() || !view.active.contains(&s) {
                return false;
            }
        }
    }
    seen.len() == SHARDS as usize
}
