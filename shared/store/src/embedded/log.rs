//! [`EventLog`] for the embedded store.

use redb::ReadableTable;

use super::{DEDUPE, DEDUPE_BY_TIME, EmbeddedStore, LOG, META, META_LOG_HEAD, next_counter};
use crate::error::Result;
use crate::traits::{AppendItem, AppendOutcome, EventLog, LogEntry, Seq};

impl EventLog for EmbeddedStore {
    fn append(&self, items: &[AppendItem], now_ms: i64) -> Result<Vec<AppendOutcome>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        // Entries accepted before this instant are outside the window.
        let cutoff = now_ms.saturating_sub(self.opts.dedupe_window_ms);
        let txn = self.write_txn()?;
        let mut outcomes = Vec::with_capacity(items.len());
        {
            let mut meta = txn.open_table(META)?;
            let mut log = txn.open_table(LOG)?;
            let mut dedupe = txn.open_table(DEDUPE)?;
            let mut by_time = txn.open_table(DEDUPE_BY_TIME)?;
            let mut head = meta.get(META_LOG_HEAD)?.map(|g| g.value()).unwrap_or(0);

            for item in items {
                let key = (item.tenant.as_str(), item.message_id.as_str());
                // Items accepted earlier in this batch are already in `dedupe`
                // (same transaction), which gives within-batch dedupe for free.
                let existing = dedupe.get(key)?.map(|g| g.value());
                if let Some((seq, accepted_ms)) = existing {
                    if accepted_ms >= cutoff {
                        outcomes.push(AppendOutcome::Duplicate { seq });
                        continue;
                    }
                    // Expired but not yet pruned: forget the old acceptance.
                    by_time.remove((accepted_ms, key.0, key.1))?;
                }
                head = next_counter(head, "log sequence")?;
                log.insert(head, (item.tenant.as_str(), item.payload.as_slice()))?;
                dedupe.insert(key, (head, now_ms))?;
                by_time.insert((now_ms, key.0, key.1), ())?;
                outcomes.push(AppendOutcome::Accepted { seq: head });
            }
            meta.insert(META_LOG_HEAD, head)?;
        }
        txn.commit()?;
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
            let (tenant, payload) = v.value();
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
        Ok(meta.get(META_LOG_HEAD)?.map(|g| g.value()).unwrap_or(0))
    }

    fn prune_dedupe(&self, older_than_ms: i64) -> Result<usize> {
        let txn = self.write_txn()?;
        let mut victims: Vec<(i64, String, String)> = Vec::new();
        {
            let mut dedupe = txn.open_table(DEDUPE)?;
            let mut by_time = txn.open_table(DEDUPE_BY_TIME)?;
            // ("", "") is the smallest suffix, so this is exactly "accepted_ms < older_than_ms".
            for row in by_time.range(..(older_than_ms, "", ""))? {
                let (k, _) = row?;
                let (ms, tenant, message_id) = k.value();
                victims.push((ms, tenant.to_owned(), message_id.to_owned()));
            }
            for (ms, tenant, message_id) in &victims {
                by_time.remove((*ms, tenant.as_str(), message_id.as_str()))?;
                let key = (tenant.as_str(), message_id.as_str());
                let current = dedupe.get(key)?.map(|g| g.value());
                // Only drop the dedupe row if it still describes this acceptance.
                if matches!(current, Some((_, accepted)) if accepted == *ms) {
                    dedupe.remove(key)?;
                }
            }
        }
        if victims.is_empty() {
            // Nothing changed: skip the fsync.
            txn.abort()?;
            return Ok(0);
        }
        txn.commit()?;
        tracing::debug!(
            dropped = victims.len(),
            older_than_ms,
            "pruned dedupe entries"
        );
        Ok(victims.len())
    }
}
