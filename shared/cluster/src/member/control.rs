//! The member's control loop: one step every tick on its own thread, with
//! blocking Redis calls. Renewals come first in every step; then the Redis
//! restart check, the leader's placement round, acquisitions of assigned
//! shards, handoffs (`handoff`), and drains of shards assigned elsewhere.

use super::{DrainDone, MemberConfig, ShardHost, StopReason, View};
use crate::coordinator::Coordinator;
use crate::journal::{Journal, Kind, Record, mono_ns};
use crate::placement::{self, Node, PlacementInput, Settling};
use handoff::Freezing;
use liveseg_store::redis::{Fence, LeaseOutcome, RedisStore, ShardLeases};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod handoff;
mod leave;
mod standby;

/// What the member's owner asks of the loop (`Member::stop`).
pub(super) const RUN: u8 = 0;
pub(super) const LEAVE: u8 = 1;
pub(super) const CRASH: u8 = 2;

struct Held {
    epoch: u64,
    deadline: Arc<AtomicI64>,
    last_renew_ns: i64,
    draining: Option<(i64, DrainDone)>,
    /// Frozen (or freezing) for a handoff intent.
    freeze: Option<Freezing>,
}

pub(super) struct Loop {
    leases: ShardLeases,
    redis: RedisStore,
    /// Redis's `run_id` when last seen; a change means Redis restarted.
    redis_run_id: Option<String>,
    /// No new lease is acquired before this instant (CLOCK_MONOTONIC ns).
    quarantine_until_ns: i64,
    /// No heartbeat (so no placement here) before this instant.
    join_at_ns: i64,
    /// The leader makes no placement round before this instant.
    placement_hold_until_ns: i64,
    /// The leader names no standbys before this instant: heartbeats may
    /// be missing for everyone (Redis away), not only for the silent.
    standby_hold_until_ns: i64,
    /// The last leader round named standbys (the next one with none to
    /// name clears them, rather than leaving them for their TTL).
    named_standbys: bool,
    coordinator: Coordinator,
    config: MemberConfig,
    host: Arc<dyn ShardHost>,
    journal: Journal,
    held: BTreeMap<u32, Held>,
    leader_epoch: Option<u64>,
    assignment: crate::coordinator::Assignment,
    last_heartbeat_ns: i64,
    /// A heartbeat failed since the last one that landed.
    heartbeat_failed: bool,
    /// When this process's first heartbeat landed (it is in the live set
    /// since then); `None` before.
    live_since_ns: Option<i64>,
    /// Set once a graceful leave has removed this node from the live set.
    left_live_set: bool,
    /// When a graceful leave began (CLOCK_MONOTONIC ns).
    leave_started_ns: Option<i64>,
    /// Since when a leaving node has seen no leader.
    leaderless_since_ns: Option<i64>,
    view: Arc<Mutex<View>>,
}

fn ns(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

impl Loop {
    pub(super) fn new(
        redis: RedisStore,
        config: MemberConfig,
        host: Arc<dyn ShardHost>,
        journal: Journal,
        coordinator: Coordinator,
        view: Arc<Mutex<View>>,
    ) -> Loop {
        Loop {
            leases: redis.leases(),
            redis,
            redis_run_id: None,
            // Also at start: this node cannot know whether Redis just lost
            // data (see `observe_redis`).
            quarantine_until_ns: mono_ns() + ns(config.lease_ttl),
            // Joining the live set only once the start quarantine is over:
            // the leader would otherwise move shards to a node that may not
            // acquire them yet, and they would sit unowned meanwhile.
            join_at_ns: mono_ns() + ns(config.lease_ttl),
            placement_hold_until_ns: 0,
            standby_hold_until_ns: 0,
            named_standbys: false,
            coordinator,
            config,
            host,
            journal,
            held: BTreeMap::new(),
            leader_epoch: None,
            assignment: Default::default(),
            last_heartbeat_ns: 0,
            heartbeat_failed: false,
            live_since_ns: None,
            left_live_set: false,
            leave_started_ns: None,
            leaderless_since_ns: None,
            view,
        }
    }

    pub(super) fn run(&mut self, stop: &AtomicU8, paused: &AtomicBool) {
        loop {
            while paused.load(Ordering::Acquire) && stop.load(Ordering::Acquire) == RUN {
                std::thread::sleep(Duration::from_millis(5));
            }
            match stop.load(Ordering::Acquire) {
                CRASH => return,
                LEAVE => {
                    if self.leave_step() {
                        return;
                    }
                }
                _ => self.step(),
            }
            self.publish_view();
            std::thread::sleep(self.config.tick);
        }
    }

    /// Heartbeats, at most once per tick, once the start quarantine is over.
    fn heartbeat(&mut self) {
        let now = mono_ns();
        if now >= self.join_at_ns && now - self.last_heartbeat_ns >= ns(self.config.tick) {
            let forget = self.config.dead_after * 20;
            match self.coordinator.heartbeat(
                &self.config.node_id,
                &self.config.addr,
                forget.as_millis() as u64,
                self.config.dead_after.as_millis() as u64,
            ) {
                Ok(_) => {
                    // Peers' heartbeats were kept out as long as this
                    // node's were: once that is long enough for them to
                    // look dead, hold placement until they have landed. A
                    // short failure streak holds nothing, so heartbeats
                    // that fail now and then cannot stall placement.
                    let away = now - self.last_heartbeat_ns;
                    if std::mem::take(&mut self.heartbeat_failed)
                        && away >= ns(self.config.dead_after) / 2
                    {
                        self.hold_placement();
                    }
                    self.last_heartbeat_ns = now;
                    self.live_since_ns.get_or_insert(now);
                }
                Err(e) => {
                    self.heartbeat_failed = true;
                    tracing::warn!(error = %e, "heartbeat failed");
                }
            }
        }
    }

    fn step(&mut self) {
        self.heartbeat();
        // Renewals first: nothing else in the step may delay them.
        self.expire_and_renew();
        let run_id = self.observe_redis();
        self.leader_step();
        // Intents before the assignment (see `handoff`).
        let handoffs = self.read_handoffs();
        let fresh = self.refresh_assignment();
        self.acquire_assigned(run_id.as_deref());
        self.prepare_standbys();
        if let Some(h) = &handoffs {
            self.freeze_for_handoffs(h, fresh);
            self.prepare_handoffs(h);
        }
        self.drain_unassigned();
        self.finish_drains();
    }

    /// Quarantine after a Redis restart. A Redis that lost writes (AOF
    /// `everysec`, or a failover) can have forgotten leases that owners still
    /// believe in, and can hand out an epoch again. So after seeing a new
    /// `run_id`, this node acquires nothing for one lease TTL: every owner's
    /// belief from before the restart ends within one TTL of its last
    /// renewal, which was before the restart. Renewals continue: they check
    /// the exact `node#epoch` and report `Lost` if Redis forgot it.
    ///
    /// A Redis that acknowledges only what is on disk (`appendfsync always`)
    /// and is never replaced by an asynchronous replica forgets nothing it
    /// acknowledged: its leases and epochs survive the restart, expiring at
    /// the same wall-clock instants, so no quarantine is needed and shards
    /// whose leases ran out while it was down are acquired again as soon as
    /// it answers. Nothing a node can read tells a restart from a failover,
    /// so this takes the operator's word (`redis_durable`) as well as
    /// Redis's reported configuration.
    /// Returns the run id seen now, or `None` if it could not be read (then
    /// nothing is acquired in this step).
    fn observe_redis(&mut self) -> Option<String> {
        match self.redis.run_id() {
            Ok(id) => {
                if self.redis_run_id.as_ref().is_some_and(|prev| *prev != id) {
                    // Heartbeats from before the restart may be lost too.
                    self.hold_placement();
                    self.quarantine_unless_durable();
                }
                self.redis_run_id = Some(id.clone());
                Some(id)
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the redis run id failed");
                None
            }
        }
    }

    fn quarantine_unless_durable(&mut self) {
        let durable = if self.config.redis_durable {
            self.redis.durable_writes()
        } else {
            Ok(false)
        };
        match durable {
            Ok(true) => tracing::warn!("redis restarted; it fsyncs every write: no quarantine"),
            durable => {
                if let Err(e) = durable {
                    // Unknown is treated as not durable.
                    tracing::warn!(error = %e, "reading the redis fsync policy failed");
                }
                tracing::warn!("redis restarted: no new leases for one lease TTL");
                self.quarantine_until_ns = mono_ns() + ns(self.config.lease_ttl);
            }
        }
    }

    fn quarantined(&self) -> bool {
        mono_ns() < self.quarantine_until_ns
    }

    fn leader_step(&mut self) {
        if self.leader_epoch.is_none() && self.quarantined() {
            return;
        }
        let ttl = self.config.leader_ttl.as_millis() as u64;
        let prefix = Coordinator::leader_prefix();
        let outcome = self
            .leases
            .acquire_at(prefix, &self.config.node_id, ttl, self.leader_epoch);
        let was_leader = self.leader_epoch.is_some();
        self.leader_epoch = match outcome {
            Ok(LeaseOutcome::Acquired { epoch } | LeaseOutcome::Renewed { epoch }) => Some(epoch),
            Ok(LeaseOutcome::Lost | LeaseOutcome::HeldByOther { .. }) => None,
            Err(e) => {
                tracing::warn!(error = %e, "leader lease call failed");
                None
            }
        };
        if self.leader_epoch.is_some() && !was_leader {
            self.hold_placement_after_takeover();
            // The last leader's names stand until this one renames or
            // clears them.
            self.named_standbys = true;
        }
        let now = mono_ns();
        // A new leader's hold (the cluster may be starting) still names
        // standbys: a silent node's heartbeats are in Redis all the same,
        // and a leader that took over from a killed one has its shards to
        // name. Only after Redis was away are heartbeats untrustworthy.
        // Nor does a leader whose own heartbeats have not landed within
        // `suspect_after` place anything: whatever keeps them out (Redis
        // loading after a restart) kept its peers' out too, and a round
        // that reads the live set the moment Redis answers again sees only
        // the nodes whose beats happened to land first. (In a mix run a
        // Redis restart's hold ended while the leader's beats still failed,
        // and the first round moved all 8 shards onto one node.)
        let assign = now >= self.placement_hold_until_ns && self.heard_recently();
        if !assign && now < self.standby_hold_until_ns {
            return;
        }
        if let Some(epoch) = self.leader_epoch
            && let Err(e) = self.placement_round(epoch, assign)
        {
            tracing::warn!(error = %e, "placement round failed");
        }
    }

    /// A leader that just saw Redis restart cannot trust the live set (the
    /// heartbeats may be lost): without a pause it would move every shard
    /// to the few nodes it heard from first, and back again a moment later.
    /// The same holds once its own heartbeats go through again after
    /// failing for half of `dead_after` or more: whatever kept them out
    /// (Redis down, loading its data set after a restart, stalled) kept its
    /// peers' out too, so theirs may be older than `dead_after` until they
    /// have had `dead_after` to land.
    /// The hold must start then, not when the restart was seen: Redis
    /// answers `INFO` (the run id) while it loads, and a load can outlast
    /// `dead_after` (a 2 s load once moved 7 of 8 shards onto the leader).
    fn hold_placement(&mut self) {
        let until = mono_ns() + ns(self.config.dead_after);
        self.placement_hold_until_ns = self.placement_hold_until_ns.max(until);
        self.standby_hold_until_ns = self.standby_hold_until_ns.max(until);
    }

    /// A new leader reads the same heartbeats its predecessor did (they are
    /// in Redis), so taking over needs no pause of its own, except while
    /// this node itself has been live for less than `dead_after`: then the
    /// cluster may be starting and its peers not registered yet. Holding
    /// on every takeover would stall every shard a leaving or crashed
    /// leader owned for `dead_after` more.
    fn hold_placement_after_takeover(&mut self) {
        let until = match self.live_since_ns {
            Some(t) => t + ns(self.config.dead_after),
            None => mono_ns() + ns(self.config.dead_after),
        };
        self.placement_hold_until_ns = self.placement_hold_until_ns.max(until);
    }

    /// One leader round: live nodes + current table -> standbys named, and
    /// with `assign`, plan -> fenced write.
    fn placement_round(&mut self, epoch: u64, assign: bool) -> liveseg_store::Result<()> {
        let heard = self
            .coordinator
            .live_nodes(self.config.dead_after.as_millis() as u64)?;
        // Leaving nodes take nothing more; what they own moves off them
        // (handed off while they still answer, `handoff`).
        let leaving = self.coordinator.leaving(&heard)?;
        let live: Vec<Node> = heard
            .into_iter()
            .filter(|id| !leaving.contains(id))
            .map(|id| Node { id, weight: 1 })
            .collect();
        let table = self.coordinator.assignment()?;
        let current: Vec<Option<String>> = (0..self.config.shards)
            .map(|s| table.owners.get(&s).cloned())
            .collect();
        let times = self.coordinator.move_times()?;
        let moved_at: Vec<Option<i64>> = (0..self.config.shards)
            .map(|s| times.moved_at.get(&s).copied())
            .collect();
        let serving_at: Vec<Option<i64>> = (0..self.config.shards)
            .map(|s| times.serving_at.get(&s).copied())
            .collect();
        let period_ms = i64::try_from(self.config.settle().as_millis()).unwrap_or(i64::MAX);
        let warming: Vec<String> = live
            .iter()
            .filter(|n| {
                times
                    .live_since
                    .get(&n.id)
                    .is_some_and(|since| times.now_ms.saturating_sub(*since) < period_ms)
            })
            .map(|n| n.id.clone())
            .collect();
        // The standbys named last round: where the shards of silent owners
        // are loading. Passed back so the names stick, and so the round
        // that finds an owner dead gives its shards to those nodes.
        let (fresh, standby) = self.fresh_and_named();
        let input = PlacementInput {
            shards: self.config.shards,
            live: &live,
            current: &current,
            max_moves: self.config.max_moves,
            load_factor: self.config.load_factor,
            settling: Settling {
                now_ms: times.now_ms,
                moved_at: &moved_at,
                serving_at: &serving_at,
                period_ms,
                warming: &warming,
            },
            standby: &standby,
        };
        self.name_standbys(epoch, &input, fresh.as_deref());
        if !assign {
            return Ok(());
        }
        let plan = placement::plan(&input);
        self.write_moves(epoch, &plan.moves, fresh.as_deref())
    }

    /// Reads the table if it changed; false if it could not be read (the
    /// table held may be stale).
    fn refresh_assignment(&mut self) -> bool {
        match self.coordinator.assignment_version() {
            Ok(v) if v == self.assignment.version && v != 0 => true,
            Ok(_) => match self.coordinator.assignment() {
                Ok(a) => {
                    self.assignment = a;
                    true
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading the assignment failed");
                    false
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "reading the assignment version failed");
                false
            }
        }
    }

    fn record(&self, shard: u32, epoch: u64, kind: Kind, deadline_ns: Option<i64>) {
        self.journal.record(&Record {
            mono_ns: mono_ns(),
            node: self.config.node_id.clone(),
            shard,
            epoch,
            kind,
            deadline_ns,
        });
    }

    /// Stops shards whose deadline passed; renews those due (every L/3).
    fn expire_and_renew(&mut self) {
        let ttl = ns(self.config.lease_ttl);
        let life = ttl - ns(self.config.margin());
        let shards: Vec<u32> = self.held.keys().copied().collect();
        for s in shards {
            let Some(h) = self.held.get(&s) else { continue };
            let (epoch, deadline) = (h.epoch, h.deadline.clone());
            if mono_ns() >= deadline.load(Ordering::Acquire) {
                self.host.deactivate(s, StopReason::DeadlinePassed);
                self.record(s, epoch, Kind::DeadlineStop, None);
                self.held.remove(&s);
                continue;
            }
            if mono_ns() - h.last_renew_ns < ttl / 3 {
                continue;
            }
            let t0 = mono_ns();
            let ttl_ms = self.config.lease_ttl.as_millis() as u64;
            match self
                .leases
                .acquire(s, &self.config.node_id, ttl_ms, Some(epoch))
            {
                Ok(LeaseOutcome::Renewed { .. }) => {
                    deadline.store(t0 + life, Ordering::Release);
                    if let Some(h) = self.held.get_mut(&s) {
                        h.last_renew_ns = t0;
                    }
                    self.record(s, epoch, Kind::Renew, Some(t0 + life));
                }
                Ok(_) => {
                    deadline.store(0, Ordering::Release);
                    self.host.deactivate(s, StopReason::LeaseLost);
                    self.record(s, epoch, Kind::Lost, None);
                    self.held.remove(&s);
                }
                // Unknown outcome: keep the old deadline; it stops us in time.
                Err(e) => tracing::warn!(shard = s, error = %e, "lease renewal failed"),
            }
        }
    }

    /// Acquires the assigned shards this node does not hold. Redis could
    /// restart between the quarantine decision and an acquire, so the run
    /// id is read again afterwards and new leases are only used (activated)
    /// if it did not change; otherwise they are released and the
    /// quarantine starts.
    fn acquire_assigned(&mut self, run_id: Option<&str>) {
        let Some(run_id) = run_id else { return };
        if self.quarantined() {
            return;
        }
        let mut acquired: Vec<(u32, u64, i64)> = Vec::new();
        let me = &self.config.node_id;
        let wanted: Vec<u32> = self
            .assignment
            .owners
            .iter()
            .filter(|(s, n)| *n == me && !self.held.contains_key(s))
            .map(|(s, _)| *s)
            .collect();
        let life = ns(self.config.lease_ttl) - ns(self.config.margin());
        let ttl_ms = self.config.lease_ttl.as_millis() as u64;
        for s in wanted {
            let t0 = mono_ns();
            match self.leases.acquire(s, &self.config.node_id, ttl_ms, None) {
                Ok(LeaseOutcome::Acquired { epoch }) => acquired.push((s, epoch, t0)),
                Ok(_) => {} // still held by the previous owner: retry next tick
                Err(e) => tracing::warn!(shard = s, error = %e, "lease acquire failed"),
            }
        }
        if acquired.is_empty() {
            return;
        }
        if self.redis.run_id().ok().as_deref() != Some(run_id) {
            tracing::warn!("redis changed while acquiring: releasing");
            self.quarantine_unless_durable();
            for (s, epoch, _) in acquired {
                let _ = self.leases.release(s, &self.config.node_id, epoch);
            }
            return;
        }
        for (s, epoch, t0) in acquired {
            let deadline = Arc::new(AtomicI64::new(t0 + life));
            self.record(s, epoch, Kind::Acquire, Some(t0 + life));
            let d = deadline.clone();
            let fence = Fence {
                token: format!("{}#{epoch}", self.config.node_id),
                valid: Arc::new(move || mono_ns() < d.load(Ordering::Acquire)),
            };
            self.held.insert(
                s,
                Held {
                    epoch,
                    deadline,
                    last_renew_ns: t0,
                    draining: None,
                    freeze: None,
                },
            );
            self.host.activate(s, fence);
        }
    }

    fn drain_unassigned(&mut self) {
        let me = &self.config.node_id;
        let leaving: Vec<u32> = self
            .held
            .iter()
            .filter(|(s, h)| {
                h.draining.is_none() && self.assignment.owners.get(s).is_some_and(|n| n != me)
            })
            .map(|(s, _)| *s)
            .collect();
        for s in leaving {
            self.start_drain(s);
        }
    }

    fn start_drain(&mut self, s: u32) {
        let Some(h) = self.held.get_mut(&s) else {
            return;
        };
        let done = DrainDone::new();
        h.draining = Some((mono_ns(), done.clone()));
        let epoch = h.epoch;
        self.record(s, epoch, Kind::Draining, None);
        self.host.drain(s, done);
    }

    fn finish_drains(&mut self) {
        let timeout = ns(self.config.drain_timeout);
        let shards: Vec<u32> = self.held.keys().copied().collect();
        for s in shards {
            let Some(h) = self.held.get(&s) else { continue };
            let Some((started, done)) = &h.draining else {
                continue;
            };
            let finished = done.0.load(Ordering::Acquire) != 0;
            if !finished && mono_ns() - started < timeout {
                continue;
            }
            if !finished {
                self.host.deactivate(s, StopReason::DrainTimedOut);
            }
            let epoch = h.epoch;
            // Stop believing before releasing, so the journal never shows
            // this node owning the shard after another could acquire it.
            h.deadline.store(0, Ordering::Release);
            self.record(s, epoch, Kind::Release, None);
            if let Err(e) = self.leases.release(s, &self.config.node_id, epoch) {
                tracing::warn!(shard = s, error = %e, "lease release failed; it will expire");
            }
            self.held.remove(&s);
        }
    }

    fn publish_view(&self) {
        let mut v = self.view.lock().unwrap_or_else(|p| p.into_inner());
        v.active = self
            .held
            .iter()
            .filter(|(_, h)| h.draining.is_none())
            .map(|(s, _)| *s)
            .collect();
        v.assignment = self.assignment.owners.clone();
        v.leader = self.leader_epoch.is_some();
    }
}
