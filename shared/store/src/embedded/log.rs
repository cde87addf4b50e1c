//! [`EventLog`] for the embedded store.
//!
//! Per accepted event, an append writes one log row (an insert at the end of
//! the log B-tree) whose value carries the event's dedupe key and acceptance
//! time; the dedupe index is maintained in bulk, a key-range slice at a time
//! (see `dedupe.rs`). Everything an append writes, including its share of
//! index maintenance, is one fsync'd redb transaction, and the in-memory
//! state is only updated after that commit succeeded.
//!
//! Pruning walks the log in seq order from a persisted cursor, since log
//! order is acceptance order: an entry accepted before the cutoff has its
//! dedupe row dropped (if the row still describes that acceptance), and the
//! walk stops at the first entry accepted at or after the cutoff. If callers'
//! `now_ms` went backwards between appends, an entry with an older time
//! behind a newer one is only dropped once the newer one is; `append` still
//! treats it as expired on time, so this only delays reclaiming its space.

use std::sync::MutexGuard;

use redb::{ReadableTable, ReadableTableMetadata};

use super::dedupe::{Acceptance, BUCKETS, KeyMap, LogState, bucket_of, dedupe_key, key_map};
use super::{
    DEDUPE, DEDUPE_FLUSHED, EmbeddedStore, LOG, META, META_LOG_HEAD, META_PRUNE_CURSOR,
    next_counter,
};
use crate::error::{Result, StoreError};
use crate::traits::{AppendItem, AppendOutcome, EventLog, LogEntry, Seq};

/// Log entries examined per pruning transaction, so a large prune does not
/// hold the write lock (and stall appends) for one huge transaction.
const PRUNE_CHUNK: u64 = 64 * 1024;

impl EmbeddedStore {
    /// The log state, locked. A panic while it was held (it is only mutated
    /// after a successful commit, but be safe) makes us rebuild it from disk.
    fn lock_log(&self) -> Result<MutexGuard<'_, LogState>> {
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
    /// and the filter from the dedupe table.
    pub(super) fn load_log_state(&self) -> Result<LogState> {
        let mut st = LogState::empty(&self.opts);
        let txn = self.read_txn()?;
        let meta = txn.open_table(META)?;
        let log = txn.open_table(LOG)?;
        let flushed_table = txn.open_table(DEDUPE_FLUSHED)?;

        let mut flushed = vec![0u64; BUCKETS];
        for row in flushed_table.iter()? {
            let (b, seq) = row?;
            let slot = flushed.get_mut(b.value() as usize).ok_or_else(|| {
                StoreError::Corrupt(format!("dedupe bucket {} out of range", b.value()))
            })?;
            *slot = seq.value();
        }
        let prune_cursor = meta.get(META_PRUNE_CURSOR)?.map_or(1, |g| g.value());
        let oldest = flushed.iter().copied().min().unwrap_or(0);
        // Entries behind the prune cursor were pruned (or superseded).
        let start = oldest.saturating_add(1).max(prune_cursor);
        for row in log.range(start..)? {
            let (k, v) = row?;
            let seq = k.value();
            let (key, accepted_ms, _, _) = v.value();
            if seq > flushed[bucket_of(key)] {
                // Seq order: a re-acceptance overwrites the older one.
                st.pending.insert(key, Acceptance { seq, accepted_ms });
            }
        }

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

    /// Refill the filter from the dedupe table and the pending keys.
    fn rebuild_filter(&self, st: &mut LogState) -> Result<()> {
        if !st.filter.is_enabled() {
            return Ok(());
        }
        st.filter.clear();
        let txn = self.read_txn()?;
        let dedupe = txn.open_table(DEDUPE)?;
        for row in dedupe.iter()? {
            let (k, _) = row?;
            st.filter.insert(k.value());
        }
        let LogState {
            pending, filter, ..
        } = st;
        pending.keys().for_each(|k| filter.insert(k));
        Ok(())
    }

    /// One pruning transaction over at most [`PRUNE_CHUNK`] log entries.
    /// Returns `(dropped, maybe_more)`.
    fn prune_chunk(&self, st: &mut LogState, older_than_ms: i64) -> Result<(usize, bool)> {
        let txn = self.write_txn()?;
        let mut dropped = 0usize;
        let mut from_pending = Vec::new();
        let mut more = false;
        let moved;
        {
            let mut meta = txn.open_table(META)?;
            let log = txn.open_table(LOG)?;
            let mut dedupe = txn.open_table(DEDUPE)?;
            let start = meta.get(META_PRUNE_CURSOR)?.map_or(1, |g| g.value());
            let mut cursor = start;
            for row in log.range(start..)? {
                if cursor - start >= PRUNE_CHUNK {
                    more = true;
                    break;
                }
                let (k, v) = row?;
                let (key, accepted_ms, _, _) = v.value();
                if accepted_ms >= older_than_ms {
                    break;
                }
                let seq = k.value();
                let pending = st.pending.get(key);
                match pending {
                    Some(acc) if acc.seq == seq => {
                        from_pending.push(key);
                        dropped += 1;
                    }
                    _ => {
                        // In the table, unless superseded by a re-acceptance
                        // (then the table row, if any, is stale: drop it
                        // quietly, the pending entry is the live one).
                        let current = dedupe.get(key)?.map(|g| g.value().0);
                        if current == Some(seq) {
                            dedupe.remove(key)?;
                            if pending.is_none() {
                                dropped += 1;
                            }
                        }
                    }
                }
                cursor = seq.saturating_add(1);
            }
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
        let txn = self.write_txn()?;
        let mut outcomes = Vec::with_capacity(items.len());
        let mut accepted: Vec<(u128, Seq)> = Vec::with_capacity(items.len());
        let per_bucket = self.opts.dedupe_buffer_entries.max(1) as u128;
        let flush_count;
        let new_credit;
        {
            let mut meta = txn.open_table(META)?;
            let mut log = txn.open_table(LOG)?;
            let mut dedupe = txn.open_table(DEDUPE)?;
            let head0 = meta.get(META_LOG_HEAD)?.map_or(0, |g| g.value());
            let mut head = head0;
            // Within-batch dedupe: key -> seq assigned in this batch.
            let mut batch: KeyMap<Seq> = key_map(items.len());

            for (item, &key) in items.iter().zip(&keys) {
                if let Some(&seq) = batch.get(&key) {
                    outcomes.push(AppendOutcome::Duplicate { seq });
                    continue;
                }
                // The pending entry, if any, is the latest acceptance;
                // otherwise the table has it, if anything does.
                let latest = match st.pending.get(key) {
                    Some(acc) => Some(acc),
                    None if st.filter.may_contain(key) => dedupe.get(key)?.map(|g| {
                        let (seq, accepted_ms) = g.value();
                        Acceptance { seq, accepted_ms }
                    }),
                    None => None,
                };
                if let Some(acc) = latest
                    && acc.accepted_ms >= cutoff
                {
                    outcomes.push(AppendOutcome::Duplicate { seq: acc.seq });
                    continue;
                }
                // New, or its previous acceptance expired (it is replaced).
                head = next_counter(head, "log sequence")?;
                log.insert(
                    head,
                    (key, now_ms, item.tenant.as_str(), item.payload.as_slice()),
                )?;
                batch.insert(key, head);
                accepted.push((key, head));
                outcomes.push(AppendOutcome::Accepted { seq: head });
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
                    for (key, acc) in st.pending.sorted_bucket(b) {
                        dedupe.insert(key, (acc.seq, acc.accepted_ms))?;
                    }
                    // Every committed key of bucket `b` (seq <= head0) is now
                    // in the table; this batch's keys stay pending.
                    flushed.insert(b as u32, head0)?;
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
        st.cursor = (st.cursor + flush_count) % BUCKETS;
        st.credit = new_credit;
        for (key, seq) in accepted {
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
        for row in log.range(start..)?.take(limit) {
            let (k, v) = row?;
            let (_, _, tenant, payload) = v.value();
            out.push(LogEntry {
                seq: k.value(),
                tenant: tenant.to_owned(),
                payload: payload.to_vec(),
            });
        }
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
            if !more {
                let live = {
                    let txn = self.read_txn()?;
                    txn.open_table(DEDUPE)?.len()? + st.pending.len() as u64
                };
                if st.filter.wants_rebuild(live) {
                    self.rebuild_filter(&mut st)?;
                    tracing::debug!(live, "rebuilt dedupe filter");
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
