//! Content matching in the core: the tenant's content library (embedding
//! vectors of registered content and of topic texts) and each contact's
//! compact interest profile.
//!
//! The profile keeps no vector of its own: it keeps decayed weights over at
//! most [`MAX_INTEREST_ITEMS`] content keys (the content it clicked and the
//! pages it viewed). Its interest vector is the weighted sum of those items'
//! embeddings, looked up in the library when a condition is judged. So:
//! - content and page texts are embedded once, at registration, never per
//!   recipient; the state of a contact is ~16 x 12 bytes, not 384 floats;
//! - a click on content registered later counts once it is registered (the
//!   registration rebuilds state from the log);
//! - explain can name the content behind an affinity.
//!
//! Decay: an engagement at event time `ts` weighs `w * 2^(-(at - ts) / H)`
//! as of the profile's latest engagement `at`, with half-life `H` =
//! [`INTEREST_HALF_LIFE`]. Affinity is a cosine, which no common factor
//! changes, so it moves only when an engagement arrives (or the library
//! changes): older interests count less than newer ones, and no timer is
//! needed. Weights are updated in log order, so a replay reproduces them
//! bit for bit.

use crate::definition::{Condition, SegmentDefinition};
use crate::event::{Event, EventKind, stable_hash};
use crate::time::{DAY, Millis};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// How fast an engagement's weight halves.
pub const INTEREST_HALF_LIFE: Millis = 30 * DAY;
/// Distinct content keys a profile keeps; the lightest is dropped past it.
pub const MAX_INTEREST_ITEMS: usize = 16;
/// A click on content (or on a link to a registered page).
pub const CLICK_WEIGHT: f32 = 1.0;
/// A page view: a weaker signal of interest than a click.
pub const PAGE_WEIGHT: f32 = 0.5;

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

/// What an event says about a contact's interests: the registered item it
/// engaged with (its key) and how much that weighs. A click counts for its
/// `content_id` if registered, else for its `url` if that is a registered
/// page; a page view for its `path` (or `url`). Engagement with anything the
/// library does not know is not kept: registering content rebuilds state
/// from the log, so earlier engagement with it counts from then on, and
/// unknown pages never crowd registered content out of the bounded profile.
pub fn interest_of(e: &Event, lib: &ContentLibrary) -> Option<(u64, f32)> {
    let prop = |name: &str| -> Option<String> {
        match e.properties.get(name)? {
            serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    let known = |key: u64| lib.get(key).map(|item| item.key);
    match e.kind {
        EventKind::Click { .. } => prop("content_id")
            .and_then(|id| known(content_key(&id)))
            .or_else(|| prop("url").and_then(|u| known(url_key(&u))))
            .map(|k| (k, CLICK_WEIGHT)),
        EventKind::Page { .. } => prop("path")
            .and_then(|p| known(url_key(&p)))
            .or_else(|| prop("url").and_then(|u| known(url_key(&u))))
            .map(|k| (k, PAGE_WEIGHT)),
        _ => None,
    }
}

/// A contact's interest profile: decayed weights over content keys.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Interest {
    /// `(content key, weight as of at)`.
    pub items: Vec<(u64, f32)>,
    /// Event time of the latest engagement (the weights' reference).
    pub at: Millis,
}

impl Interest {
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Records an engagement with `key` at event time `ts`.
    pub fn add(&mut self, key: u64, weight: f32, ts: Millis) {
        let w = if self.items.is_empty() {
            self.at = ts;
            weight
        } else if ts > self.at {
            let f = decay(ts - self.at);
            self.items.iter_mut().for_each(|(_, x)| *x *= f);
            self.at = ts;
            weight
        } else {
            weight * decay(self.at - ts)
        };
        match self.items.iter_mut().find(|(k, _)| *k == key) {
            Some((_, x)) => *x += w,
            None => self.items.push((key, w)),
        }
        if self.items.len() > MAX_INTEREST_ITEMS {
            // The lightest goes (ties: the larger key, so replays agree).
            if let Some(i) = self
                .items
                .iter()
                .enumerate()
                .min_by(|(_, a), (_, b)| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
                .map(|(i, _)| i)
            {
                self.items.swap_remove(i);
            }
        }
    }

    /// The interest vector (unnormalised) over the items the library knows,
    /// or `None` when it knows none of them.
    pub fn vector(&self, lib: &ContentLibrary) -> Option<Vec<f32>> {
        let mut out: Option<Vec<f32>> = None;
        for (key, w) in &self.items {
            let Some(item) = lib.get(*key) else { continue };
            let acc = out.get_or_insert_with(|| vec![0.0; item.vector.len()]);
            if acc.len() != item.vector.len() {
                continue;
            }
            acc.iter_mut()
                .zip(item.vector.iter())
                .for_each(|(a, v)| *a += w * v);
        }
        out.filter(|v| norm(v) > 0.0)
    }

    /// Cosine of the interest vector with a unit `target`; `None` when the
    /// profile has nothing the library knows.
    pub fn affinity(&self, lib: &ContentLibrary, target: &[f32]) -> Option<f32> {
        let v = self.vector(lib)?;
        Some(cosine_unit(&v, target))
    }

    /// The known items behind the profile, heaviest first: `(content id,
    /// share of the total weight, cosine with target)`.
    pub fn contributions(&self, lib: &ContentLibrary, target: &[f32]) -> Vec<(String, f32, f32)> {
        let known: Vec<(&LibraryItem, f32)> = self
            .items
            .iter()
            .filter_map(|(k, w)| Some((lib.get(*k)?, *w)))
            .collect();
        let total: f32 = known.iter().map(|(_, w)| w).sum();
        let mut out: Vec<(String, f32, f32)> = known
            .into_iter()
            .map(|(item, w)| {
                let share = if total > 0.0 { w / total } else { 0.0 };
                (item.id.clone(), share, dot(&item.vector, target))
            })
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        out
    }
}

fn decay(elapsed: Millis) -> f32 {
    (-(elapsed as f64) / INTEREST_HALF_LIFE as f64).exp2() as f32
}

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn norm(v: &[f32]) -> f32 {
    dot(v, v).sqrt()
}

/// Cosine of `v` with an already unit-norm `unit`.
fn cosine_unit(v: &[f32], unit: &[f32]) -> f32 {
    let n = norm(v);
    if n > 0.0 { dot(v, unit) / n } else { 0.0 }
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
        Ok(())
    }

    /// Adds the embedding of a topic text named by a definition.
    pub fn insert_topic(&mut self, text: &str, vector: &[f32]) -> Result<(), LibraryError> {
        let vector = self.unit(vector)?;
        self.topics.insert(text.to_string(), vector.into());
        Ok(())
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
mod tests {
    use super::*;

    fn lib() -> ContentLibrary {
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
    fn newer_engagement_outweighs_older_by_the_half_life() {
        let l = lib();
        let mut p = Interest::default();
        p.add(content_key("warehouse"), 1.0, 0);
        p.add(content_key("pricing"), 1.0, INTEREST_HALF_LIFE);
        // warehouse now weighs 0.5, pricing 1: cosine with warehouse = 0.5/sqrt(1.25).
        let a = p.affinity(&l, &[1.0, 0.0, 0.0]).unwrap();
        assert!((a - 0.5 / 1.25f32.sqrt()).abs() < 1e-6, "{a}");
        // The same engagements in the other arrival order give the same weights.
        let mut q = Interest::default();
        q.add(content_key("pricing"), 1.0, INTEREST_HALF_LIFE);
        q.add(content_key("warehouse"), 1.0, 0);
        assert_eq!(p.items.len(), q.items.len());
        let b = q.affinity(&l, &[1.0, 0.0, 0.0]).unwrap();
        assert!((a - b).abs() < 1e-6);
        let c = p.contributions(&l, &[1.0, 0.0, 0.0]);
        assert_eq!(c[0].0, "pricing");
        assert!((c[0].1 - 2.0 / 3.0).abs() < 1e-6 && c[1].2 == 1.0, "{c:?}");
    }

    #[test]
    fn keys_the_library_lacks_add_nothing_until_registered() {
        let mut p = Interest::default();
        p.add(content_key("later"), 1.0, 10);
        let mut l = lib();
        assert_eq!(p.affinity(&l, &[1.0, 0.0, 0.0]), None);
        l.insert_content("later", None, &[0.0, 0.0, 1.0]).unwrap();
        assert_eq!(p.affinity(&l, &[0.0, 0.0, 1.0]), Some(1.0));
    }

    #[test]
    fn events_name_registered_items_by_id_or_url() {
        use crate::event::{Limits, parse_message};
        let l = lib();
        let ev =
            |v: serde_json::Value| parse_message(&v, i64::MAX / 2, &Limits::default()).unwrap();
        let click = |props: serde_json::Value| {
            ev(
                serde_json::json!({"type":"track","messageId":"m","userId":"u",
                "event":"Email Link Clicked","timestamp":"2026-01-01T00:00:00Z","properties":props}),
            )
        };
        let page = |path: &str| {
            ev(
                serde_json::json!({"type":"page","messageId":"m","userId":"u",
                "timestamp":"2026-01-01T00:00:00Z","properties":{"path":path}}),
            )
        };
        let w = content_key("warehouse");
        // An unregistered content_id falls back to a registered URL.
        assert_eq!(
            interest_of(
                &click(
                    serde_json::json!({"email_id":"e","content_id":"email-7","url":"https://x.io/blog/warehouse"})
                ),
                &l
            ),
            Some((w, CLICK_WEIGHT))
        );
        assert_eq!(
            interest_of(
                &click(serde_json::json!({"email_id":"e","content_id":"pricing"})),
                &l
            ),
            Some((content_key("pricing"), CLICK_WEIGHT))
        );
        assert_eq!(
            interest_of(
                &click(serde_json::json!({"email_id":"e","content_id":7})),
                &l
            ),
            None
        );
        assert_eq!(
            interest_of(&page("/blog/warehouse/"), &l),
            Some((w, PAGE_WEIGHT))
        );
        assert_eq!(
            interest_of(&page("/careers"), &l),
            None,
            "unknown pages are not kept"
        );
        let mut numeric = ContentLibrary::default();
        numeric.insert_content("7", None, &[1.0]).unwrap();
        assert_eq!(
            interest_of(
                &click(serde_json::json!({"email_id":"e","content_id":7})),
                &numeric
            ),
            Some((content_key("7"), CLICK_WEIGHT)),
            "numeric ids are read as text"
        );
    }

    #[test]
    fn profile_is_bounded_and_drops_the_lightest() {
        let mut p = Interest::default();
        for i in 0..(MAX_INTEREST_ITEMS as i64 + 4) {
            p.add(i as u64, 1.0, i * DAY);
        }
        assert_eq!(p.items.len(), MAX_INTEREST_ITEMS);
        // The four oldest (lightest) went.
        assert!(p.items.iter().all(|(k, _)| *k >= 4), "{:?}", p.items);
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
}
