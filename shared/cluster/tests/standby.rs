//! Standbys against a real `redis-server`: while an owner is silent but
//! not yet dead, the leader names where its shards will go, and those
//! members are asked to prepare them before they acquire them.

#![allow(clippy::unwrap_used)]

mod common;

use common::eventually;
use common::members::*;
use liveseg_cluster::member::Member;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

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
