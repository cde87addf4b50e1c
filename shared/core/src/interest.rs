//! A contact's compact interest profile: decayed weights over the content
//! it clicked and the pages it viewed, turned into an interest vector by the
//! tenant's content library when a condition is judged.
//!
//! The profile keeps no vector of its own and **does not depend on the
//! library**: it keeps every engagement that names content (a content id, a
//! link or a page path), registered or not, and only the vector looks the
//! keys up. So:
//! - content and page texts are embedded once, at registration, never per
//!   recipient; a profile is at most [`MAX_INTEREST_ITEMS`] x 24 bytes;
//! - registering content changes no state: engagement that came before the
//!   registration counts from the moment it is registered, and the node
//!   judges the tenant's segments again on its current state instead of
//!   replaying its log;
//! - explain can name the content behind an affinity.
//!
//! The price of keeping unregistered keys is that they share the bounded
//! profile with registered ones: the lightest (oldest, least engaged) key
//! goes first, registered or not. A contact who views more than
//! [`MAX_INTEREST_ITEMS`] distinct unregistered pages within a few weeks
//! loses its oldest clicks (a click 30 days old weighs what a fresh page
//! view does).
//!
//! Decay: an engagement at event time `ts` weighs `w * 2^(-(at - ts) / H)`
//! as of the profile's latest engagement `at`, with half-life `H` =
//! [`INTEREST_HALF_LIFE`]. Affinity is a cosine, which no common factor
//! changes, so it moves only when an engagement arrives (or the library
//! changes): older interests count less than newer ones, and no timer is
//! needed. Weights are updated in log order, so a replay reproduces them
//! bit for bit.

use crate::content::{ContentLibrary, LibraryItem, content_key, cosine_unit, dot, norm, url_key};
use crate::event::{Event, EventKind};
use crate::time::{DAY, Millis};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// How fast an engagement's weight halves.
pub const INTEREST_HALF_LIFE: Millis = 30 * DAY;
/// Distinct engagement keys a profile keeps; the lightest is dropped past it.
pub const MAX_INTEREST_ITEMS: usize = 24;
/// A click on content (or on a link to a registered page).
pub const CLICK_WEIGHT: f32 = 1.0;
/// A page view: a weaker signal of interest than a click.
pub const PAGE_WEIGHT: f32 = 0.5;

/// What one engagement names: the library key it is looked up by, and a
/// second key tried when the library does not know the first (a click's
/// link when its `content_id` is not registered; a page view's URL when its
/// path is not). `alt` is 0 when there is no second key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterestKey {
    pub key: u64,
    pub alt: u64,
}

impl InterestKey {
    /// One key, no fallback.
    pub fn single(key: u64) -> Self {
        Self { key, alt: 0 }
    }

    /// The registered item this engagement counts for, if any.
    pub fn resolve<'a>(&self, lib: &'a ContentLibrary) -> Option<&'a LibraryItem> {
        lib.get(self.key)
            .or_else(|| (self.alt != 0).then(|| lib.get(self.alt)).flatten())
    }
}

/// The content an event names, as library keys: a send's `content_id`; a
/// click's `content_id`, with its `url` as the fallback key; a page view's
/// `path`, with its `url` as the fallback. Whether the library knows the
/// content is decided later, when a vector is built, so state is the same
/// whatever was registered when the event arrived. Computed once per event
/// at parse time (`Event::content`).
pub fn content_named(kind: &EventKind, properties: &Map<String, Value>) -> Option<InterestKey> {
    // Borrowed: this runs for every send, click and page view ingested.
    let prop = |name: &str| -> Option<std::borrow::Cow<'_, str>> {
        match properties.get(name)? {
            Value::String(s) if !s.trim().is_empty() => Some(s.as_str().into()),
            Value::Number(n) => Some(n.to_string().into()),
            _ => None,
        }
    };
    let (first, second) = match kind {
        EventKind::Send { .. } => (prop("content_id").map(|id| content_key(&id)), None),
        EventKind::Click { .. } => (
            prop("content_id").map(|id| content_key(&id)),
            prop("url").map(|u| url_key(&u)),
        ),
        EventKind::Page { .. } => (
            prop("path").map(|p| url_key(&p)),
            prop("url").map(|u| url_key(&u)),
        ),
        _ => return None,
    };
    match (first, second) {
        (Some(k), Some(alt)) if alt != k => Some(InterestKey { key: k, alt }),
        (Some(k), _) | (None, Some(k)) => Some(InterestKey::single(k)),
        (None, None) => None,
    }
}

/// What an event says about a contact's interests: the content it names
/// (`Event::content`) and how much that weighs. Clicks and page views count;
/// a send is not an engagement.
pub fn interest_of(e: &Event) -> Option<(InterestKey, f32)> {
    let weight = match e.kind {
        EventKind::Click { .. } => CLICK_WEIGHT,
        EventKind::Page { .. } => PAGE_WEIGHT,
        _ => return None,
    };
    Some((e.content?, weight))
}

/// One kept engagement key with its weight as of the profile's `at`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct InterestItem {
    pub key: InterestKey,
    pub weight: f32,
}

/// A contact's interest profile: decayed weights over engagement keys.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Interest {
    pub items: Vec<InterestItem>,
    /// Event time of the latest engagement (the weights' reference).
    pub at: Millis,
}

impl Interest {
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Records an engagement with `key` at event time `ts`. Engagements
    /// with the same primary key share one slot, whatever their fallback:
    /// the slot keeps the fallback of the newest engagement that had one.
    pub fn add(&mut self, key: InterestKey, weight: f32, ts: Millis) {
        let newest = self.items.is_empty() || ts >= self.at;
        let w = if self.items.is_empty() {
            self.at = ts;
            weight
        } else if ts > self.at {
            let f = decay(ts - self.at);
            self.items.iter_mut().for_each(|i| i.weight *= f);
            self.at = ts;
            weight
        } else {
            weight * decay(self.at - ts)
        };
        match self.items.iter_mut().find(|i| i.key.key == key.key) {
            Some(i) => {
                i.weight += w;
                if newest && key.alt != 0 {
                    i.key.alt = key.alt;
                }
            }
            None => self.items.push(InterestItem { key, weight: w }),
        }
        if self.items.len() > MAX_INTEREST_ITEMS {
            // The lightest goes (ties: the larger key, so replays agree).
            if let Some(i) = self
                .items
                .iter()
                .enumerate()
                .min_by(|(_, a), (_, b)| {
                    a.weight
                        .total_cmp(&b.weight)
                        .then(b.key.key.cmp(&a.key.key))
                })
                .map(|(i, _)| i)
            {
                self.items.swap_remove(i);
            }
        }
    }

    /// The kept engagements the library knows, with their weights.
    fn known<'a>(&self, lib: &'a ContentLibrary) -> impl Iterator<Item = (&'a LibraryItem, f32)> {
        self.items
            .iter()
            .filter_map(|i| Some((i.key.resolve(lib)?, i.weight)))
    }

    /// The interest vector (unnormalised) over the items the library knows,
    /// or `None` when it knows none of them.
    pub fn vector(&self, lib: &ContentLibrary) -> Option<Vec<f32>> {
        let mut out: Option<Vec<f32>> = None;
        for (item, w) in self.known(lib) {
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
    /// share of the known weight, cosine with target)`. Engagements that
    /// reached one item by different keys (its id, its URL) count together.
    pub fn contributions(&self, lib: &ContentLibrary, target: &[f32]) -> Vec<(String, f32, f32)> {
        let mut by_id: BTreeMap<&str, (f32, f32)> = BTreeMap::new();
        for (item, w) in self.known(lib) {
            by_id
                .entry(item.id.as_str())
                .or_insert((0.0, dot(&item.vector, target)))
                .0 += w;
        }
        let total: f32 = by_id.values().map(|(w, _)| w).sum();
        let mut out: Vec<(String, f32, f32)> = by_id
            .into_iter()
            .map(|(id, (w, sim))| {
                let share = if total > 0.0 { w / total } else { 0.0 };
                (id.to_string(), share, sim)
            })
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        out
    }
}

/// The weight left after `elapsed` at half-life `INTEREST_HALF_LIFE`.
pub(crate) fn decay(elapsed: Millis) -> f32 {
    (-(elapsed as f64) / INTEREST_HALF_LIFE as f64).exp2() as f32
}

#[cfg(test)]
#[path = "interest_tests.rs"]
mod tests;
