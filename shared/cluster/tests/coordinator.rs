//! The coordinator's records in a real `redis-server`: when shards moved
//! and started serving, and when each node's current run of heartbeats
//! began, all on Redis's clock, for placement's settle and warming rules.

#![allow(clippy::unwrap_used)]

mod common;

use common::eventually;

use liveseg_cluster::coordinator::Coordinator;
use liveseg_store::redis::{Fsync, RedisOptions, RedisProcess, RedisStore};
use std::time::Duration;

struct Cluster {
    _redis: RedisProcess,
    store: RedisStore,
}

impl Cluster {
    fn new() -> Self {
        let redis = RedisProcess::start(Fsync::Always).unwrap();
        let store = RedisStore::connect(RedisOptions::new(redis.url())).unwrap();
        Cluster {
            _redis: redis,
            store,
        }
    }
}

/// Placement's settle rule reads when each shard last moved: the leader's
/// fenced table write stamps every shard it changes with Redis's time, and
/// leaves the others' stamps alone.
#[test]
fn assignment_writes_stamp_move_times_on_redis_time() {
    use liveseg_store::redis::LeaseOutcome;
    let c = Cluster::new();
    let coordinator = Coordinator::new(c.store.clone());
    let before = coordinator.move_times().unwrap();
    assert!(before.moved_at.is_empty() && before.now_ms > 0);
    let leases = c.store.leases();
    let Ok(LeaseOutcome::Acquired { epoch }) =
        leases.acquire_at(Coordinator::leader_prefix(), "l", 10_000, None)
    else {
        panic!("leader lease");
    };
    let v = coordinator.write_assignment("l", epoch, &[(3, Some("x".into())), (5, None)]);
    assert!(v.unwrap().is_some());
    let first = coordinator.move_times().unwrap();
    let t3 = first.moved_at[&3];
    assert!((before.now_ms..=first.now_ms).contains(&t3), "{first:?}");
    assert_eq!(
        first.moved_at.get(&5),
        Some(&t3),
        "an unassignment is a move too"
    );
    // A later write stamps only what it changes.
    eventually(Duration::from_secs(5), "redis time advances", || {
        coordinator.move_times().unwrap().now_ms > t3
    });
    coordinator
        .write_assignment("l", epoch, &[(4, Some("y".into()))])
        .unwrap();
    let second = coordinator.move_times().unwrap();
    assert_eq!(second.moved_at[&3], t3);
    assert!(second.moved_at[&4] > t3);
    // A deposed leader's write is fenced off and stamps nothing.
    let stale = coordinator.write_assignment("l", epoch + 1, &[(3, Some("z".into()))]);
    assert_eq!(stale.unwrap(), None);
    assert_eq!(coordinator.move_times().unwrap().moved_at[&3], t3);
    // The owner the table names stamps the start of serving (not a move);
    // another node's late stamp is refused; the next move clears it.
    assert_eq!(coordinator.note_serving(3, "z").unwrap(), None);
    let served = coordinator.note_serving(3, "x").unwrap().unwrap();
    assert!(served > t3);
    let times = coordinator.move_times().unwrap();
    assert_eq!(times.serving_at[&3], served);
    assert_eq!(times.moved_at[&3], t3, "serving is not a move");
    assert!(!times.serving_at.contains_key(&4));
    coordinator
        .write_assignment("l", epoch, &[(3, Some("w".into()))])
        .unwrap();
    let moved = coordinator.move_times().unwrap();
    assert!(
        !moved.serving_at.contains_key(&3),
        "a move clears the stamp"
    );
}

/// Standby names are the leader's alone, replace each other, and expire
/// unless named again.
#[test]
fn standby_names_are_fenced_by_the_leader_and_expire() {
    let c = Cluster::new();
    let (coordinator, epoch) = leading_as_l(&c);
    let named = [(2, "x".to_string()), (5, "y".to_string())];
    assert!(
        !coordinator
            .write_standby("l", epoch + 1, &named, 60_000)
            .unwrap()
    );
    assert!(
        coordinator.standby().unwrap().is_empty(),
        "a non-leader names nothing"
    );
    assert!(
        coordinator
            .write_standby("l", epoch, &named, 60_000)
            .unwrap()
    );
    let read = coordinator.standby().unwrap();
    assert_eq!(read.into_iter().collect::<Vec<_>>(), named.to_vec());
    // The next names replace these, whole.
    let next = [(7, "z".to_string())];
    assert!(coordinator.write_standby("l", epoch, &next, 200).unwrap());
    assert_eq!(coordinator.standby().unwrap().len(), 1);
    eventually(Duration::from_secs(5), "the names expire", || {
        coordinator.standby().unwrap().is_empty()
    });
}

/// Placement holds balancing moves off a node that just (re)joined: the
/// coordinator records when a node's current run of heartbeats began, and
/// a silence longer than the death-detection time (a pause) starts a new
/// run; a graceful leave forgets it.
#[test]
fn heartbeats_record_when_a_node_came_back() {
    let c = Cluster::new();
    let coordinator = Coordinator::new(c.store.clone());
    // The death-detection time is an argument of each beat: a long one
    // makes the second beat steady whatever the machine's pace.
    let beat = |dead_after_ms| {
        coordinator
            .heartbeat("n1", "127.0.0.1:1", 60_000, dead_after_ms)
            .unwrap()
    };
    let since = |c: &Coordinator| c.move_times().unwrap().live_since.get("n1").copied();
    let first = beat(60_000);
    assert_eq!(since(&coordinator), Some(first));
    let again = beat(60_000);
    assert_eq!(since(&coordinator), Some(first), "a steady beat keeps it");
    // Silent for longer than the death-detection time: a new run.
    eventually(
        Duration::from_secs(5),
        "redis time passes the silence",
        || coordinator.move_times().unwrap().now_ms > again + 50,
    );
    let back = beat(50);
    assert_eq!(since(&coordinator), Some(back));
    assert!(back > again);
    coordinator.leave("n1").unwrap();
    assert_eq!(since(&coordinator), None, "a leave forgets it");
}

/// Handoff intents are the leader's alone; an intent kept from round to
/// round keeps its id, time and stamps, a changed one starts over; stamps
/// count only from the side they name and for the intent they name.
#[test]
fn handoff_intents_are_fenced_keep_their_stamps_and_expire() {
    use liveseg_cluster::coordinator::{Freeze, Stamp};
    let c = Cluster::new();
    let (coordinator, epoch) = leading_as_l(&c);
    let s = |v: &str| v.to_string();
    let intents = [(2, s("a"), s("b")), (5, s("a"), s("c"))];
    assert!(
        !coordinator
            .write_handoffs("l", epoch + 1, &intents, 60_000)
            .unwrap()
    );
    assert!(coordinator.handoffs().unwrap().intents.is_empty());
    assert!(
        coordinator
            .write_handoffs("l", epoch, &intents, 60_000)
            .unwrap()
    );
    let first = coordinator.handoffs().unwrap().intents;
    let (id2, id5) = (first[&2].id, first[&5].id);
    assert_ne!(id2, id5);
    // Only the named side stamps, and only the intent it names.
    assert!(
        !coordinator
            .stamp_handoff(2, id2, "b", Stamp::Frozen(true))
            .unwrap()
    );
    assert!(
        !coordinator
            .stamp_handoff(2, id5, "a", Stamp::Frozen(true))
            .unwrap()
    );
    assert!(
        coordinator
            .stamp_handoff(2, id2, "a", Stamp::Frozen(true))
            .unwrap()
    );
    assert!(
        coordinator
            .stamp_handoff(2, id2, "b", Stamp::Ready)
            .unwrap()
    );
    assert!(
        coordinator
            .stamp_handoff(5, id5, "a", Stamp::Frozen(false))
            .unwrap()
    );
    let read = coordinator.handoffs().unwrap().intents;
    assert_eq!((read[&2].owner, read[&2].ready), (Freeze::Frozen, true));
    assert_eq!((read[&5].owner, read[&5].ready), (Freeze::Refused, false));
    // Next round: 2 kept (same id, time, stamps), 5 to another target
    // (starts over), 7 new; an intent left out is dropped.
    let next = [
        (2, s("a"), s("b")),
        (5, s("a"), s("d")),
        (7, s("b"), s("c")),
    ];
    assert!(
        coordinator
            .write_handoffs("l", epoch, &next, 60_000)
            .unwrap()
    );
    let read = coordinator.handoffs().unwrap().intents;
    assert_eq!(
        read[&2],
        first[&2].clone().with_stamps(Freeze::Frozen, true)
    );
    assert!(read[&5].id > id5 && read[&5].to == "d");
    assert_eq!((read[&5].owner, read[&5].ready), (Freeze::Pending, false));
    assert_eq!(read.len(), 3);
    assert!(
        coordinator
            .write_handoffs("l", epoch, &next[..1], 200)
            .unwrap()
    );
    assert_eq!(coordinator.handoffs().unwrap().intents.len(), 1);
    eventually(Duration::from_secs(5), "the intents expire", || {
        coordinator.handoffs().unwrap().intents.is_empty()
    });
}

/// A coordinator over `c` with node "l" holding the leader lease, and its epoch.
fn leading_as_l(c: &Cluster) -> (Coordinator, u64) {
    let epoch = common::members::lead_as(&c.store, "l", 10_000);
    (Coordinator::new(c.store.clone()), epoch)
}
