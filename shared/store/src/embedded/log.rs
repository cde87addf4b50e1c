//! [`EventLog`] for the embedded store.
//!
//! An append writes its accepted events as log chunks (one redb row per
//! ~64 KiB of events, see `chunk.rs`) that carry each event's dedupe key and
//! the acceptance time, plus its share of dedupe index maintenance (flushing
//! a few buckets of pending keys, see `dedupe.rs`), in ONE fsync'd redb
//! transaction. A batch of only duplicates writes nothing and skips the
//! fsync: every acceptance it reports was already durable. The in-memory
//! state (pending keys, filter, flush cursor, run counts) is only updated
//! after that commit succeeded, so an `Err` leaves neither disk nor memory
//! changed.
//!
//! Pruning walks the log in seq order from a persisted cursor, since log
//! order is acceptance order: an entry accepted before the cutoff has its
//! dedupe entry dropped (if that entry still describes this acceptance), and
//! the walk stops at the first chunk accepted at or after the cutoff. If
//! callers' `now_ms` went backwards between appends, an entry with an older
//! time behind a newer one is only dropped once the newer one is; `append`
//! still treats it as expired on time, so this only delays reclaiming it
//! (and, for a cutoff later than the window, delays re-accepting its id).
//! A prune runs in transactions of at most [`PRUNE_CHUNK`] log entries so
//! appends can interleave with a large one.

use std::sync::MutexGuard;

use redb::ReadableTable;

use super::chunk::{Chunk, ChunkBuilder};
use super::dedupe::{Acceptance, BUCKETS, KeyMap, LogState, bucket_of, dedupe_key, key_map, rows};
use super::index::{flush_bucket, index_lookup, remove_from_index};
use super::{
    DEDUPE, DEDUPE_FLUSHED, DEDUPE_RUNS, EmbeddedStore, LOG, META, META_LOG_HEAD,
    META_PRUNE_CURSOR, next_counter,
};
use crate::error::{Result, StoreError};
use crate::traits::{AppendItem, AppendOutcome, EventLog, LogEntry, Seq};

/// Log entries examined per pruning transaction, so a large prune does not
/// hold the write lock (and stall appends) for one huge transaction.
const PRUNE_CHUNK: u64 = 64 * 1024;

/// The first seq of the chunk that contains `seq`, or `seq` itself if no
/// chunk starts at or before it. Iterating the log from the result visits
/// `seq`'s chunk first.
fn chunk_start(log: &impl ReadableTable<u64, &'static [u8]>, seq: Seq) -> Result<Seq> {
    Ok(log
        .range(..=seq)?
        .next_back()
        .transpose()?
        .map_or(seq, |(k, _)| k.value()))
}

/// Visit every log entry with seq >= `from`, in order, as
/// `(seq, accepted_ms, key, tenant, payload)`, until `f` returns false.
fn for_each_entry(
    log: &impl ReadableTable<u64, &'static [u8]>,
    from: Seq,
    mut f: impl FnMut(Seq, i64, u128, &str, &[u8]) -> Result<bool>,
) -> Result<()> {
    for row in log.range(chunk_start(log, from)?..)? {
        let (k, v) = row?;
        let first = k.value();
        let mut chunk = Chunk::parse(v.value(), first)?;
        let skip = from.saturating_sub(first);
        if skip >= u64::from(chunk.count) {
            continue;
        }
        chunk.skip(skip as u32, first)?;
        let mut seq = first + skip;
        while let Some(e) = chunk.next_entry(first)? {
            if !f(seq, chunk.accepted_ms, e.key, e.tenant, e.payload)? {
                return Ok(());
            }
            seq += 1;
        }
    }
    Ok(())
}

impl EmbeddedStore {
    /// The log state, locked. A panic while it was held (it is only mutated
    /// after a successful commit, but be safe) makes us rebuild it from disk.
    pub(super) fn lock_log(&self) -> Result<MutexGuard<'_, LogState>> {
        match self.log_state.lock() {
            Ok(guard) => Ok(guard),
            Err(poisoned) => {
                let mut guard = poisoned.into_inner();
                *guard = self.load_log_state()?;
                self.log_state.clear_poison();
                tracing::warn!("event log state was poisoned by a panic; rebuilt it from disk");
                Ok(guard)
            }
        }
    }

    /// Rebuild the in-memory log state from what is committed: pending keys
    /// from the log tail past each bucket's flushed mark, the flush cursor,
    /// and the filter from the dedupe index.
    pub(super) fn load_log_state(&self) -> Result<LogState> {
        let mut st = LogState::empty(&self.opts);
        let txn = self.read_txn()?;
        let meta = txn.open_table(META)?;
        let log = txn.open_table(LOG)?;
        let flushed_table = txn.open_table(DEDUPE_FLUSHED)?;

        let mut flushed = vec![0u64; BUCKETS];
        for row in flushed_table.iter()? {
            let (b, v) = row?;
            let b = b.value() as usize;
            let (seq, runs, has_base) = v.value();
            if b >= BUCKETS || runs >= rows::MAX_RUNS {
                return Err(StoreError::Corrupt(format!(
                    "dedupe bucket {b} state out of range ({runs} runs)"
                )));
            }
            flushed[b] = seq;
            st.runs[b] = runs;
            st.has_base[b] = has_base;
        }
        let prune_cursor = meta.get(META_PRUNE_CURSOR)?.map_or(1, |g| g.value());
        let oldest = flushed.iter().copied().min().unwrap_or(0);
        // Entries behind the prune cursor were pruned (or superseded).
        let start = oldest.saturating_add(1).max(prune_cursor);
        for_each_entry(&log, start, |seq, accepted_ms, key, _, _| {
            if seq > flushed[bucket_of(key)] {
                // Seq order: a re-acceptance overwrites the older one.
                st.pending.insert(key, Acceptance { seq, accepted_ms });
            }
            Ok(true)
        })?;

        // Buckets are flushed round robin, so along the ring the marks rise
        // from the cursor and the newest run ends just before it.
        let newest = flushed.iter().copied().max().unwrap_or(0);
        st.cursor = (0..BUCKETS)
            .find(|&b| flushed[b] == newest && flushed[(b + 1) % BUCKETS] != newest)
            .map_or(0, |b| (b + 1) % BUCKETS);

        drop((meta, log, flushed_table, txn));
        self.rebuild_filter(&mut st)?;
        tracing::debug!(
            pending = st.pending.len(),
            cursor = st.cursor,
            "loaded event log dedupe state"
        );
        Ok(st)
    }

    /// Refill the filter from the dedupe index and the pending keys.
    fn rebuild_filter(&self, st: &mut LogState) -> Result<()> {
        if !st.filter.is_enabled() {
            return Ok(());
        }
        st.filter.clear();
        let txn = self.read_txn()?;
        let base = txn.open_table(DEDUPE)?;
        for row in base.iter()? {
            let (_, v) = row?;
            for key in rows::keys(v.value())? {
                st.filter.insert(key);
            }
        }
        let runs = txn.open_table(DEDUPE_RUNS)?;
        for row in runs.iter()? {
            let (k, v) = row?;
            let (b, slot) = k.value();
            if st.runs.get(b as usize).is_some_and(|&n| slot < n) {
                for key in rows::keys(v.value())? {
                    st.filter.insert(key);
                }
            }
        }
        let LogState {
            pending, filter, ..
        } = st;
        pending.keys().for_each(|k| filter.insert(k));
        Ok(())
    }

    /// One pruning transaction over at most about [`PRUNE_CHUNK`] log
    /// entries (whole chunks). Returns `(dropped, maybe_more)`.
    fn prune_chunk(&self, st: &mut LogState, older_than_ms: i64) -> Result<(usize, bool)> {
        let txn = self.write_txn()?;
        let mut dropped = 0usize;
        let mut from_pending = Vec::new();
        let mut removals: Vec<(u128, Seq, bool)> = Vec::new();
        let mut more = false;
        let moved;
        {
            let mut meta = txn.open_table(META)?;
            let log = txn.open_table(LOG)?;
            let mut base = txn.open_table(DEDUPE)?;
            let mut runs = txn.open_table(DEDUPE_RUNS)?;
            let start = meta.get(META_PRUNE_CURSOR)?.map_or(1, |g| g.value());
            let mut cursor = start;
            for row in log.range(chunk_start(&log, start)?..)? {
                let (k, v) = row?;
                let first = k.value();
                let mut chunk = Chunk::parse(v.value(), first)?;
                let end = first + u64::from(chunk.count);
                if end <= cursor {
                    continue;
                }
                if chunk.accepted_ms >= older_than_ms {
                    break;
                }
                if cursor - start >= PRUNE_CHUNK {
                    more = true;
                    break;
                }
                let mut seq = first;
                while let Some(e) = chunk.next_entry(first)? {
                    if seq >= cursor {
                        match st.pending.get(e.key) {
                            Some(acc) if acc.seq == seq => {
                                from_pending.push(e.key);
                                dropped += 1;
                            }
                            // Superseded by a later acceptance that is
                            // still pending: an index entry for this seq,
                            // if any, is stale; drop it without counting.
                            Some(_) => removals.push((e.key, seq, false)),
                            None => removals.push((e.key, seq, true)),
                        }
                    }
                    seq += 1;
                }
                cursor = end;
            }
            // By key, then seq: an older acceptance of a key is looked at
            // before a newer one in the same walk.
            removals.sort_unstable_by_key(|r| (r.0, r.1));
            dropped += remove_from_index(&mut base, &mut runs, &st.runs, &removals)?;
            moved = cursor != start;
            if moved {
                meta.insert(META_PRUNE_CURSOR, cursor)?;
            }
        }
        if !moved {
            // Nothing changed: skip the fsync.
            txn.abort()?;
            return Ok((0, false));
        }
        txn.commit()?;
        for key in from_pending {
            st.pending.remove(key);
        }
        Ok((dropped, more))
    }
}

impl EventLog for EmbeddedStore {
    fn append(&self, items: &[AppendItem], now_ms: i64) -> Result<Vec<AppendOutcome>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        // Entries accepted before this instant are outside the window.
        let cutoff = now_ms.saturating_sub(self.opts.dedupe_window_ms);
        let keys: Vec<u128> = items
            .iter()
            .map(|i| dedupe_key(&i.tenant, &i.message_id))
            .collect();
        let mut st = self.lock_log()?;
        // One pass over the filter first: independent memory accesses that
        // the CPU overlaps, instead of one cache miss at a time in the loop
        // below. The filter covers pending keys too, so "no" means new.
        let maybe_known: Vec<bool> = keys.iter().map(|&k| st.filter.may_contain(k)).collect();
        let txn = self.write_txn()?;
        let mut outcomes = Vec::with_capacity(items.len());
        let mut accepted: Vec<u128> = Vec::with_capacity(items.len());
        let per_bucket = self.opts.dedupe_buffer_entries.max(1) as u128;
        let flush_count;
        let new_credit;
        let head0;
        // (bucket, run count, has base) after this commit, flushed buckets.
        let mut new_runs: Vec<(usize, u8, bool)> = Vec::new();
        {
            let mut meta = txn.open_table(META)?;
            let mut log = txn.open_table(LOG)?;
            let mut base = txn.open_table(DEDUPE)?;
            let mut runs = txn.open_table(DEDUPE_RUNS)?;
            head0 = meta.get(META_LOG_HEAD)?.map_or(0, |g| g.value());
            let mut head = head0;
            // Within-batch dedupe: key -> seq assigned in this batch.
            let mut batch: KeyMap<Seq> = key_map(items.len());
            let mut chunk = ChunkBuilder::new(now_ms);
            let mut chunk_first = head0 + 1;

            for ((item, &key), &maybe) in items.iter().zip(&keys).zip(&maybe_known) {
                if let Some(&seq) = batch.get(&key) {
                    outcomes.push(AppendOutcome::Duplicate { seq });
                    continue;
                }
                // The pending entry, if any, is the latest acceptance;
                // otherwise the index has it, if anything does.
                let latest = if !maybe {
                    None
                } else {
                    match st.pending.get(key) {
                        Some(acc) => Some(acc),
                        None => index_lookup(&base, &runs, st.runs[bucket_of(key)], key)?,
                    }
                };
                if let Some(acc) = latest
                    && acc.accepted_ms >= cutoff
                {
                    outcomes.push(AppendOutcome::Duplicate { seq: acc.seq });
                    continue;
                }
                // New, or its previous acceptance expired (it is replaced).
                head = next_counter(head, "log sequence")?;
                if chunk.would_overflow(&item.tenant, &item.payload) {
                    log.insert(chunk_first, chunk.finish())?;
                    chunk.reset();
                }
                if chunk.is_empty() {
                    chunk_first = head;
                }
                chunk.push(key, &item.tenant, &item.payload);
                batch.insert(key, head);
                accepted.push(key);
                outcomes.push(AppendOutcome::Accepted { seq: head });
            }
            if !chunk.is_empty() {
                log.insert(chunk_first, chunk.finish())?;
            }

            // Index maintenance: flush the buckets this batch paid for.
            let credit = st.credit + accepted.len() as u128 * BUCKETS as u128;
            let due = credit / per_bucket;
            flush_count = due.min(BUCKETS as u128) as usize;
            new_credit = if due > BUCKETS as u128 {
                0
            } else {
                credit - due * per_bucket
            };
            if flush_count > 0 {
                let mut flushed = txn.open_table(DEDUPE_FLUSHED)?;
                for i in 0..flush_count {
                    let b = (st.cursor + i) % BUCKETS;
                    if st.pending.bucket_len(b) == 0 {
                        // Nothing to move. Its mark may lag: no committed,
                        // unpruned key of the bucket is above it anyway.
                        continue;
                    }
                    let entries = st.pending.sorted_bucket(b);
                    let (count, has_base) = (st.runs[b], st.has_base[b]);
                    let count = flush_bucket(&mut base, &mut runs, b, count, has_base, &entries)?;
                    // A flush that leaves no runs compacted into the base.
                    let has_base = has_base || count == 0;
                    new_runs.push((b, count, has_base));
                    // Every committed key of bucket `b` (seq <= head0) is now
                    // in the index; this batch's keys stay pending.
                    flushed.insert(b as u32, (head0, count, has_base))?;
                }
            }
            if head != head0 {
                meta.insert(META_LOG_HEAD, head)?;
            }
        }
        if accepted.is_empty() && flush_count == 0 {
            // All duplicates of durable entries: nothing to write or fsync.
            txn.abort()?;
            return Ok(outcomes);
        }
        txn.commit()?;

        // Committed: bring memory in line.
        let first = st.cursor;
        for i in 0..flush_count {
            st.pending.clear_bucket((first + i) % BUCKETS);
        }
        st.cursor = (first + flush_count) % BUCKETS;
        for (b, count, has_base) in new_runs {
            st.runs[b] = count;
            st.has_base[b] = has_base;
        }
        st.credit = new_credit;
        for (seq, key) in (head0 + 1..).zip(accepted) {
            st.pending.insert(
                key,
                Acceptance {
                    seq,
                    accepted_ms: now_ms,
                },
            );
            st.filter.insert(key);
        }
        Ok(outcomes)
    }

    fn read_after(&self, after: Seq, limit: usize) -> Result<Vec<LogEntry>> {
        let Some(start) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        let txn = self.read_txn()?;
        let log = txn.open_table(LOG)?;
        let mut out = Vec::new();
        for_each_entry(&log, start, |seq, _, _, tenant, payload| {
            out.push(LogEntry {
                seq,
                tenant: tenant.to_owned(),
                payload: payload.to_vec(),
            });
            Ok(out.len() < limit)
        })?;
        Ok(out)
    }

    fn head(&self) -> Result<Seq> {
        let txn = self.read_txn()?;
        let meta = txn.open_table(META)?;
        Ok(meta.get(META_LOG_HEAD)?.map_or(0, |g| g.value()))
    }

    fn prune_dedupe(&self, older_than_ms: i64) -> Result<usize> {
        let mut total = 0usize;
        loop {
            // Re-take the lock per chunk so appends can interleave.
            let mut st = self.lock_log()?;
            let (dropped, more) = self.prune_chunk(&mut st, older_than_ms)?;
            total += dropped;
            st.filter.note_removed(dropped as u64);
            if !more {
                if st.filter.wants_rebuild() {
                    self.rebuild_filter(&mut st)?;
                    tracing::debug!("rebuilt dedupe filter");
                }
                break;
            }
        }
        if total > 0 {
            tracing::debug!(dropped = total, older_than_ms, "pruned dedupe entries");
        }
        Ok(total)
    }
}
