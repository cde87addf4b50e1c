//! What the node reads back from its event log: the event of an entry, and
//! a fingerprint that tells one entry's content from another's.

use liveseg_core::Millis;
use liveseg_core::event::{Event, Limits, parse_owned};
use liveseg_store::LogEntry;

/// Decodes a log payload (validated JSON, written at ingest).
pub fn decode(payload: &[u8]) -> std::result::Result<Event, String> {
    let v: serde_json::Value = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
    // Validated at ingest against the clock of that moment: no future check again.
    parse_owned(
        v,
        Millis::MAX / 2,
        &Limits {
            max_message_bytes: usize::MAX,
            ..Limits::default()
        },
    )
    .map_err(|e| e.to_string())
}

/// Identifies a log entry's content (tenant and payload), to tell whether
/// the entry Redis holds at a seq is the one a runtime applied there.
pub fn entry_fingerprint(e: &LogEntry) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    e.tenant.hash(&mut h);
    e.payload.hash(&mut h);
    h.finish()
}
