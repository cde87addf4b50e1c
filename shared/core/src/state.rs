//! Compact per-contact and per-account state, shaped by a `SegmentSet`.
//!
//! A contact keeps, per matcher, the sorted timestamps still inside the
//! longest window any condition looks at (`Series`), its last few sends with
//! the first open/click/reply of each, the traits definitions read, and when
//! it was suppressed. Everything else about an event is dropped once applied:
//! the event log is the source of truth and state is rebuilt from it when
//! the definitions change.

use crate::compile::{
    FEAT_INTEREST, FEAT_SCORES, FEAT_SENDS, FEAT_SUPPRESS, SegmentSet, account_trait_bit,
    contact_trait_bit, filter_matches, matcher_bit,
};
use crate::content::{Interest, interest_of};
use crate::event::{Event, EventKind};
use crate::features::{AccountSignals, FeatureState};
use crate::scores::ContactScores;
use crate::time::Millis;
use crate::value::TraitValue;
use serde::{Deserialize, Serialize};

/// "No instant": sorts after every real instant.
pub const NEVER: Millis = Millis::MAX;

/// Sorted timestamps of one matcher, pruned to its horizon.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Series {
    pub ts: Vec<Millis>,
    /// Earliest matching event ever (kept after pruning, for first_event).
    pub first: Option<Millis>,
    /// Latest pruned timestamp (kept for recency after pruning).
    pub pruned_last: Option<Millis>,
}

impl Series {
    pub fn insert(&mut self, t: Millis) {
        let at = self.ts.partition_point(|x| *x <= t);
        self.ts.insert(at, t);
        self.first = Some(self.first.map_or(t, |f| f.min(t)));
    }

    /// Drops timestamps at or before `cutoff`; they can no longer be in any window.
    pub fn prune(&mut self, cutoff: Millis) {
        let n = self.ts.partition_point(|x| *x <= cutoff);
        if n > 0 {
            self.pruned_last = Some(self.ts[n - 1].max(self.pruned_last.unwrap_or(Millis::MIN)));
            self.ts.drain(..n);
            shrink(&mut self.ts);
        }
    }

    /// Number of timestamps in `(lo, hi]`.
    pub fn count_in(&self, lo: Millis, hi: Millis) -> usize {
        let a = self.ts.partition_point(|x| *x <= lo);
        let b = self.ts.partition_point(|x| *x <= hi);
        b.saturating_sub(a)
    }

    /// Timestamps in `(lo, hi]`, most recent first.
    pub fn in_range(&self, lo: Millis, hi: Millis) -> impl Iterator<Item = Millis> + '_ {
        let a = self.ts.partition_point(|x| *x <= lo);
        let b = self.ts.partition_point(|x| *x <= hi);
        self.ts[a..b.max(a)].iter().rev().copied()
    }

    pub fn last_at_or_before(&self, t: Millis) -> Option<Millis> {
        let b = self.ts.partition_point(|x| *x <= t);
        if b > 0 {
            Some(self.ts[b - 1])
        } else {
            self.pruned_last.filter(|p| *p <= t)
        }
    }

    /// Smallest `ts + offset > t` over all timestamps, for each offset: the
    /// next instant a window with that edge changes.
    pub fn next_crossing(&self, t: Millis, offsets: &[Millis]) -> Millis {
        offsets
            .iter()
            .filter_map(|o| {
                let i = self.ts.partition_point(|x| x.saturating_add(*o) <= t);
                self.ts.get(i).map(|x| x.saturating_add(*o))
            })
            .min()
            .unwrap_or(NEVER)
    }
}

/// Gives back capacity a pruned vector no longer needs (state is kept for
/// many contacts; doubling growth would otherwise stay resident).
fn shrink<T>(v: &mut Vec<T>) {
    if v.capacity() > 2 * v.len() + 4 {
        v.shrink_to(v.len() + v.len() / 4);
    }
}

/// One send and the first engagement with it (NEVER when none yet).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SendRecord {
    pub email: u64,
    pub ts: Millis,
    pub open: Millis,
    pub click: Millis,
    pub reply: Millis,
}

/// An open/click/reply whose send has not arrived yet.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Orphan {
    pub email: u64,
    pub kind: u8,
    pub ts: Millis,
}

/// At most this many orphan engagements wait for their send per contact.
pub const MAX_ORPHANS: usize = 8;

/// Segment membership bits, indexed by segment position in the set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bits {
    pub low: u64,
    pub high: Vec<u64>,
}

impl Bits {
    pub fn get(&self, i: usize) -> bool {
        if i < 64 {
            self.low >> i & 1 == 1
        } else {
            self.high
                .get(i / 64 - 1)
                .is_some_and(|w| w >> (i % 64) & 1 == 1)
        }
    }
    pub fn set(&mut self, i: usize, on: bool) {
        let word = if i < 64 {
            &mut self.low
        } else {
            let k = i / 64 - 1;
            if self.high.len() <= k {
                self.high.resize(k + 1, 0);
            }
            &mut self.high[k]
        };
        if on {
            *word |= 1 << (i % 64)
        } else {
            *word &= !(1 << (i % 64))
        }
    }
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        (0..64 * (1 + self.high.len())).filter(|i| self.get(*i))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContactState {
    pub id: Box<str>,
    pub traits: Vec<Option<TraitValue>>,
    pub series: Vec<Series>,
    pub sends: Vec<SendRecord>,
    pub orphans: Vec<Orphan>,
    pub suppressed_at: Millis,
    pub member: Bits,
    /// Next instant one of its segments may change by time alone.
    pub due: Millis,
    /// Content it engaged with, kept only when a definition reads it.
    pub interest: Interest,
    /// Its current propensity scores, kept only when a definition reads them.
    pub scores: Option<Box<ContactScores>>,
    /// What the propensity models read, kept with the scores: the live
    /// scorer computes feature rows from it (`crate::features`).
    pub features: Option<Box<FeatureState>>,
}

impl ContactState {
    pub fn new(id: &str, set: &SegmentSet) -> Self {
        ContactState {
            id: id.into(),
            traits: vec![None; set.contact_traits.len()],
            series: vec![Series::default(); set.contact_matchers.len()],
            sends: Vec::new(),
            orphans: Vec::new(),
            suppressed_at: NEVER,
            member: Bits::default(),
            due: NEVER,
            interest: Interest::default(),
            scores: None,
            features: None,
        }
    }

    /// Applies an event of this contact; returns the contact features it changed.
    pub fn apply(&mut self, set: &SegmentSet, e: &Event) -> u64 {
        let mut changed = 0;
        for (m, f) in set.contact_matchers.iter().enumerate() {
            if filter_matches(f, e) {
                self.series[m].insert(e.ts);
                changed |= matcher_bit(m);
            }
        }
        match &e.kind {
            EventKind::Send { email } if set.max_sends > 0 => {
                add_send(&mut self.sends, &mut self.orphans, *email, e.ts);
                changed |= FEAT_SENDS;
            }
            EventKind::Open { email } if set.max_sends > 0 => {
                changed |= self.engage(*email, 0, e.ts)
            }
            EventKind::Click { email } if set.max_sends > 0 => {
                changed |= self.engage(*email, 1, e.ts)
            }
            EventKind::Reply { email } if set.max_sends > 0 => {
                changed |= self.engage(*email, 2, e.ts)
            }
            EventKind::Identify => {
                changed |= set_traits(&mut self.traits, &set.contact_traits, e, contact_trait_bit)
            }
            _ => {}
        }
        if set.tracks_scores {
            match &e.kind {
                EventKind::Scored(s) => {
                    if self.scores.get_or_insert_default().apply(e.ts, s) {
                        changed |= FEAT_SCORES;
                    }
                }
                _ => self.features.get_or_insert_default().apply(e),
            }
        }
        if set.tracks_interest
            && let Some((key, weight)) = interest_of(e)
        {
            self.interest.add(key, weight, e.ts);
            changed |= FEAT_INTEREST;
        }
        if e.kind.suppresses() && e.ts < self.suppressed_at {
            self.suppressed_at = e.ts;
            changed |= FEAT_SUPPRESS;
        }
        changed
    }

    fn engage(&mut self, email: u64, kind: u8, ts: Millis) -> u64 {
        if engage(&mut self.sends, &mut self.orphans, email, kind, ts) {
            FEAT_SENDS
        } else {
            0
        }
    }

    /// Drops what no condition can look at again from instant `now` on.
    pub fn prune(&mut self, set: &SegmentSet, now: Millis) {
        for (s, h) in self.series.iter_mut().zip(&set.contact_horizon) {
            s.prune(now.saturating_sub(*h));
        }
        if let Some(f) = &mut self.features {
            f.prune(now);
        }
        if let Some(s) = &mut self.scores {
            s.prune(now);
        }
        let settled = self.sends.partition_point(|s| s.ts <= now);
        if settled > set.max_sends {
            self.sends.drain(..settled - set.max_sends);
            shrink(&mut self.sends);
        }
    }

    pub fn suppressed(&self, t: Millis) -> bool {
        self.suppressed_at <= t
    }
}

/// Records a send. A repeated delivery of the same email id is the same
/// send (earliest time kept). A repeat of a send already pruned (older than
/// the last N) counts as a new send: the only case where history is too short.
pub(crate) fn add_send(
    sends: &mut Vec<SendRecord>,
    orphans: &mut Vec<Orphan>,
    email: u64,
    ts: Millis,
) {
    if let Some(i) = sends.iter().position(|s| s.email == email) {
        if ts < sends[i].ts {
            let mut rec = sends.remove(i);
            rec.ts = ts;
            let at = sends.partition_point(|s| s.ts <= ts);
            sends.insert(at, rec);
        }
        return;
    }
    let mut rec = SendRecord {
        email,
        ts,
        open: NEVER,
        click: NEVER,
        reply: NEVER,
    };
    orphans.retain(|o| {
        if o.email != email {
            return true;
        }
        let slot = match o.kind {
            0 => &mut rec.open,
            1 => &mut rec.click,
            _ => &mut rec.reply,
        };
        *slot = (*slot).min(o.ts);
        false
    });
    let at = sends.partition_point(|s| s.ts <= ts);
    sends.insert(at, rec);
}

/// Records the open (kind 0), click (1) or reply (2) of a send; one whose
/// send has not arrived waits as an orphan. Returns whether a send changed.
pub(crate) fn engage(
    sends: &mut [SendRecord],
    orphans: &mut Vec<Orphan>,
    email: u64,
    kind: u8,
    ts: Millis,
) -> bool {
    if let Some(s) = sends.iter_mut().rev().find(|s| s.email == email) {
        let slot = match kind {
            0 => &mut s.open,
            1 => &mut s.click,
            _ => &mut s.reply,
        };
        if ts < *slot {
            *slot = ts;
            return true;
        }
        return false;
    }
    if orphans.len() >= MAX_ORPHANS {
        // Drop the oldest: an engagement whose send is this late is the least likely to matter.
        if let Some(i) = orphans
            .iter()
            .enumerate()
            .min_by_key(|(_, o)| o.ts)
            .map(|(i, _)| i)
        {
            orphans.swap_remove(i);
        }
    }
    orphans.push(Orphan { email, kind, ts });
    false
}

/// The account's own part of the state: traits and account-wide series.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccountCore {
    pub id: Box<str>,
    pub traits: Vec<Option<TraitValue>>,
    pub series: Vec<Series>,
    pub member: Bits,
    pub due: Millis,
    /// Account-wide model features, kept when a definition reads scores.
    pub signals: Option<Box<AccountSignals>>,
}

impl AccountCore {
    pub fn new(id: &str, set: &SegmentSet) -> Self {
        AccountCore {
            id: id.into(),
            traits: vec![None; set.account_traits.len()],
            series: vec![Series::default(); set.account_matchers.len()],
            member: Bits::default(),
            due: NEVER,
            signals: None,
        }
    }

    /// Applies any event routed to the account; returns account features changed.
    pub fn apply(&mut self, set: &SegmentSet, e: &Event) -> u64 {
        let mut changed = 0;
        for (m, f) in set.account_matchers.iter().enumerate() {
            if filter_matches(f, e) {
                self.series[m].insert(e.ts);
                changed |= matcher_bit(m);
            }
        }
        if matches!(e.kind, EventKind::Group) {
            changed |= set_traits(&mut self.traits, &set.account_traits, e, account_trait_bit);
        }
        if set.tracks_scores && !matches!(e.kind, EventKind::Scored(_)) {
            self.signals.get_or_insert_default().apply(e);
        }
        changed
    }

    pub fn prune(&mut self, set: &SegmentSet, now: Millis) {
        for (s, h) in self.series.iter_mut().zip(&set.account_horizon) {
            s.prune(now.saturating_sub(*h));
        }
        if let Some(s) = &mut self.signals {
            s.prune(now);
        }
    }
}

fn set_traits(
    slots: &mut [Option<TraitValue>],
    names: &[String],
    e: &Event,
    bit: fn(usize) -> u64,
) -> u64 {
    let mut changed = 0;
    for (i, name) in names.iter().enumerate() {
        if let Some(v) = e.traits.get(name) {
            let new = TraitValue::from_json(v);
            if slots[i] != new {
                slots[i] = new;
                changed |= bit(i);
            }
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_windows_and_crossings() {
        let mut s = Series::default();
        for t in [50, 10, 30] {
            s.insert(t);
        }
        assert_eq!(s.ts, vec![10, 30, 50]);
        assert_eq!(s.count_in(10, 50), 2);
        assert_eq!(s.next_crossing(40, &[0, 100]), 50);
        assert_eq!(s.next_crossing(60, &[0, 100]), 110);
        s.prune(30);
        assert_eq!(
            (s.ts.clone(), s.first, s.pruned_last),
            (vec![50], Some(10), Some(30))
        );
        assert_eq!(s.last_at_or_before(40), Some(30));
    }

    #[test]
    fn bits_grow_past_64() {
        let mut b = Bits::default();
        b.set(3, true);
        b.set(130, true);
        assert!(b.get(3) && b.get(130) && !b.get(64));
        assert_eq!(b.iter().collect::<Vec<_>>(), vec![3, 130]);
        b.set(130, false);
        assert!(!b.get(130));
    }
}
