//! Judging conditions on compact state at an instant, finding the next
//! instant a judgement can change by time alone, and explaining it.
//!
//! `next_*` functions return the smallest instant > t at which an input of
//! the condition changes (an event enters or leaves a window). They may
//! return an instant where membership turns out unchanged (the caller just
//! re-judges and asks again) but never skip one where it changes: that is
//! what makes time-driven exits exact.

use crate::compile::{Cond, Scope, SegmentSet};
use crate::definition::{Entity, Quantifier, TraitOp, TraitTest};
use crate::state::{AccountCore, ContactState, NEVER, Series};
use crate::time::Millis;
use crate::value::TraitValue;
use std::cmp::Ordering;

/// What a judgement may read: the set, the account, and its contacts.
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    pub set: &'a SegmentSet,
    pub account: &'a AccountCore,
    pub contacts: &'a [ContactState],
}

/// Is the entity a member of segment `seg` at instant `t`?
pub fn member(x: &Ctx, seg: usize, contact: Option<&ContactState>, t: Millis) -> bool {
    let s = &x.set.segments[seg];
    match (s.def.entity, contact) {
        (Entity::Contact, Some(c)) => match s.cond {
            Cond::Suppressed => c.suppressed(t),
            _ => !c.suppressed(t) && holds(&s.cond, x, Some(c), t),
        },
        (Entity::Contact, None) => false,
        (Entity::Account, _) => holds(&s.cond, x, None, t),
    }
}

/// Next instant > t at which the membership inputs of `seg` change by time alone.
pub fn next_change(x: &Ctx, seg: usize, contact: Option<&ContactState>, t: Millis) -> Millis {
    let s = &x.set.segments[seg];
    match (s.def.entity, contact) {
        (Entity::Contact, Some(c)) => {
            let sup = if c.suppressed_at > t {
                c.suppressed_at
            } else {
                NEVER
            };
            match s.cond {
                Cond::Suppressed => sup,
                _ => sup.min(next(&s.cond, x, Some(c), t)),
            }
        }
        (Entity::Contact, None) => NEVER,
        (Entity::Account, _) => next(&s.cond, x, None, t),
    }
}

/// The next instant after `t` at which membership actually flips by time
/// alone, searching at most `max_steps` candidate instants.
pub fn next_flip(
    x: &Ctx,
    seg: usize,
    contact: Option<&ContactState>,
    t: Millis,
    max_steps: usize,
) -> Option<Millis> {
    let now = member(x, seg, contact, t);
    let mut at = t;
    for _ in 0..max_steps {
        let n = next_change(x, seg, contact, at);
        if n == NEVER {
            return None;
        }
        if member(x, seg, contact, n) != now {
            return Some(n);
        }
        at = n;
    }
    None
}

pub(crate) fn series<'a>(
    x: &'a Ctx,
    contact: Option<&'a ContactState>,
    scope: Scope,
    m: usize,
) -> Option<&'a Series> {
    match scope {
        Scope::Contact => contact.and_then(|c| c.series.get(m)),
        Scope::Account => x.account.series.get(m),
    }
}

pub(crate) fn holds(c: &Cond, x: &Ctx, contact: Option<&ContactState>, t: Millis) -> bool {
    match c {
        Cond::All(cs) => cs.iter().all(|c| holds(c, x, contact, t)),
        Cond::Any(cs) => cs.iter().any(|c| holds(c, x, contact, t)),
        Cond::Not(c) => !holds(c, x, contact, t),
        Cond::ContactTrait { idx, test } => {
            trait_test(contact.and_then(|c| c.traits.get(*idx)?.as_ref()), test)
        }
        Cond::AccountTrait { idx, test } => {
            trait_test(x.account.traits.get(*idx).and_then(Option::as_ref), test)
        }
        Cond::Count {
            scope,
            m,
            within,
            at_least,
            at_most,
        } => {
            let n = series(x, contact, *scope, *m).map_or(0, |s| s.count_in(t - within, t));
            n >= *at_least as usize && at_most.is_none_or(|m| n <= m as usize)
        }
        Cond::Recency {
            scope,
            m,
            newer_than,
            older_than,
            or_never,
        } => {
            let last = series(x, contact, *scope, *m).and_then(|s| s.last_at_or_before(t));
            match (newer_than, older_than, last) {
                (Some(d), _, Some(l)) => l > t - d,
                (Some(_), _, None) => false,
                (None, Some(d), Some(l)) => l <= t - d,
                (None, _, None) => *or_never,
                (None, None, Some(_)) => false,
            }
        }
        Cond::First {
            scope,
            m,
            older_than,
        } => series(x, contact, *scope, *m)
            .and_then(|s| s.first)
            .is_some_and(|f| f <= t - older_than),
        Cond::LastSends {
            n,
            at_least,
            open,
            click,
            reply,
        } => contact.is_some_and(|c| {
            engaged_sends(c, *n, (*open, *click, *reply), t).0 >= *at_least as usize
        }),
        Cond::Contacts {
            quantifier,
            count,
            inner,
        } => {
            let n = x
                .contacts
                .iter()
                .filter(|c| holds(inner, x, Some(c), t))
                .count();
            match quantifier {
                Quantifier::Any => n >= 1,
                Quantifier::All => n > 0 && n == x.contacts.len(),
                Quantifier::AtLeast => n >= *count as usize,
            }
        }
        Cond::Rate {
            scope,
            m,
            recent,
            prior,
            min_prior,
            max_ratio,
            min_ratio,
        } => {
            let Some(s) = series(x, contact, *scope, *m) else {
                return false;
            };
            let r = s.count_in(t - recent, t) as f64;
            let p = s.count_in(t - recent - prior, t - recent) as f64;
            let (recent, prior) = (*recent as f64, *prior as f64);
            p >= f64::from(*min_prior)
                && max_ratio.is_none_or(|k| r * prior <= k * p * recent)
                && min_ratio.is_none_or(|k| r * prior >= k * p * recent)
        }
        Cond::InSegment(j) => match x.set.segments[*j].def.entity {
            Entity::Account => member(x, *j, None, t),
            Entity::Contact => member(x, *j, contact, t),
        },
        Cond::Suppressed => contact.is_some_and(|c| c.suppressed(t)),
        Cond::Score {
            target,
            at_least,
            at_most,
            min_percentile,
        } => contact
            .and_then(|c| c.scores.as_ref()?.get(*target, t))
            .is_some_and(|s| {
                (*at_least..=*at_most).contains(&s.scored.probability)
                    && min_percentile.is_none_or(|m| s.scored.percentile.is_some_and(|p| p > m))
            }),
        Cond::Affinity {
            target, at_least, ..
        } => contact
            .and_then(|c| c.interest.affinity(&x.set.content, target))
            .is_some_and(|a| a >= *at_least),
    }
}

/// Of the contact's last `n` sends at or before `t`: how many were engaged
/// with (by `t`), and the sends looked at, most recent first.
pub fn engaged_sends(
    c: &ContactState,
    n: usize,
    kinds: (bool, bool, bool),
    t: Millis,
) -> (usize, Vec<(Millis, bool)>) {
    let settled = c.sends.partition_point(|s| s.ts <= t);
    let window = &c.sends[settled.saturating_sub(n)..settled];
    let looked: Vec<(Millis, bool)> = window
        .iter()
        .rev()
        .map(|s| {
            let engaged =
                (kinds.0 && s.open <= t) || (kinds.1 && s.click <= t) || (kinds.2 && s.reply <= t);
            (s.ts, engaged)
        })
        .collect();
    (looked.iter().filter(|(_, e)| *e).count(), looked)
}

fn next(c: &Cond, x: &Ctx, contact: Option<&ContactState>, t: Millis) -> Millis {
    let crossing = |scope: Scope, m: usize, offsets: &[Millis]| {
        series(x, contact, scope, m).map_or(NEVER, |s| s.next_crossing(t, offsets))
    };
    match c {
        Cond::All(cs) | Cond::Any(cs) => cs
            .iter()
            .map(|c| next(c, x, contact, t))
            .min()
            .unwrap_or(NEVER),
        Cond::Not(c) => next(c, x, contact, t),
        Cond::ContactTrait { .. } | Cond::AccountTrait { .. } => NEVER,
        Cond::Count {
            scope, m, within, ..
        } => crossing(*scope, *m, &[0, *within]),
        Cond::Recency {
            scope,
            m,
            newer_than,
            older_than,
            ..
        } => crossing(*scope, *m, &[0, newer_than.or(*older_than).unwrap_or(0)]),
        Cond::First {
            scope,
            m,
            older_than,
        } => series(x, contact, *scope, *m)
            .and_then(|s| s.first)
            .map(|f| f + older_than)
            .filter(|at| *at > t)
            .unwrap_or(NEVER),
        Cond::LastSends {
            open, click, reply, ..
        } => contact.map_or(NEVER, |c| {
            c.sends
                .iter()
                .flat_map(|s| {
                    let e = |on: bool, at: Millis| if on { at } else { NEVER };
                    [
                        s.ts,
                        e(*open, s.open),
                        e(*click, s.click),
                        e(*reply, s.reply),
                    ]
                })
                .filter(|at| *at > t && *at != NEVER)
                .min()
                .unwrap_or(NEVER)
        }),
        Cond::Contacts { inner, .. } => x
            .contacts
            .iter()
            .map(|c| next(inner, x, Some(c), t))
            .min()
            .unwrap_or(NEVER),
        Cond::Rate {
            scope,
            m,
            recent,
            prior,
            ..
        } => crossing(*scope, *m, &[0, *recent, recent + prior]),
        Cond::InSegment(j) => match x.set.segments[*j].def.entity {
            Entity::Account => next_change(x, *j, None, t),
            Entity::Contact => next_change(x, *j, contact, t),
        },
        Cond::Suppressed => contact.map_or(NEVER, |c| {
            if c.suppressed_at > t {
                c.suppressed_at
            } else {
                NEVER
            }
        }),
        // A cosine is unchanged by the common decay factor: only events move it.
        Cond::Affinity { .. } => NEVER,
        // A score stamped after `t` takes effect at its own instant.
        Cond::Score { target, .. } => contact
            .and_then(|c| c.scores.as_ref()?.next_after(*target, t))
            .unwrap_or(NEVER),
    }
}

/// A comparison of a trait (or property) value with a definition's literal.
pub fn trait_test(v: Option<&TraitValue>, test: &TraitTest) -> bool {
    let lit = test.value.as_ref();
    let cmp = |want: fn(Ordering) -> bool| match (v, lit) {
        (Some(v), Some(l)) => v.compare(l).is_some_and(want),
        _ => false,
    };
    match test.op {
        TraitOp::Eq => matches!((v, lit), (Some(v), Some(l)) if v.equals(l)),
        TraitOp::Ne => !matches!((v, lit), (Some(v), Some(l)) if v.equals(l)),
        TraitOp::In => match (v, lit) {
            (Some(v), Some(serde_json::Value::Array(items))) => items.iter().any(|l| v.equals(l)),
            _ => false,
        },
        TraitOp::Gt => cmp(|o| o == Ordering::Greater),
        TraitOp::Gte => cmp(|o| o != Ordering::Less),
        TraitOp::Lt => cmp(|o| o == Ordering::Less),
        TraitOp::Lte => cmp(|o| o != Ordering::Greater),
        TraitOp::Between => match (v, lit) {
            (Some(v), Some(serde_json::Value::Array(b))) if b.len() == 2 => {
                v.compare(&b[0]).is_some_and(|o| o != Ordering::Less)
                    && v.compare(&b[1]).is_some_and(|o| o != Ordering::Greater)
            }
            _ => false,
        },
        TraitOp::Exists => v.is_some(),
        TraitOp::NotExists => v.is_none(),
        TraitOp::Prefix => match (v, lit) {
            (Some(TraitValue::Str(s)), Some(serde_json::Value::String(p))) => {
                s.starts_with(p.as_str())
            }
            _ => false,
        },
    }
}

pub use crate::explain::{ExplainNode, explain};
