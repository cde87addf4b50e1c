//! Property tests of the plan's invariants, with and without standbys.

use super::tests::{Case, arb_case, case_input, load_of, names_on};
use super::*;
use proptest::prelude::*;
use std::cmp::Reverse;

fn check(case: Case, standby: &[Option<String>]) -> Result<(), TestCaseError> {
    let input = case_input(&case, standby);
    let (s, live, current, max_moves, lf) = &case;
    let (s, max_moves, lf) = (*s, *max_moves, *lf);
    let p = plan(&input);
    // Shards placed on their standby node may take it over capacity.
    let onto_standby = |id: &str| {
        let named =
            |m: &&Move| standby.get(m.shard as usize).and_then(|o| o.as_deref()) == Some(id);
        p.moves
            .iter()
            .filter(|m| m.to == id && m.reason == MoveReason::Unowned)
            .filter(named)
            .count()
    };
    let nodes = normalize(live);
    let caps = capacities(&nodes, s, lf);
    let cap_of = |id: &str| nodes.iter().position(|n| n.id == id).map(|i| caps[i]);
    prop_assert_eq!(p.assignment.len(), s as usize);
    prop_assert!(
        p.assignment
            .iter()
            .all(|o| o.as_deref().and_then(cap_of).is_some())
    );
    for (n, &cap) in nodes.iter().zip(&caps) {
        let (before, after) = (load_of(current, &n.id), load_of(&p.assignment, &n.id));
        let extra = onto_standby(&n.id);
        prop_assert!(
            after <= cap.max(before) + extra,
            "{} grew past {}",
            n.id,
            cap
        );
        prop_assert!(max_moves < s as usize || after <= cap + extra);
    }
    let changed = (0..s).filter(|&i| current[i as usize] != p.assignment[i as usize]);
    prop_assert!(p.moves.iter().map(|m| m.shard).eq(changed));
    let rank = |shard: u32, id: &str| {
        let n = nodes.iter().find(|n| n.id == id).unwrap();
        (hrw_score(shard, n), Reverse(&n.id))
    };
    for m in &p.moves {
        prop_assert_eq!(&m.from, &current[m.shard as usize]);
        prop_assert_eq!(Some(&m.to), p.assignment[m.shard as usize].as_ref());
        let from_live = m.from.as_deref().and_then(cap_of);
        prop_assert_eq!(m.reason == MoveReason::Rebalance, from_live.is_some());
        if let (Some(from), Some(cap)) = (m.from.as_deref(), from_live) {
            // Only capacity shedding may move a shard to a worse-ranked node.
            // (Shards placed on their standby count: they may fill it.)
            let shed = load_of(current, from) + onto_standby(from) > cap;
            prop_assert!(shed || rank(m.shard, &m.to) > rank(m.shard, from));
        }
    }
    let rebalanced = p.moves.iter().filter(|m| m.reason == MoveReason::Rebalance);
    prop_assert!(rebalanced.count() <= max_moves);
    prop_assert_eq!(&plan(&input), &p);
    let reversed: Vec<Node> = live.iter().rev().cloned().collect();
    prop_assert_eq!(
        &plan(&PlacementInput {
            live: &reversed,
            ..input
        }),
        &p
    );
    if max_moves >= 1 {
        let limit = (s as usize).div_ceil(max_moves) + 3;
        let (mut cur, mut rounds) = (current.clone(), 0);
        loop {
            let q = plan(&PlacementInput {
                current: &cur,
                ..input
            });
            if q.moves.is_empty() {
                break;
            }
            (cur, rounds) = (q.assignment, rounds + 1);
            prop_assert!(rounds <= limit, "no fixed point after {} rounds", limit);
        }
        for (n, &cap) in nodes.iter().zip(&caps) {
            prop_assert!(load_of(&cur, &n.id) <= cap);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn invariants_hold(case in arb_case()) {
        check(case, &[])?;
    }

    /// The same with standbys named, on live nodes, dead ones, or none.
    #[test]
    fn invariants_hold_with_standbys(
        case in arb_case(),
        names in prop::collection::vec(prop::option::of(0usize..10), 0..300),
    ) {
        let standby = names_on(&case.1, &names);
        check(case, &standby)?;
    }
}
