//! Tests of the standbys placement names for silent owners' shards.

use super::tests::{arb_case, case_input, converge, load_of, names_on, node, round};
use super::*;
use proptest::prelude::*;

/// The unowned moves of `p` away from `from`, as (shard, destination).
fn taken_from(p: &Plan, from: &str) -> Vec<(u32, String)> {
    p.moves
        .iter()
        .filter(|m| m.reason == MoveReason::Unowned && m.from.as_deref() == Some(from))
        .map(|m| (m.shard, m.to.clone()))
        .collect()
}

fn named(moves: &[Move]) -> Vec<(u32, String)> {
    moves.iter().map(|m| (m.shard, m.to.clone())).collect()
}

/// A round over 8 shards with nothing settling and no standbys named.
fn eight_shards<'a>(live: &'a [Node], placed: &'a [Option<String>]) -> PlacementInput<'a> {
    PlacementInput {
        shards: 8,
        live,
        current: placed,
        max_moves: 16,
        load_factor: 1.1,
        settling: Settling::NONE,
        standby: &[],
    }
}

/// A suspect's shards are named for the nodes the round that finds it dead
/// gives them to; nothing is named without suspects.
#[test]
fn standbys_are_where_a_suspects_shards_go_once_it_is_dead() {
    let live: Vec<Node> = (1..=4).map(|i| node(i, 1)).collect();
    let (placed, _) = converge(8, &live, vec![], 16);
    let input = eight_shards(&live, &placed);
    assert!(standby_moves(&input, &[]).is_empty());
    let suspect = live[1].id.clone();
    let standby = standby_moves(&input, std::slice::from_ref(&suspect));
    assert!(!standby.is_empty(), "the suspect owns shards");
    assert_eq!(standby.len(), load_of(&placed, &suspect), "{standby:?}");
    assert!(standby.iter().all(|m| m.to != suspect));
    let survivors: Vec<Node> = live.iter().filter(|n| n.id != suspect).cloned().collect();
    let dead = round(8, &survivors, &placed, 16);
    assert_eq!(named(&standby), taken_from(&dead, &suspect));
}

/// The names as `PlacementInput::standby` takes them.
fn as_input(shards: u32, named: &[(u32, String)]) -> Vec<Option<String>> {
    let mut standby = vec![None; shards as usize];
    for (s, n) in named {
        standby[*s as usize] = Some(n.clone());
    }
    standby
}

/// A node that joins while a suspect's shards load elsewhere does not pull
/// them to itself (it would restart every load there, side by side), and
/// the round that finds the suspect dead gives them to their standby
/// nodes, over capacity if need be.
#[test]
fn standby_names_stick_when_a_node_joins_and_the_dead_round_follows_them() {
    let live: Vec<Node> = (1..=3).map(|i| node(i, 1)).collect();
    let (placed, _) = converge(8, &live, vec![], 16);
    let suspect = live[1].id.clone();
    let input = eight_shards(&live, &placed);
    let first = named(&standby_moves(&input, std::slice::from_ref(&suspect)));
    assert!(!first.is_empty(), "the suspect owns shards");
    let standby = as_input(8, &first);
    // A joiner that, without the names, would take some of the shards.
    let joined = (4..64)
        .map(|i| [live.clone(), vec![node(i, 1)]].concat())
        .find(|joined| {
            let fresh = PlacementInput {
                live: joined,
                ..input
            };
            named(&standby_moves(&fresh, std::slice::from_ref(&suspect))) != first
        })
        .expect("some joiner changes unsticky names");
    let after_join = PlacementInput {
        live: &joined,
        standby: &standby,
        ..input
    };
    let again = standby_moves(&after_join, std::slice::from_ref(&suspect));
    assert_eq!(named(&again), first, "the names stick");

    let survivors: Vec<Node> = joined.iter().filter(|n| n.id != suspect).cloned().collect();
    let death = plan(&PlacementInput {
        live: &survivors,
        ..after_join
    });
    assert_eq!(taken_from(&death, &suspect), first);
    let caps = capacities(&normalize(&survivors), 8, 1.1);
    // Capacity is restored by shedding other shards off the standby nodes
    // (here in the same round: the joiner is not warming up).
    let (settled, _) = converge(8, &survivors, death.assignment, 16);
    for (n, cap) in normalize(&survivors).iter().zip(caps) {
        assert!(load_of(&settled, &n.id) <= cap, "{settled:?}");
    }
}

/// The names a round writes: the suspects' shards, and the standing
/// names of shards whose owner is gone while their node is live and not
/// a suspect, until a round places them.
#[test]
fn names_of_a_dead_owners_shards_stand_until_a_round_places_them() {
    let live: Vec<Node> = (1..=3).map(|i| node(i, 1)).collect();
    let (placed, _) = converge(8, &live, vec![], 16);
    let dead = live[1].id.clone();
    let first = named(&standby_moves(
        &eight_shards(&live, &placed),
        std::slice::from_ref(&dead),
    ));
    assert!(!first.is_empty());
    let standby = as_input(8, &first);
    let survivors: Vec<Node> = live.iter().filter(|n| n.id != dead).cloned().collect();
    let after_death = PlacementInput {
        standby: &standby,
        ..eight_shards(&survivors, &placed)
    };
    assert_eq!(
        standby_names(&after_death, &[]),
        first,
        "kept while unplaced"
    );
    // A named node gone silent, or dead, loses its names.
    let silent = first[0].1.clone();
    let kept = standby_names(&after_death, std::slice::from_ref(&silent));
    assert!(kept.iter().all(|(_, n)| *n != silent), "{kept:?}");
    let gone: Vec<Node> = survivors
        .iter()
        .filter(|n| n.id != silent)
        .cloned()
        .collect();
    let without = PlacementInput {
        live: &gone,
        ..after_death
    };
    assert!(
        standby_names(&without, &[])
            .iter()
            .all(|(_, n)| *n != silent)
    );
    // Once a round has placed them, nothing is named.
    let placed_now = plan(&after_death).assignment;
    let done = PlacementInput {
        current: &placed_now,
        ..after_death
    };
    assert!(standby_names(&done, &[]).is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    /// What changes between the round that names standbys and the one that
    /// finds the suspect dead, with the table unchanged, is time: settle
    /// periods end, loads start serving, nodes stop warming. None of it
    /// moves the suspect's shards off their standbys.
    #[test]
    fn standbys_hold_whatever_settles_meanwhile(
        case in arb_case(),
        pick in any::<prop::sample::Index>(),
        ages in prop::collection::vec(prop::option::of(0i64..20_000), 0..300),
        served in prop::collection::vec(prop::option::of(0i64..20_000), 0..300),
        later in 0i64..20_000,
        warm in any::<prop::sample::Index>(),
    ) {
        let (s, live, current, max_moves, lf) = case;
        let suspect = live[pick.index(live.len())].id.clone();
        let warming = vec![live[warm.index(live.len())].id.clone()];
        let naming = PlacementInput {
            shards: s,
            live: &live,
            current: &current,
            max_moves,
            load_factor: lf,
            settling: Settling {
                now_ms: 10_000,
                moved_at: &ages,
                serving_at: &served,
                period_ms: 5_000,
                warming: &warming,
            },
            standby: &[],
        };
        let standby = standby_moves(&naming, std::slice::from_ref(&suspect));
        let survivors: Vec<Node> = live.iter().filter(|n| n.id != suspect).cloned().collect();
        let death = PlacementInput {
            live: &survivors,
            settling: Settling {
                now_ms: 10_000 + later,
                warming: &[],
                ..naming.settling
            },
            ..naming
        };
        prop_assert_eq!(named(&standby), taken_from(&plan(&death), &suspect));
        prop_assert!(standby.iter().all(|m| m.from.as_deref() == Some(suspect.as_str())));
    }

    /// Every shard without a live owner goes to its standby node when that
    /// node is live; the names stand while their nodes do (naming again
    /// with them gives them back), whatever node joins meanwhile.
    #[test]
    fn ownerless_shards_go_to_their_live_standby_nodes(
        case in arb_case(),
        names in prop::collection::vec(prop::option::of(0usize..10), 0..300),
        pick in any::<prop::sample::Index>(),
        joiner in 16u32..24,
    ) {
        let standby = names_on(&case.1, &names);
        let input = case_input(&case, &standby);
        let (s, live, current, _, _) = &case;
        let s = *s;
        let p = plan(&input);
        let is_live = |o: &Option<String>| o.as_ref().is_some_and(|id| live.iter().any(|n| &n.id == id));
        for (shard, owner) in current.iter().enumerate().take(s as usize) {
            let wanted = standby.get(shard).filter(|o| is_live(o));
            if let (false, Some(to)) = (is_live(owner), wanted) {
                prop_assert_eq!(&p.assignment[shard], to);
            }
        }

        let suspect = live[pick.index(live.len())].id.clone();
        let first = named(&standby_moves(&PlacementInput { standby: &[], ..input }, std::slice::from_ref(&suspect)));
        let kept = as_input(s, &first);
        let joined = [live.clone(), vec![node(joiner, 1)]].concat();
        let after_join = PlacementInput { live: &joined, standby: &kept, ..input };
        let again = named(&standby_moves(&after_join, std::slice::from_ref(&suspect)));
        // Shards nobody could be named for (no other node was live) may
        // now go to the joiner; the named ones stay.
        prop_assert!(first.iter().all(|n| again.contains(n)), "{:?} then {:?}", first, again);
    }
}
