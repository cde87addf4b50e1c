//! A tenant's registered content as stored in the catalog, and the content
//! library (liveseg-core) built from it.
//!
//! A record holds the text, its metadata and its embedding (base64 of
//! little-endian f32), so the text is embedded once, at registration, and a
//! restarted node or a new shard owner rebuilds the library from the
//! catalog without a model. Topic texts of affinity conditions are stored
//! the same way under the reserved id prefix `topic:`.

use crate::error::{NodeError, Result};
use base64::Engine as _;
use liveseg_core::content::ContentLibrary;
use liveseg_core::event::stable_hash;
use liveseg_store::Catalog;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Ids starting with this are topic texts, not user content.
pub const TOPIC_PREFIX: &str = "topic:";
/// Limits of one content item (the model reads its first 256 tokens).
pub const MAX_ID_BYTES: usize = 256;
pub const MAX_TEXT_BYTES: usize = liveseg_model::service::MAX_TEXT_BYTES;
pub const MAX_URL_BYTES: usize = 2048;
pub const MAX_METADATA_ENTRIES: usize = 32;
pub const MAX_METADATA_KEY_BYTES: usize = 64;
pub const MAX_METADATA_VALUE_BYTES: usize = 1024;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    #[default]
    Content,
    Topic,
}

/// One stored content item or topic text.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContentRecord {
    pub id: String,
    #[serde(default)]
    pub kind: RecordKind,
    pub text: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// The model that embedded `text`.
    pub model: String,
    pub registered_ms: i64,
    /// Base64 of the embedding's little-endian f32 values.
    pub vector: String,
}

impl ContentRecord {
    pub fn encode_vector(v: &[f32]) -> String {
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    /// The record as the catalog stores it: `(id, JSON)`.
    pub fn stored(&self) -> Result<(String, String)> {
        let json = serde_json::to_string(self).map_err(|e| NodeError::Internal(e.to_string()))?;
        Ok((self.id.clone(), json))
    }

    pub fn vector(&self) -> std::result::Result<Vec<f32>, String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&self.vector)
            .map_err(|e| format!("vector is not base64: {e}"))?;
        if bytes.len() % 4 != 0 {
            return Err(format!(
                "vector has {} bytes, not a multiple of 4",
                bytes.len()
            ));
        }
        Ok(bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
}

/// The stored id of a topic text.
pub fn topic_id(text: &str) -> String {
    format!("{TOPIC_PREFIX}{:016x}", stable_hash(text))
}

/// Every record of the tenant.
pub fn records(catalog: &dyn Catalog, tenant: &str) -> Result<Vec<ContentRecord>> {
    catalog
        .contents(tenant)?
        .into_iter()
        .map(|(id, json)| {
            serde_json::from_str(&json)
                .map_err(|e| NodeError::Internal(format!("stored content {id}: {e}")))
        })
        .collect()
}

/// The library of the tenant's stored records.
pub fn library(catalog: &dyn Catalog, tenant: &str) -> Result<ContentLibrary> {
    library_of(&records(catalog, tenant)?)
}

/// The library of `records`. A record that cannot be used (its vector is
/// unreadable, degenerate or of other dimensions; registration checks this,
/// so only a damaged store has one) is left out with an error in the log,
/// rather than failing the tenant's load: a definition naming it then fails
/// to compile with a message naming the content.
pub fn library_of(records: &[ContentRecord]) -> Result<ContentLibrary> {
    let mut lib = ContentLibrary::default();
    for r in records {
        let added = r.vector().and_then(|v| {
            match r.kind {
                RecordKind::Content => lib.insert_content(&r.id, Some(r.url.as_str()), &v),
                RecordKind::Topic => lib.insert_topic(&r.text, &v),
            }
            .map_err(|e| e.to_string())
        });
        match added {
            Ok(()) => lib.note_model(&r.model),
            Err(e) => {
                tracing::error!(content = %r.id, error = %e, "stored content record left out of the library")
            }
        }
    }
    Ok(lib)
}

/// Whether vectors recorded as embedded by model id `stored` can be
/// compared with vectors of model id `current`. A record from before model
/// ids names the bare model (`liveseg_model::MODEL_NAME`); it matches
/// every id of that model, since the files were pinned and only int8
/// rounding (cosine >= 0.99 to f32) could tell them apart.
pub fn same_model(stored: &str, current: &str) -> bool {
    stored == current || (!stored.contains(' ') && current.split(' ').next() == Some(stored))
}

/// `check_model`, then records `current` as a model of `lib`: what every
/// caller about to add vectors of `current` to `lib` does.
pub fn adopt_model(lib: &mut ContentLibrary, current: &str) -> Result<()> {
    check_model(lib, current)?;
    lib.note_model(current);
    Ok(())
}

/// Refuses to add vectors of model `current` to a library whose vectors
/// came from another model: their similarities would mean nothing, and
/// affinities and matches would silently be wrong. The way out is
/// ReembedContent (`liveseg content reembed`).
pub fn check_model(lib: &ContentLibrary, current: &str) -> Result<()> {
    let others: Vec<&str> = lib.models().filter(|m| !same_model(m, current)).collect();
    if others.is_empty() {
        return Ok(());
    }
    Err(NodeError::FailedPrecondition(format!(
        "this tenant's content was embedded by {}, and the node's model is now {current}: \
         vectors of two models cannot be compared; embed the tenant's content again with \
         `liveseg content reembed` (ReembedContent), then retry",
        others.join(" and ")
    )))
}

/// What is wrong with one item of a registration, as `field: reason`.
pub fn check_item(
    at: &str,
    id: &str,
    text: &str,
    url: &str,
    metadata: &BTreeMap<String, String>,
) -> std::result::Result<(), String> {
    if id.is_empty() || id.len() > MAX_ID_BYTES {
        return Err(format!("{at}.id: must be 1-{MAX_ID_BYTES} bytes"));
    }
    if id.chars().any(char::is_control) {
        return Err(format!("{at}.id: must not contain control characters"));
    }
    if id.starts_with(TOPIC_PREFIX) {
        return Err(format!(
            "{at}.id: the prefix '{TOPIC_PREFIX}' is reserved for topic texts"
        ));
    }
    if text.len() > MAX_TEXT_BYTES {
        return Err(format!(
            "{at}.text: {} bytes; at most {MAX_TEXT_BYTES}",
            text.len()
        ));
    }
    if text.trim().is_empty() {
        return Err(format!("{at}.text: must not be empty"));
    }
    if url.len() > MAX_URL_BYTES {
        return Err(format!("{at}.url: at most {MAX_URL_BYTES} bytes"));
    }
    if metadata.len() > MAX_METADATA_ENTRIES {
        return Err(format!(
            "{at}.metadata: {} entries; at most {MAX_METADATA_ENTRIES}",
            metadata.len()
        ));
    }
    for (k, v) in metadata {
        if k.is_empty() || k.len() > MAX_METADATA_KEY_BYTES {
            return Err(format!(
                "{at}.metadata: key {k:?} must be 1-{MAX_METADATA_KEY_BYTES} bytes"
            ));
        }
        if v.len() > MAX_METADATA_VALUE_BYTES {
            return Err(format!(
                "{at}.metadata.{k}: at most {MAX_METADATA_VALUE_BYTES} bytes"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, kind: RecordKind, text: &str, url: &str, v: &[f32]) -> ContentRecord {
        ContentRecord {
            id: id.into(),
            kind,
            text: text.into(),
            url: url.into(),
            metadata: BTreeMap::new(),
            model: "m".into(),
            registered_ms: 1,
            vector: ContentRecord::encode_vector(v),
        }
    }

    /// Vectors of another model (other files, or int8 instead of f32) are
    /// refused, naming the model and the way out; records from before
    /// model ids (a bare name) go with any id of that model.
    #[test]
    fn a_library_refuses_vectors_of_another_model() {
        let f32 = "org/m f32 sha256:aaaaaaaaaaaa";
        let int8 = "org/m int8 sha256:aaaaaaaaaaaa";
        let other = "org/m f32 sha256:bbbbbbbbbbbb";
        let mut a = record("a", RecordKind::Content, "A", "", &[1.0, 0.0]);
        a.model = f32.into();
        let lib = library_of(std::slice::from_ref(&a)).unwrap();
        assert_eq!(lib.models().collect::<Vec<_>>(), vec![f32]);
        assert!(check_model(&lib, f32).is_ok());
        for now in [int8, other, "org/n f32 sha256:aaaaaaaaaaaa"] {
            let err = check_model(&lib, now).unwrap_err().to_string();
            assert!(err.contains(f32) && err.contains(now), "{err}");
            assert!(err.contains("liveseg content reembed"), "{err}");
        }
        let mut legacy = record("b", RecordKind::Content, "B", "", &[0.0, 1.0]);
        legacy.model = "org/m".into();
        let lib = library_of(&[a, legacy]).unwrap();
        assert!(check_model(&lib, f32).is_ok());
        assert!(
            check_model(&lib, other).is_err(),
            "the f32 record still differs"
        );
        assert!(!same_model("org/m", "org/mm f32 sha256:aaaaaaaaaaaa"));
        assert!(
            check_model(&ContentLibrary::default(), other).is_ok(),
            "empty"
        );
    }

    #[test]
    fn vectors_round_trip_and_records_build_the_library() {
        let r = record("a", RecordKind::Content, "A", "/a", &[0.25, -1.5, 3.0]);
        assert_eq!(r.vector().unwrap(), vec![0.25, -1.5, 3.0]);
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<ContentRecord>(&json).unwrap(), r);
        let t = record(&topic_id("x"), RecordKind::Topic, "x", "", &[0.0, 1.0, 0.0]);
        let lib = library_of(&[r, t]).unwrap();
        assert_eq!(lib.len(), 1, "topics are not content");
        assert!(lib.topic("x").is_some());
        assert_eq!(
            lib.get(liveseg_core::content::url_key("https://site/a/"))
                .map(|i| i.id.as_str()),
            Some("a")
        );
    }

    #[test]
    fn unusable_records_are_left_out_not_fatal() {
        let mut bad = record("a", RecordKind::Content, "A", "", &[1.0, 0.0]);
        bad.vector = "AAA".into();
        let other_dims = record("b", RecordKind::Content, "B", "", &[1.0]);
        let good = record("c", RecordKind::Content, "C", "", &[0.0, 1.0]);
        let lib = library_of(&[good, bad, other_dims]).unwrap();
        let ids: Vec<&str> = lib.contents().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, vec!["c"]);
    }

    #[test]
    fn item_checks_name_the_field() {
        let m = BTreeMap::new();
        let cases = [
            ("", "t", "", "items[0].id"),
            ("topic:x", "t", "", "items[0].id: the prefix"),
            ("a", " ", "", "items[0].text"),
            ("a", "t", &"u".repeat(MAX_URL_BYTES + 1), "items[0].url"),
        ];
        for (id, text, url, want) in cases {
            let e = check_item("items[0]", id, text, url, &m).unwrap_err();
            assert!(e.starts_with(want), "{e}");
        }
        assert!(check_item("items[0]", "a", "t", "/p", &m).is_ok());
        let mut big = BTreeMap::new();
        big.insert("k".to_string(), "v".repeat(MAX_METADATA_VALUE_BYTES + 1));
        assert!(
            check_item("items[0]", "a", "t", "", &big)
                .unwrap_err()
                .starts_with("items[0].metadata.k")
        );
    }
}
