//! `Account`: the live state of one account and its contacts, as a plain
//! state machine. The node's account actor is a thin shell around it; the
//! replay engine drives it directly.
//!
//! Invariants:
//! - `now` never goes backwards; every judgement happens at an instant >= the
//!   last prune, so pruned history can never be needed again;
//! - each entity (contact or the account) has one timer, at the next instant
//!   one of its segments may change by time alone (`due`), kept in `timers`;
//! - changes are emitted in order, numbered by `change_seq`.

use crate::compile::{Deps, SegmentSet};
use crate::definition::Entity;
use crate::eval::{self, Ctx, ExplainNode};
use crate::event::{Event, EventKind};
use crate::state::{AccountCore, ContactState, NEVER};
use crate::time::Millis;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};

/// Timer slot of the account entity itself.
const ACCOUNT_SLOT: u32 = u32::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeKind {
    Enter,
    Exit,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Enter => "enter",
            ChangeKind::Exit => "exit",
        }
    }
}

/// Why a membership changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cause {
    /// An event (its messageId).
    Event(String),
    /// A window expired or an event's time came: a time-driven change.
    Time,
    /// The contact moved to another account.
    Move,
    /// The segment's definition changed.
    Redefined,
}

impl Cause {
    pub fn describe(&self) -> String {
        match self {
            Cause::Event(id) => format!("event:{id}"),
            Cause::Time => "time".into(),
            Cause::Move => "move".into(),
            Cause::Redefined => "definition".into(),
        }
    }
}

/// One enter/exit record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub instant: Millis,
    pub segment: String,
    pub entity: Entity,
    pub id: String,
    pub account: String,
    pub kind: ChangeKind,
    pub cause: Cause,
    /// Position in this account's change sequence (1-based).
    pub seq: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Account {
    pub core: AccountCore,
    pub contacts: Vec<ContactState>,
    pub now: Millis,
    pub change_seq: u64,
    #[serde(skip)]
    index: HashMap<Box<str>, u32>,
    #[serde(skip)]
    timers: BTreeSet<(Millis, u32)>,
}

impl Account {
    pub fn new(id: &str, set: &SegmentSet) -> Self {
        Account {
            core: AccountCore::new(id, set),
            contacts: Vec::new(),
            now: Millis::MIN,
            change_seq: 0,
            index: HashMap::new(),
            timers: BTreeSet::new(),
        }
    }

    /// Rebuilds the derived indexes after deserialising a checkpoint.
    pub fn restore(mut self) -> Self {
        self.index = self
            .contacts
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id.clone(), i as u32))
            .collect();
        self.timers = self
            .contacts
            .iter()
            .enumerate()
            .filter(|(_, c)| c.due != NEVER)
            .map(|(i, c)| (c.due, i as u32))
            .collect();
        if self.core.due != NEVER {
            self.timers.insert((self.core.due, ACCOUNT_SLOT));
        }
        self
    }

    pub fn id(&self) -> &str {
        &self.core.id
    }

    pub fn contact(&self, id: &str) -> Option<&ContactState> {
        self.index.get(id).map(|i| &self.contacts[*i as usize])
    }

    /// The earliest pending timer, if any.
    pub fn next_timer(&self) -> Option<Millis> {
        self.timers.first().map(|(t, _)| *t)
    }

    /// Applies one event routed to this account at processing instant `now`
    /// (event time is in the event). Emits every membership change.
    ///
    /// `arriving` is the state of the event's contact when the event moves it
    /// here from another account: it is judged once, with the event applied.
    pub fn apply(
        &mut self,
        set: &SegmentSet,
        e: &Event,
        arriving: Option<ContactState>,
        now: Millis,
        out: &mut Vec<Change>,
    ) {
        let now = now.max(self.now);
        // Timers strictly before `now` first: they judge a past instant.
        self.fire_timers(set, now - 1, out);
        self.now = now;
        let cause = Cause::Event(e.message_id.clone());
        let mut account_changed = self.core.apply(set, e);
        let mut slot = None;
        let mut contact_changed = 0;
        if let EventKind::Alias { previous_id } = &e.kind
            && self.rename_contact(set, previous_id, e.user_id.as_deref(), &cause, out)
        {
            contact_changed = u64::MAX;
        }
        if let Some(c) = arriving {
            if let Some(old) = self.index.get(c.id.as_ref()).copied() {
                // Cannot happen while the directory is consistent; keep the incoming state.
                self.remove_slot(old);
            }
            self.push_contact(c);
            account_changed |= crate::compile::FEAT_CONTACT_SET;
            contact_changed = u64::MAX;
        }
        if let Some(uid) = e.user_id.as_deref() {
            let s = match self.index.get(uid) {
                Some(s) => *s,
                None => {
                    // A new contact: judge all its segments, and the account's.
                    account_changed |= crate::compile::FEAT_CONTACT_SET;
                    contact_changed = u64::MAX;
                    self.push_contact(ContactState::new(uid, set))
                }
            };
            contact_changed |= self.contacts[s as usize].apply(set, e);
            slot = Some(s);
        }
        self.reevaluate(set, slot, contact_changed, account_changed, &cause, out);
        self.fire_timers(set, now, out);
        self.prune(set, slot);
    }

    /// Fires every timer due at or before `t` (in instant order), then moves `now` to `t`.
    pub fn advance_to(&mut self, set: &SegmentSet, t: Millis, out: &mut Vec<Change>) {
        self.fire_timers(set, t, out);
        if t > self.now {
            self.now = t;
            self.prune(set, None);
        }
    }

    /// Removes a contact that moves to another account: it exits all of its
    /// segments here, and the account's own segments are judged again.
    pub fn take_contact(
        &mut self,
        set: &SegmentSet,
        id: &str,
        now: Millis,
        out: &mut Vec<Change>,
    ) -> Option<ContactState> {
        let now = now.max(self.now);
        self.fire_timers(set, now - 1, out);
        self.now = now;
        let slot = *self.index.get(id)?;
        let mut c = self.remove_slot(slot);
        for seg in c.member.iter().collect::<Vec<_>>() {
            self.change_seq += 1;
            out.push(Change {
                instant: now,
                segment: set.segments[seg].def.key.clone(),
                entity: Entity::Contact,
                id: c.id.to_string(),
                account: self.core.id.to_string(),
                kind: ChangeKind::Exit,
                cause: Cause::Move,
                seq: self.change_seq,
            });
        }
        c.member = Default::default();
        c.due = NEVER;
        self.reevaluate(
            set,
            None,
            0,
            crate::compile::FEAT_CONTACT_SET,
            &Cause::Move,
            out,
        );
        Some(c)
    }

    /// Renames a contact (alias): it exits its segments under the old id and
    /// is judged again under the new one, keeping its state.
    fn rename_contact(
        &mut self,
        set: &SegmentSet,
        old: &str,
        new: Option<&str>,
        cause: &Cause,
        out: &mut Vec<Change>,
    ) -> bool {
        let Some(new) = new.filter(|n| *n != old && !self.index.contains_key(*n)) else {
            return false;
        };
        let Some(slot) = self.index.remove(old) else {
            return false;
        };
        let c = &mut self.contacts[slot as usize];
        for seg in c.member.iter().collect::<Vec<_>>() {
            self.change_seq += 1;
            out.push(Change {
                instant: self.now,
                segment: set.segments[seg].def.key.clone(),
                entity: Entity::Contact,
                id: old.to_string(),
                account: self.core.id.to_string(),
                kind: ChangeKind::Exit,
                cause: cause.clone(),
                seq: self.change_seq,
            });
        }
        c.member = Default::default();
        c.id = new.into();
        self.index.insert(new.into(), slot);
        true
    }

    fn push_contact(&mut self, c: ContactState) -> u32 {
        let slot = self.contacts.len() as u32;
        self.index.insert(c.id.clone(), slot);
        if c.due != NEVER {
            self.timers.insert((c.due, slot));
        }
        self.contacts.push(c);
        slot
    }

    fn remove_slot(&mut self, slot: u32) -> ContactState {
        let last = self.contacts.len() as u32 - 1;
        self.timers
            .remove(&(self.contacts[slot as usize].due, slot));
        if slot != last {
            self.timers
                .remove(&(self.contacts[last as usize].due, last));
        }
        let c = self.contacts.swap_remove(slot as usize);
        self.index.remove(&c.id);
        if slot != last {
            let moved = &self.contacts[slot as usize];
            self.index.insert(moved.id.clone(), slot);
            if moved.due != NEVER {
                self.timers.insert((moved.due, slot));
            }
        }
        c
    }

    /// Re-judges what the changed features can affect, at `self.now`.
    fn reevaluate(
        &mut self,
        set: &SegmentSet,
        slot: Option<u32>,
        cf: u64,
        af: u64,
        cause: &Cause,
        out: &mut Vec<Change>,
    ) {
        let affects_all = |d: &Deps| d.account & af != 0 || d.any_contact & cf != 0;
        let affects_own = |d: &Deps| d.contact & cf != 0 || affects_all(d);
        let by_all = |seg: usize| affects_all(&set.segments[seg].deps);
        let by_own = |seg: usize| affects_own(&set.segments[seg].deps);
        let account_hit = set.entity_segs(Entity::Account).iter().any(|s| by_all(*s));
        if account_hit || af & crate::compile::FEAT_CONTACT_SET != 0 {
            self.judge_entity(set, ACCOUNT_SLOT, &by_all, self.now, cause, out);
        }
        if let Some(s) = slot {
            self.judge_entity(set, s, &by_own, self.now, cause, out);
        }
        if set.entity_segs(Entity::Contact).iter().any(|s| by_all(*s)) {
            for other in 0..self.contacts.len() as u32 {
                if Some(other) != slot {
                    self.judge_entity(set, other, &by_all, self.now, cause, out);
                }
            }
        }
    }

    /// Judges the segments of one entity that `wanted` selects at `t`, emits
    /// changes, and resets its timer.
    fn judge_entity(
        &mut self,
        set: &SegmentSet,
        slot: u32,
        wanted: &dyn Fn(usize) -> bool,
        t: Millis,
        cause: &Cause,
        out: &mut Vec<Change>,
    ) {
        let entity = if slot == ACCOUNT_SLOT {
            Entity::Account
        } else {
            Entity::Contact
        };
        let x = Ctx {
            set,
            account: &self.core,
            contacts: &self.contacts,
        };
        let contact = (slot != ACCOUNT_SLOT).then(|| &self.contacts[slot as usize]);
        // A time-driven change pending at or before `t` may be in a segment
        // not `wanted`: the new timer replaces it, so judge them all.
        let pending = contact.map_or(self.core.due, |c| c.due) <= t;
        let mut flips = Vec::new();
        let mut due = NEVER;
        for &seg in set.entity_segs(entity) {
            if pending || wanted(seg) {
                let was = match contact {
                    Some(c) => c.member.get(seg),
                    None => self.core.member.get(seg),
                };
                let is = eval::member(&x, seg, contact, t);
                if was != is {
                    flips.push((seg, is));
                }
            }
            due = due.min(eval::next_change(&x, seg, contact, t));
        }
        let (member, old_due, id) = match contact {
            Some(_) => {
                let c = &mut self.contacts[slot as usize];
                (&mut c.member, std::mem::replace(&mut c.due, due), &c.id)
            }
            None => (
                &mut self.core.member,
                std::mem::replace(&mut self.core.due, due),
                &self.core.id,
            ),
        };
        for (seg, is) in flips {
            member.set(seg, is);
            self.change_seq += 1;
            out.push(Change {
                instant: t,
                segment: set.segments[seg].def.key.clone(),
                entity,
                id: id.to_string(),
                account: self.core.id.to_string(),
                kind: if is {
                    ChangeKind::Enter
                } else {
                    ChangeKind::Exit
                },
                cause: cause.clone(),
                seq: self.change_seq,
            });
        }
        if old_due != due {
            self.timers.remove(&(old_due, slot));
            if due != NEVER {
                self.timers.insert((due, slot));
            }
        }
    }

    fn fire_timers(&mut self, set: &SegmentSet, upto: Millis, out: &mut Vec<Change>) {
        while let Some(&(t, slot)) = self.timers.first() {
            if t > upto {
                break;
            }
            self.timers.pop_first();
            // Mark the timer consumed so judge_entity does not try to remove it again.
            match slot {
                ACCOUNT_SLOT => self.core.due = NEVER,
                s => self.contacts[s as usize].due = NEVER,
            }
            self.judge_entity(set, slot, &|_| true, t, &Cause::Time, out);
            if let Some(c) = self.contacts.get_mut(slot as usize) {
                c.prune(set, t);
            }
        }
    }

    /// Drops history no window can reach again, for the account and one
    /// contact (each contact is pruned when it is next touched).
    fn prune(&mut self, set: &SegmentSet, slot: Option<u32>) {
        let now = self.now;
        self.core.prune(set, now);
        if let Some(c) = slot.and_then(|s| self.contacts.get_mut(s as usize)) {
            c.prune(set, now);
        }
    }

    /// Judges every segment of every entity at `now` from scratch, emitting
    /// changes; used after loading state shaped by another set.
    pub fn rejudge_all(&mut self, set: &SegmentSet, out: &mut Vec<Change>) {
        self.judge_entity(set, ACCOUNT_SLOT, &|_| true, self.now, &Cause::Time, out);
        for s in 0..self.contacts.len() as u32 {
            self.judge_entity(set, s, &|_| true, self.now, &Cause::Time, out);
        }
    }

    /// Segment keys the contact is in now.
    pub fn contact_segments(&self, set: &SegmentSet, id: &str) -> Option<Vec<String>> {
        let c = self.contact(id)?;
        Some(
            c.member
                .iter()
                .filter_map(|i| set.segments.get(i).map(|s| s.def.key.clone()))
                .collect(),
        )
    }

    pub fn account_segments(&self, set: &SegmentSet) -> Vec<String> {
        self.core
            .member
            .iter()
            .filter_map(|i| set.segments.get(i).map(|s| s.def.key.clone()))
            .collect()
    }

    /// The model features (`crate::features`) at instant `t` of every
    /// contact not suppressed by then, for a live scorer; empty unless the
    /// set keeps features (a definition reads scores). The content-affinity
    /// features look content up in the set's library.
    pub fn feature_rows(&self, set: &SegmentSet, t: Millis) -> Vec<(String, Vec<f32>)> {
        self.contact_features(set, t)
            .map(|(c, f)| (c.id.to_string(), f))
            .collect()
    }

    /// `feature_rows` with each contact's state (lookalikes read its
    /// memberships and interest profile too).
    pub fn contact_features<'a>(
        &'a self,
        set: &'a SegmentSet,
        t: Millis,
    ) -> impl Iterator<Item = (&'a ContactState, Vec<f32>)> + 'a {
        static EMPTY: std::sync::LazyLock<crate::features::AccountSignals> =
            std::sync::LazyLock::new(Default::default);
        let signals = self.core.signals.as_deref().unwrap_or(&EMPTY);
        self.contacts
            .iter()
            .filter(move |c| !c.suppressed(t))
            .filter_map(move |c| {
                let f = c.features.as_deref()?;
                Some((
                    c,
                    crate::features::live_features_at(f, signals, &set.content, t),
                ))
            })
    }

    /// Explains `seg` for the account (contact None) or one of its contacts at instant `t`.
    pub fn explain(
        &self,
        set: &SegmentSet,
        seg: usize,
        contact: Option<&str>,
        t: Millis,
    ) -> Option<Explained> {
        let x = Ctx {
            set,
            account: &self.core,
            contacts: &self.contacts,
        };
        let c = match contact {
            Some(id) => Some(self.contact(id)?),
            None => None,
        };
        Some(Explained {
            member: eval::member(&x, seg, c, t),
            suppressed: c.is_some_and(|c| c.suppressed(t)),
            next_change: eval::next_flip(&x, seg, c, t, 10_000),
            condition: eval::explain(&x, seg, c, t),
        })
    }
}

/// The answer to "why is X in or out of S".
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Explained {
    pub member: bool,
    pub suppressed: bool,
    /// Next instant membership flips by time alone.
    pub next_change: Option<Millis>,
    pub condition: ExplainNode,
}
