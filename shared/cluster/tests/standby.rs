//! Standbys against a real `redis-server`: while an owner is silent but
//! not yet dead, the leader names where its shards will go, and those
//! members are asked to prepare them before they acquire them.

#![allow(clippy::unwrap_used)]

mod common;

use common::eventually;
use common::members::*;
use liveseg_cluster::coordinator::Coordinator;
use liveseg_cluster::member::Member;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Waits until `node`'s heartbeat is in the live set.
fn wait_live(c: &Cluster, node: &str) {
    let coordinator = Coordinator::new(c.store.clone());
    eventually(Duration::from_secs(20), &format!("{node} is live"), || {
        coordinator
            .live_nodes(1_000)
            .unwrap()
            .iter()
            .any(|n| n == node)
    });
}

/// While a paused owner's heartbeats are missing but before it counts as
/// dead, the leader names a standby for each of its shards, and each
/// survivor is asked to prepare exactly the shards it then acquires,
/// before it acquires them. Healthy owners' shards get no standby.
#[test]
fn survivors_prepare_a_silent_owners_shards_before_they_take_them() {
    let c = Cluster::new();
    let (m1, m2, m3) = c.three_spread();
    let mut all = vec![m1, m2, m3];
    // Pause a member that does not lead: naming standbys is the leader's.
    let quiet = all.iter().position(|(m, _)| !m.view().leader).unwrap();
    let (paused, silent_host) = all.remove(quiet);
    let survivors: Vec<(&Member, &RecordingHost)> =
        all.iter().map(|(m, h)| (m, h.as_ref())).collect();
    for (_, h) in &survivors {
        h.prepared.lock().unwrap().clear();
    }
    let silent = silent_host.active();
    assert!(!silent.is_empty());
    let paused_at = Instant::now();
    paused.set_paused(true);
    eventually(Duration::from_secs(20), "survivors take its shards", || {
        converged(&survivors)
    });
    let mut named = 0;
    for (_, h) in &survivors {
        let prepared: Vec<(u32, Instant)> = h.prepared.lock().unwrap().clone();
        let activated = h.activated.lock().unwrap().clone();
        let taken: BTreeSet<u32> = silent.intersection(&h.active()).copied().collect();
        let asked: BTreeSet<u32> = prepared.iter().map(|(s, _)| *s).collect();
        assert_eq!(asked, taken, "standbys named are the shards taken");
        for (shard, at) in &prepared {
            assert!(*at >= paused_at);
            assert!(
                *at < activated[shard],
                "shard {shard} prepared before it was acquired"
            );
        }
        named += asked.len();
    }
    assert_eq!(named, silent.len(), "every silent shard had a standby");
    drop(paused);
    c.assert_no_double_ownership();
}

/// A leader that takes over while it has itself been live for less than
/// death detection holds placement (the cluster may be starting), but
/// still names standbys: the killed leader's shards are prepared before
/// the new leader assigns them to itself.
#[test]
fn a_new_leader_in_its_takeover_hold_names_standbys() {
    let mut c = Cluster::new();
    // Death detection long enough that the whole takeover happens inside
    // the new leader's hold.
    c.dead_after = Duration::from_secs(3);
    let (a, ha) = c.member("a");
    eventually(Duration::from_secs(20), "a owns every shard", || {
        converged(&[(&a, &ha)])
    });
    assert!(a.view().leader);
    let (b, hb) = c.member("b");
    wait_live(&c, "b");
    let orphaned = ha.active();
    drop(a);
    eventually(Duration::from_secs(30), "b owns every shard", || {
        converged(&[(&b, &hb)])
    });
    let prepared = hb.prepared.lock().unwrap().clone();
    let activated = hb.activated.lock().unwrap().clone();
    let asked: BTreeSet<u32> = prepared.iter().map(|(s, _)| *s).collect();
    assert_eq!(asked, orphaned, "every orphaned shard had a standby");
    for (shard, at) in &prepared {
        assert!(*at < activated[shard], "shard {shard} prepared first");
    }
}

/// A member that joins while a silent owner's shards load as standbys on
/// the survivors does not take those loads over, though it has room and
/// ranks first for some of them: the names stick to the survivors, and
/// the round that finds the owner dead gives each shard to the survivor
/// loading it (over capacity; shedding to the joiner comes later, as
/// handoffs).
#[test]
fn a_member_joining_during_a_takeover_leaves_the_standbys_where_they_load() {
    let mut c = Cluster::new();
    // Death detection long enough for a member to join meanwhile (its
    // start quarantine is a lease TTL).
    c.dead_after = Duration::from_secs(10);
    let (m1, m2, m3) = c.three_spread();
    let mut all = vec![m1, m2, m3];
    let quiet = all.iter().position(|(m, _)| !m.view().leader).unwrap();
    let (paused, silent_host) = all.remove(quiet);
    let silent = silent_host.active();
    paused.set_paused(true);
    let standby_of = |shard: u32| {
        all.iter()
            .position(|(_, h)| h.prepared.lock().unwrap().iter().any(|(s, _)| *s == shard))
    };
    eventually(Duration::from_secs(20), "standbys named", || {
        silent.iter().all(|s| standby_of(*s).is_some())
    });
    let first: Vec<(u32, usize)> = silent
        .iter()
        .map(|s| (*s, standby_of(*s).unwrap()))
        .collect();
    let (d, hd) = c.member("d");
    wait_live(&c, "d");
    let taken = |h: &RecordingHost| !h.active().is_disjoint(&silent);
    assert!(
        !all.iter().any(|(_, h)| taken(h)) && !taken(&hd),
        "d joined before the takeover"
    );
    eventually(
        Duration::from_secs(30),
        "the silent shards are taken",
        || {
            silent
                .iter()
                .all(|s| all.iter().any(|(_, h)| h.active().contains(s)) || hd.active().contains(s))
        },
    );
    // 24 shards over 3 live members: capacity 9 each. The survivors held
    // 8 each, so taking all the silent shards puts one over it, which
    // only the standby rule does (the joiner had room).
    assert!(all.iter().any(|(_, h)| h.active().len() > 9));
    for (shard, survivor) in first {
        assert!(
            all[survivor].1.active().contains(&shard),
            "shard {shard} is served where its standby loaded"
        );
        let at_d = hd.prepared.lock().unwrap().clone();
        assert!(!at_d.iter().any(|(s, _)| *s == shard), "{at_d:?}");
    }
    drop((d, paused));
    c.assert_no_double_ownership();
}

/// Names outlive their leader (they expire after `dead_after`, or here
/// much later), so the next leader clears those it finds no suspect for
/// instead of leaving them for their TTL.
#[test]
fn a_new_leader_clears_the_names_of_the_leader_before() {
    let c = Cluster::new();
    let epoch = lead_as(&c.store, "gone", 500);
    let coordinator = Coordinator::new(c.store.clone());
    let named = [(3, "a".to_string())];
    assert!(
        coordinator
            .write_standby("gone", epoch, &named, 120_000)
            .unwrap()
    );
    let (a, _ha) = c.member("a");
    eventually(Duration::from_secs(20), "a leads", || a.view().leader);
    eventually(Duration::from_secs(20), "the old names are cleared", || {
        coordinator.standby().unwrap().is_empty()
    });
}
