//! [`EventLog`] for the embedded store.

use std::collections::HashMap;

use redb::ReadableTable;

use super::dedupe::dedupe_key;
use super::{
    DEDUPE, EmbeddedStore, LOG, META, META_LOG_HEAD, META_PRUNE_CURSOR, next_counter,
};
use crate::error::Result;
use crate::traits::{AppendItem, AppendOutcome, EventLog, LogEntry, Seq};

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
        let txn = self.write_txn()?;
        let mut outcomes = Vec::with_capacity(items.len());
        {
            let mut meta = txn.open_table(META)?;
            let mut log = txn.open_table(LOG)?;
            let mut dedupe = txn.open_table(DEDUPE)?;
            let mut head = meta.get(META_LOG_HEAD)?.map(|g| g.value()).unwrap_or(0);
            let mut batch: HashMap<u128, Seq> = HashMap::with_capacity(items.len());
            let mut accepted: Vec<(u128, Seq)> = Vec::with_capacity(items.len());

            for (item, &key) in items.iter().zip(&keys) {
                if let Some(&seq) = batch.get(&key) {
                    outcomes.push(AppendOutcome::Duplicate { seq });
                    continue;
                }
                let existing = dedupe.get(key)?.map(|g| g.value());
                if let Some((seq, accepted_ms)) = existing
                    && accepted_ms >= cutoff
                {
                    outcomes.push(AppendOutcome::Duplicate { seq });
                    continue;
                }
                head = next_counter(head, "log sequence")?;
                log.insert(
                    head,
                    (key, now_ms, item.tenant.as_str(), item.payload.as_slice()),
                )?;
                batch.insert(key, head);
                accepted.push((key, head));
                outcomes.push(AppendOutcome::Accepted { seq: head });
            }
            if std::env::var_os("LS_SORT").is_some() {
                accepted.sort_unstable();
            }
            for (key, seq) in accepted {
                dedupe.insert(key, (seq, now_ms))?;
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
        Ok(meta.get(META_LOG_HEAD)?.map(|g| g.value()).unwrap_or(0))
    }

    fn prune_dedupe(&self, older_than_ms: i64) -> Result<usize> {
        let txn = self.write_txn()?;
        let mut dropped = 0usize;
        let mut moved = false;
        {
            let mut meta = txn.open_table(META)?;
            let log = txn.open_table(LOG)?;
            let mut dedupe = txn.open_table(DEDUPE)?;
            let start = meta.get(META_PRUNE_CURSOR)?.map(|g| g.value()).unwrap_or(1);
            let mut cursor = start;
            for row in log.range(start..)? {
                let (k, v) = row?;
                let (key, accepted_ms, _, _) = v.value();
                if accepted_ms >= older_than_ms {
                    break;
                }
                let seq = k.value();
                let current = dedupe.get(key)?.map(|g| g.value().0);
                if current == Some(seq) {
                    dedupe.remove(key)?;
                    dropped += 1;
                }
                cursor = seq + 1;
            }
            if cursor != start {
                meta.insert(META_PRUNE_CURSOR, cursor)?;
                moved = true;
            }
        }
        if !moved {
            txn.abort()?;
            return Ok(0);
        }
        txn.commit()?;
        tracing::debug!(dropped, older_than_ms, "pruned dedupe entries");
        Ok(dropped)
    }
}
