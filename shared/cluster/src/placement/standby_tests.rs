//! Tests of the standbys placement names for silent owners' shards.

use super::tests::{arb_case, converge, load_of, node, round};
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

/// A suspect's shards are named for the nodes the round that finds it dead
/// gives them to; nothing is named without suspects.
#[test]
fn standbys_are_where_a_suspects_shards_go_once_it_is_dead() {
    let live: Vec<Node> = (1..=4).map(|i| node(i, 1)).collect();
    let (placed, _) = converge(8, &live, vec![], 16);
    let input = PlacementInput {
        shards: 8,
        live: &live,
        current: &placed,
        max_moves: 16,
        load_factor: 1.1,
        settling: Settling::NONE,
    };
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
}
