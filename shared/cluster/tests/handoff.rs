//! Handoffs (make-before-break for planned moves) against a real
//! `redis-server`: a planned move is written only after its owner froze
//! the shard and its target prepared it; a handoff whose target goes away
//! is called off and the owner thaws; one whose target never gets ready is
//! written after the handoff timeout.

#![allow(clippy::unwrap_used)]

mod common;

use common::eventually;
use common::members::*;
use liveseg_cluster::coordinator::Coordinator;
use liveseg_cluster::member::MemberConfig;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Checks, for every shard `to` took from `from_hosts`, that its owner
/// froze it, then `to` prepared it, then the owner drained it, then `to`
/// activated it. Returns how many such shards there were.
fn handed_off(to: &RecordingHost, from_hosts: &[&RecordingHost]) -> usize {
    let prepared = RecordingHost::first(&to.handoff_prepared);
    let activated = to.activated.lock().unwrap().clone();
    let mut n = 0;
    for (shard, active_at) in activated {
        let Some(owner) = from_hosts
            .iter()
            .find(|h| h.drains.lock().unwrap().iter().any(|(s, _)| *s == shard))
        else {
            continue;
        };
        let frozen = RecordingHost::first(&owner.frozen)[&shard];
        let drained = RecordingHost::first(&owner.drains)[&shard];
        let ready = prepared[&shard];
        assert!(frozen <= ready, "shard {shard}: frozen before prepared");
        assert!(ready <= drained, "shard {shard}: prepared before the drain");
        assert!(drained <= active_at, "shard {shard}: drained before taken");
        n += 1;
    }
    n
}

#[test]
fn scale_out_freezes_and_prepares_each_moved_shard_before_moving_it() {
    let c = Cluster::new();
    let ((a, ha), (b, hb)) = c.two_converged();
    let (m3, h3) = c.member("c");
    eventually(Duration::from_secs(30), "c takes its share", || {
        converged(&[(&a, &ha), (&b, &hb), (&m3, &h3)]) && h3.active().len() >= 4
    });
    let moved = handed_off(&h3, &[&ha, &hb]);
    assert!(moved >= 4, "each of c's shards came by a handoff ({moved})");
    assert!(ha.stops.lock().unwrap().is_empty() && hb.stops.lock().unwrap().is_empty());
    eventually(Duration::from_secs(10), "no intent is left", || {
        Coordinator::new(c.store.clone())
            .handoffs()
            .unwrap()
            .intents
            .is_empty()
    });
    c.assert_no_double_ownership();
}

#[test]
fn a_graceful_leave_hands_each_shard_off() {
    let c = Cluster::new();
    let ((a, ha), (b, hb), (m3, h3)) = c.three_spread();
    let owned = h3.active();
    m3.leave();
    assert!(h3.active().is_empty(), "c drained before leave returned");
    assert!(h3.stops.lock().unwrap().is_empty(), "nothing was cut off");
    eventually(Duration::from_secs(20), "a and b own everything", || {
        converged(&[(&a, &ha), (&b, &hb)])
    });
    let frozen = RecordingHost::first(&h3.frozen);
    assert!(
        owned.iter().all(|s| frozen.contains_key(s)),
        "c froze each shard"
    );
    let moved = handed_off(&ha, &[&h3]) + handed_off(&hb, &[&h3]);
    assert_eq!(moved, owned.len(), "each came by a handoff");
    c.assert_no_double_ownership();
}

#[test]
fn a_handoff_whose_target_dies_is_called_off_and_the_owner_thaws() {
    let c = Cluster::new();
    let ((a, ha), (b, hb)) = c.two_converged();
    let (m3, h3) = c.member("c");
    h3.ready.store(false, Ordering::Release);
    let frozen_shard = || {
        let mut frozen = RecordingHost::first(&ha.frozen);
        frozen.extend(RecordingHost::first(&hb.frozen));
        let prepared = RecordingHost::first(&h3.handoff_prepared);
        frozen.into_keys().find(|s| prepared.contains_key(s))
    };
    eventually(Duration::from_secs(20), "a shard frozen for c", || {
        frozen_shard().is_some()
    });
    let shard = frozen_shard().unwrap();
    drop(m3);
    let owner = if ha.active().contains(&shard) {
        &ha
    } else {
        &hb
    };
    eventually(Duration::from_secs(20), "the owner thaws it", || {
        owner
            .thawed
            .lock()
            .unwrap()
            .iter()
            .any(|(s, _)| *s == shard)
    });
    assert!(owner.active().contains(&shard), "and still serves it");
    assert!(
        owner
            .drains
            .lock()
            .unwrap()
            .iter()
            .all(|(s, _)| *s != shard)
    );
    eventually(Duration::from_secs(20), "a and b own everything", || {
        converged(&[(&a, &ha), (&b, &hb)])
    });
    c.assert_no_double_ownership();
}

#[test]
fn a_handoff_whose_target_never_gets_ready_is_written_after_the_timeout() {
    let c = Cluster::new();
    let ((a, ha), (b, hb)) = c.two_converged();
    let (m3, h3) = c.member("c");
    h3.ready.store(false, Ordering::Release);
    eventually(Duration::from_secs(30), "c takes a shard anyway", || {
        !h3.active().is_empty()
    });
    let timeout = MemberConfig::test("", "", SHARDS).handoff_timeout();
    let activated = h3.activated.lock().unwrap().clone();
    let prepared = RecordingHost::first(&h3.handoff_prepared);
    for (shard, at) in activated {
        let asked = prepared[&shard];
        // The intent began before the target was asked to prepare.
        assert!(
            at >= asked + timeout - Duration::from_millis(500),
            "shard {shard} moved {:?} after its standby was asked for",
            at - asked
        );
    }
    eventually(Duration::from_secs(30), "all converge", || {
        converged(&[(&a, &ha), (&b, &hb), (&m3, &h3)])
    });
    c.assert_no_double_ownership();
}
