//! Dedupe keys: a fixed 128-bit hash of `(tenant, message_id)`.

use sha2::{Digest, Sha256};

/// Domain separation, so these hashes can never be confused with any other
/// SHA-256 use in the project (e.g. API key hashes).
const DOMAIN: &[u8] = b"liveseg/dedupe-key/v2\0";

/// The dedupe key of `(tenant, message_id)`: the first 128 bits of
/// SHA-256(domain || len(tenant) as u64 LE || tenant || message_id).
pub(crate) fn dedupe_key(tenant: &str, message_id: &str) -> u128 {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update((tenant.len() as u64).to_le_bytes());
    h.update(tenant.as_bytes());
    h.update(message_id.as_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    u128::from_be_bytes(first)
}
