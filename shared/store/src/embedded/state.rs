//! [`StateStore`] for the embedded store.

use std::collections::HashMap;

use redb::ReadableTable;

use super::{
    CHANGE_HEADS, CHANGES, CHECKPOINTS, DIRECTORY, EmbeddedStore, META, META_WATERMARK,
    next_counter,
};
use crate::error::{Result, StoreError};
use crate::traits::{CheckpointImage, CommitBatch, Seq, StateStore};

impl StateStore for EmbeddedStore {
    fn commit(&self, batch: &CommitBatch) -> Result<Vec<u64>> {
        let txn = self.write_txn()?;
        let mut cursors = Vec::with_capacity(batch.changes.len());
        {
            let mut checkpoints = txn.open_table(CHECKPOINTS)?;
            for cp in &batch.checkpoints {
                let key = (cp.tenant.as_str(), cp.account.as_str());
                let stored = checkpoints.get(key)?.map(|g| g.value().0);
                if let Some(stored) = stored
                    && cp.applied_seq < stored
                {
                    // Returning drops `txn` uncommitted: nothing in the batch is written.
                    return Err(StoreError::StaleCheckpoint {
                        tenant: cp.tenant.clone(),
                        account: cp.account.clone(),
                        stored,
                        presented: cp.applied_seq,
                    });
                }
                // A deletion keeps a tombstone with its applied_seq so that a
                // later stale writer is still fenced and replay still knows
                // the account's events up to here were applied.
                checkpoints.insert(key, (cp.applied_seq, cp.state.as_deref()))?;
            }

            let mut directory = txn.open_table(DIRECTORY)?;
            for upd in &batch.directory {
                let key = (upd.tenant.as_str(), upd.contact.as_str());
                match &upd.account {
                    Some(account) => {
                        directory.insert(key, account.as_str())?;
                    }
                    None => {
                        directory.remove(key)?;
                    }
                }
            }

            let mut changes = txn.open_table(CHANGES)?;
            let mut heads = txn.open_table(CHANGE_HEADS)?;
            let mut cache: HashMap<&str, u64> = HashMap::new();
            for change in &batch.changes {
                let tenant = change.tenant.as_str();
                let current = match cache.get(tenant) {
                    Some(c) => *c,
                    None => heads.get(tenant)?.map(|g| g.value()).unwrap_or(0),
                };
                let cursor = next_counter(current, "change cursor")?;
                changes.insert((tenant, cursor), change.payload.as_slice())?;
                cache.insert(tenant, cursor);
                cursors.push(cursor);
            }
            for (tenant, head) in &cache {
                heads.insert(*tenant, *head)?;
            }

            if let Some(watermark) = batch.watermark {
                let mut meta = txn.open_table(META)?;
                let stored = meta.get(META_WATERMARK)?.map(|g| g.value()).unwrap_or(0);
                if watermark > stored {
                    meta.insert(META_WATERMARK, watermark)?;
                }
            }
        }
        txn.commit()?;
        Ok(cursors)
    }

    fn load_checkpoint(&self, tenant: &str, account: &str) -> Result<Option<(Seq, Vec<u8>)>> {
        let txn = self.read_txn()?;
        let table = txn.open_table(CHECKPOINTS)?;
        let row = table.get((tenant, account))?;
        Ok(row.and_then(|g| {
            let (seq, state) = g.value();
            state.map(|s| (seq, s.to_vec()))
        }))
    }

    fn load_checkpoints(&self, keys: &[(String, String)]) -> Result<Vec<Option<CheckpointImage>>> {
        let txn = self.read_txn()?;
        let table = txn.open_table(CHECKPOINTS)?;
        let mut out = Vec::with_capacity(keys.len());
        for (tenant, account) in keys {
            let row = table.get((tenant.as_str(), account.as_str()))?;
            out.push(row.and_then(|g| {
                let (seq, state) = g.value();
                state.map(|s| (seq, s.to_vec()))
            }));
        }
        Ok(out)
    }

    fn checkpoint_index(&self) -> Result<Vec<(String, String, Seq)>> {
        let txn = self.read_txn()?;
        let table = txn.open_table(CHECKPOINTS)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (k, v) = row?;
            let (tenant, account) = k.value();
            out.push((tenant.to_owned(), account.to_owned(), v.value().0));
        }
        Ok(out)
    }

    fn directory_lookup(&self, tenant: &str, contact: &str) -> Result<Option<String>> {
        let txn = self.read_txn()?;
        let table = txn.open_table(DIRECTORY)?;
        Ok(table.get((tenant, contact))?.map(|g| g.value().to_owned()))
    }

    fn directory_all(&self, tenant: &str) -> Result<Vec<(String, String)>> {
        let txn = self.read_txn()?;
        let table = txn.open_table(DIRECTORY)?;
        let mut out = Vec::new();
        // Keys compare tenant first, so this tenant's rows are contiguous from
        // (tenant, ""); stop at the first row of another tenant.
        for row in table.range((tenant, "")..)? {
            let (k, v) = row?;
            let (t, contact) = k.value();
            if t != tenant {
                break;
            }
            out.push((contact.to_owned(), v.value().to_owned()));
        }
        Ok(out)
    }

    fn changes_after(&self, tenant: &str, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        let Some(start) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        let txn = self.read_txn()?;
        let table = txn.open_table(CHANGES)?;
        let mut out = Vec::new();
        for row in table
            .range((tenant, start)..=(tenant, u64::MAX))?
            .take(limit)
        {
            let (k, v) = row?;
            out.push((k.value().1, v.value().to_vec()));
        }
        Ok(out)
    }

    fn change_head(&self, tenant: &str) -> Result<u64> {
        let txn = self.read_txn()?;
        let table = txn.open_table(CHANGE_HEADS)?;
        Ok(table.get(tenant)?.map(|g| g.value()).unwrap_or(0))
    }

    fn watermark(&self) -> Result<Seq> {
        let txn = self.read_txn()?;
        let meta = txn.open_table(META)?;
        Ok(meta.get(META_WATERMARK)?.map(|g| g.value()).unwrap_or(0))
    }
}
