//! Unit tests of the dedupe index (kept beside it to keep dedupe.rs focused).

#![allow(clippy::unwrap_used)]

use super::*;

#[test]
fn key_is_unambiguous_across_tenants() {
    // Concatenation would make all of these the same string.
    let pairs = [("a", "b:c"), ("a:b", "c"), ("a:b:c", ""), ("", "a:b:c")];
    let keys: Vec<u128> = pairs.iter().map(|(t, m)| dedupe_key(t, m)).collect();
    for i in 0..keys.len() {
        for j in 0..i {
            assert_ne!(keys[i], keys[j], "{:?} vs {:?}", pairs[i], pairs[j]);
        }
    }
    // Same tenant bytes split differently between the fields.
    assert_ne!(dedupe_key("ab", "c"), dedupe_key("a", "bc"));
    // Deterministic (it is persisted).
    assert_eq!(dedupe_key("t", "m"), dedupe_key("t", "m"));
}

#[test]
fn key_is_stable() {
    // The key is part of the on-disk layout: changing the hash input
    // needs a schema version bump. Pin it.
    let mut h = Sha256::new();
    h.update([0xD2]);
    h.update(2u64.to_le_bytes());
    h.update(b"t1");
    h.update(b"m1");
    let d = h.finalize();
    let mut first = [0u8; 16];
    first.copy_from_slice(&d[..16]);
    assert_eq!(dedupe_key("t1", "m1"), u128::from_be_bytes(first));
}

#[test]
fn no_collisions_across_many_tenants_and_ids() {
    // 200 tenants x 1000 ids, including ids equal to other tenants'
    // names and tenant/id splits of the same string: all distinct, and
    // also distinct in their top 64 bits (a much stronger check than
    // 128-bit distinctness at this size).
    let mut seen = std::collections::HashSet::new();
    let mut top = std::collections::HashSet::new();
    for t in 0..200 {
        let tenant = format!("tenant-{t}");
        for m in 0..1000 {
            let id = if m % 10 == 0 {
                format!("tenant-{m}")
            } else {
                format!("{m:08x}-{t}")
            };
            let k = dedupe_key(&tenant, &id);
            assert!(seen.insert(k), "collision for ({tenant}, {id})");
            assert!(top.insert((k >> 64) as u64));
        }
    }
    assert_eq!(seen.len(), 200_000);
}

#[test]
fn buckets_partition_the_key_space_in_order() {
    assert_eq!(bucket_of(0), 0);
    assert_eq!(bucket_of(u128::MAX), BUCKETS - 1);
    let a = 5u128 << (128 - BUCKET_BITS);
    assert_eq!(bucket_of(a), 5);
    assert_eq!(bucket_of(a - 1), 4);
}

#[test]
fn pending_tracks_len_and_sorts_buckets() {
    let mut p = Pending::new();
    let acc = |seq| Acceptance {
        seq,
        accepted_ms: 7,
    };
    let base = 3u128 << (128 - BUCKET_BITS);
    p.insert(base + 9, acc(1));
    p.insert(base + 2, acc(2));
    p.insert(base + 9, acc(3)); // re-acceptance overwrites
    p.insert(u128::MAX, acc(4));
    assert_eq!(p.len(), 3);
    assert_eq!(p.get(base + 9), Some(acc(3)));
    let b = p.sorted_bucket(3);
    assert_eq!(b, vec![(base + 2, acc(2)), (base + 9, acc(3))]);
    p.clear_bucket(3);
    assert_eq!(p.len(), 1);
    assert_eq!(p.get(base + 2), None);
    p.remove(u128::MAX);
    p.remove(u128::MAX);
    assert_eq!(p.len(), 0);
}

#[test]
fn rows_merge_find_split_remove() {
    use rows::*;
    let acc = |seq| Acceptance {
        seq,
        accepted_ms: seq as i64 * 10,
    };
    let row = encode(&[(10, acc(10)), (20, acc(20)), (30, acc(30))]);
    let new = encode(&[(5, acc(1)), (20, acc(99)), (40, acc(2))]);
    let merged = merge(&row, &new).unwrap();
    let keys: Vec<u128> = rows::keys(&merged).unwrap().collect();
    assert_eq!(keys, vec![5, 10, 20, 30, 40]);
    assert_eq!(find(&merged, 20).unwrap(), Some(acc(99)), "new entry wins");
    assert_eq!(find(&merged, 10).unwrap(), Some(acc(10)));
    assert_eq!(find(&merged, 11).unwrap(), None);
    assert_eq!(find(&[], 11).unwrap(), None);
    assert_eq!(merge(&[], &new).unwrap(), new);
    assert_eq!(merge(&row, &[]).unwrap(), row);
    assert!(find(&[0u8; 5], 1).is_err(), "malformed row");
    assert!(merge(&[0u8; 5], &row).is_err(), "malformed row");

    let mut m = merged.clone();
    assert!(!remove(&mut m, 20, Some(20)).unwrap(), "seq must match");
    assert!(remove(&mut m, 20, Some(99)).unwrap());
    assert!(!remove(&mut m, 20, Some(99)).unwrap());
    assert!(remove(&mut m, 5, None).unwrap(), "any seq");
    assert!(!remove(&mut m, 6, None).unwrap());
    assert_eq!(rows::keys(&m).unwrap().count(), 3);

    // Split: every piece within bounds, first keeps the row key, the
    // rest are keyed by their first entry, nothing lost or reordered.
    let many: Vec<(u128, Acceptance)> = (0..1000u64)
        .map(|i| (1000 + u128::from(i) * 7, acc(i)))
        .collect();
    let big = encode(&many);
    let pieces = split(&big, 3);
    assert_eq!(pieces[0].0, 3);
    let mut all = Vec::new();
    for (k, p) in &pieces {
        let n = p.len() / ENTRY;
        assert!(n > 0 && n <= ROW_MAX_ENTRIES);
        let ks: Vec<u128> = rows::keys(p).unwrap().collect();
        if *k != 3 {
            assert_eq!(*k, ks[0]);
        }
        all.extend(ks);
    }
    assert_eq!(all, many.iter().map(|(k, _)| *k).collect::<Vec<_>>());
    assert_eq!(split(&row, 7), vec![(7, &row[..])]);
}

#[test]
fn bucket_bounds() {
    assert_eq!(bucket_start(0), 0);
    assert_eq!(bucket_end(BUCKETS - 1), u128::MAX);
    assert_eq!(bucket_end(4) + 1, bucket_start(5));
    assert_eq!(bucket_of(bucket_end(4)), 4);
}

#[test]
fn filter_has_no_false_negatives_and_few_false_positives() {
    let mut f = Filter::new(1 << 20);
    let keys: Vec<u128> = (0..50_000u32)
        .map(|i| dedupe_key("t", &i.to_string()))
        .collect();
    for &k in &keys {
        f.insert(k);
    }
    assert!(keys.iter().all(|&k| f.may_contain(k)));
    let fp = (0..100_000u32)
        .filter(|i| f.may_contain(dedupe_key("other", &i.to_string())))
        .count();
    // 1 MiB for 50k keys: expected well below 0.1%.
    assert!(fp < 100, "false positives: {fp}");
    f.clear();
    assert!(!f.may_contain(keys[0]));
    let off = Filter::new(0);
    assert!(off.may_contain(keys[0]), "disabled filter says maybe");
}
