//! Content matching in the core: the tenant's content library (embedding
//! vectors of registered content and of topic texts). Each contact's
//! interest profile, which the library turns into a vector, is in
//! [`crate::interest`].

use crate::definition::{Condition, SegmentDefinition};
use crate::event::stable_hash;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub use crate::interest::{
    CLICK_WEIGHT, INTEREST_HALF_LIFE, Interest, InterestItem, InterestKey, MAX_INTEREST_ITEMS,
    PAGE_WEIGHT, interest_of,
};

/// The library key of a content id.
pub fn content_key(id: &str) -> u64 {
    stable_hash(&format!("content:{id}"))
}

/// The library key of a page: its normalised URL path.
pub fn url_key(url_or_path: &str) -> u64 {
    stable_hash(&format!("url:{}", normalize_path(url_or_path)))
}

/// The path of a URL or path, without scheme, host, query, fragment or a
/// trailing slash: `https://x.com/Pricing/?a=1` and `/Pricing` are the same
/// page. Case is kept (paths are case-sensitive).
pub fn normalize_path(url_or_path: &str) -> String {
    let s = url_or_path.trim();
    let s = s.split(['?', '#']).next().unwrap_or("");
    let path = match s.find("://") {
        Some(i) => s[i + 3..].find('/').map_or("/", |j| &s[i + 3 + j..]),
        None => s,
    };
    let path = path.trim_end_matches('/');
    if path.is_empty() {
        "/".into()
    } else if path.starts_with('/') {
        path.into()
    } else {
        format!("/{path}")
    }
}

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

pub(crate) fn norm(v: &[f32]) -> f32 {
    dot(v, v).sqrt()
}

/// Cosine of `v` with an already unit-norm `unit`.
pub(crate) fn cosine_unit(v: &[f32], unit: &[f32]) -> f32 {
    let n = norm(v);
    if n > 0.0 { dot(v, unit) / n } else { 0.0 }
}

/// FNV-1a, 64 bits: stable across builds and platforms, unlike std's hasher.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        // A separator, so ("ab", "c") and ("a", "bc") differ.
        self.0 = (self.0 ^ 0xff).wrapping_mul(0x0000_0100_0000_01b3);
    }
}

/// One registered content item's embedding (unit norm).
#[derive(Clone, Debug, PartialEq)]
pub struct LibraryItem {
    /// `content_key(id)`: the key profiles keep, whichever way (id or URL)
    /// the engagement named the item.
    pub key: u64,
    pub id: String,
    pub vector: Vec<f32>,
}

/// Why a vector cannot enter the library.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LibraryError {
    #[error("vector has {got} dimensions; the library's have {want}")]
    Dimensions { got: usize, want: usize },
    #[error("vector is empty, zero or not finite")]
    Degenerate,
}

/// A tenant's content embeddings, by content key (id and URL alias) and
/// by id, plus the embeddings of the topic texts its definitions name.
#[derive(Clone, Default)]
pub struct ContentLibrary {
    by_key: HashMap<u64, Arc<LibraryItem>>,
    by_id: BTreeMap<String, Arc<LibraryItem>>,
    topics: HashMap<String, Arc<[f32]>>,
    dims: Option<usize>,
    /// The models its vectors were recorded as embedded by (the node's
    /// model ids); more than one only in a library that needs re-embedding.
    models: std::collections::BTreeSet<String>,
    /// `digest()`, computed once per version of the library.
    digest: std::sync::OnceLock<u64>,
}

impl std::fmt::Debug for ContentLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContentLibrary")
            .field("contents", &self.by_id.len())
            .field("topics", &self.topics.len())
            .field("dims", &self.dims)
            .finish()
    }
}

impl ContentLibrary {
    /// Records that vectors of this library come from `model`.
    pub fn note_model(&mut self, model: &str) {
        if !self.models.contains(model) {
            self.models.insert(model.to_string());
        }
    }

    /// The models noted with `note_model`, sorted.
    pub fn models(&self) -> impl Iterator<Item = &str> {
        self.models.iter().map(String::as_str)
    }

    /// Adds (or replaces) content `id`, reachable also by its page `url`.
    pub fn insert_content(
        &mut self,
        id: &str,
        url: Option<&str>,
        vector: &[f32],
    ) -> Result<(), LibraryError> {
        let vector = self.unit(vector)?;
        let item = Arc::new(LibraryItem {
            key: content_key(id),
            id: id.to_string(),
            vector,
        });
        self.by_key.insert(content_key(id), item.clone());
        if let Some(u) = url.filter(|u| !u.trim().is_empty()) {
            self.by_key.insert(url_key(u), item.clone());
        }
        self.by_id.insert(id.to_string(), item);
        self.digest = std::sync::OnceLock::new();
        Ok(())
    }

    /// Adds the embedding of a topic text named by a definition.
    pub fn insert_topic(&mut self, text: &str, vector: &[f32]) -> Result<(), LibraryError> {
        let vector = self.unit(vector)?;
        self.topics.insert(text.to_string(), vector.into());
        self.digest = std::sync::OnceLock::new();
        Ok(())
    }

    /// A hash of everything judging reads from the library: each content
    /// key with its item's id and vector, and each topic's vector; the same
    /// whatever the order things were registered in. Checkpoints carry it,
    /// so state judged under another library (content registered while a
    /// node was down, or while a shard moved) is judged again on load.
    pub fn digest(&self) -> u64 {
        *self.digest.get_or_init(|| {
            let mut keys: Vec<(&u64, &Arc<LibraryItem>)> = self.by_key.iter().collect();
            keys.sort_by_key(|(k, _)| **k);
            let mut topics: Vec<(&String, &Arc<[f32]>)> = self.topics.iter().collect();
            topics.sort_by(|a, b| a.0.cmp(b.0));
            let mut h = Fnv::default();
            for (key, item) in keys {
                h.write(&key.to_le_bytes());
                h.write(item.id.as_bytes());
                item.vector
                    .iter()
                    .for_each(|x| h.write(&x.to_bits().to_le_bytes()));
            }
            for (text, v) in topics {
                h.write(text.as_bytes());
                v.iter().for_each(|x| h.write(&x.to_bits().to_le_bytes()));
            }
            h.0
        })
    }

    fn unit(&mut self, v: &[f32]) -> Result<Vec<f32>, LibraryError> {
        if let Some(want) = self.dims
            && want != v.len()
        {
            return Err(LibraryError::Dimensions { got: v.len(), want });
        }
        let n = norm(v);
        if v.is_empty() || !n.is_finite() || n == 0.0 {
            return Err(LibraryError::Degenerate);
        }
        self.dims = Some(v.len());
        Ok(v.iter().map(|x| x / n).collect())
    }

    pub fn get(&self, key: u64) -> Option<&LibraryItem> {
        self.by_key.get(&key).map(|a| a.as_ref())
    }

    pub fn content(&self, id: &str) -> Option<&LibraryItem> {
        self.by_id.get(id).map(|a| a.as_ref())
    }

    pub fn topic(&self, text: &str) -> Option<Arc<[f32]>> {
        self.topics.get(text).cloned()
    }

    /// Content items by id.
    pub fn contents(&self) -> impl Iterator<Item = &LibraryItem> {
        self.by_id.values().map(|a| a.as_ref())
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Ranks `candidates` (content ids; all content when empty) by cosine
    /// with `query`, best first; unknown ids are returned apart.
    pub fn rank<'a>(
        &self,
        query: &[f32],
        candidates: &'a [String],
    ) -> (Vec<(String, f32)>, Vec<&'a str>) {
        let q = {
            let n = norm(query);
            if n > 0.0 {
                query.iter().map(|x| x / n).collect::<Vec<f32>>()
            } else {
                query.to_vec()
            }
        };
        let mut unknown = Vec::new();
        let mut scored: Vec<(String, f32)> = if candidates.is_empty() {
            self.contents()
                .filter(|i| i.vector.len() == q.len())
                .map(|i| (i.id.clone(), dot(&i.vector, &q)))
                .collect()
        } else {
            let mut out = Vec::new();
            for c in candidates {
                match self.content(c).filter(|i| i.vector.len() == q.len()) {
                    Some(i) => out.push((i.id.clone(), dot(&i.vector, &q))),
                    None => unknown.push(c.as_str()),
                }
            }
            out
        };
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        scored.dedup_by(|a, b| a.0 == b.0);
        (scored, unknown)
    }
}

/// The topic texts of every affinity condition, deduplicated: what must be
/// embedded before `compile_with` can resolve them.
pub fn affinity_topics(defs: &[SegmentDefinition]) -> Vec<String> {
    fn walk(c: &Condition, out: &mut Vec<String>) {
        match c {
            Condition::All(cs) | Condition::Any(cs) => cs.iter().for_each(|c| walk(c, out)),
            Condition::Not(c) => walk(c, out),
            Condition::Contacts(q) => walk(&q.condition, out),
            Condition::Affinity(a) => out.extend(a.topic.clone()),
            _ => {}
        }
    }
    let mut out = Vec::new();
    defs.iter().for_each(|d| walk(&d.condition, &mut out));
    out.sort();
    out.dedup();
    out
}

/// A library in which every topic text and content id of `defs` resolves
/// (to a placeholder vector), to check definitions where no content or
/// model is at hand (offline validation); never to judge with.
pub fn placeholder_library(defs: &[SegmentDefinition]) -> ContentLibrary {
    fn walk(c: &Condition, lib: &mut ContentLibrary) {
        match c {
            Condition::All(cs) | Condition::Any(cs) => cs.iter().for_each(|c| walk(c, lib)),
            Condition::Not(c) => walk(c, lib),
            Condition::Contacts(q) => walk(&q.condition, lib),
            Condition::Affinity(a) => {
                // A unit vector cannot be refused.
                let unit = [1.0f32];
                if let Some(t) = &a.topic {
                    let _ = lib.insert_topic(t, &unit);
                }
                if let Some(id) = &a.content {
                    let _ = lib.insert_content(id, None, &unit);
                }
            }
            _ => {}
        }
    }
    let mut lib = ContentLibrary::default();
    defs.iter().for_each(|d| walk(&d.condition, &mut lib));
    lib
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Two items (one reachable by its URL) and a topic, 3 dimensions.
    pub(crate) fn lib() -> ContentLibrary {
        let mut l = ContentLibrary::default();
        l.insert_content(
            "warehouse",
            Some("https://x.io/blog/warehouse/"),
            &[1.0, 0.0, 0.0],
        )
        .unwrap();
        l.insert_content("pricing", None, &[0.0, 2.0, 0.0]).unwrap();
        l.insert_topic("data", &[1.0, 0.0, 0.0]).unwrap();
        l
    }

    #[test]
    fn paths_normalise() {
        for (input, want) in [
            ("https://x.io/Pricing/?a=1#top", "/Pricing"),
            ("/pricing", "/pricing"),
            ("pricing/", "/pricing"),
            ("https://x.io", "/"),
            ("", "/"),
        ] {
            assert_eq!(normalize_path(input), want, "{input}");
        }
    }

    #[test]
    fn library_checks_dimensions_and_normalises() {
        let mut l = lib();
        assert_eq!(l.content("pricing").unwrap().vector, vec![0.0, 1.0, 0.0]);
        assert_eq!(
            l.insert_content("x", None, &[1.0, 0.0]),
            Err(LibraryError::Dimensions { got: 2, want: 3 })
        );
        assert_eq!(
            l.insert_content("x", None, &[0.0, 0.0, 0.0]),
            Err(LibraryError::Degenerate)
        );
        assert_eq!(
            l.insert_topic("nan", &[f32::NAN, 0.0, 0.0]),
            Err(LibraryError::Degenerate)
        );
        // The URL alias reaches the same item.
        assert_eq!(l.get(url_key("/blog/warehouse")).unwrap().id, "warehouse");
    }

    #[test]
    fn rank_orders_candidates_and_reports_unknown_ids() {
        let l = lib();
        let cands = vec!["pricing".to_string(), "nope".into(), "warehouse".into()];
        let (ranked, unknown) = l.rank(&[0.9, 0.1, 0.0], &cands);
        assert_eq!(ranked[0].0, "warehouse");
        assert_eq!(ranked[1].0, "pricing");
        assert_eq!(unknown, vec!["nope"]);
        let (all, _) = l.rank(&[0.0, 1.0, 0.0], &[]);
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].0, "pricing");
    }

    #[test]
    fn the_digest_follows_what_judging_reads_not_the_order() {
        let a = lib();
        let mut b = ContentLibrary::default();
        b.insert_content("pricing", None, &[0.0, 2.0, 0.0]).unwrap();
        b.insert_content(
            "warehouse",
            Some("https://x.io/blog/warehouse/"),
            &[1.0, 0.0, 0.0],
        )
        .unwrap();
        b.insert_topic("data", &[1.0, 0.0, 0.0]).unwrap();
        assert_eq!(a.digest(), b.digest(), "registration order does not matter");
        let mut c = b.clone();
        c.insert_content("new", None, &[0.0, 0.0, 1.0]).unwrap();
        assert_ne!(c.digest(), b.digest(), "new content");
        let mut d = b.clone();
        d.insert_content("pricing", None, &[0.0, 1.0, 1.0]).unwrap();
        assert_ne!(
            d.digest(),
            b.digest(),
            "content registered again with another text"
        );
        let mut e = b.clone();
        e.insert_topic("data", &[0.0, 1.0, 0.0]).unwrap();
        assert_ne!(e.digest(), b.digest(), "a topic's vector");
    }
}
