#![allow(clippy::unwrap_used)]

use super::*;
use crate::test_support::{change, cp, dir_upd, item};
use crate::traits::{AppendOutcome, Catalog, CommitBatch, EventLog, StateStore};

const HOUR_MS: i64 = 60 * 60 * 1000;

fn open(dir: &Path) -> EmbeddedStore {
    EmbeddedStore::open(dir, StoreOptions::default()).unwrap()
}

#[test]
fn error_type_is_thread_safe() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<StoreError>();
    assert_send_sync::<EmbeddedStore>();
}

#[test]
fn append_read_order_and_gapless_seqs() {
    let tmp = tempfile::tempdir().unwrap();
    let s = open(tmp.path());
    assert_eq!(s.head().unwrap(), 0);
    assert!(s.read_after(0, 10).unwrap().is_empty());

    let out = s
        .append(&[item("t1", "a", "A"), item("t2", "b", "B")], 1_000)
        .unwrap();
    assert_eq!(
        out,
        vec![
            AppendOutcome::Accepted { seq: 1 },
            AppendOutcome::Accepted { seq: 2 }
        ]
    );
    let out = s.append(&[item("t1", "c", "C")], 1_001).unwrap();
    assert_eq!(out, vec![AppendOutcome::Accepted { seq: 3 }]);
    assert_eq!(s.head().unwrap(), 3);
    assert!(s.append(&[], 1_002).unwrap().is_empty());

    let all = s.read_after(0, 100).unwrap();
    let seqs: Vec<u64> = all.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    assert_eq!(all[1].tenant, "t2");
    assert_eq!(all[1].payload, b"B");
    assert_eq!(all[2].payload, b"C");

    let page = s.read_after(1, 1).unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].seq, 2);
    assert!(s.read_after(3, 10).unwrap().is_empty());
    assert!(s.read_after(0, 0).unwrap().is_empty());
    assert!(s.read_after(u64::MAX, 10).unwrap().is_empty());
}

#[test]
fn dedupe_across_batches_and_within_a_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let s = open(tmp.path());
    let out = s
        .append(
            &[
                item("t1", "m1", "first"),
                item("t1", "m1", "again-in-batch"),
                item("t2", "m1", "other tenant, same id"),
            ],
            1_000,
        )
        .unwrap();
    assert_eq!(
        out,
        vec![
            AppendOutcome::Accepted { seq: 1 },
            AppendOutcome::Duplicate { seq: 1 },
            AppendOutcome::Accepted { seq: 2 },
        ]
    );
    let out = s
        .append(&[item("t2", "m1", "x"), item("t1", "m2", "y")], 2_000)
        .unwrap();
    assert_eq!(
        out,
        vec![
            AppendOutcome::Duplicate { seq: 2 },
            AppendOutcome::Accepted { seq: 3 },
        ]
    );
    // Duplicates write nothing: the log holds exactly the accepted items.
    let all = s.read_after(0, 100).unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].payload, b"first");
}

#[test]
fn duplicates_survive_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let s = open(tmp.path());
        s.append(&[item("t1", "m1", "p1"), item("t1", "m2", "p2")], 1_000)
            .unwrap();
    }
    let s = open(tmp.path());
    assert_eq!(s.head().unwrap(), 2);
    let all = s.read_after(0, 10).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].payload, b"p2");
    let out = s
        .append(&[item("t1", "m2", "dup"), item("t1", "m3", "p3")], 2_000)
        .unwrap();
    assert_eq!(
        out,
        vec![
            AppendOutcome::Duplicate { seq: 2 },
            AppendOutcome::Accepted { seq: 3 },
        ]
    );
}

#[test]
fn prune_dedupe_makes_old_ids_acceptable_again() {
    let tmp = tempfile::tempdir().unwrap();
    let s = EmbeddedStore::open(
        tmp.path(),
        StoreOptions {
            dedupe_window_ms: 10 * HOUR_MS,
            ..StoreOptions::default()
        },
    )
    .unwrap();
    s.append(&[item("t1", "old", "1")], 1_000).unwrap();
    s.append(&[item("t1", "new", "2")], 5_000).unwrap();
    assert_eq!(s.prune_dedupe(1_000).unwrap(), 0, "strictly before");
    assert_eq!(s.prune_dedupe(3_000).unwrap(), 1);
    assert_eq!(s.prune_dedupe(3_000).unwrap(), 0, "already pruned");

    let out = s
        .append(&[item("t1", "old", "3"), item("t1", "new", "4")], 6_000)
        .unwrap();
    assert_eq!(
        out,
        vec![
            AppendOutcome::Accepted { seq: 3 },
            AppendOutcome::Duplicate { seq: 2 },
        ]
    );
}

#[test]
fn dedupe_window_expires_without_pruning() {
    let tmp = tempfile::tempdir().unwrap();
    let s = EmbeddedStore::open(
        tmp.path(),
        StoreOptions {
            dedupe_window_ms: HOUR_MS,
            ..StoreOptions::default()
        },
    )
    .unwrap();
    s.append(&[item("t1", "m", "1")], 0).unwrap();
    let out = s.append(&[item("t1", "m", "2")], HOUR_MS).unwrap();
    assert_eq!(
        out,
        vec![AppendOutcome::Duplicate { seq: 1 }],
        "edge is inside"
    );
    let out = s.append(&[item("t1", "m", "3")], HOUR_MS + 1).unwrap();
    assert_eq!(out, vec![AppendOutcome::Accepted { seq: 2 }]);
    // The re-acceptance replaced the old index entry: pruning the old time
    // drops nothing that matters, and the id stays a duplicate.
    assert_eq!(s.prune_dedupe(1).unwrap(), 0);
    let out = s.append(&[item("t1", "m", "4")], HOUR_MS + 2).unwrap();
    assert_eq!(out, vec![AppendOutcome::Duplicate { seq: 2 }]);
}

#[test]
fn stale_checkpoint_is_rejected_and_nothing_written() {
    let tmp = tempfile::tempdir().unwrap();
    let s = open(tmp.path());
    s.commit(&CommitBatch {
        checkpoints: vec![cp("t1", "acc", 10, Some("v10"))],
        ..Default::default()
    })
    .unwrap();

    let err = s
        .commit(&CommitBatch {
            checkpoints: vec![
                cp("t1", "other", 3, Some("other")),
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
            assert_eq!((tenant.as_str(), account.as_str()), ("t1", "acc"));
            assert_eq!((*stored, *presented), (10, 9));
        }
        other => panic!("expected StaleCheckpoint, got {other:?}"),
    }
    assert!(err.to_string().contains("stale checkpoint"));

    assert_eq!(
        s.load_checkpoint("t1", "acc").unwrap(),
        Some((10, b"v10".to_vec()))
    );
    assert_eq!(s.load_checkpoint("t1", "other").unwrap(), None);
    assert_eq!(s.directory_lookup("t1", "c1").unwrap(), None);
    assert_eq!(s.change_head("t1").unwrap(), 0);
    assert!(s.changes_after("t1", 0, 10).unwrap().is_empty());
    assert_eq!(s.watermark().unwrap(), 0);

    // Equal applied_seq is an idempotent retry and is accepted.
    s.commit(&CommitBatch {
        checkpoints: vec![cp("t1", "acc", 10, Some("v10b"))],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        s.load_checkpoint("t1", "acc").unwrap(),
        Some((10, b"v10b".to_vec()))
    );
}

#[test]
fn deleted_checkpoint_keeps_fencing_and_index() {
    let tmp = tempfile::tempdir().unwrap();
    let s = open(tmp.path());
    s.commit(&CommitBatch {
        checkpoints: vec![cp("t1", "acc", 5, Some("v5")), cp("t1", "acc", 7, None)],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(s.load_checkpoint("t1", "acc").unwrap(), None);
    assert_eq!(
        s.checkpoint_index().unwrap(),
        vec![("t1".to_owned(), "acc".to_owned(), 7)]
    );
    let err = s
        .commit(&CommitBatch {
            checkpoints: vec![cp("t1", "acc", 6, Some("resurrect"))],
            ..Default::default()
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::StaleCheckpoint { stored: 7, .. }));
}

#[test]
fn watermark_is_atomic_and_monotonic() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let s = open(tmp.path());
        assert_eq!(s.watermark().unwrap(), 0);
        s.commit(&CommitBatch {
            checkpoints: vec![cp("t", "a", 5, Some("s"))],
            watermark: Some(5),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.watermark().unwrap(), 5);
        // Rejected batch: the watermark does not move either.
        s.commit(&CommitBatch {
            checkpoints: vec![cp("t", "a", 4, Some("old"))],
            watermark: Some(9),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(s.watermark().unwrap(), 5);
        // Never backwards; None leaves it alone.
        s.commit(&CommitBatch {
            watermark: Some(3),
            ..Default::default()
        })
        .unwrap();
        s.commit(&CommitBatch::default()).unwrap();
        assert_eq!(s.watermark().unwrap(), 5);
    }
    assert_eq!(open(tmp.path()).watermark().unwrap(), 5, "durable");
}

#[test]
fn change_cursors_are_per_tenant_and_start_at_one() {
    let tmp = tempfile::tempdir().unwrap();
    let s = open(tmp.path());
    let cursors = s
        .commit(&CommitBatch {
            changes: vec![change("a", "a1"), change("b", "b1"), change("a", "a2")],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(cursors, vec![1, 1, 2]);
    let cursors = s
        .commit(&CommitBatch {
            changes: vec![change("b", "b2"), change("a", "a3")],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(cursors, vec![2, 3]);
    assert_eq!(s.change_head("a").unwrap(), 3);
    assert_eq!(s.change_head("b").unwrap(), 2);
    assert_eq!(s.change_head("c").unwrap(), 0);

    let a = s.changes_after("a", 0, 100).unwrap();
    assert_eq!(
        a,
        vec![
            (1, b"a1".to_vec()),
            (2, b"a2".to_vec()),
            (3, b"a3".to_vec())
        ]
    );
    assert_eq!(
        s.changes_after("a", 1, 1).unwrap(),
        vec![(2, b"a2".to_vec())]
    );
    assert_eq!(
        s.changes_after("b", 0, 100).unwrap(),
        vec![(1, b"b1".to_vec()), (2, b"b2".to_vec())]
    );
    assert!(s.changes_after("a", 3, 100).unwrap().is_empty());
    assert!(s.changes_after("a", u64::MAX, 100).unwrap().is_empty());
}

#[test]
fn tenants_are_isolated() {
    let tmp = tempfile::tempdir().unwrap();
    let s = open(tmp.path());
    // Ids chosen so that naive "tenant:account" concatenation would collide.
    s.create_tenant("t", "T", 1).unwrap();
    s.create_tenant("t:x", "TX", 1).unwrap();
    s.commit(&CommitBatch {
        checkpoints: vec![
            cp("t", "x:acc", 1, Some("t state")),
            cp("t:x", "acc", 2, Some("tx state")),
            cp("t2", "acc", 3, Some("t2 state")),
        ],
        directory: vec![
            dir_upd("t", "x:c", Some("t-acc")),
            dir_upd("t:x", "c", Some("tx-acc")),
            dir_upd("t2", "c", Some("t2-acc")),
        ],
        changes: vec![change("t", "t-change"), change("t:x", "tx-change")],
        watermark: None,
    })
    .unwrap();

    assert_eq!(
        s.load_checkpoint("t", "x:acc").unwrap(),
        Some((1, b"t state".to_vec()))
    );
    assert_eq!(
        s.load_checkpoint("t:x", "acc").unwrap(),
        Some((2, b"tx state".to_vec()))
    );
    assert_eq!(s.load_checkpoint("t", "acc").unwrap(), None);
    assert_eq!(s.load_checkpoint("t:x", "x:acc").unwrap(), None);

    assert_eq!(
        s.directory_lookup("t:x", "c").unwrap().as_deref(),
        Some("tx-acc")
    );
    assert_eq!(s.directory_lookup("t", "c").unwrap(), None);
    assert_eq!(
        s.directory_all("t").unwrap(),
        vec![("x:c".to_owned(), "t-acc".to_owned())]
    );
    assert_eq!(
        s.directory_all("t:x").unwrap(),
        vec![("c".to_owned(), "tx-acc".to_owned())]
    );
    assert!(s.directory_all("nobody").unwrap().is_empty());

    assert_eq!(
        s.changes_after("t", 0, 10).unwrap(),
        vec![(1, b"t-change".to_vec())]
    );
    assert_eq!(
        s.changes_after("t:x", 0, 10).unwrap(),
        vec![(1, b"tx-change".to_vec())]
    );

    s.put_segment("t", "x:seg", "{\"a\":1}").unwrap();
    s.put_segment("t:x", "seg", "{\"b\":2}").unwrap();
    assert_eq!(
        s.segments("t").unwrap(),
        vec![("x:seg".to_owned(), "{\"a\":1}".to_owned(), 1)]
    );
    assert_eq!(
        s.segments("t:x").unwrap(),
        vec![("seg".to_owned(), "{\"b\":2}".to_owned(), 1)]
    );
    assert!(!s.delete_segment("t", "seg").unwrap());
    assert_eq!(s.segments("t:x").unwrap().len(), 1);

    let mut index = s.checkpoint_index().unwrap();
    index.sort();
    assert_eq!(
        index,
        vec![
            ("t".to_owned(), "x:acc".to_owned(), 1),
            ("t2".to_owned(), "acc".to_owned(), 3),
            ("t:x".to_owned(), "acc".to_owned(), 2),
        ]
    );
}

#[test]
fn directory_updates_and_removal() {
    let tmp = tempfile::tempdir().unwrap();
    let s = open(tmp.path());
    s.commit(&CommitBatch {
        directory: vec![
            dir_upd("t", "c1", Some("a1")),
            dir_upd("t", "c2", Some("a1")),
        ],
        ..Default::default()
    })
    .unwrap();
    s.commit(&CommitBatch {
        directory: vec![dir_upd("t", "c1", Some("a2")), dir_upd("t", "c2", None)],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        s.directory_all("t").unwrap(),
        vec![("c1".to_owned(), "a2".to_owned())]
    );
}

#[test]
fn catalog_tenants_and_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let s = open(tmp.path());
    s.create_tenant("acme", "Acme Inc", 42).unwrap();
    let err = s.create_tenant("acme", "again", 43).unwrap_err();
    assert!(matches!(
        err,
        StoreError::AlreadyExists { kind: "tenant", .. }
    ));
    assert!(matches!(
        s.create_tenant("", "x", 1).unwrap_err(),
        StoreError::InvalidInput(_)
    ));
    s.create_tenant("beta", "Beta", 44).unwrap();
    let tenants = s.tenants().unwrap();
    assert_eq!(tenants.len(), 2);
    assert_eq!(tenants[0].id, "acme");
    assert_eq!(tenants[0].name, "Acme Inc");
    assert_eq!(tenants[0].created_ms, 42);

    assert_eq!(s.put_segment("acme", "b", "{}").unwrap(), 1);
    assert_eq!(s.put_segment("acme", "a", "[1]").unwrap(), 1);
    assert_eq!(s.put_segment("acme", "b", "{\"v\":2}").unwrap(), 2);
    assert_eq!(
        s.segments("acme").unwrap(),
        vec![
            ("a".to_owned(), "[1]".to_owned(), 1),
            ("b".to_owned(), "{\"v\":2}".to_owned(), 2),
        ]
    );
    assert!(s.delete_segment("acme", "b").unwrap());
    assert!(!s.delete_segment("acme", "b").unwrap());
    // Revisions are never reused, even after a delete.
    assert_eq!(s.put_segment("acme", "b", "{}").unwrap(), 3);

    assert!(matches!(
        s.put_segment("nobody", "a", "{}").unwrap_err(),
        StoreError::NotFound { kind: "tenant", .. }
    ));
    assert!(matches!(
        s.put_segment("acme", "a", "not json").unwrap_err(),
        StoreError::InvalidInput(_)
    ));
    crate::traits::check_content_catalog(&s, "acme", "beta");
}

#[test]
fn api_keys_are_stored_hashed() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = "lsk_live_SUPERSECRET_0123456789abcdef";
    {
        let s = open(tmp.path());
        s.create_tenant("acme", "Acme", 1).unwrap();
        s.create_tenant("beta", "Beta", 1).unwrap();
        assert!(matches!(
            s.add_api_key("nobody", secret, "x").unwrap_err(),
            StoreError::NotFound { .. }
        ));
        s.add_api_key("acme", secret, "ci").unwrap();
        s.add_api_key("acme", secret, "ci-renamed").unwrap();
        let err = s.add_api_key("beta", secret, "steal").unwrap_err();
        assert!(matches!(err, StoreError::AlreadyExists { .. }));
        assert!(!err.to_string().contains(secret));
        assert!(!err.to_string().contains("acme"));

        assert_eq!(s.tenant_for_key(secret).unwrap().as_deref(), Some("acme"));
        assert_eq!(s.tenant_for_key("lsk_live_wrong").unwrap(), None);
        assert_eq!(s.tenant_for_key("").unwrap(), None);
    }
    let bytes = std::fs::read(tmp.path().join(DB_FILE)).unwrap();
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(!contains(secret.as_bytes()), "raw API key found in db file");
    assert!(
        !contains(b"SUPERSECRET"),
        "part of the API key found in db file"
    );
    assert!(
        contains(catalog::hash_api_key(secret).as_bytes()),
        "hash should be what is stored"
    );
    // Still resolvable after reopen.
    let s = open(tmp.path());
    assert_eq!(s.tenant_for_key(secret).unwrap().as_deref(), Some("acme"));
}

#[test]
fn api_key_hash_is_sha256_hex() {
    assert_eq!(
        catalog::hash_api_key("abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn second_open_of_same_dir_is_locked() {
    let tmp = tempfile::tempdir().unwrap();
    let s = open(tmp.path());
    let err = EmbeddedStore::open(tmp.path(), StoreOptions::default()).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "got {err:?}");
    assert!(err.to_string().contains("locked"));
    drop(s);
    // Released on drop.
    let s = open(tmp.path());
    assert!(s.is_held());
    assert_eq!(s.epoch(), 1);
}

#[test]
fn negative_dedupe_window_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let err = EmbeddedStore::open(
        tmp.path(),
        StoreOptions {
            dedupe_window_ms: -1,
            ..StoreOptions::default()
        },
    )
    .unwrap_err();
    assert!(matches!(err, StoreError::InvalidInput(_)));
}
