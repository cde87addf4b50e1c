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

/// Checks, for every shard `to` last took from one of `from_hosts`, that
/// the owner froze it, then `to` was asked to prepare it, then the owner
/// drained it, then `to` activated it (the last of each before the next).
/// Returns how many such shards there were.
fn handed_off(to: &RecordingHost, from_hosts: &[&RecordingHost]) -> usize {
    let activated = to.activated.lock().unwrap().clone();
    let mut n = 0;
    for (shard, active_at) in activated {
        let Some((owner, drained)) = from_hosts
            .iter()
            .find_map(|h| RecordingHost::last_before(&h.drains, shard, active_at).map(|d| (h, d)))
        else {
            continue;
        };
        let prepared = RecordingHost::last_before(&to.handoff_prepared, shard, drained)
            .unwrap_or_else(|| panic!("shard {shard}: not prepared before the drain"));
        let frozen = RecordingHost::last_before(&owner.frozen, shard, prepared)
            .unwrap_or_else(|| panic!("shard {shard}: not frozen before it was prepared"));
        // The freeze is of the owner's last ownership of the shard.
        let owned_since = owner.activated.lock().unwrap().get(&shard).copied();
        if let Some(since) = owned_since.filter(|t| *t <= drained) {
            assert!(
                frozen >= since,
                "shard {shard}: frozen in an earlier ownership"
            );
        }
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

#[test]
fn a_move_from_an_owner_that_cannot_freeze_is_written_at_once() {
    let c = Cluster::new();
    let ((a, ha), (b, hb)) = c.two_converged();
    ha.can_freeze.store(false, Ordering::Release);
    hb.can_freeze.store(false, Ordering::Release);
    let (m3, h3) = c.member("c");
    eventually(Duration::from_secs(30), "c takes its share", || {
        converged(&[(&a, &ha), (&b, &hb), (&m3, &h3)]) && h3.active().len() >= 4
    });
    assert!(
        h3.handoff_prepared.lock().unwrap().is_empty(),
        "nothing frozen to prepare"
    );
    // Written as soon as the owner refused, not after the handoff timeout.
    let timeout = MemberConfig::test("", "", SHARDS).handoff_timeout();
    for (shard, at) in h3.activated.lock().unwrap().iter() {
        let asked = RecordingHost::last_before(&ha.frozen, *shard, *at)
            .or_else(|| RecordingHost::last_before(&hb.frozen, *shard, *at))
            .unwrap_or_else(|| panic!("shard {shard}: its owner was not asked to freeze"));
        assert!(
            *at - asked < timeout / 2,
            "shard {shard} waited {:?}",
            *at - asked
        );
    }
    c.assert_no_double_ownership();
}

#[test]
fn a_lone_member_leaves_without_waiting_for_a_handoff() {
    let c = Cluster::new();
    let (m, h) = c.member("a");
    eventually(Duration::from_secs(20), "a owns every shard", || {
        converged(&[(&m, &h)])
    });
    let started = std::time::Instant::now();
    m.leave();
    // Nobody to hand off to: it drains at once rather than after the
    // leave timeout.
    let config = MemberConfig::test("", "", SHARDS);
    assert!(
        started.elapsed() < config.handoff_timeout(),
        "took {:?}",
        started.elapsed()
    );
    assert!(h.active().is_empty());
    assert!(h.stops.lock().unwrap().is_empty(), "drained, not cut off");
    assert_eq!(h.drains.lock().unwrap().len(), SHARDS as usize);
}
