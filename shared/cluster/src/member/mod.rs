//! A node's membership in the cluster: one control loop (its own thread,
//! blocking Redis calls) that heartbeats, takes part in leader election,
//! runs the leader's placement rounds while it leads, and acquires, renews,
//! drains and releases the node's shard leases.
//!
//! The node's serving side is behind [`ShardHost`]: the loop tells it when
//! to start serving a shard (with the [`Fence`] its writes must carry),
//! when to stop at once, and when to drain for a graceful handoff.
//!
//! Deadlines: a renewal sent at monotonic time `t0` and confirmed makes the
//! node believe it owns the shard until `t0 + ttl - margin`. Redis starts
//! the TTL no earlier than `t0`, so that belief ends before Redis can give
//! the lease to anyone else, whatever happens to this process (a pause, a
//! partition, a slow Redis). The fence's validity check reads that deadline,
//! so a paused node that wakes up does not even send a write.

mod control;

use crate::coordinator::Coordinator;
use crate::journal::Journal;
use control::{CRASH, LEAVE, Loop, RUN};
use liveseg_store::redis::{Fence, RedisStore};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Timers and limits of one member (see `deploy/` for production values).
#[derive(Debug, Clone)]
pub struct MemberConfig {
    /// Unique per process start (contains no '#').
    pub node_id: String,
    /// Where other nodes reach this node's API.
    pub addr: String,
    /// Fixed shard count of the cluster.
    pub shards: u32,
    /// Shard lease TTL `L`; renewed every `L/3`.
    pub lease_ttl: Duration,
    /// Leader lease TTL.
    pub leader_ttl: Duration,
    /// A node silent this long is dead for placement (never a safety gate).
    pub dead_after: Duration,
    /// Control loop period (heartbeat, placement round, acquisition tries).
    pub tick: Duration,
    /// Most load-balancing moves per placement round.
    pub max_moves: usize,
    /// Bounded-load factor of placement.
    pub load_factor: f64,
    /// How long a graceful drain may take before the shard is stopped anyway.
    pub drain_timeout: Duration,
    /// Ownership journal (JSON lines), for fault tests.
    pub journal: Option<PathBuf>,
    /// The operator vouches that Redis never loses an acknowledged write:
    /// one instance (no failover to an asynchronous replica) with AOF and
    /// `appendfsync always`. Then, and only if Redis also reports that
    /// configuration, a Redis restart needs no acquisition quarantine.
    /// Off by default: failovers and `everysec` can lose writes.
    pub redis_durable: bool,
}

impl MemberConfig {
    /// Production timers: 10 s lease (renewed every 3.3 s), 6 s death
    /// detection, 500 ms control loop.
    pub fn new(node_id: &str, addr: &str, shards: u32) -> Self {
        MemberConfig {
            node_id: node_id.to_owned(),
            addr: addr.to_owned(),
            shards,
            lease_ttl: Duration::from_secs(10),
            leader_ttl: Duration::from_secs(5),
            dead_after: Duration::from_secs(6),
            tick: Duration::from_millis(500),
            max_moves: 16,
            load_factor: 1.1,
            drain_timeout: Duration::from_secs(10),
            journal: None,
            redis_durable: false,
        }
    }

    /// The timers of the fault tests: 2 s lease, 1.5 s death detection.
    pub fn test(node_id: &str, addr: &str, shards: u32) -> Self {
        MemberConfig {
            node_id: node_id.to_owned(),
            addr: addr.to_owned(),
            shards,
            lease_ttl: Duration::from_secs(2),
            leader_ttl: Duration::from_secs(1),
            dead_after: Duration::from_millis(1500),
            tick: Duration::from_millis(100),
            max_moves: 16,
            load_factor: 1.1,
            drain_timeout: Duration::from_secs(1),
            journal: None,
            redis_durable: false,
        }
    }

    /// How long a shard that moved stays put unless its owner dies
    /// (placement's settle rule): a lease TTL plus death detection, about
    /// what a failover takes, so a shard that just failed over is not moved
    /// again (a second handoff) by the rebalance a rejoining node triggers.
    pub fn settle(&self) -> Duration {
        self.lease_ttl + self.dead_after
    }

    /// A node silent this long is suspected dead: the leader names where
    /// its shards would go (a third of `dead_after`, at least three ticks,
    /// so one late heartbeat is not a suspicion), and those nodes load them
    /// while death detection and the lease run out. Never a safety gate.
    pub fn suspect_after(&self) -> Duration {
        (self.dead_after / 3).max(self.tick * 3)
    }

    /// How long a planned move waits for its handoff (the owner's freeze
    /// and the target's standby load) before the leader writes it anyway:
    /// a lease TTL plus death detection, about what a load takes at worst
    /// and what a crash takeover waits. A move written on time-out still
    /// finds the target's standby if its load is under way.
    pub fn handoff_timeout(&self) -> Duration {
        self.lease_ttl + self.dead_after
    }

    /// The backstop of a graceful leave: past this it drains everything and
    /// leaves the live set, handed off or not. (With no other staying node,
    /// or no leader for a leader TTL and three ticks, it does so sooner.)
    pub fn leave_timeout(&self) -> Duration {
        self.handoff_timeout() * 2 + self.drain_timeout
    }

    /// Safety margin subtracted from the lease TTL for the local deadline:
    /// 50 ms plus 1% of the TTL (clock-rate differences, scheduling).
    pub fn margin(&self) -> Duration {
        Duration::from_millis(50) + self.lease_ttl / 100
    }
}

/// Why the host must stop serving a shard at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The local lease deadline passed without a confirmed renewal.
    DeadlinePassed,
    /// A renewal found the lease gone (expired or taken).
    LeaseLost,
    /// A graceful drain did not finish in time.
    DrainTimedOut,
    /// The member is shutting down without a handoff.
    Shutdown,
}

/// Signals the end of a drain (the final fenced commit is done, or failed),
/// or of a freeze for a handoff.
#[derive(Clone, Default)]
pub struct DrainDone(Arc<AtomicU8>);

impl DrainDone {
    /// Not finished yet.
    pub fn new() -> Self {
        DrainDone(Arc::new(AtomicU8::new(0)))
    }

    /// `None` until finished, then whether it succeeded.
    pub fn outcome(&self) -> Option<bool> {
        match self.0.load(Ordering::Acquire) {
            0 => None,
            v => Some(v == 1),
        }
    }

    /// The drain finished; `committed` says whether the final commit landed.
    pub fn finish(&self, committed: bool) {
        self.0
            .store(if committed { 1 } else { 2 }, Ordering::Release);
    }
}

/// The serving side of a node. Calls come from the control thread and must
/// return quickly (spawn the work).
pub trait ShardHost: Send + Sync + 'static {
    /// Start serving `shard`: load its checkpoint, replay its stream tail,
    /// then tail it. Every write must carry `fence`, and every read must
    /// check `(fence.valid)()` just before answering: the control loop's own
    /// stop can come late when a Redis call blocks it, the fence cannot.
    fn activate(&self, shard: u32, fence: Fence);
    /// Stop serving `shard` now, writing nothing more.
    fn deactivate(&self, shard: u32, reason: StopReason);
    /// Stop taking work for `shard`, make the final fenced commit (none if
    /// the shard is frozen for a handoff: the freeze's checkpoint was the
    /// final one), stop serving, then call `done.finish(..)`. The lease is
    /// released after.
    fn drain(&self, shard: u32, done: DrainDone);
    /// The owner of `shard` looks dead and the leader named this node its
    /// next owner: load it now, reading only (no lease, no writes), so that
    /// `activate` finds it loaded once the lease is free and acquired.
    /// Called on every step while the name stands; a host must not load
    /// twice, and must drop a standby that is not activated in time, or
    /// whose shard someone else wrote meanwhile. What it kept of the shard
    /// from an earlier ownership of its own can never resume (the shard
    /// was held since) and should give way. The default does nothing.
    fn prepare(&self, _shard: u32) {}
    /// A handoff: `shard`'s owner froze it for this node (final checkpoint
    /// written, no more writes until the move or a thaw): load a standby.
    /// The default is `prepare`; a separate call so that a host can tell
    /// the two apart (the tests' recording host does).
    fn prepare_handoff(&self, shard: u32) {
        self.prepare(shard);
    }
    /// Whether a standby of `shard` is loaded here and nobody wrote the
    /// shard since its load began (so the move may be written now). Called
    /// on the control thread; may ask Redis. A stale standby is dropped, so
    /// that the next `prepare_handoff` loads afresh.
    fn standby_ready(&self, _shard: u32) -> bool {
        false
    }
    /// The leader plans to move `shard` away: write a final checkpoint, then
    /// write nothing more (keep answering; changes are carried), and call
    /// `done.finish(true)`, or `done.finish(false)` if it cannot. A drain
    /// of a frozen shard then writes nothing. Asked again every step while
    /// the intent stands (a restarted runtime comes back unfrozen), so it
    /// must be cheap and idempotent; freezes and thaws must take effect in
    /// the order they are called. The default cannot freeze.
    fn freeze(&self, _shard: u32, done: DrainDone) {
        done.finish(false);
    }
    /// The planned move of a frozen `shard` was called off: write again
    /// (first what was carried while frozen).
    fn thaw(&self, _shard: u32) {}
}

/// What the member believes now, for routing and status.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// Shards this node owns and serves (not draining).
    pub active: BTreeSet<u32>,
    /// The last assignment table read: shard → node.
    pub assignment: BTreeMap<u32, String>,
    /// Whether this node is the coordinator leader.
    pub leader: bool,
}

/// Reads a member's published view (see [`Member::viewer`]).
#[derive(Clone)]
pub struct Viewer(Arc<Mutex<View>>);

impl Viewer {
    pub fn view(&self) -> View {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A running member; dropping it stops the loop like a crash (no release).
pub struct Member {
    stop: Arc<AtomicU8>,
    paused: Arc<AtomicBool>,
    view: Arc<Mutex<View>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Member {
    /// Starts the control loop.
    pub fn start(
        redis: RedisStore,
        config: MemberConfig,
        host: Arc<dyn ShardHost>,
    ) -> liveseg_store::Result<Member> {
        let coordinator = Coordinator::new(redis.clone());
        coordinator.ensure_shard_count(config.shards)?;
        let journal = Journal::open(config.journal.as_deref())
            .map_err(|e| liveseg_store::StoreError::Internal(format!("journal: {e}")))?;
        let stop = Arc::new(AtomicU8::new(RUN));
        let paused = Arc::new(AtomicBool::new(false));
        let view = Arc::new(Mutex::new(View::default()));
        let mut state = Loop::new(
            redis,
            config.clone(),
            host,
            journal,
            coordinator,
            view.clone(),
        );
        let (s, p) = (stop.clone(), paused.clone());
        let thread = std::thread::Builder::new()
            .name(format!("cluster-{}", config.node_id))
            .spawn(move || state.run(&s, &p))
            .map_err(|e| liveseg_store::StoreError::Internal(e.to_string()))?;
        Ok(Member {
            stop,
            paused,
            view,
            thread: Some(thread),
        })
    }

    /// What the member believes now.
    pub fn view(&self) -> View {
        self.view.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A handle on the view that outlives `leave()`'s ownership of the
    /// member: routing keeps working while a leaving node drains.
    pub fn viewer(&self) -> Viewer {
        Viewer(self.view.clone())
    }

    /// Graceful leave: mark this node leaving (it stays in the live set and
    /// answers) so the leader hands every shard off to the others, drain and
    /// release each one as it moves, leave the live set, then stop. Returns
    /// when done: within about `handoff_timeout` and a drain, at most
    /// `leave_timeout` plus a drain; sooner (drain everything, leave) when
    /// no other node stays (at once) or no leader shows up (after a leader
    /// TTL and three ticks).
    pub fn leave(mut self) {
        self.stop.store(LEAVE, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Test hook: freeze the control loop (what SIGSTOP does to it), or
    /// thaw it. The serving side's fence keeps checking the deadline.
    pub fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::Release);
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.stop.store(CRASH, Ordering::Release);
            self.paused.store(false, Ordering::Release);
            let _ = t.join();
        }
    }
}
