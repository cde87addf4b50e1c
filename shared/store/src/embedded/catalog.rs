//! [`Catalog`] for the embedded store.

use redb::ReadableTable;
use sha2::{Digest, Sha256};

use super::{API_KEYS, CONTENT, EmbeddedStore, SEGMENT_REVISIONS, SEGMENTS, TENANTS, next_counter};
use crate::error::{Result, StoreError};
use crate::traits::{Catalog, Tenant};

/// Lowercase hex SHA-256 of an API key: the only form in which keys are stored.
pub(crate) fn hash_api_key(key: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(key.as_bytes());
    let mut out = String::with_capacity(digest.len() * 2);
    for byte in digest {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    out
}

fn require_non_empty(what: &str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(StoreError::InvalidInput(format!(
            "{what} must not be empty"
        )));
    }
    Ok(())
}

fn tenant_not_found(id: &str) -> StoreError {
    StoreError::NotFound {
        kind: "tenant",
        id: id.to_owned(),
    }
}

impl Catalog for EmbeddedStore {
    fn create_tenant(&self, id: &str, name: &str, now_ms: i64) -> Result<()> {
        require_non_empty("tenant id", id)?;
        let txn = self.write_txn()?;
        {
            let mut tenants = txn.open_table(TENANTS)?;
            if tenants.get(id)?.is_some() {
                return Err(StoreError::AlreadyExists {
                    kind: "tenant",
                    id: id.to_owned(),
                });
            }
            tenants.insert(id, (name, now_ms))?;
        }
        txn.commit()?;
        Ok(())
    }

    fn tenants(&self) -> Result<Vec<Tenant>> {
        let txn = self.read_txn()?;
        let table = txn.open_table(TENANTS)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (k, v) = row?;
            let (name, created_ms) = v.value();
            out.push(Tenant {
                id: k.value().to_owned(),
                name: name.to_owned(),
                created_ms,
            });
        }
        Ok(out)
    }

    fn add_api_key(&self, tenant: &str, key: &str, label: &str) -> Result<()> {
        require_non_empty("api key", key)?;
        let hash = hash_api_key(key);
        let txn = self.write_txn()?;
        {
            if txn.open_table(TENANTS)?.get(tenant)?.is_none() {
                return Err(tenant_not_found(tenant));
            }
            let mut keys = txn.open_table(API_KEYS)?;
            let owner = keys.get(hash.as_str())?.map(|g| g.value().0.to_owned());
            if let Some(owner) = owner
                && owner != tenant
            {
                // Never reveal the other tenant's id, nor the key.
                return Err(StoreError::AlreadyExists {
                    kind: "api key (registered to another tenant)",
                    id: label.to_owned(),
                });
            }
            // Same tenant: idempotent, the label is updated.
            keys.insert(hash.as_str(), (tenant, label))?;
        }
        txn.commit()?;
        Ok(())
    }

    fn tenant_for_key(&self, key: &str) -> Result<Option<String>> {
        if key.is_empty() {
            return Ok(None);
        }
        let hash = hash_api_key(key);
        let txn = self.read_txn()?;
        let keys = txn.open_table(API_KEYS)?;
        Ok(keys.get(hash.as_str())?.map(|g| g.value().0.to_owned()))
    }

    fn put_segment(&self, tenant: &str, key: &str, definition_json: &str) -> Result<u64> {
        require_non_empty("segment key", key)?;
        // The store keeps the definition opaque, but refusing non-JSON here
        // catches encoding bugs before they are persisted.
        serde_json::from_str::<serde_json::Value>(definition_json).map_err(|e| {
            StoreError::InvalidInput(format!("segment {key:?} definition is not valid JSON: {e}"))
        })?;
        let txn = self.write_txn()?;
        let revision;
        {
            if txn.open_table(TENANTS)?.get(tenant)?.is_none() {
                return Err(tenant_not_found(tenant));
            }
            let mut revisions = txn.open_table(SEGMENT_REVISIONS)?;
            let last = revisions
                .get((tenant, key))?
                .map(|g| g.value())
                .unwrap_or(0);
            revision = next_counter(last, "segment revision")?;
            revisions.insert((tenant, key), revision)?;
            txn.open_table(SEGMENTS)?
                .insert((tenant, key), (definition_json, revision))?;
        }
        txn.commit()?;
        Ok(revision)
    }

    fn delete_segment(&self, tenant: &str, key: &str) -> Result<bool> {
        let txn = self.write_txn()?;
        let existed = txn.open_table(SEGMENTS)?.remove((tenant, key))?.is_some();
        if existed {
            txn.commit()?;
        } else {
            txn.abort()?;
        }
        Ok(existed)
    }

    fn segments(&self, tenant: &str) -> Result<Vec<(String, String, u64)>> {
        let txn = self.read_txn()?;
        let table = txn.open_table(SEGMENTS)?;
        let mut out = Vec::new();
        for row in table.range((tenant, "")..)? {
            let (k, v) = row?;
            let (t, key) = k.value();
            if t != tenant {
                break;
            }
            let (json, revision) = v.value();
            out.push((key.to_owned(), json.to_owned(), revision));
        }
        Ok(out)
    }

    fn put_contents(&self, tenant: &str, items: &[(String, String)]) -> Result<()> {
        crate::traits::check_content_records(items)?;
        let txn = self.write_txn()?;
        {
            if txn.open_table(TENANTS)?.get(tenant)?.is_none() {
                return Err(tenant_not_found(tenant));
            }
            let mut table = txn.open_table(CONTENT)?;
            for (id, json) in items {
                table.insert((tenant, id.as_str()), json.as_str())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    fn contents(&self, tenant: &str) -> Result<Vec<(String, String)>> {
        let txn = self.read_txn()?;
        let table = txn.open_table(CONTENT)?;
        let mut out = Vec::new();
        for row in table.range((tenant, "")..)? {
            let (k, v) = row?;
            let (t, id) = k.value();
            if t != tenant {
                break;
            }
            out.push((id.to_owned(), v.value().to_owned()));
        }
        Ok(out)
    }

    fn delete_content(&self, tenant: &str, id: &str) -> Result<bool> {
        let txn = self.write_txn()?;
        let existed = txn.open_table(CONTENT)?.remove((tenant, id))?.is_some();
        if existed {
            txn.commit()?;
        } else {
            txn.abort()?;
        }
        Ok(existed)
    }
}
