//! Which of a placement round's moves the leader writes now, and which wait
//! for a handoff (make-before-break; the protocol is described in
//! `coordinator::handoff`). Pure, so a new leader decides as its
//! predecessor would from the same intents.
//!
//! A move whose shard has no owner, or whose owner is not answering, is
//! written at once: nobody serves the shard, so there is nothing to keep
//! serving while the target loads. A move away from an owner that answers
//! first waits for the owner to freeze the shard and the target to load a
//! standby, or for the handoff timeout; an owner that cannot freeze ends
//! the wait at once.

use crate::coordinator::{Freeze, Handoff};
use crate::placement::Move;
use std::collections::{BTreeMap, BTreeSet};

/// A round's moves, split.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HandoffPlan {
    /// Moves to write to the assignment table now: shard → new owner.
    pub assign: Vec<(u32, String)>,
    /// Moves that wait: (shard, from, to), the intents to keep or start.
    pub intents: Vec<(u32, String, String)>,
}

/// Splits `moves` by the rules above. `answering`: nodes whose heartbeats
/// are recent enough to expect them to freeze (leaving nodes included);
/// `existing`: the intents read back, with their stamps; `now_ms` on the
/// clock their times are on (Redis's).
pub fn split(
    moves: &[Move],
    answering: &BTreeSet<String>,
    existing: &BTreeMap<u32, Handoff>,
    now_ms: i64,
    timeout_ms: i64,
) -> HandoffPlan {
    let mut plan = HandoffPlan::default();
    for m in moves {
        let from = match &m.from {
            Some(from) if answering.contains(from) && *from != m.to => from,
            _ => {
                plan.assign.push((m.shard, m.to.clone()));
                continue;
            }
        };
        let done = existing.get(&m.shard).is_some_and(|h| {
            h.from == *from
                && h.to == m.to
                && (h.ready
                    || h.owner == Freeze::Refused
                    || now_ms.saturating_sub(h.since_ms) >= timeout_ms)
        });
        if done {
            plan.assign.push((m.shard, m.to.clone()));
        } else {
            plan.intents.push((m.shard, from.clone(), m.to.clone()));
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::{HandoffPlan, split};
    use crate::coordinator::{Freeze, Handoff};
    use crate::placement::{Move, MoveReason};
    use std::collections::{BTreeMap, BTreeSet};

    fn mv(shard: u32, from: Option<&str>, to: &str) -> Move {
        Move {
            shard,
            from: from.map(str::to_string),
            to: to.to_string(),
            reason: MoveReason::Rebalance,
        }
    }

    fn intent(from: &str, to: &str, since_ms: i64, owner: Freeze, ready: bool) -> Handoff {
        Handoff {
            from: from.into(),
            to: to.into(),
            id: 1,
            since_ms,
            owner,
            ready,
        }
    }

    #[test]
    fn moves_from_answering_owners_wait_for_the_target_or_the_timeout() {
        let answering: BTreeSet<String> = ["a", "b"].iter().map(|s| s.to_string()).collect();
        let existing: BTreeMap<u32, Handoff> = [
            (1, intent("a", "c", 1_000, Freeze::Frozen, true)),
            (2, intent("a", "c", 1_000, Freeze::Frozen, false)),
            (3, intent("a", "c", 0, Freeze::Pending, false)),
            (4, intent("b", "c", 1_900, Freeze::Refused, false)),
            // An intent for another target: the move is a new intent.
            (5, intent("a", "d", 1_000, Freeze::Frozen, true)),
        ]
        .into_iter()
        .collect();
        let moves = [
            mv(0, None, "c"),      // unowned: now
            mv(1, Some("a"), "c"), // ready: now
            mv(2, Some("a"), "c"), // frozen, loading: waits
            mv(3, Some("a"), "c"), // timed out: now
            mv(4, Some("b"), "c"), // the owner could not freeze: now
            mv(5, Some("a"), "c"), // new intent
            mv(6, Some("x"), "c"), // owner not answering: now
            mv(7, Some("b"), "c"), // no intent yet
        ];
        let plan = split(&moves, &answering, &existing, 2_000, 1_500);
        let s = |v: &str| v.to_string();
        assert_eq!(
            plan,
            HandoffPlan {
                assign: vec![
                    (0, s("c")),
                    (1, s("c")),
                    (3, s("c")),
                    (4, s("c")),
                    (6, s("c"))
                ],
                intents: vec![
                    (2, s("a"), s("c")),
                    (5, s("a"), s("c")),
                    (7, s("b"), s("c"))
                ],
            }
        );
    }
}
