#![allow(clippy::unwrap_used)]
//! Script and contract tests against a real `redis-server` (spawned on a
//! free port per test, killed on drop).

use super::keys::{scoped, unscope};
use super::*;
use crate::StoreError;
use crate::test_support::{change, cp, dir_upd, item};
use crate::traits::{AppendItem, AppendOutcome, Catalog, CommitBatch, EventLog, StateStore};

fn server() -> (RedisProcess, RedisStore) {
    let p = RedisProcess::start(Fsync::Always).unwrap();
    let s = RedisStore::connect(RedisOptions::new(p.url())).unwrap();
    (p, s)
}

/// A shard store whose lease `node` holds (acquired here).
fn owned(s: &RedisStore, shard: u32, node: &str) -> (ShardStore, u64) {
    let epoch = match s.leases().acquire(shard, node, 60_000, None).unwrap() {
        LeaseOutcome::Acquired { epoch } => epoch,
        other => panic!("expected to acquire, got {other:?}"),
    };
    (s.shard(shard, Fence::new(node, epoch)), epoch)
}

#[test]
fn scoped_fields_round_trip_and_cannot_alias() {
    let f = scoped("a:1", "b");
    assert_eq!(unscope(&f), Some(("a:1", "b")));
    assert_ne!(scoped("a", "1:b"), scoped("a:1", "b"));
    assert_eq!(unscope(&scoped("", "x")), Some(("", "x")));
    assert_eq!(unscope("5:ab"), None);
    assert_eq!(unscope("nope"), None);
}

#[test]
fn append_is_gapless_deduplicated_and_safe_to_resend() {
    let (_p, s) = server();
    let log = s.shard(3, Fence::new("n1", 1));
    assert_eq!(log.head().unwrap(), 0);
    let out = log
        .append(
            &[
                item("t", "a", "1"),
                item("t", "b", "2"),
                item("t", "a", "x"),
            ],
            0,
        )
        .unwrap();
    assert_eq!(
        out,
        vec![
            AppendOutcome::Accepted { seq: 1 },
            AppendOutcome::Accepted { seq: 2 },
            AppendOutcome::Duplicate { seq: 1 },
        ]
    );
    // The same batch again, as a client re-sends after a lost reply.
    let again = log
        .append(&[item("t", "a", "1"), item("t", "b", "2")], 0)
        .unwrap();
    assert_eq!(
        again,
        vec![
            AppendOutcome::Duplicate { seq: 1 },
            AppendOutcome::Duplicate { seq: 2 }
        ]
    );
    // Same message id in another tenant is a different event.
    assert_eq!(
        log.append(&[item("u", "a", "3")], 0).unwrap(),
        vec![AppendOutcome::Accepted { seq: 3 }]
    );
    let all = log.read_after(0, 10).unwrap();
    let got: Vec<(u64, &str, &[u8])> = all
        .iter()
        .map(|e| (e.seq, e.tenant.as_str(), e.payload.as_slice()))
        .collect();
    assert_eq!(
        got,
        vec![(1, "t", &b"1"[..]), (2, "t", b"2"), (3, "u", b"3")]
    );
    assert_eq!(log.read_after(2, 10).unwrap().len(), 1);
    assert_eq!(log.read_after(0, 2).unwrap().len(), 2);
    assert_eq!(log.head().unwrap(), 3);
    // Another shard has its own sequence.
    let other = s.shard(4, Fence::new("n1", 1));
    assert_eq!(
        other.append(&[item("t", "a", "1")], 0).unwrap(),
        vec![AppendOutcome::Accepted { seq: 1 }]
    );
}

#[test]
fn large_batches_are_chunked_in_order() {
    let (_p, s) = server();
    let log = s.shard(0, Fence::new("n1", 1));
    let items: Vec<AppendItem> = (0..600).map(|i| item("t", &format!("m{i}"), "p")).collect();
    let out = log.append(&items, 0).unwrap();
    assert_eq!(out.len(), 600);
    for (i, o) in out.iter().enumerate() {
        assert_eq!(*o, AppendOutcome::Accepted { seq: i as u64 + 1 });
    }
    assert_eq!(log.read_after(0, 1000).unwrap().len(), 600);
}

#[test]
fn leases_have_growing_epochs_and_compare_and_delete_release() {
    let (_p, s) = server();
    let l = s.leases();
    assert_eq!(l.last_epoch(7).unwrap(), 0);
    assert_eq!(
        l.acquire(7, "a", 60_000, None).unwrap(),
        LeaseOutcome::Acquired { epoch: 1 }
    );
    assert_eq!(
        l.acquire(7, "a", 60_000, Some(1)).unwrap(),
        LeaseOutcome::Renewed { epoch: 1 }
    );
    assert!(matches!(
        l.acquire(7, "b", 60_000, None).unwrap(),
        LeaseOutcome::HeldByOther { pttl_ms } if pttl_ms > 0
    ));
    // b cannot renew what it never held, nor release a's lease.
    assert_eq!(
        l.acquire(7, "b", 60_000, Some(1)).unwrap(),
        LeaseOutcome::Lost
    );
    assert!(!l.release(7, "b", 1).unwrap());
    assert_eq!(l.holder(7).unwrap().as_deref(), Some("a#1"));
    // A re-sent acquire by the holder takes a fresh epoch (fences the old one).
    assert_eq!(
        l.acquire(7, "a", 60_000, None).unwrap(),
        LeaseOutcome::Acquired { epoch: 2 }
    );
    assert_eq!(
        l.acquire(7, "a", 60_000, Some(1)).unwrap(),
        LeaseOutcome::Lost
    );
    assert!(l.release(7, "a", 2).unwrap());
    assert!(!l.release(7, "a", 2).unwrap(), "release is idempotent");
    // Renewing a released lease reports it lost; epochs never repeat.
    assert_eq!(
        l.acquire(7, "a", 60_000, Some(2)).unwrap(),
        LeaseOutcome::Lost
    );
    assert_eq!(
        l.acquire(7, "b", 60_000, None).unwrap(),
        LeaseOutcome::Acquired { epoch: 3 }
    );
    assert!(matches!(
        l.acquire(7, "a", 10, None).unwrap(),
        LeaseOutcome::HeldByOther { .. }
    ));
    assert!(l.acquire(7, "bad#id", 10, None).is_err());
}

#[test]
fn an_expired_lease_goes_to_the_next_node_and_fences_the_old_owner() {
    let (_p, s) = server();
    let l = s.leases();
    // Long enough that the first commit lands inside it even on a loaded
    // machine (30 ms did not), short enough to expire quickly below.
    assert_eq!(
        l.acquire(2, "a", 500, None).unwrap(),
        LeaseOutcome::Acquired { epoch: 1 }
    );
    let old = s.shard(2, Fence::new("a", 1));
    old.commit(&CommitBatch {
        checkpoints: vec![cp("t", "acc", 1, Some("v1"))],
        watermark: Some(1),
        ..Default::default()
    })
    .unwrap();
    // Poll until Redis expires a's lease and b gets it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let epoch = loop {
        if let LeaseOutcome::Acquired { epoch } = l.acquire(2, "b", 60_000, None).unwrap() {
            break epoch;
        }
        assert!(std::time::Instant::now() < deadline, "lease never expired");
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    assert_eq!(epoch, 2);
    assert_eq!(l.acquire(2, "a", 30, Some(1)).unwrap(), LeaseOutcome::Lost);
    // The zombie's write is rejected inside Redis and nothing of it lands.
    let err = old
        .commit(&CommitBatch {
            checkpoints: vec![cp("t", "acc", 5, Some("zombie"))],
            directory: vec![dir_upd("t", "c", Some("acc"))],
            changes: vec![change("t", "zombie change")],
            watermark: Some(5),
        })
        .unwrap_err();
    match err {
        StoreError::Fenced {
            shard,
            presented,
            current,
        } => {
            assert_eq!(
                (shard, presented.as_str(), current.as_str()),
                (2, "a#1", "b#2")
            );
        }
        other => panic!("expected Fenced, got {other:?}"),
    }
    let new = s.shard(2, Fence::new("b", epoch));
    assert_eq!(
        new.load_checkpoint("t", "acc").unwrap(),
        Some((1, b"v1".to_vec()))
    );
    assert_eq!(new.directory_lookup("t", "c").unwrap(), None);
    assert_eq!(new.change_head("t").unwrap(), 0);
    assert_eq!(new.watermark().unwrap(), 1);
    new.commit(&CommitBatch {
        checkpoints: vec![cp("t", "acc", 5, Some("v5"))],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        new.load_checkpoint("t", "acc").unwrap(),
        Some((5, b"v5".to_vec()))
    );
}

#[test]
fn a_writer_past_its_local_deadline_does_not_send() {
    let (_p, s) = server();
    let (_, epoch) = owned(&s, 1, "a");
    let fence = Fence {
        token: format!("a#{epoch}"),
        valid: std::sync::Arc::new(|| false),
    };
    let store = s.shard(1, fence);
    let err = store
        .commit(&CommitBatch {
            checkpoints: vec![cp("t", "x", 1, Some("s"))],
            ..Default::default()
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::Fenced { .. }), "{err:?}");
    assert_eq!(store.load_checkpoint("t", "x").unwrap(), None);
}

#[test]
fn a_resent_commit_is_applied_once() {
    let (_p, s) = server();
    let (store, _) = owned(&s, 9, "a");
    let batch = CommitBatch {
        checkpoints: vec![cp("t", "acc", 3, Some("s3"))],
        changes: vec![change("t", "enter"), change("t", "exit")],
        watermark: Some(3),
        ..Default::default()
    };
    assert_eq!(store.commit_as(&batch, "a#1/7").unwrap(), vec![1, 2]);
    assert_eq!(
        store.commit_as(&batch, "a#1/7").unwrap(),
        vec![1, 2],
        "same answer"
    );
    assert_eq!(
        store.change_head("t").unwrap(),
        2,
        "no duplicate change records"
    );
    assert_eq!(store.changes_after("t", 0, 10).unwrap().len(), 2);
    // A new commit id is a new commit.
    assert_eq!(
        store
            .commit_as(
                &CommitBatch {
                    changes: vec![change("t", "again")],
                    ..Default::default()
                },
                "a#1/8"
            )
            .unwrap(),
        vec![3]
    );
}

#[test]
fn stale_checkpoints_reject_the_whole_batch() {
    let (_p, s) = server();
    let (store, _) = owned(&s, 0, "a");
    store
        .commit(&CommitBatch {
            checkpoints: vec![cp("t1", "acc", 10, Some("v10"))],
            ..Default::default()
        })
        .unwrap();
    let err = store
        .commit(&CommitBatch {
            checkpoints: vec![
                cp("t1", "other", 3, Some("o")),
                cp("t1", "acc", 9, Some("v9")),
            ],
            directory: vec![dir_upd("t1", "c1", Some("acc"))],
            changes: vec![change("t1", "ch")],
            watermark: Some(100),
        })
        .unwrap_err();
    match &err {
        StoreError::StaleCheckpoint {
            tenant,
            account,
            stored,
            presented,
        } => {
            assert_eq!(
                (tenant.as_str(), account.as_str(), *stored, *presented),
                ("t1", "acc", 10, 9)
            );
        }
        other => panic!("expected StaleCheckpoint, got {other:?}"),
    }
    assert_eq!(store.load_checkpoint("t1", "other").unwrap(), None);
    assert_eq!(store.directory_lookup("t1", "c1").unwrap(), None);
    assert_eq!(store.change_head("t1").unwrap(), 0);
    assert_eq!(store.watermark().unwrap(), 0);
    // Deletion is a checkpoint too: it keeps fencing and stays in the index.
    store
        .commit(&CommitBatch {
            checkpoints: vec![cp("t1", "acc", 10, Some("v10b")), cp("t1", "acc", 12, None)],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(store.load_checkpoint("t1", "acc").unwrap(), None);
    assert_eq!(
        store.checkpoint_index().unwrap(),
        vec![("t1".into(), "acc".into(), 12)]
    );
    assert!(matches!(
        store.commit(&CommitBatch {
            checkpoints: vec![cp("t1", "acc", 11, Some("resurrect"))],
            ..Default::default()
        }),
        Err(StoreError::StaleCheckpoint { stored: 12, .. })
    ));
}

#[test]
fn directory_changes_and_watermark_are_per_tenant_and_monotonic() {
    let (_p, s) = server();
    let (store, _) = owned(&s, 5, "a");
    let cursors = store
        .commit(&CommitBatch {
            directory: vec![
                dir_upd("a", "c1", Some("x")),
                dir_upd("a:1", "c1", Some("y")),
                dir_upd("a", "c2", Some("z")),
            ],
            changes: vec![change("a", "a1"), change("b", "b1"), change("a", "a2")],
            watermark: Some(7),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(cursors, vec![1, 1, 2]);
    let mut all = store.directory_all("a").unwrap();
    all.sort();
    assert_eq!(
        all,
        vec![("c1".into(), "x".into()), ("c2".into(), "z".into())]
    );
    assert_eq!(
        store.directory_lookup("a:1", "c1").unwrap().as_deref(),
        Some("y")
    );
    let a: Vec<(u64, Vec<u8>)> = store.changes_after("a", 0, 10).unwrap();
    assert_eq!(a, vec![(1, b"a1".to_vec()), (2, b"a2".to_vec())]);
    assert_eq!(
        store.changes_after("a", 1, 10).unwrap(),
        vec![(2, b"a2".to_vec())]
    );
    assert_eq!(store.change_head("b").unwrap(), 1);
    store
        .commit(&CommitBatch {
            directory: vec![dir_upd("a", "c1", None)],
            watermark: Some(3),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(store.directory_lookup("a", "c1").unwrap(), None);
    assert_eq!(store.watermark().unwrap(), 7, "never backwards");
}

#[test]
fn catalog_tenants_keys_and_segment_revisions() {
    let (_p, s) = server();
    let c = s.catalog();
    c.create_tenant("t1", "One", 5).unwrap();
    assert!(matches!(
        c.create_tenant("t1", "Again", 6),
        Err(StoreError::AlreadyExists { .. })
    ));
    c.create_tenant("t0", "Zero", 7).unwrap();
    let ids: Vec<String> = c.tenants().unwrap().into_iter().map(|t| t.id).collect();
    assert_eq!(ids, vec!["t0", "t1"]);
    c.add_api_key("t1", "secret", "k").unwrap();
    assert_eq!(c.tenant_for_key("secret").unwrap().as_deref(), Some("t1"));
    assert_eq!(c.tenant_for_key("other").unwrap(), None);
    assert!(
        c.add_api_key("t0", "secret", "k").is_err(),
        "key of another tenant"
    );
    assert!(matches!(
        c.add_api_key("nope", "k2", "k"),
        Err(StoreError::NotFound { .. })
    ));
    // Keys are stored hashed only.
    let raw: Vec<String> = s
        .with_conn(|conn| ::redis::cmd("HKEYS").arg("seg:{cat}:keys").query(conn))
        .unwrap();
    assert_eq!(raw, vec![crate::embedded::hash_api_key("secret")]);
    assert_eq!(c.put_segment("t1", "s", "{\"a\":1}").unwrap(), 1);
    assert_eq!(c.put_segment("t1", "s", "{\"a\":2}").unwrap(), 2);
    assert!(c.delete_segment("t1", "s").unwrap());
    assert!(!c.delete_segment("t1", "s").unwrap());
    assert_eq!(
        c.put_segment("t1", "s", "{\"a\":3}").unwrap(),
        3,
        "revisions never reused"
    );
    assert_eq!(
        c.segments("t1").unwrap(),
        vec![("s".into(), "{\"a\":3}".into(), 3)]
    );
    assert!(c.segments("t0").unwrap().is_empty());
    assert!(matches!(
        c.put_segment("t1", "s", "not json"),
        Err(StoreError::InvalidInput(_))
    ));
    c.create_tenant("t2", "T2", 1).unwrap();
    crate::traits::check_content_catalog(&c, "t1", "t2");
}

#[test]
fn acknowledged_writes_survive_kill9_with_appendfsync_always() {
    let (mut p, s) = server();
    let (store, epoch) = owned(&s, 4, "a");
    let out = store
        .append(&[item("t", "m1", "e1"), item("t", "m2", "e2")], 0)
        .unwrap();
    assert_eq!(out.len(), 2);
    store
        .commit(&CommitBatch {
            checkpoints: vec![cp("t", "acc", 2, Some("s2"))],
            watermark: Some(2),
            ..Default::default()
        })
        .unwrap();
    p.kill9();
    assert!(store.head().is_err(), "redis is down");
    p.restart().unwrap();
    let again = RedisStore::connect(RedisOptions::new(p.url())).unwrap();
    let st = again.shard(4, Fence::new("a", epoch));
    assert_eq!(st.head().unwrap(), 2);
    assert_eq!(st.read_after(0, 10).unwrap().len(), 2);
    assert_eq!(
        st.load_checkpoint("t", "acc").unwrap(),
        Some((2, b"s2".to_vec()))
    );
    assert_eq!(
        again.leases().last_epoch(4).unwrap(),
        epoch,
        "epochs survive"
    );
    assert_eq!(
        st.append(&[item("t", "m1", "e1")], 0).unwrap(),
        vec![AppendOutcome::Duplicate { seq: 1 }],
        "dedupe keys survive"
    );
}

#[test]
fn blocking_reads_wake_on_new_entries() {
    let (_p, s) = server();
    let log = s.shard(6, Fence::new("a", 1));
    log.append(&[item("t", "m0", "0")], 0).unwrap();
    let mut conn = s.open(std::time::Duration::from_secs(30)).unwrap();
    let got = log.read_blocking(&mut conn, 0, 10, 1000).unwrap();
    assert_eq!(got.len(), 1);
    let writer = {
        let s = s.clone();
        std::thread::spawn(move || {
            s.shard(6, Fence::new("a", 1))
                .append(&[item("t", "m1", "1")], 0)
                .unwrap();
        })
    };
    // BLOCK 20 s: returns as soon as the writer's entry lands.
    let got = log.read_blocking(&mut conn, 1, 10, 20_000).unwrap();
    writer.join().unwrap();
    assert_eq!(got.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2]);
    assert!(log.read_blocking(&mut conn, 2, 10, 10).unwrap().is_empty());
}

#[test]
fn a_redis_that_is_away_is_transient_and_one_out_of_memory_is_not() {
    let (mut p, s) = server();
    let (store, _) = owned(&s, 5, "a");
    let commit = |store: &ShardStore| {
        store.commit(&CommitBatch {
            checkpoints: vec![cp("t", "acc", 1, Some("a large enough image"))],
            watermark: Some(1),
            ..Default::default()
        })
    };
    // Out of memory: Redis refuses every write until an operator acts.
    let mut c = ::redis::Client::open(p.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = ::redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("1")
        .query(&mut c)
        .unwrap();
    let oom = commit(&store).unwrap_err();
    assert!(oom.to_string().contains("OOM"), "{oom}");
    assert!(!oom.is_transient_redis(), "{oom}");
    let _: () = ::redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("0")
        .query(&mut c)
        .unwrap();
    commit(&store).unwrap();
    // Down: the same write may go through once it is back. (A commit
    // would re-send while its lease lasts; a read fails at once.)
    p.kill9();
    let away = store.head().unwrap_err();
    assert!(away.is_transient_redis(), "{away}");
    assert!(!StoreError::Internal("x".into()).is_transient_redis());
}
