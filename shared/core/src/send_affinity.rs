//! The content-affinity features of a send: how close the content a send
//! carries is to what the contact engaged with before it (the content it
//! clicked, the pages it viewed), as a cosine of embeddings from the
//! tenant's content library.
//!
//! Which content a row is for: in training, the send's own `content_id`
//! (Email Delivered carries it); live, the content of the contact's latest
//! send. A live score stands for "the next send", and the next send of a
//! campaign or sequence usually follows the last one; a caller who knows
//! the content scores a send of it by id instead (`liveseg model score
//! --for-content`, through `features::features_at`). One skew is accepted:
//! a live row may count the contact's click on that latest send itself,
//! which a training row (engagement strictly before its own send) never
//! does; a contact who clicked the last send's content likes that content,
//! which is what the feature is for. A send
//! without content, content the library does not know, or a contact with no
//! engagement the library knows gives affinity 0 with `known` 0, so the
//! model can tell "unrelated" (a cosine near 0, known 1) from "no idea".
//!
//! Why not the segment profile (`crate::interest::Interest`): that one is
//! bounded by distinct keys and updates its weights in log order, so two
//! nodes that received the same events in different orders can differ in
//! the last bits. Model features must be the same bits in training and live
//! whatever the arrival order (`tests/feature_parity.rs`), so this keeps the
//! engagements themselves (the last 90 days, at most `MAX_TIMES` clicks and
//! as many page views) and sums those of the 90 days before the scored
//! instant in one fixed order. Decay is the profile's:
//! an engagement `d` before the instant weighs `2^(-d / 30 days)`.

use crate::content::{ContentLibrary, LibraryItem, cosine_unit};
use crate::event::{Event, EventKind};
use crate::features::{HORIZON, MAX_TIMES};
use crate::interest::{InterestKey, decay, interest_of};
use crate::time::Millis;
use serde::{Deserialize, Serialize};

/// One engagement that names content.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Engaged {
    pub ts: Millis,
    pub key: InterestKey,
    pub weight: f32,
}

impl Engaged {
    /// A total order, so that engagements at one instant sit in the same
    /// order whatever order they arrived in.
    fn order(&self) -> (Millis, u64, u64, u32) {
        (self.ts, self.key.key, self.key.alt, self.weight.to_bits())
    }
}

/// A contact's engagements with content and the content of its sends.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ContentTrail {
    /// Clicks naming content, sorted by `Engaged::order`; the latest
    /// `MAX_TIMES` within the horizon.
    pub clicks: Vec<Engaged>,
    /// Page views, kept apart so that a heavy browser's views of pages the
    /// library does not know cannot push its clicks out.
    pub pages: Vec<Engaged>,
    /// `(send time, content key)` of every send, `None` for a send without
    /// content, sorted.
    pub sends: Vec<(Millis, Option<u64>)>,
}

/// The content key a send names (its `content_id`), if any.
pub fn send_content_of(e: &Event) -> Option<u64> {
    match e.kind {
        EventKind::Send { .. } => e.content.map(|c| c.key),
        _ => None,
    }
}

/// The engagements of `list` (sorted) in `[t - HORIZON, t)`.
fn in_window(list: &[Engaged], t: Millis) -> &[Engaged] {
    let from = list.partition_point(|e| e.ts < t.saturating_sub(HORIZON));
    let to = list.partition_point(|e| e.ts < t);
    &list[from..to.max(from)]
}

/// Inserts `new` in order, keeping the latest `MAX_TIMES`.
fn insert_capped(list: &mut Vec<Engaged>, new: Engaged) {
    let at = list.partition_point(|x| x.order() <= new.order());
    list.insert(at, new);
    if list.len() > MAX_TIMES {
        // The oldest goes: only the latest MAX_TIMES count (the arrival of
        // an older one when full drops that one).
        list.remove(0);
    }
}

impl ContentTrail {
    /// Applies one event of the contact (any kind; most change nothing).
    pub fn apply(&mut self, e: &Event) {
        if matches!(e.kind, EventKind::Send { .. }) {
            let entry = (e.ts, send_content_of(e));
            let at = self.sends.partition_point(|s| *s < entry);
            if self.sends.get(at) != Some(&entry) {
                self.sends.insert(at, entry);
            }
        } else if let Some((key, weight)) = interest_of(e) {
            let new = Engaged {
                ts: e.ts,
                key,
                weight,
            };
            match e.kind {
                EventKind::Page { .. } => insert_capped(&mut self.pages, new),
                _ => insert_capped(&mut self.clicks, new),
            }
        }
    }

    /// Drops what no row at an instant from `now` on can read: engagements
    /// past the horizon, and sends before the latest one before `now`.
    pub fn prune(&mut self, now: Millis) {
        for list in [&mut self.clicks, &mut self.pages] {
            let old = list.partition_point(|x| x.ts < now.saturating_sub(HORIZON));
            list.drain(..old);
        }
        let before = self.sends.partition_point(|(ts, _)| *ts < now);
        if before > 1 {
            self.sends.drain(..before - 1);
        }
    }

    /// The content of the latest send strictly before `t`, however old
    /// (`None` when that send named none; at one instant, the one with
    /// content, then the larger key, so arrival order does not matter).
    pub fn latest_send_content(&self, t: Millis) -> Option<u64> {
        let n = self.sends.partition_point(|(ts, _)| *ts < t);
        n.checked_sub(1).and_then(|i| self.sends[i].1)
    }

    /// `[affinity, known]` of `content` at instant `t`: the cosine of the
    /// decayed sum of the engagements in the horizon before `t`
    /// (`[t - HORIZON, t)`, those the library knows) with the content's
    /// vector; `[0, 0]` when either side is unknown.
    pub fn affinity(&self, lib: &ContentLibrary, t: Millis, content: Option<u64>) -> [f32; 2] {
        let Some(target) = content.and_then(|k| lib.get(k)) else {
            return [0.0, 0.0];
        };
        let dims = target.vector.len();
        // Weights per item first (a contact engages the same few items
        // again and again, by id or URL), so each vector is added once:
        // a live round computes this for every contact of a tenant.
        let mut items: Vec<(&LibraryItem, f32)> = Vec::new();
        for e in in_window(&self.clicks, t)
            .iter()
            .chain(in_window(&self.pages, t))
        {
            let Some(item) = e.key.resolve(lib) else {
                continue;
            };
            if item.vector.len() != dims {
                continue;
            }
            let w = e.weight * decay(t - e.ts);
            match items.iter_mut().find(|(i, _)| i.key == item.key) {
                Some((_, sum)) => *sum += w,
                None => items.push((item, w)),
            }
        }
        if items.is_empty() {
            return [0.0, 0.0];
        }
        let mut v = vec![0.0f32; dims];
        for (item, w) in items {
            v.iter_mut()
                .zip(item.vector.iter())
                .for_each(|(a, x)| *a += w * x);
        }
        if v.iter().all(|x| *x == 0.0) {
            return [0.0, 0.0];
        }
        [cosine_unit(&v, &target.vector), 1.0]
    }
}

#[cfg(test)]
#[path = "send_affinity_tests.rs"]
mod tests;
