//! Tests of the event log's layout: hashed dedupe keys, the in-memory front
//! (pending keys, filter), index runs and base rows, log chunks, pruning by
//! log position, and state rebuilt on reopen. A randomized test checks the
//! whole thing against a plain reference model of the `EventLog` contract.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use redb::ReadableTableMetadata;

use super::dedupe::{BUCKETS, bucket_of, dedupe_key, rows};
use super::*;
use crate::traits::{AppendItem, AppendOutcome, EventLog};

const HOUR_MS: i64 = 60 * 60 * 1000;

fn item(tenant: &str, id: &str, payload: &str) -> AppendItem {
    AppendItem {
        tenant: tenant.to_owned(),
        message_id: id.to_owned(),
        payload: payload.as_bytes().to_vec(),
    }
}

/// Options with a given in-memory buffer and filter size. A buffer of 1
/// flushes every pending key into the index on the next commit.
fn opts(buffer: usize, filter_bytes: usize, window_ms: i64) -> StoreOptions {
    StoreOptions {
        dedupe_window_ms: window_ms,
        dedupe_buffer_entries: buffer,
        dedupe_filter_bytes: filter_bytes,
        ..StoreOptions::default()
    }
}

/// splitmix64, for reproducible randomized tests.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// `n` message ids whose dedupe keys (for `tenant`) fall into `buckets`, so
/// a small test still puts many keys into the same index bucket (runs,
/// compactions, splits of base rows).
fn ids_in_buckets(tenant: &str, buckets: &[usize], n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    let mut i = 0u64;
    while out.len() < n {
        let id = format!("{tenant}-msg-{i}");
        if buckets.contains(&bucket_of(dedupe_key(tenant, &id))) {
            out.push(id);
        }
        i += 1;
    }
    out
}

/// The `EventLog` contract as a plain map (the old string-keyed design):
/// `(tenant, id) -> latest acceptance (seq, accepted_ms)`. Prunes drop the
/// acceptances older than the cutoff (exact for a monotone clock).
#[derive(Default)]
struct Model {
    dedupe: HashMap<(String, String), (u64, i64)>,
    log: Vec<(String, Vec<u8>)>,
}

impl Model {
    fn append(&mut self, items: &[AppendItem], now_ms: i64, window_ms: i64) -> Vec<AppendOutcome> {
        let cutoff = now_ms.saturating_sub(window_ms);
        let mut batch: HashMap<(String, String), u64> = HashMap::new();
        let mut out = Vec::new();
        for it in items {
            let k = (it.tenant.clone(), it.message_id.clone());
            if let Some(&seq) = batch.get(&k) {
                out.push(AppendOutcome::Duplicate { seq });
                continue;
            }
            if let Some(&(seq, ms)) = self.dedupe.get(&k)
                && ms >= cutoff
            {
                out.push(AppendOutcome::Duplicate { seq });
                continue;
            }
            self.log.push((it.tenant.clone(), it.payload.clone()));
            let seq = self.log.len() as u64;
            self.dedupe.insert(k.clone(), (seq, now_ms));
            batch.insert(k, seq);
            out.push(AppendOutcome::Accepted { seq });
        }
        out
    }

    fn prune(&mut self, older_than_ms: i64) -> usize {
        let before = self.dedupe.len();
        self.dedupe.retain(|_, (_, ms)| *ms >= older_than_ms);
        before - self.dedupe.len()
    }
}

#[test]
fn hashed_keys_keep_tenants_apart() {
    let tmp = tempfile::tempdir().unwrap();
    let s = EmbeddedStore::open(tmp.path(), opts(1, 1 << 16, HOUR_MS)).unwrap();
    // Tenants and ids chosen so that naive concatenation would collide.
    let tenants: Vec<String> = (0..120)
        .map(|t| match t % 3 {
            0 => format!("t{t}"),
            1 => format!("t{t}:x"),
            _ => format!("t:{t}"),
        })
        .collect();
    let ids = ["m", "x:m", "", ":", "0", "m:"];
    let mut keys = std::collections::HashSet::new();
    let mut batch = Vec::new();
    for t in &tenants {
        for id in ids {
            assert!(keys.insert(dedupe_key(t, id)), "key collision ({t}, {id})");
            batch.push(item(t, id, &format!("{t}/{id}")));
        }
    }
    let out = s.append(&batch, 1_000).unwrap();
    assert!(out.iter().all(|o| !o.is_duplicate()), "all distinct pairs");
    // Resend (index now holds them: buffer 1 flushes on the next commit).
    s.append(&[item("other", "flush", "")], 1_001).unwrap();
    let again = s.append(&batch, 1_002).unwrap();
    for (a, b) in out.iter().zip(&again) {
        assert_eq!(*b, AppendOutcome::Duplicate { seq: a.seq() });
    }
    let log = s.read_after(0, 10_000).unwrap();
    assert_eq!(log.len(), batch.len() + 1);
    for (e, it) in log.iter().zip(&batch) {
        assert_eq!(
            (e.tenant.as_str(), &e.payload),
            (it.tenant.as_str(), &it.payload)
        );
    }
}

#[test]
fn log_chunks_read_back_from_any_position() {
    let tmp = tempfile::tempdir().unwrap();
    let s = EmbeddedStore::open(tmp.path(), StoreOptions::default()).unwrap();
    // ~3 KiB payloads: several chunks per batch, chunks of several batches.
    let mut all = Vec::new();
    for b in 0..4 {
        let batch: Vec<AppendItem> = (0..70)
            .map(|i| {
                let p = format!("{b}-{i}-{}", "x".repeat(3000 + i));
                item(&format!("t{}", i % 3), &format!("{b}-{i}"), &p)
            })
            .collect();
        s.append(&batch, 1_000 + b).unwrap();
        all.extend(batch);
    }
    assert_eq!(s.head().unwrap(), 280);
    let txn = s.read_txn().unwrap();
    let chunks = txn.open_table(LOG).unwrap().len().unwrap();
    assert!(
        chunks > 8,
        "expected several chunks per batch, got {chunks}"
    );
    drop(txn);
    for after in [0u64, 1, 2, 69, 70, 71, 139, 200, 278, 279, 280, 281] {
        for limit in [1usize, 2, 7, 100, 1000] {
            let got = s.read_after(after, limit).unwrap();
            let want: Vec<u64> = (after + 1..=280).take(limit).collect();
            assert_eq!(
                got.iter().map(|e| e.seq).collect::<Vec<_>>(),
                want,
                "after {after} limit {limit}"
            );
            for e in got {
                let it = &all[(e.seq - 1) as usize];
                assert_eq!(
                    (e.tenant.as_str(), &e.payload),
                    (it.tenant.as_str(), &it.payload)
                );
            }
        }
    }
}

#[test]
fn prune_walks_the_log_in_order_and_remembers_where_it_stopped() {
    let tmp = tempfile::tempdir().unwrap();
    let window = 100 * HOUR_MS;
    {
        let s = EmbeddedStore::open(tmp.path(), opts(1, 1 << 16, window)).unwrap();
        s.append(&[item("t", "a", "1"), item("t", "b", "2")], 1_000)
            .unwrap();
        s.append(&[item("t", "c", "3")], 2_000).unwrap();
        s.append(&[item("t", "d", "4")], 3_000).unwrap();
        assert_eq!(s.prune_dedupe(2_500).unwrap(), 3);
        assert_eq!(s.prune_dedupe(2_500).unwrap(), 0, "cursor moved past them");
    }
    // The cursor is durable: a reopened store does not count them again,
    // and the pruned ids are accepted again while "d" is still a duplicate.
    let s = EmbeddedStore::open(tmp.path(), opts(1, 1 << 16, window)).unwrap();
    assert_eq!(s.prune_dedupe(2_500).unwrap(), 0);
    let out = s
        .append(&[item("t", "a", "5"), item("t", "d", "6")], 4_000)
        .unwrap();
    assert_eq!(
        out,
        vec![
            AppendOutcome::Accepted { seq: 5 },
            AppendOutcome::Duplicate { seq: 4 }
        ]
    );

    // Clock going backwards: the walk stops at the first entry accepted at
    // or after the cutoff, so "late" (time 3_500, behind "early" at 9_000)
    // waits until "early" is pruned too. `append` still expires it on time.
    s.append(&[item("t", "early", "7")], 9_000).unwrap();
    s.append(&[item("t", "late", "8")], 3_500).unwrap();
    assert_eq!(
        s.prune_dedupe(3_900).unwrap(),
        1,
        "d (3_000); a (4_000) stops the walk"
    );
    assert_eq!(
        s.prune_dedupe(3_600).unwrap(),
        0,
        "late (3_500) is behind a (4_000)"
    );
    assert_eq!(
        s.prune_dedupe(4_100).unwrap(),
        1,
        "a; early (9_000) stops the walk"
    );
    assert_eq!(s.prune_dedupe(9_001).unwrap(), 2, "early and late");
}

#[test]
fn reaccepted_id_is_not_pruned_by_its_old_acceptance() {
    for buffer in [1usize, 1 << 20] {
        let tmp = tempfile::tempdir().unwrap();
        let s = EmbeddedStore::open(tmp.path(), opts(buffer, 1 << 16, HOUR_MS)).unwrap();
        s.append(&[item("t", "m", "1")], 0).unwrap();
        s.append(&[item("t", "other", "2")], 1).unwrap();
        // Expired: accepted again at seq 3, replacing seq 1.
        let out = s.append(&[item("t", "m", "3")], HOUR_MS + 5).unwrap();
        assert_eq!(out, vec![AppendOutcome::Accepted { seq: 3 }]);
        s.append(&[item("t", "x", "4")], HOUR_MS + 6).unwrap();
        // Pruning up to the first acceptance drops "other" only; the old
        // acceptance of "m" is superseded and not counted.
        assert_eq!(s.prune_dedupe(HOUR_MS).unwrap(), 1, "buffer {buffer}");
        let out = s.append(&[item("t", "m", "5")], HOUR_MS + 7).unwrap();
        assert_eq!(
            out,
            vec![AppendOutcome::Duplicate { seq: 3 }],
            "buffer {buffer}"
        );
    }
}

/// Appends enough keys into a few buckets that they go through every tier
/// (pending, runs, compaction into base rows, base row splits), checking
/// duplicates are found in each, also after reopening with other options.
#[test]
fn dedupe_survives_every_tier_and_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let buckets = [0usize, 1, 9, BUCKETS - 1];
    let ids = ids_in_buckets("acme", &buckets, 600);
    let mut seqs: HashMap<String, u64> = HashMap::new();
    {
        let s = EmbeddedStore::open(tmp.path(), opts(1, 1 << 16, HOUR_MS)).unwrap();
        for (n, chunk) in ids.chunks(20).enumerate() {
            let batch: Vec<AppendItem> = chunk.iter().map(|id| item("acme", id, id)).collect();
            let out = s.append(&batch, 1_000 + n as i64).unwrap();
            for (id, o) in chunk.iter().zip(out) {
                assert!(!o.is_duplicate());
                seqs.insert(id.clone(), o.seq());
            }
            // Everything so far is found, whatever tier it is in now.
            let probe: Vec<AppendItem> = ids[..(n + 1) * 20]
                .iter()
                .step_by(7)
                .map(|id| item("acme", id, "dup"))
                .collect();
            for (p, o) in probe
                .iter()
                .zip(s.append(&probe, 1_000 + n as i64).unwrap())
            {
                assert_eq!(
                    o,
                    AppendOutcome::Duplicate {
                        seq: seqs[&p.message_id]
                    }
                );
            }
        }
        let st = s.lock_log().unwrap();
        assert!(
            buckets.iter().all(|&b| st.has_base[b]),
            "every bucket was compacted"
        );
        assert!(
            buckets.iter().any(|&b| st.runs[b] > 0),
            "some runs are live"
        );
        drop(st);
        let txn = s.read_txn().unwrap();
        let base = txn.open_table(DEDUPE).unwrap();
        let rows_n = base.len().unwrap();
        assert!(
            rows_n > buckets.len() as u64,
            "base rows were split: {rows_n}"
        );
        for row in base.iter().unwrap() {
            let (_, v) = row.unwrap();
            assert!(v.value().len() / rows::ENTRY <= rows::ROW_MAX_ENTRIES);
        }
    }
    // Reopen with everything kept in memory and no filter, then again with
    // the defaults: the same answers.
    for (round, o) in [opts(1 << 20, 0, HOUR_MS), StoreOptions::default()]
        .into_iter()
        .enumerate()
    {
        let s = EmbeddedStore::open(tmp.path(), o).unwrap();
        let batch: Vec<AppendItem> = ids.iter().map(|id| item("acme", id, "again")).collect();
        for (id, o) in ids.iter().zip(s.append(&batch, 5_000).unwrap()) {
            assert_eq!(o, AppendOutcome::Duplicate { seq: seqs[id] });
        }
        // Another tenant with the same ids is new.
        let tenant = format!("beta{round}");
        let other: Vec<AppendItem> = ids[..5].iter().map(|id| item(&tenant, id, "b")).collect();
        assert!(
            s.append(&other, 5_000)
                .unwrap()
                .iter()
                .all(|o| !o.is_duplicate())
        );
        let head = s.head().unwrap();
        s.append(&other, 5_000).unwrap();
        assert_eq!(s.head().unwrap(), head, "all duplicates: nothing written");
    }
}

#[test]
fn pending_keys_are_rebuilt_from_the_log_on_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    // Large buffer: nothing is flushed, every key lives only in memory and
    // in its log entry.
    {
        let s = EmbeddedStore::open(tmp.path(), opts(1 << 20, 1 << 16, HOUR_MS)).unwrap();
        let batch: Vec<AppendItem> = (0..300).map(|i| item("t", &i.to_string(), "p")).collect();
        s.append(&batch, 1_000).unwrap();
        assert_eq!(s.lock_log().unwrap().pending.len(), 300);
        let txn = s.read_txn().unwrap();
        assert_eq!(txn.open_table(DEDUPE_RUNS).unwrap().len().unwrap(), 0);
        assert_eq!(txn.open_table(DEDUPE).unwrap().len().unwrap(), 0);
        // Prune 100 of them by acceptance time... they all share one time,
        // so prune none; then append 100 more later and prune the first 300.
        assert_eq!(s.prune_dedupe(1_000).unwrap(), 0);
        let later: Vec<AppendItem> = (300..400).map(|i| item("t", &i.to_string(), "p")).collect();
        s.append(&later, 2_000).unwrap();
        assert_eq!(s.prune_dedupe(1_500).unwrap(), 300);
        assert_eq!(s.lock_log().unwrap().pending.len(), 100);
    }
    let s = EmbeddedStore::open(tmp.path(), opts(1 << 20, 1 << 16, HOUR_MS)).unwrap();
    assert_eq!(
        s.lock_log().unwrap().pending.len(),
        100,
        "pruned keys are not resurrected by the log scan"
    );
    let probe = vec![item("t", "5", "x"), item("t", "350", "x")];
    let out = s.append(&probe, 2_500).unwrap();
    assert_eq!(
        out,
        vec![
            AppendOutcome::Accepted { seq: 401 },
            AppendOutcome::Duplicate { seq: 351 }
        ]
    );
}

#[test]
fn store_of_another_schema_version_is_refused() {
    for old in [1u64, 2] {
        let tmp = tempfile::tempdir().unwrap();
        {
            let db = redb::Database::create(tmp.path().join(DB_FILE)).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert("schema_version", old)
                .unwrap();
            txn.commit().unwrap();
        }
        let err = EmbeddedStore::open(tmp.path(), StoreOptions::default()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
        assert!(
            msg.contains(&format!("schema version {old}")) && msg.contains("understands only 3"),
            "{msg}"
        );
        // Refused without touching the file: still the old version.
        let db = redb::Database::open(tmp.path().join(DB_FILE)).unwrap();
        let txn = db.begin_read().unwrap();
        let v = txn.open_table(META).unwrap().get("schema_version").unwrap();
        assert_eq!(v.map(|g| g.value()), Some(old));
    }
}

#[test]
fn zero_buffer_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let err = EmbeddedStore::open(tmp.path(), opts(0, 0, HOUR_MS)).unwrap_err();
    assert!(matches!(err, StoreError::InvalidInput(_)));
}

/// Random appends (new ids, re-sent ids inside and across batches, other
/// tenants), expiries, prunes and reopens, compared with [`Model`]. Keys are
/// concentrated in a few buckets so runs, compactions and base rows are all
/// exercised; several buffer/filter settings, including switching between
/// them on reopen.
#[test]
fn randomized_against_reference_model() {
    let window = 500;
    let settings = [
        opts(1, 1 << 12, window),
        opts(3, 0, window),
        opts(1 << 20, 1 << 12, window),
        opts(40, 64, window), // a tiny filter: mostly false positives
    ];
    for seed in 0..6u64 {
        let tmp = tempfile::tempdir().unwrap();
        let mut rng = Rng(seed);
        let tenants = ["a", "b", "a:b"];
        let pools: Vec<Vec<String>> = tenants
            .iter()
            .map(|t| {
                let mut ids = ids_in_buckets(t, &[2, 3, 4000], 60);
                ids.extend((0..40).map(|i| format!("wide-{i}")));
                ids
            })
            .collect();
        let mut model = Model::default();
        let mut setting = seed as usize % settings.len();
        let mut s = EmbeddedStore::open(tmp.path(), settings[setting].clone()).unwrap();
        let mut now = 0i64;
        for step in 0..300 {
            now += rng.below(40) as i64;
            match rng.below(20) {
                0 => {
                    let cutoff = now - rng.below(2 * window as usize) as i64;
                    assert_eq!(
                        s.prune_dedupe(cutoff).unwrap(),
                        model.prune(cutoff),
                        "seed {seed} step {step}: prune({cutoff})"
                    );
                }
                1 => {
                    drop(s);
                    setting = rng.below(settings.len());
                    s = EmbeddedStore::open(tmp.path(), settings[setting].clone()).unwrap();
                }
                _ => {
                    let n = 1 + rng.below(25);
                    let batch: Vec<AppendItem> = (0..n)
                        .map(|_| {
                            let t = rng.below(tenants.len());
                            let id = &pools[t][rng.below(pools[t].len())];
                            item(tenants[t], id, &format!("{step}"))
                        })
                        .collect();
                    let got = s.append(&batch, now).unwrap();
                    let want = model.append(&batch, now, window);
                    assert_eq!(got, want, "seed {seed} step {step} setting {setting}");
                }
            }
        }
        let log = s.read_after(0, usize::MAX).unwrap();
        assert_eq!(log.len(), model.log.len());
        for (e, (t, p)) in log.iter().zip(&model.log) {
            assert_eq!((&e.tenant, &e.payload), (t, p));
        }
        assert_eq!(s.head().unwrap(), model.log.len() as u64);
    }
}
