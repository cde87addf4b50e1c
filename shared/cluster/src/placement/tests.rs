//! Unit and property tests of the placement plan.

use super::*;
use proptest::prelude::*;

pub(super) fn node(i: u32, weight: u32) -> Node {
    Node {
        id: format!("127.0.0.{i}:7001#1764000000000"),
        weight,
    }
}

pub(super) fn round(
    shards: u32,
    live: &[Node],
    current: &[Option<String>],
    max_moves: usize,
) -> Plan {
    plan(&PlacementInput {
        shards,
        live,
        current,
        max_moves,
        load_factor: 1.1,
        settling: Settling::NONE,
        standby: &[],
    })
}

type Assignment = Vec<Option<String>>;

/// Repeats rounds until one moves nothing; returns the fixed point and how
/// many rounds moved something (at most `S + 3`, or it panics).
pub(super) fn converge(
    shards: u32,
    live: &[Node],
    mut cur: Assignment,
    m: usize,
) -> (Assignment, usize) {
    for rounds in 0..=shards as usize + 3 {
        let p = round(shards, live, &cur, m);
        if p.moves.is_empty() {
            return (cur, rounds);
        }
        cur = p.assignment;
    }
    panic!("no fixed point");
}

pub(super) fn load_of(assignment: &[Option<String>], id: &str) -> usize {
    assignment
        .iter()
        .filter(|o| o.as_deref() == Some(id))
        .count()
}

/// Every shard on a live node, none above its capacity.
fn assert_placed_within_caps(live: &[Node], assignment: &[Option<String>]) {
    let nodes = normalize(live);
    let caps = capacities(&nodes, assignment.len() as u32, 1.1);
    let loads: Vec<usize> = nodes.iter().map(|n| load_of(assignment, &n.id)).collect();
    assert_eq!(loads.iter().sum::<usize>(), assignment.len());
    assert!(
        loads.iter().zip(&caps).all(|(l, c)| l <= c),
        "{loads:?} vs {caps:?}"
    );
}

fn on_hrw_top(live: &[Node], assignment: &[Option<String>]) -> bool {
    let nodes = normalize(live);
    (0u32..)
        .zip(assignment)
        .all(|(s, o)| o.as_ref() == Some(&nodes[hrw_order(s, &nodes)[0]].id))
}

#[test]
fn fresh_assignment_and_empty_live_set() {
    let live = [node(1, 1), node(2, 2), node(3, 1), node(4, 3), node(5, 1)];
    let p = round(64, &live, &[], 0);
    assert_eq!(p.moves.len(), 64);
    assert!(p.moves.iter().all(|m| m.reason == MoveReason::Unowned));
    assert_placed_within_caps(&live, &p.assignment);

    let p = round(8, &[], &p.assignment, 5);
    assert!(p.moves.is_empty() && p.assignment == vec![None; 8]);
}

#[test]
fn node_death_moves_only_its_shards() {
    let mut live: Vec<Node> = (1..=4).map(|i| node(i, 1)).collect();
    let (before, _) = converge(256, &live, vec![], 16);
    let dead = live.remove(1).id;
    let p = round(256, &live, &before, 16);
    assert_eq!(p.moves.len(), load_of(&before, &dead));
    let only_dead = |m: &Move| m.from.as_ref() == Some(&dead) && m.reason == MoveReason::Unowned;
    assert!(p.moves.iter().all(only_dead));
    assert_placed_within_caps(&live, &p.assignment);
}

#[test]
fn join_moves_only_to_new_node_and_converges() {
    let mut live: Vec<Node> = (1..=3).map(|i| node(i, 1)).collect();
    let (mut cur, _) = converge(256, &live, vec![], 16);
    // Precondition for "no moves between old nodes": nothing was displaced
    // from its HRW top by the cap (otherwise moving it back is correct).
    assert!(on_hrw_top(&live, &cur));
    live.push(node(4, 1));
    let mut rounds = 0;
    loop {
        let p = round(256, &live, &cur, 8);
        if p.moves.is_empty() {
            break;
        }
        assert!(p.moves.len() <= 8);
        let to_new = |m: &Move| m.to == live[3].id && m.reason == MoveReason::Rebalance;
        assert!(p.moves.iter().all(to_new));
        (cur, rounds) = (p.assignment, rounds + 1);
        assert!(rounds <= 256 / 8 + 3, "no fixed point");
    }
    assert!(rounds >= 4, "max_moves must spread the join out");
    assert_placed_within_caps(&live, &cur);
    let joined = load_of(&cur, &live[3].id);
    assert!((32..=96).contains(&joined), "got {joined}, fair is 64");
}

#[test]
fn leave_then_rejoin_converges_back() {
    let live: Vec<Node> = (1..=4).map(|i| node(i, 1)).collect();
    let (start, _) = converge(256, &live, vec![], 10);
    let (left, _) = converge(256, &live[1..], start.clone(), 10);
    assert_eq!(load_of(&left, &live[0].id), 0);
    let (back, rounds) = converge(256, &live, left, 10);
    assert!((1..=256 / 10 + 3).contains(&rounds));
    assert_eq!(back, start);
}

#[test]
fn weight_two_gets_about_twice() {
    let live = [node(1, 1), node(2, 2), node(3, 1)];
    let (cur, _) = converge(1024, &live, vec![], 1024);
    let light = (load_of(&cur, &live[0].id) + load_of(&cur, &live[2].id)) as f64 / 2.0;
    let ratio = load_of(&cur, &live[1].id) as f64 / light;
    assert!((1.7..=2.3).contains(&ratio), "ratio {ratio}");
}

fn settling_round(live: &[Node], current: &[Option<String>], settling: Settling<'_>) -> Plan {
    plan(&PlacementInput {
        shards: current.len() as u32,
        live,
        current,
        max_moves: 16,
        load_factor: 1.1,
        settling,
        standby: &[],
    })
}

#[test]
fn recently_moved_shards_are_not_rebalanced_until_they_settle() {
    let mut live: Vec<Node> = (1..=3).map(|i| node(i, 1)).collect();
    let (cur, _) = converge(64, &live, vec![], 16);
    live.push(node(4, 1));
    let free = round(64, &live, &cur, 16);
    assert!(!free.moves.is_empty(), "the join must want moves");
    // Every shard moved 1 s ago, settle period 3.5 s: nothing moves.
    let moved_at = vec![Some(10_000); 64];
    let at = |now_ms| Settling {
        now_ms,
        moved_at: &moved_at,
        serving_at: &[],
        period_ms: 3_500,
        warming: &[],
    };
    assert!(settling_round(&live, &cur, at(11_000)).moves.is_empty());
    assert!(settling_round(&live, &cur, at(13_499)).moves.is_empty());
    // Once settled, the round is the one without settle data.
    assert_eq!(settling_round(&live, &cur, at(13_500)), free);
    // Only the settled shards move; the budget goes to them.
    let wanted: Vec<u32> = free.moves.iter().map(|m| m.shard).collect();
    let recent = wanted[0] as usize;
    let mut mixed = vec![None; 64];
    mixed[recent] = Some(13_000);
    let p = settling_round(
        &live,
        &cur,
        Settling {
            now_ms: 13_500,
            moved_at: &mixed,
            serving_at: &[],
            period_ms: 3_500,
            warming: &[],
        },
    );
    assert!(p.moves.iter().all(|m| m.shard as usize != recent));
    assert!(!p.moves.is_empty());
}

/// The case from the leader-kill fault: a shard fails over (an
/// `Unowned` move at t), then the dead node's restarted successor joins
/// at t + 1.4 s. Without the settle rule the leader moves the shard a
/// second time right away, and it pays a second handoff.
#[test]
fn a_failed_over_shard_stays_put_when_a_node_joins_right_after() {
    let mut live: Vec<Node> = (1..=4).map(|i| node(i, 1)).collect();
    let (before, _) = converge(8, &live, vec![], 16);
    live.remove(0);
    let t = 50_000;
    let failover = round(8, &live, &before, 16);
    assert!(!failover.moves.is_empty());
    assert!(
        failover
            .moves
            .iter()
            .all(|m| m.reason == MoveReason::Unowned)
    );
    let mut moved_at = vec![None; 8];
    for m in &failover.moves {
        moved_at[m.shard as usize] = Some(t);
    }
    let settling = |now_ms| Settling {
        now_ms,
        moved_at: &moved_at,
        serving_at: &[],
        period_ms: 3_500,
        warming: &[],
    };
    // The restarted process is a new member (new id); pick one that HRW
    // gives a failed-over shard, as happened in the fault run.
    let again = |p: &Plan| p.moves.iter().any(|m| moved_at[m.shard as usize].is_some());
    let joined = (5..64)
        .map(|i| node(i, 1))
        .find(|n| {
            let with: Vec<Node> = live.iter().cloned().chain([n.clone()]).collect();
            again(&round(8, &with, &failover.assignment, 16))
        })
        .expect("some joining id takes a failed-over shard");
    live.push(joined);
    let p = settling_round(&live, &failover.assignment, settling(t + 1_400));
    assert!(!again(&p), "moved a settling shard: {p:?}");
    let later = settling_round(&live, &failover.assignment, settling(t + 3_500));
    assert!(again(&later), "the shard moves once settled");
    // A shard losing its owner moves at once, settling or not.
    let gone = live.remove(0);
    let p = settling_round(&live, &failover.assignment, settling(t + 100));
    let lost = load_of(&failover.assignment, &gone.id);
    assert!(lost > 0);
    let placed = p.moves.iter().filter(|m| m.reason == MoveReason::Unowned);
    assert_eq!(placed.count(), lost);
}

/// The SIGSTOP case: a paused node lost its shards to failover and comes
/// back. While it warms up it takes no balancing move (HRW would pull its
/// old shards straight back while it catches up), but it does take a
/// shard that loses its owner meanwhile; once warm, balancing resumes.
#[test]
fn a_node_that_just_came_back_takes_no_balancing_move() {
    let mut live: Vec<Node> = (1..=4).map(|i| node(i, 1)).collect();
    let (before, _) = converge(16, &live, vec![], 16);
    let paused = live.remove(0);
    let (failed_over, _) = converge(16, &live, before, 16);
    assert_eq!(load_of(&failed_over, &paused.id), 0);
    live.push(paused.clone());
    let warming = [paused.id.clone()];
    fn settling(warming: &[String]) -> Settling<'_> {
        Settling {
            warming,
            ..Settling::NONE
        }
    }
    let p = settling_round(&live, &failed_over, settling(&warming));
    assert!(p.moves.is_empty(), "balanced onto a warming node: {p:?}");
    let warm = settling_round(&live, &failed_over, settling(&[]));
    assert!(
        warm.moves.iter().any(|m| m.to == paused.id),
        "once warm it gets its share back"
    );
    // An owner dies meanwhile: its shards are placed at once, on any live
    // node with room, the warming one included.
    let dead = live.remove(0);
    let lost = load_of(&failed_over, &dead.id);
    let p = settling_round(&live, &failed_over, settling(&warming));
    let placed: Vec<&Move> = p.moves.iter().collect();
    assert_eq!(placed.len(), lost, "{p:?}");
    assert!(placed.iter().all(|m| m.reason == MoveReason::Unowned));
    assert!(placed.iter().any(|m| m.to == paused.id), "{p:?}");
}

/// Scale-out: a joining node makes the others over capacity, and their
/// sheds toward it wait for it to warm up rather than going to another old
/// node (which would hand them on to the new one later, a second handoff).
#[test]
fn sheds_toward_a_warming_node_wait_instead_of_going_elsewhere() {
    let mut live: Vec<Node> = (1..=3).map(|i| node(i, 1)).collect();
    let (cur, _) = converge(24, &live, vec![], 24);
    let joined = node(4, 1);
    live.push(joined.clone());
    let warming = [joined.id.clone()];
    let held = settling_round(
        &live,
        &cur,
        Settling {
            warming: &warming,
            ..Settling::NONE
        },
    );
    let warm = settling_round(&live, &cur, Settling::NONE);
    assert!(warm.moves.iter().any(|m| m.to == joined.id));
    assert!(held.moves.iter().all(|m| m.to != joined.id), "{held:?}");
    // Warming removes moves, it never redirects one: what still moves goes
    // where it would have gone anyway.
    for m in &held.moves {
        assert!(warm.moves.contains(m), "{m:?} is not in {warm:?}");
    }
}

/// Regression guard: computed once (and cross-checked with an independent
/// implementation); a change here would remap every tenant and shard.
#[test]
fn hashes_are_pinned() {
    assert_eq!(shard_of("acme", 1024), 527);
    assert_eq!(shard_of("tenant-42", 64), 34);
    assert_eq!(shard_of("7f3c2a1e-0b9d-4e5f-8a6b-1c2d3e4f5a6b", 1024), 7);
    assert_eq!(shard_of("anything", 0), 0);
    let score = rendezvous_score(7, "127.0.0.2:7000#1764000000000");
    assert_eq!(score, 9_023_983_848_014_917_882);
}

pub(super) type Case = (u32, Vec<Node>, Vec<Option<String>>, usize, f64);

/// A round over `case` with nothing settling and `standby` named.
pub(super) fn case_input<'a>(case: &'a Case, standby: &'a [Option<String>]) -> PlacementInput<'a> {
    let (shards, live, current, max_moves, load_factor) = case;
    PlacementInput {
        shards: *shards,
        live,
        current,
        max_moves: *max_moves,
        load_factor: *load_factor,
        settling: Settling::NONE,
        standby,
    }
}

/// Standby names from drawn indices: a live node of `live`, or a dead one.
pub(super) fn names_on(live: &[Node], picks: &[Option<usize>]) -> Vec<Option<String>> {
    let id = |i: usize| {
        live.get(i)
            .map_or_else(|| "10.9.9.8:7000#1".to_owned(), |n| n.id.clone())
    };
    picks.iter().map(|o| o.map(id)).collect()
}

/// 1..8 nodes (ids drawn from 16, weights 1..3) and a current assignment
/// mixing live owners, a dead owner and `None`.
pub(super) fn arb_case() -> impl Strategy<Value = Case> {
    let ids = prop::sample::subsequence((0u32..16).collect::<Vec<_>>(), 1..=8);
    let lf = prop::sample::select(vec![1.0, 1.1, 1.25, 2.0]);
    (1u32..300, ids, 0usize..=20, lf).prop_flat_map(|(s, ids, max_moves, lf)| {
        let n = ids.len();
        let weights = prop::collection::vec(1u32..=3, n);
        let picks = prop::collection::vec(0..n + 2, s as usize);
        (weights, picks).prop_map(move |(weights, picks)| {
            let live: Vec<Node> = ids.iter().zip(weights).map(|(&i, w)| node(i, w)).collect();
            let owner = |p: usize| match p {
                p if p < n => Some(live[p].id.clone()),
                p if p == n => Some("10.9.9.9:7000#1".to_owned()),
                _ => None,
            };
            let current = picks.into_iter().map(owner).collect();
            (s, live, current, max_moves, lf)
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn settling_shards_only_move_when_ownerless(
        case in arb_case(),
        ages in prop::collection::vec(prop::option::of(0i64..10_000), 0..300),
        served in prop::collection::vec(prop::option::of(0i64..10_000), 0..300),
    ) {
        let settling = Settling { now_ms: 10_000, moved_at: &ages, serving_at: &served, period_ms: 5_000, warming: &[] };
        let input = PlacementInput { settling, ..case_input(&case, &[]) };
        let (s, current) = (case.0, &case.2);
        let p = plan(&input);
        let free = plan(&PlacementInput { settling: Settling::NONE, ..input });
        for m in &p.moves {
            prop_assert!(m.reason == MoveReason::Unowned || !settling.holds(m.shard as usize));
        }
        let unowned = |p: &Plan| -> Vec<Move> {
            p.moves.iter().filter(|m| m.reason == MoveReason::Unowned).cloned().collect()
        };
        prop_assert_eq!(unowned(&p), unowned(&free));
        // With serving data, one handoff at a time per node: a node that
        // owns a loading shard or takes an ownerless one gets no balancing
        // move, and no node gets two.
        if !served.is_empty() {
            let mut receiving: Vec<String> = (0..s as usize)
                .filter(|&sh| settling.loading(sh))
                .filter_map(|sh| current.get(sh).cloned().flatten())
                .collect();
            receiving.extend(unowned(&p).into_iter().map(|m| m.to));
            let mut onto: Vec<&String> = Vec::new();
            for m in p.moves.iter().filter(|m| m.reason == MoveReason::Rebalance) {
                prop_assert!(!receiving.contains(&m.to), "{m:?} onto a receiving node");
                prop_assert!(!onto.contains(&&m.to), "two balancing moves onto {}", m.to);
                onto.push(&m.to);
            }
        }
    }

    #[test]
    fn shard_of_in_range(tenant in ".{0,40}", shards in 1u32..5000) {
        prop_assert!(shard_of(&tenant, shards) < shards);
    }
}

/// A balancing move never interrupts a load: the settle period counts from
/// when the shard started serving, a shard still loading after its move is
/// held (up to `LOADING_PERIODS` periods), and without serving data the
/// period counts from the move alone.
#[test]
fn a_shard_loading_or_just_serving_is_held_from_balance() {
    let moved = [Some(10_000)];
    let at = |now_ms, serving_at: &[Option<i64>]| {
        Settling {
            now_ms,
            moved_at: &moved,
            serving_at,
            period_ms: 3_500,
            warming: &[],
        }
        .holds(0)
    };
    // Still loading 5 s after its move: held; past 4 periods: not.
    assert!(at(15_000, &[None]));
    assert!(
        at(15_000, &[Some(9_000)]),
        "served before the move: loading"
    );
    assert!(at(23_999, &[None]));
    assert!(!at(24_000, &[None]));
    // Served at 14 s: held until 17.5 s.
    assert!(at(17_499, &[Some(14_000)]));
    assert!(!at(17_500, &[Some(14_000)]));
    // No serving data at all: 3.5 s after the move, as before.
    assert!(at(13_499, &[]));
    assert!(!at(13_500, &[]));
    // Never moved, served long ago: free; served just now: held.
    let never = |now_ms| Settling {
        now_ms,
        moved_at: &[None],
        serving_at: &[Some(1_000)],
        period_ms: 3_500,
        warming: &[],
    };
    assert!(!never(50_000).holds(0));
    assert!(never(2_000).holds(0));
    // A stamp ahead of the round's instant (one Redis clock, but read at
    // another moment) holds rather than releases.
    assert!(at(9_000, &[Some(9_500)]));
}

/// With serving data, a node takes one balancing move at a time: one per
/// round, none while a shard it received is still loading, the next once
/// that shard serves. Shards without a live owner still go to it at once.
#[test]
fn a_node_takes_one_balancing_handoff_at_a_time() {
    let mut live: Vec<Node> = (1..=4).map(|i| node(i, 1)).collect();
    let (before, _) = converge(16, &live, vec![], 16);
    let back = live.remove(0);
    let (failed_over, _) = converge(16, &live, before, 16);
    live.push(back.clone());
    let now_ms = 1_000_000; // as in `settling` below
    let never = vec![None; 16];
    let long_ago = vec![Some(0); 16];
    fn settling<'a>(moved_at: &'a [Option<i64>], serving_at: &'a [Option<i64>]) -> Settling<'a> {
        Settling {
            now_ms: 1_000_000,
            moved_at,
            serving_at,
            period_ms: 3_500,
            warming: &[],
        }
    }
    // Without serving data the old rule: several shards at once.
    let all_at_once = settling_round(&live, &failed_over, Settling::NONE);
    let onto = |p: &Plan| p.moves.iter().filter(|m| m.to == back.id).count();
    assert!(onto(&all_at_once) >= 2, "{all_at_once:?}");
    // With it: one.
    let first = settling_round(&live, &failed_over, settling(&never, &long_ago));
    assert_eq!(onto(&first), 1, "{first:?}");
    let shard = first
        .moves
        .iter()
        .find(|m| m.to == back.id)
        .map(|m| m.shard as usize);
    let shard = shard.expect("a move onto the node");
    let after_first = first.assignment.clone();
    // That shard loads: nothing more lands on its node.
    let mut moved_at = never.clone();
    moved_at[shard] = Some(now_ms - 1_000);
    let mut serving_at = long_ago.clone();
    serving_at[shard] = None;
    let loading = settling_round(&live, &after_first, settling(&moved_at, &serving_at));
    assert_eq!(onto(&loading), 0, "{loading:?}");
    // It serves: the next one comes.
    serving_at[shard] = Some(now_ms - 500);
    let served = settling_round(&live, &after_first, settling(&moved_at, &serving_at));
    assert_eq!(onto(&served), 1, "{served:?}");
    // An owner dies while the node loads: its shards are placed at once,
    // the loading node taking its HRW share of them.
    serving_at[shard] = None;
    let survivors: Vec<Node> = live
        .iter()
        .filter(|n| n.id != live[0].id)
        .cloned()
        .collect();
    let lost = load_of(&after_first, &live[0].id);
    let p = settling_round(&survivors, &after_first, settling(&moved_at, &serving_at));
    let free = settling_round(&survivors, &after_first, Settling::NONE);
    let unowned = |p: &Plan| -> Vec<Move> {
        let it = p.moves.iter().filter(|m| m.reason == MoveReason::Unowned);
        it.cloned().collect()
    };
    assert_eq!(unowned(&p).len(), lost, "{p:?}");
    assert_eq!(
        unowned(&p),
        unowned(&free),
        "placed where they would be anyway"
    );
}
