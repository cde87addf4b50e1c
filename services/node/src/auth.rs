//! API keys and tenants. Keys are stored hashed by the catalog; a request's
//! key decides its tenant, and nothing in a request can name another tenant.
//! The reserved tenant `~admin` holds the node's admin key (CreateTenant).

use crate::error::{NodeError, Result};
use liveseg_store::Catalog;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

pub const ADMIN_TENANT: &str = "~admin";

/// The first tenant's and the admin's keys, written once to `credentials.json`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Credentials {
    pub tenant: String,
    pub api_key: String,
    #[serde(default)]
    pub admin_key: String,
}

pub struct Auth {
    catalog: Arc<dyn Catalog>,
    /// key -> tenant; keys are never revoked in this version, so entries never go stale.
    cache: RwLock<HashMap<String, String>>,
}

impl Auth {
    pub fn new(catalog: Arc<dyn Catalog>) -> Self {
        Auth {
            catalog,
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// The tenant of a presented key; the admin key is not a tenant key.
    pub fn tenant_for(&self, key: &str) -> Result<String> {
        let t = self.resolve(key)?;
        if t == ADMIN_TENANT {
            return Err(NodeError::PermissionDenied(
                "the admin key cannot read or write tenant data".into(),
            ));
        }
        Ok(t)
    }

    pub fn require_admin(&self, key: &str) -> Result<()> {
        if self.resolve(key)? == ADMIN_TENANT {
            Ok(())
        } else {
            Err(NodeError::PermissionDenied("needs the admin key".into()))
        }
    }

    /// Any valid key (tenant or admin).
    pub fn resolve(&self, key: &str) -> Result<String> {
        if key.is_empty() || key.len() > 256 {
            return Err(NodeError::Unauthenticated);
        }
        if let Some(t) = self
            .cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
        {
            return Ok(t.clone());
        }
        let tenant = self
            .catalog
            .tenant_for_key(key)?
            .ok_or(NodeError::Unauthenticated)?;
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_string(), tenant.clone());
        Ok(tenant)
    }
}

/// Extracts the key from `authorization: Bearer K`, `Basic base64(K:)` or `x-api-key: K`.
pub fn key_from_header(authorization: Option<&str>, x_api_key: Option<&str>) -> Option<String> {
    if let Some(k) = x_api_key {
        return Some(k.trim().to_string());
    }
    let value = authorization?.trim();
    if let Some(k) = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
    {
        return Some(k.trim().to_string());
    }
    let b64 = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    // Segment sends the write key as the Basic username with an empty password.
    Some(text.split(':').next().unwrap_or_default().to_string())
}

/// A fresh random key: `lsk_` + 32 random bytes in hex.
pub fn new_key() -> Result<String> {
    let mut bytes = [0u8; 32];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| NodeError::Internal(format!("reading /dev/urandom: {e}")))?;
    Ok(format!(
        "lsk_{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

/// On a fresh store: the admin key and a first tenant with the starter
/// segments, and `credentials.json` (mode 0600) in the data dir.
pub fn bootstrap(
    catalog: &dyn Catalog,
    data_dir: &Path,
    now_ms: i64,
) -> Result<Option<Credentials>> {
    let tenants = catalog.tenants()?;
    let path = data_dir.join("credentials.json");
    if tenants.iter().any(|t| t.id == ADMIN_TENANT) {
        return Ok(std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok()));
    }
    catalog.create_tenant(ADMIN_TENANT, "node administration", now_ms)?;
    let admin_key = new_key()?;
    catalog.add_api_key(ADMIN_TENANT, &admin_key, "admin (bootstrap)")?;
    let (tenant, api_key) = create_tenant(catalog, "default", now_ms)?;
    let creds = Credentials {
        tenant,
        api_key,
        admin_key,
    };
    write_credentials(&path, &creds)?;
    tracing::info!(path = %path.display(), tenant = %creds.tenant, "created the first tenant and its API key; credentials written");
    Ok(Some(creds))
}

/// A new tenant with the starter segments installed; returns (id, key).
pub fn create_tenant(catalog: &dyn Catalog, name: &str, now_ms: i64) -> Result<(String, String)> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !ok {
        return Err(NodeError::InvalidArgument(
            "name: must be 1-64 characters of a-z, 0-9, '-' or '_'".into(),
        ));
    }
    catalog.create_tenant(name, name, now_ms)?;
    let key = new_key()?;
    catalog.add_api_key(name, &key, "created with the tenant")?;
    for def in liveseg_core::presets::presets() {
        let json = serde_json::to_string(&def).map_err(|e| NodeError::Internal(e.to_string()))?;
        catalog.put_segment(name, &def.key, &json)?;
    }
    Ok((name.to_string(), key))
}

fn write_credentials(path: &Path, creds: &Credentials) -> Result<()> {
    let text = serde_json::to_vec_pretty(creds).map_err(|e| NodeError::Internal(e.to_string()))?;
    std::fs::write(path, text)
        .map_err(|e| NodeError::Config(format!("writing {}: {e}", path.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_from_bearer_basic_or_header() {
        assert_eq!(
            key_from_header(Some("Bearer abc"), None).as_deref(),
            Some("abc")
        );
        // base64("wk:") = d2s6
        assert_eq!(
            key_from_header(Some("Basic d2s6"), None).as_deref(),
            Some("wk")
        );
        assert_eq!(key_from_header(None, Some("k2")).as_deref(), Some("k2"));
        assert_eq!(key_from_header(Some("Digest x"), None), None);
        let k = new_key();
        assert!(
            k.as_ref()
                .is_ok_and(|k| k.len() == 68 && k.starts_with("lsk_"))
        );
    }
}
