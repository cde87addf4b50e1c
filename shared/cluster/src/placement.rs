//! Shard placement: which live node owns each shard. Pure and deterministic, so
//! a newly elected leader recomputes exactly what its predecessor would have.
//!
//! - **Rendezvous (HRW) hashing** ranks the live nodes per shard from the ids
//!   alone; a membership change only disturbs the shards whose ranking changed
//!   (about 1/N of them), unlike `hash mod N`.
//! - **Bounded load**: each node may hold at most `ceil(load_factor * S * w / W)`
//!   shards, because plain HRW over few shards can be visibly unbalanced. A
//!   round adds to a full node only a shard without a live owner whose
//!   standby the node holds (below); a node left over capacity (capacities
//!   shrink when a node joins) sheds within the `max_moves` budget, so a join
//!   is spread over several rounds instead of one big reshuffle.
//! - **Hysteresis**: a shard move is a handoff (lease, state load, warm-up), so a
//!   live owner keeps its shards unless it is over capacity or a strictly
//!   better-ranked node has room; those rebalance moves are limited to
//!   `max_moves` per round. Shards without a live owner are unavailable, so they
//!   are always placed at once.
//! - **Settle time**: a shard that moved recently (its last move is input data,
//!   [`Settling`], stamped on Redis's clock by the leader's write; the owner
//!   stamps when the shard starts serving) is left where it is by load
//!   balancing while it loads and until a settle period has passed since it
//!   started serving. A move costs a handoff, and right after a failover the
//!   new owner may still be loading it: moving it again at once (say because
//!   a restarted node just joined) would throw that load away and pay a
//!   second handoff for nothing. A load that never reports serving stops
//!   holding after [`LOADING_PERIODS`] settle periods. Likewise a node that
//!   joined or came back within the settle period receives no balancing
//!   move (`Settling::warming`): a shard whose destination would be such a
//!   node stays where it is (it is not sent to the next node, which would
//!   hand it on later), and owners left over capacity by the join do not
//!   shed until it is warm; shards without a live owner still go to it.
//! - **One handoff at a time per node**: with serving data (the leader
//!   always has it), a node that is loading a shard (moved to it, not yet
//!   serving) receives no balancing move, and a round sends it at most one.
//!   Loads on one node share its cores: on the 2-core test machine two at
//!   once kept both shards unavailable for about twice as long. So a node
//!   that joins takes its share one load after another, and a lost serving
//!   stamp holds balancing onto the whole node for `LOADING_PERIODS` settle
//!   periods. Held, like a warming node's, not redirected.
//! - **Standbys first**: a shard without a live owner goes to the live node
//!   named its standby (`standby_moves`), over capacity if need be. That
//!   node has loaded the shard, or is loading it, while the owner's lease
//!   ran out, and takes it by reading the stream written since; any other
//!   node pays a full load. Passing the names back into the naming round
//!   makes them stick while their node stays live: a node that joins
//!   meanwhile (with room, or ranking higher) does not pull the shards to
//!   itself and restart their loads there, all at once on one node (three
//!   loads side by side took 6 s to serve in a mix run). Capacity is
//!   restored afterwards by shedding, a make-before-break handoff.
//!
//! Convergence: with a fixed live set, after the first round every shard has a
//! live owner, and every later move either removes one unit of over-capacity
//! excess (shedding never lands on a full node) or, leaving the excess alone,
//! strictly improves its shard's HRW rank. That potential is finite, so repeated
//! rounds with `max_moves >= 1` reach a fixed point: no oscillation. Settling
//! and one-at-a-time only remove candidates, for a bounded time (a serving
//! stamp or `LOADING_PERIODS` ends a load), so they delay moves, and may
//! change their order (hence possibly which fixed point), never prevent
//! convergence. Standby names only choose where the first round puts the
//! ownerless shards; the excess they may leave is shed like any other.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// Stable 64-bit hash of `(shard, node)`: FNV-1a over the shard's 4 little-endian
/// bytes then the id bytes, followed by the SplitMix64 finalizer so neighbouring
/// shard numbers get unrelated scores. Hand-written (not `DefaultHasher`) because
/// every leader, on any platform or toolchain, must rank nodes identically.
pub fn rendezvous_score(shard: u32, node: &str) -> u64 {
    let mut z = fnv1a(fnv1a(FNV_OFFSET, &shard.to_le_bytes()), node.as_bytes());
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Weighted HRW score `-weight / ln(u)`, `u` uniform in (0, 1) from the hash: the
/// logarithmic method, under which a node wins a shard with probability
/// proportional to its weight. `u` uses the top 53 bits so it is exact in `f64`
/// and never rounds to 1.0 (which would make the score infinite).
pub fn hrw_score(shard: u32, node: &Node) -> f64 {
    let top53 = (rendezvous_score(shard, &node.id) >> 11) as f64;
    let u = (top53 + 0.5) / (1u64 << 53) as f64;
    -f64::from(node.weight.max(1)) / u.ln()
}

/// The shard holding a tenant: FNV-1a 64 of the tenant id bytes, mod `shards`
/// (0 is treated as 1). All of a tenant's accounts live in one shard in this
/// version, because contacts move between accounts and routing needs the
/// tenant's contact directory in one place.
pub fn shard_of(tenant: &str, shards: u32) -> u32 {
    let shards = u64::from(shards.max(1));
    u32::try_from(fnv1a(FNV_OFFSET, tenant.as_bytes()) % shards).unwrap_or(0)
}

/// A live node as seen by the leader. Weight 0 is treated as 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub id: String,
    pub weight: u32,
}

/// One placement round's input.
#[derive(Debug, Clone, Copy)]
pub struct PlacementInput<'a> {
    /// Number of shards `S`; shards are `0..S`.
    pub shards: u32,
    /// Live nodes; order is irrelevant, a duplicated id keeps its largest weight.
    pub live: &'a [Node],
    /// Current owner per shard (may name dead nodes); missing entries count as `None`.
    pub current: &'a [Option<String>],
    /// Cap on `Rebalance` moves this round (capacity shedding included).
    pub max_moves: usize,
    /// Capacity slack over the fair share, e.g. 1.1; values below 1 (or NaN) act as 1.
    pub load_factor: f64,
    /// Which shards moved too recently to be moved for load balancing.
    pub settling: Settling<'a>,
    /// The node named standby per shard (see [`standby_moves`]); missing
    /// entries count as `None`. A shard without a live owner goes to its
    /// standby node when that node is live, even over capacity.
    pub standby: &'a [Option<String>],
}

/// When each shard last moved and last started serving, and how long a
/// moved shard stays put unless it loses its owner. All instants are ms on
/// one clock (the leader uses Redis's `TIME`, as for liveness), passed in so
/// `plan` stays pure.
#[derive(Debug, Clone, Copy)]
pub struct Settling<'a> {
    /// The round's current instant.
    pub now_ms: i64,
    /// Last move per shard; missing entries and `None` never moved (or long ago).
    pub moved_at: &'a [Option<i64>],
    /// When each shard last started serving at an owner. Empty: no serving
    /// data, so a shard settles for `period_ms` after its move and nodes
    /// are not held to one handoff at a time.
    pub serving_at: &'a [Option<i64>],
    /// A shard that moved (or started serving) less than this long ago is
    /// not moved for balance.
    pub period_ms: i64,
    /// Live nodes that joined, or came back after missing heartbeats, less
    /// than `period_ms` ago: they take shards that have no live owner, but
    /// no balancing move lands on them yet. A node woken from a pause is
    /// busy catching up (its parked shards, timers, connections), and a
    /// flapping node would otherwise pull shards to itself each time it
    /// reappears; a shard moved onto either pays a handoff at its worst.
    pub warming: &'a [String],
}

/// How long, in settle periods, a shard that has not started serving since
/// its move counts as still loading; past that its owner is assumed to have
/// served without saying so (its stamp failed) and balancing resumes.
pub const LOADING_PERIODS: i64 = 4;

impl Settling<'_> {
    /// Nothing is settling: every shard may move.
    pub const NONE: Settling<'static> = Settling {
        now_ms: 0,
        moved_at: &[],
        serving_at: &[],
        period_ms: 0,
        warming: &[],
    };

    /// Whether load balancing leaves `shard` where it is: it moved within
    /// the settle period, it is still loading after its move (a balancing
    /// move would throw that load away), or it started serving within the
    /// settle period.
    pub fn holds(&self, shard: usize) -> bool {
        let moved = self.at(self.moved_at, shard);
        let served = self.at(self.serving_at, shard);
        moved.is_some_and(|m| self.within(m, 1))
            || self.loading(shard)
            || served.is_some_and(|s| self.within(s, 1))
    }

    /// Whether `shard` moved and has not started serving since, for at
    /// most [`LOADING_PERIODS`] settle periods. Without serving data
    /// nothing counts as loading.
    pub fn loading(&self, shard: usize) -> bool {
        if self.serving_at.is_empty() {
            return false;
        }
        let served = self.at(self.serving_at, shard);
        self.at(self.moved_at, shard)
            .is_some_and(|m| served.is_none_or(|s| s < m) && self.within(m, LOADING_PERIODS))
    }

    fn at(&self, times: &[Option<i64>], shard: usize) -> Option<i64> {
        times.get(shard).copied().flatten()
    }

    fn within(&self, t: i64, periods: i64) -> bool {
        self.now_ms.saturating_sub(t) < self.period_ms.saturating_mul(periods)
    }
}

/// The new assignment and how it differs from `current`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Owner per shard, `len == shards`; all `None` only when nothing is live.
    pub assignment: Vec<Option<String>>,
    /// Exactly the shards whose owner changed, by shard number. Empty when no
    /// node is live: there is nobody to move to, so ownership simply lapses.
    pub moves: Vec<Move>,
}

/// One shard changing owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move {
    pub shard: u32,
    pub from: Option<String>,
    pub to: String,
    pub reason: MoveReason,
}

/// Why a shard moved; only `Rebalance` counts against `max_moves`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MoveReason {
    /// No owner, or the owner is not live: must be placed now.
    Unowned,
    /// A live owner gave the shard up (over capacity, or a better node has room).
    Rebalance,
}

/// Sorted by id with duplicates merged, so the result ignores input order.
fn normalize(live: &[Node]) -> Vec<Node> {
    let mut nodes = live.to_vec();
    nodes.iter_mut().for_each(|n| n.weight = n.weight.max(1));
    nodes.sort_by(|a, b| a.id.cmp(&b.id).then(b.weight.cmp(&a.weight)));
    nodes.dedup_by(|later, first| later.id == first.id);
    nodes
}

/// `max(1, ceil(load_factor * S * w / W))`, never below the integer fair share
/// `ceil(S * w / W)`, so the capacities always sum to at least `S`.
fn capacities(nodes: &[Node], shards: u32, load_factor: f64) -> Vec<usize> {
    let lf = load_factor.max(1.0); // f64::max also maps NaN to 1.0
    let total: u64 = nodes.iter().map(|n| u64::from(n.weight)).sum();
    let s = u64::from(shards);
    nodes
        .iter()
        .map(|n| {
            let w = u64::from(n.weight);
            let fair = (s * w).div_ceil(total.max(1));
            let scaled = (lf * f64::from(shards) * f64::from(n.weight) / total.max(1) as f64)
                .ceil()
                .min(s as f64) as u64;
            usize::try_from(fair.max(scaled).max(1)).unwrap_or(usize::MAX)
        })
        .collect()
}

/// Node indices for `shard`, best first; equal scores go to the smaller id
/// (nodes are sorted by id, so that is the smaller index).
fn hrw_order(shard: u32, nodes: &[Node]) -> Vec<usize> {
    let scores: Vec<f64> = nodes.iter().map(|n| hrw_score(shard, n)).collect();
    let mut order: Vec<usize> = (0..nodes.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order
}

/// `load[a] / caps[a]` versus `load[b] / caps[b]`, exactly.
fn cmp_fill(load: &[usize], caps: &[usize], a: usize, b: usize) -> Ordering {
    (load[a] as u128 * caps[b] as u128).cmp(&(load[b] as u128 * caps[a] as u128))
}

/// Computes one placement round; see the module docs for the rules. Cost:
/// O(S·N log N) to rank, plus O(S·N) per rebalance move.
pub fn plan(input: &PlacementInput<'_>) -> Plan {
    let count = input.shards as usize;
    let current: Vec<Option<&str>> = (0..count)
        .map(|s| input.current.get(s).and_then(|o| o.as_deref()))
        .collect();
    let nodes = normalize(input.live);
    if nodes.is_empty() {
        return Plan {
            assignment: vec![None; count],
            moves: Vec::new(),
        };
    }
    let caps = capacities(&nodes, input.shards, input.load_factor);
    let order: Vec<Vec<usize>> = (0..input.shards).map(|s| hrw_order(s, &nodes)).collect();
    let mut rank = vec![vec![0usize; nodes.len()]; count];
    for (s, ord) in order.iter().enumerate() {
        for (r, &n) in ord.iter().enumerate() {
            rank[s][n] = r;
        }
    }
    let find = |id: &str| nodes.binary_search_by(|n| n.id.as_str().cmp(id)).ok();
    let mut owner: Vec<Option<usize>> = current.iter().map(|c| c.and_then(find)).collect();
    let mut load = vec![0usize; nodes.len()];
    for &o in owner.iter().flatten() {
        load[o] += 1;
    }
    let mut budget = input.max_moves;

    // With serving data, a node takes one handoff at a time: while it is
    // loading a shard it receives no balancing move. Loads onto one node
    // compete for its cores, so two at once make both shards unavailable
    // for about twice as long (a woken node taking two shards back loaded
    // them in 3.3 s against ~1.2 s alone); one after the other, each
    // shard's outage is one load. Shards without a live owner still go
    // wherever they must at once.
    let one_at_a_time = !input.settling.serving_at.is_empty();
    let mut receiving = vec![false; nodes.len()];
    for (s, o) in owner.iter().enumerate() {
        if let Some(n) = *o {
            receiving[n] |= input.settling.loading(s);
        }
    }

    // 1. Place every ownerless shard on its live standby node, else on its
    //    best node with room. Standby placements go first, so the others
    //    take the room that is left rather than filling a standby node
    //    that then overflows. Room always exists for the others
    //    (capacities sum to >= S and over-full nodes only add to the spare
    //    elsewhere); the fallback just keeps this total.
    let mut moved = vec![false; count];
    let standby_of = |s: usize| {
        input
            .standby
            .get(s)
            .and_then(|o| o.as_deref())
            .and_then(find)
    };
    let (named, unnamed): (Vec<usize>, Vec<usize>) = (0..count)
        .filter(|&s| owner[s].is_none())
        .partition(|&s| standby_of(s).is_some());
    for s in named.into_iter().chain(unnamed) {
        let best = order[s].iter().copied().find(|&n| load[n] < caps[n]);
        let n = standby_of(s).or(best).unwrap_or(order[s][0]);
        owner[s] = Some(n);
        load[n] += 1;
        moved[s] = true;
        receiving[n] |= one_at_a_time;
    }

    // 2. Spend the budget one move at a time. A shard may go to its best node
    //    with room that ranks above its owner, or, if the owner is over
    //    capacity, to its best node with room at all (shedding). Preference:
    //    moves onto the shard's HRW top (final: such a shard never moves
    //    again), then sheds, then the fullest source, then the largest rank
    //    gain (so an owner sheds the shards it ranks worst on first). A shard
    //    moves at most once per round, and not while it settles.
    let settling: Vec<bool> = (0..count).map(|s| input.settling.holds(s)).collect();
    let warming: Vec<bool> = nodes
        .iter()
        .map(|n| input.settling.warming.contains(&n.id))
        .collect();
    // A join is what leaves owners over capacity (capacities shrink), and
    // the joiner is where their sheds belong: while a node warms up,
    // nobody sheds, so no shed goes to another node first.
    let shedding = !warming.contains(&true);
    while budget > 0 {
        let movable = |&s: &usize| !moved[s] && !settling[s];
        let candidates = (0..count).filter(movable).filter_map(|s| {
            let from = owner[s]?;
            let over = shedding && load[from] > caps[from];
            let above = if over { nodes.len() } else { rank[s][from] };
            let mut room = order[s][..above].iter().copied();
            let to = room.find(|&n| n != from && load[n] < caps[n])?;
            // Held, not redirected: the next node would hand the shard on
            // to this one once it is warm (or done loading), a second
            // handoff.
            if warming[to] || receiving[to] {
                return None;
            }
            Some((s, from, to, over))
        });
        let gain = |s: usize, from: usize, to: usize| rank[s][from] as i64 - rank[s][to] as i64;
        let best = candidates.max_by(|&(sa, fa, ta, oa), &(sb, fb, tb, ob)| {
            (rank[sb][tb].min(1).cmp(&rank[sa][ta].min(1)))
                .then(oa.cmp(&ob))
                .then_with(|| cmp_fill(&load, &caps, fa, fb))
                .then(gain(sa, fa, ta).cmp(&gain(sb, fb, tb)))
                .then(sb.cmp(&sa))
        });
        let Some((s, from, to, _)) = best else { break };
        owner[s] = Some(to);
        load[from] -= 1;
        load[to] += 1;
        moved[s] = true;
        receiving[to] |= one_at_a_time;
        budget -= 1;
    }

    let assignment: Vec<Option<String>> = owner
        .iter()
        .map(|o| o.map(|n| nodes[n].id.clone()))
        .collect();
    let moves = (0..count)
        .filter_map(|s| {
            let to = assignment[s].clone()?;
            if current[s] == Some(to.as_str()) {
                return None;
            }
            let owner_live = current[s].and_then(find);
            Some(Move {
                shard: u32::try_from(s).ok()?,
                from: current[s].map(str::to_owned),
                to,
                reason: owner_live.map_or(MoveReason::Unowned, |_| MoveReason::Rebalance),
            })
        })
        .collect();
    Plan { assignment, moves }
}

/// Where the shards of `suspects` would go if those nodes were dead now:
/// the moves of a round over the live nodes without them, for their shards
/// only. The leader names these nodes while death detection still runs
/// (`Coordinator::write_standby`), so they can load the shards while the
/// suspects' leases run out; the round that finds the suspects dead places
/// the shards on them (`input.standby`). With the names standing, a shard
/// keeps its standby node while that node is live and not a suspect
/// itself, whatever node joins meanwhile.
pub fn standby_moves(input: &PlacementInput<'_>, suspects: &[String]) -> Vec<Move> {
    let live: Vec<Node> = input
        .live
        .iter()
        .filter(|n| !suspects.contains(&n.id))
        .cloned()
        .collect();
    if live.len() == input.live.len() {
        return Vec::new();
    }
    let without = PlacementInput {
        live: &live,
        ..*input
    };
    plan(&without)
        .moves
        .into_iter()
        .filter(|m| m.from.as_ref().is_some_and(|f| suspects.contains(f)))
        .collect()
}

/// The standbys the leader names this round, shard -> node: those of the
/// suspects' shards ([`standby_moves`]), and the standing names of shards
/// that have no live owner, while the named node is live and not a
/// suspect. A shard whose owner was found dead keeps its name until a
/// round places it (on that node): the placing round may not come at once
/// (the leader holds placement, or its write fails), and names dropped
/// meanwhile would be named afresh, perhaps elsewhere, and the shard
/// placed where nothing was loaded.
pub fn standby_names(input: &PlacementInput<'_>, suspects: &[String]) -> Vec<(u32, String)> {
    let is_live =
        |id: &str| input.live.iter().any(|n| n.id == id) && !suspects.iter().any(|s| s == id);
    let mut named: std::collections::BTreeMap<u32, String> = standby_moves(input, suspects)
        .into_iter()
        .map(|m| (m.shard, m.to))
        .collect();
    for (shard, name) in input.standby.iter().enumerate().take(input.shards as usize) {
        let owner = input.current.get(shard).and_then(|o| o.as_deref());
        let (Some(name), Ok(shard)) = (name, u32::try_from(shard)) else {
            continue;
        };
        if !owner.is_some_and(|o| input.live.iter().any(|n| n.id == o)) && is_live(name) {
            named.entry(shard).or_insert_with(|| name.clone());
        }
    }
    named.into_iter().collect()
}

#[cfg(test)]
mod invariant_tests;
#[cfg(test)]
mod standby_tests;
#[cfg(test)]
mod tests;
