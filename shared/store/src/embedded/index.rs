//! The on-disk dedupe index: per-bucket sorted runs and base rows, their
//! lookup, flushing pending keys into runs, compaction into base rows, and
//! removal on prune. Called by the log inside its write transactions.

use redb::{ReadableTable, Table};

use super::dedupe::{Acceptance, bucket_end, bucket_of, bucket_start, rows};
use crate::error::{Result, StoreError};
use crate::traits::Seq;

/// Table of the index's base rows.
type BaseTable<'t> = Table<'t, u128, &'static [u8]>;
/// Table of the index's runs.
type RunTable<'t> = Table<'t, (u32, u8), &'static [u8]>;

/// Keys of bucket `b`'s live runs, oldest first.
fn live_runs(b: usize, run_count: u8) -> std::ops::Range<(u32, u8)> {
    (b as u32, 0)..(b as u32, run_count)
}

/// The indexed acceptance of `key`, if any: its bucket's live runs newest
/// first, then its base row.
pub(super) fn index_lookup(
    base: &impl ReadableTable<u128, &'static [u8]>,
    runs: &impl ReadableTable<(u32, u8), &'static [u8]>,
    run_count: u8,
    key: u128,
) -> Result<Option<Acceptance>> {
    let b = bucket_of(key);
    if run_count > 0 {
        for row in runs.range(live_runs(b, run_count))?.rev() {
            let (_, run) = row?;
            if let Some(acc) = rows::find(run.value(), key)? {
                return Ok(Some(acc));
            }
        }
    }
    match base.range(bucket_start(b)..=key)?.next_back().transpose()? {
        Some((_, row)) => rows::find(row.value(), key),
        None => Ok(None),
    }
}

/// Move bucket `b`'s pending entries (sorted, distinct) into the index:
/// as a new run, or by merging its runs and the entries into its base rows
/// (compaction) once it has enough runs. Returns the bucket's new run count.
///
/// A bucket compacts every [`rows::MAX_RUNS`] flushes; before its first
/// compaction (no base row yet) the threshold is staggered by bucket, so
/// buckets do not all compact in the same round.
pub(super) fn flush_bucket(
    base: &mut BaseTable<'_>,
    runs: &mut RunTable<'_>,
    b: usize,
    run_count: u8,
    has_base: bool,
    entries: &[(u128, Acceptance)],
) -> Result<u8> {
    if entries.is_empty() {
        return Ok(run_count);
    }
    let new = rows::encode(entries);
    let limit = if has_base {
        rows::MAX_RUNS
    } else {
        1 + (b % usize::from(rows::MAX_RUNS)) as u8
    };
    if run_count + 1 < limit {
        runs.insert((b as u32, run_count), new.as_slice())?;
        return Ok(run_count + 1);
    }
    // Compaction: oldest run first, so later ones (and `new`) win. The old
    // slots are left in place: the run count says they are stale.
    let mut merged = Vec::new();
    for row in runs.range(live_runs(b, run_count))? {
        let (_, run) = row?;
        merged = rows::merge(&merged, run.value())?;
    }
    merged = rows::merge(&merged, &new)?;
    merge_into_base(base, b, &merged)?;
    Ok(0)
}

/// Merge sorted entries (all in bucket `b`) into the bucket's base rows.
fn merge_into_base(base: &mut BaseTable<'_>, b: usize, new: &[u8]) -> Result<()> {
    let (lo, hi) = (bucket_start(b), bucket_end(b));
    let n_new = rows::len(new)?;
    let mut out: Vec<(u128, Vec<u8>)> = Vec::new();
    {
        let mut from = 0usize;
        let mut iter = base.range(lo..=hi)?;
        let mut cur = iter.next().transpose()?;
        match &cur {
            None => out.push((lo, new.to_vec())),
            Some((k, _)) if k.value() != lo => {
                return Err(StoreError::Corrupt(format!(
                    "dedupe bucket {b} has no base row at its start"
                )));
            }
            Some(_) => {}
        }
        while let Some((k, v)) = cur {
            let next = iter.next().transpose()?;
            let end = next.as_ref().map_or(hi, |(nk, _)| nk.value() - 1);
            let mut to = from;
            while to < n_new && rows::key_at(new, to) <= end {
                to += 1;
            }
            if to > from {
                let part = &new[from * rows::ENTRY..to * rows::ENTRY];
                out.push((k.value(), rows::merge(v.value(), part)?));
                from = to;
            }
            cur = next;
        }
    }
    for (start, merged) in &out {
        for (key, piece) in rows::split(merged, *start) {
            base.insert(key, piece)?;
        }
    }
    Ok(())
}

/// One index removal: `key`, the acceptance (`seq`) to remove (`None`: any
/// copy), and whether a removal counts as a dropped entry.
type Removal = (u128, Option<Seq>, bool);

/// Remove acceptances `(key, seq, counted)` (sorted by key, then seq) from
/// the index where they are the key's latest indexed acceptance, together
/// with any older, stale copies of the key (so none can resurface); returns
/// how many counted entries were removed.
pub(super) fn remove_from_index(
    base: &mut BaseTable<'_>,
    runs: &mut RunTable<'_>,
    run_counts: &[u8],
    removals: &[(u128, Seq, bool)],
) -> Result<usize> {
    let mut dropped = 0usize;
    let mut for_base: Vec<Removal> = Vec::new();
    let mut i = 0usize;
    while i < removals.len() {
        let b = bucket_of(removals[i].0);
        let j = i + removals[i..].partition_point(|r| bucket_of(r.0) == b);
        if run_counts[b] == 0 {
            for_base.extend(removals[i..j].iter().map(|&(k, seq, c)| (k, Some(seq), c)));
            i = j;
            continue;
        }
        // Newest first: the first run holding a key has its latest indexed
        // acceptance; copies in older runs or the base are stale.
        let mut loaded: Vec<((u32, u8), Vec<u8>, bool)> = Vec::new();
        for row in runs.range(live_runs(b, run_counts[b]))?.rev() {
            let (k, run) = row?;
            loaded.push((k.value(), run.value().to_vec(), false));
        }
        for &(key, seq, counted) in &removals[i..j] {
            let newest = loaded
                .iter()
                .position(|(_, run, _)| matches!(rows::find(run, key), Ok(Some(_))));
            let Some(newest) = newest else {
                for_base.push((key, Some(seq), counted));
                continue;
            };
            if !rows::remove(&mut loaded[newest].1, key, Some(seq))? {
                continue; // superseded by a later acceptance: leave it
            }
            loaded[newest].2 = true;
            dropped += usize::from(counted);
            for (_, run, changed) in &mut loaded[newest + 1..] {
                if rows::remove(run, key, None)? {
                    *changed = true;
                }
            }
            for_base.push((key, None, false));
        }
        for (k, run, changed) in loaded {
            if changed {
                // An emptied run stays (empty) until the next compaction,
                // so the run counts stay exact.
                runs.insert(k, run.as_slice())?;
            }
        }
        i = j;
    }
    Ok(dropped + remove_from_base(base, &for_base)?)
}

/// The base-row part of [`remove_from_index`] (`removals` sorted by key).
fn remove_from_base(base: &mut BaseTable<'_>, removals: &[Removal]) -> Result<usize> {
    let mut dropped = 0usize;
    let mut i = 0usize;
    while i < removals.len() {
        let key = removals[i].0;
        let b = bucket_of(key);
        let (lo, hi) = (bucket_start(b), bucket_end(b));
        let found = base
            .range(lo..=key)?
            .next_back()
            .transpose()?
            .map(|(k, v)| (k.value(), v.value().to_vec()));
        let Some((start, mut row)) = found else {
            i += 1;
            continue;
        };
        let end = match key.checked_add(1) {
            Some(after) if after <= hi => base
                .range(after..=hi)?
                .next()
                .transpose()?
                .map_or(hi, |(k, _)| k.value() - 1),
            _ => hi,
        };
        let mut changed = false;
        while i < removals.len() && removals[i].0 <= end {
            let (k, seq, counted) = removals[i];
            if rows::remove(&mut row, k, seq)? {
                changed = true;
                dropped += usize::from(counted);
            }
            i += 1;
        }
        if changed {
            if row.is_empty() && start != lo {
                base.remove(start)?;
            } else {
                base.insert(start, row.as_slice())?;
            }
        }
    }
    Ok(dropped)
}
