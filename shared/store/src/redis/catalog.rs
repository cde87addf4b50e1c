//! [`Catalog`] in Redis, shared by every node of a cluster: tenants, hashed
//! API keys and segment definitions, under their own hash tag `{cat}`.

use super::RedisStore;
use super::keys::{CATALOG, scoped};
use super::scripts;
use crate::embedded::hash_api_key;
use crate::error::{Result, StoreError};
use crate::traits::{Catalog, Tenant};
use std::sync::LazyLock;

static CREATE_TENANT: LazyLock<::redis::Script> =
    LazyLock::new(|| ::redis::Script::new(scripts::CREATE_TENANT));
static ADD_API_KEY: LazyLock<::redis::Script> =
    LazyLock::new(|| ::redis::Script::new(scripts::ADD_API_KEY));
static PUT_SEGMENT: LazyLock<::redis::Script> =
    LazyLock::new(|| ::redis::Script::new(scripts::PUT_SEGMENT));

/// The cluster-wide catalog.
#[derive(Clone)]
pub struct RedisCatalog {
    redis: RedisStore,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct TenantRecord {
    name: String,
    created_ms: i64,
}

fn key(suffix: &str) -> String {
    format!("{CATALOG}{suffix}")
}

fn segs_key(tenant: &str) -> String {
    key(&format!("segs:{}", scoped(tenant, "")))
}

fn segrev_key(tenant: &str) -> String {
    key(&format!("segrev:{}", scoped(tenant, "")))
}

fn content_key(tenant: &str) -> String {
    key(&format!("content:{}", scoped(tenant, "")))
}

fn require_non_empty(what: &str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(StoreError::InvalidInput(format!(
            "{what} must not be empty"
        )));
    }
    Ok(())
}

impl RedisCatalog {
    pub(crate) fn new(redis: RedisStore) -> Self {
        RedisCatalog { redis }
    }
}

impl Catalog for RedisCatalog {
    fn create_tenant(&self, id: &str, name: &str, now_ms: i64) -> Result<()> {
        require_non_empty("tenant id", id)?;
        let record = serde_json::to_string(&TenantRecord {
            name: name.to_owned(),
            created_ms: now_ms,
        })
        .map_err(|e| StoreError::Internal(e.to_string()))?;
        let created: i64 = self.redis.with_conn(|c| {
            CREATE_TENANT
                .key(key("tenants"))
                .arg(id)
                .arg(&record)
                .invoke(c)
        })?;
        if created == 0 {
            return Err(StoreError::AlreadyExists {
                kind: "tenant",
                id: id.to_owned(),
            });
        }
        Ok(())
    }

    fn tenants(&self) -> Result<Vec<Tenant>> {
        let all: Vec<(String, String)> = self
            .redis
            .with_conn(|c| ::redis::cmd("HGETALL").arg(key("tenants")).query(c))?;
        let mut out = Vec::with_capacity(all.len());
        for (id, json) in all {
            let r: TenantRecord = serde_json::from_str(&json)
                .map_err(|e| StoreError::Corrupt(format!("tenant {id:?}: {e}")))?;
            out.push(Tenant {
                id,
                name: r.name,
                created_ms: r.created_ms,
            });
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    fn add_api_key(&self, tenant: &str, api_key: &str, _label: &str) -> Result<()> {
        require_non_empty("api key", api_key)?;
        let hash = hash_api_key(api_key);
        let r: i64 = self.redis.with_conn(|c| {
            ADD_API_KEY
                .key(key("tenants"))
                .key(key("keys"))
                .arg(tenant)
                .arg(&hash)
                .invoke(c)
        })?;
        match r {
            1 => Ok(()),
            0 => Err(StoreError::NotFound {
                kind: "tenant",
                id: tenant.to_owned(),
            }),
            _ => Err(StoreError::InvalidInput(
                "api key is already registered to another tenant".into(),
            )),
        }
    }

    fn tenant_for_key(&self, api_key: &str) -> Result<Option<String>> {
        let hash = hash_api_key(api_key);
        self.redis
            .with_conn(|c| ::redis::cmd("HGET").arg(key("keys")).arg(&hash).query(c))
    }

    fn put_segment(&self, tenant: &str, seg: &str, definition_json: &str) -> Result<u64> {
        require_non_empty("segment key", seg)?;
        serde_json::from_str::<serde_json::Value>(definition_json).map_err(|e| {
            StoreError::InvalidInput(format!("segment {seg:?} definition is not valid JSON: {e}"))
        })?;
        self.redis.with_conn(|c| {
            PUT_SEGMENT
                .key(segs_key(tenant))
                .key(segrev_key(tenant))
                .arg(seg)
                .arg(definition_json)
                .invoke(c)
        })
    }

    fn delete_segment(&self, tenant: &str, seg: &str) -> Result<bool> {
        let n: i64 = self
            .redis
            .with_conn(|c| ::redis::cmd("HDEL").arg(segs_key(tenant)).arg(seg).query(c))?;
        Ok(n == 1)
    }

    fn segments(&self, tenant: &str) -> Result<Vec<(String, String, u64)>> {
        let all: Vec<(String, String)> = self
            .redis
            .with_conn(|c| ::redis::cmd("HGETALL").arg(segs_key(tenant)).query(c))?;
        let mut out = Vec::with_capacity(all.len());
        for (k, v) in all {
            let (rev, json) = v
                .split_once(':')
                .and_then(|(r, j)| Some((r.parse::<u64>().ok()?, j)))
                .ok_or_else(|| StoreError::Corrupt(format!("segment {k:?} record")))?;
            out.push((k, json.to_owned(), rev));
        }
        out.sort();
        Ok(out)
    }

    fn put_contents(&self, tenant: &str, items: &[(String, String)]) -> Result<()> {
        crate::traits::check_content_records(items)?;
        if items.is_empty() {
            return Ok(());
        }
        let exists: bool = self.redis.with_conn(|c| {
            ::redis::cmd("HEXISTS")
                .arg(key("tenants"))
                .arg(tenant)
                .query(c)
        })?;
        if !exists {
            return Err(StoreError::NotFound {
                kind: "tenant",
                id: tenant.to_owned(),
            });
        }
        // One HSET writes every field atomically.
        self.redis.with_conn(|c| {
            let mut cmd = ::redis::cmd("HSET");
            cmd.arg(content_key(tenant));
            for (id, json) in items {
                cmd.arg(id).arg(json);
            }
            cmd.query::<i64>(c)
        })?;
        Ok(())
    }

    fn contents(&self, tenant: &str) -> Result<Vec<(String, String)>> {
        let mut all: Vec<(String, String)> = self
            .redis
            .with_conn(|c| ::redis::cmd("HGETALL").arg(content_key(tenant)).query(c))?;
        all.sort();
        Ok(all)
    }

    fn delete_content(&self, tenant: &str, id: &str) -> Result<bool> {
        let n: i64 = self.redis.with_conn(|c| {
            ::redis::cmd("HDEL")
                .arg(content_key(tenant))
                .arg(id)
                .query(c)
        })?;
        Ok(n == 1)
    }
}
