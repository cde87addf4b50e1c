//! A brute-force reference: judges definitions straight from the raw event
//! list, with none of the compact state, pruning, dependency masks or timers
//! of the incremental engine. Property tests require the two to agree.

use crate::compile::filter_matches;
use crate::content::{ContentLibrary, INTEREST_HALF_LIFE, interest_of};
use crate::definition::*;
use crate::engine::{Directory, Membership};
use crate::event::{Event, EventKind};
use crate::time::Millis;
use crate::value::TraitValue;
use std::collections::{BTreeMap, BTreeSet, HashMap};

struct World<'a> {
    defs: HashMap<&'a str, &'a SegmentDefinition>,
    library: &'a ContentLibrary,
    /// Events of each contact (log order), wherever they were routed.
    by_contact: BTreeMap<String, Vec<&'a Event>>,
    /// Events routed to each account (log order).
    by_account: BTreeMap<String, Vec<&'a Event>>,
    /// Where each contact lives after all events.
    home: BTreeMap<String, String>,
}

/// Memberships at `t` of every entity, given events in log (application) order.
pub fn memberships(
    defs: &[SegmentDefinition],
    events: &[Event],
    t: Millis,
) -> BTreeSet<Membership> {
    memberships_with(defs, &ContentLibrary::default(), events, t)
}

/// Memberships at `t` with affinity judged against `library`.
pub fn memberships_with(
    defs: &[SegmentDefinition],
    library: &ContentLibrary,
    events: &[Event],
    t: Millis,
) -> BTreeSet<Membership> {
    let mut dir = Directory::default();
    let mut w = World {
        library,
        defs: defs.iter().map(|d| (d.key.as_str(), d)).collect(),
        by_contact: BTreeMap::new(),
        by_account: BTreeMap::new(),
        home: BTreeMap::new(),
    };
    for e in events {
        let route = dir.route(e);
        w.by_account
            .entry(route.account.clone())
            .or_default()
            .push(e);
        if let Some(u) = &e.user_id {
            w.by_contact.entry(u.clone()).or_default().push(e);
            w.home.insert(u.clone(), route.account.clone());
        }
    }
    let mut out = BTreeSet::new();
    for (u, a) in &w.home {
        if suppressed(&w, u, t) {
            out.insert(Membership {
                segment: crate::compile::SUPPRESSED_KEY.into(),
                entity: "contact",
                id: u.clone(),
                account: a.clone(),
            });
        }
        for d in defs.iter().filter(|d| d.entity == Entity::Contact) {
            if contact_member(&w, d, u, a, t) {
                out.insert(Membership {
                    segment: d.key.clone(),
                    entity: "contact",
                    id: u.clone(),
                    account: a.clone(),
                });
            }
        }
    }
    for a in w.by_account.keys() {
        for d in defs.iter().filter(|d| d.entity == Entity::Account) {
            if cond(&w, &d.condition, None, a, t, true) {
                out.insert(Membership {
                    segment: d.key.clone(),
                    entity: "account",
                    id: a.clone(),
                    account: a.clone(),
                });
            }
        }
    }
    out
}

fn suppressed(w: &World, u: &str, t: Millis) -> bool {
    w.by_contact
        .get(u)
        .is_some_and(|es| es.iter().any(|e| e.ts <= t && e.kind.suppresses()))
}

fn contact_member(w: &World, d: &SegmentDefinition, u: &str, a: &str, t: Millis) -> bool {
    !suppressed(w, u, t) && cond(w, &d.condition, Some(u), a, t, false)
}

fn traits_of(events: &[&Event], kind_group: bool, name: &str) -> Option<TraitValue> {
    let mut v = None;
    for e in events {
        let right_kind = if kind_group {
            matches!(e.kind, EventKind::Group)
        } else {
            matches!(e.kind, EventKind::Identify)
        };
        if let Some(x) = e.traits.get(name).filter(|_| right_kind) {
            v = TraitValue::from_json(x);
        }
    }
    v
}

fn count(events: &[&Event], f: &EventFilter, lo: Millis, hi: Millis) -> usize {
    events
        .iter()
        .filter(|e| e.ts > lo && e.ts <= hi && filter_matches(f, e))
        .count()
}

fn cond(w: &World, c: &Condition, u: Option<&str>, a: &str, t: Millis, account_ctx: bool) -> bool {
    let empty = Vec::new();
    let contact_events = u.and_then(|u| w.by_contact.get(u)).unwrap_or(&empty);
    let account_events = w.by_account.get(a).unwrap_or(&empty);
    let own = if account_ctx {
        account_events
    } else {
        contact_events
    };
    match c {
        Condition::All(cs) => cs.iter().all(|c| cond(w, c, u, a, t, account_ctx)),
        Condition::Any(cs) => cs.iter().any(|c| cond(w, c, u, a, t, account_ctx)),
        Condition::Not(c) => !cond(w, c, u, a, t, account_ctx),
        Condition::Trait(tt) => {
            crate::eval::trait_test(traits_of(contact_events, false, &tt.name).as_ref(), tt)
        }
        Condition::AccountTrait(tt) => {
            crate::eval::trait_test(traits_of(account_events, true, &tt.name).as_ref(), tt)
        }
        Condition::Events(ec) | Condition::AccountEvents(ec) => {
            let evs = if matches!(c, Condition::AccountEvents(_)) {
                account_events
            } else {
                own
            };
            let n = count(evs, &ec.event, t - ec.within.millis(), t);
            let lo = ec
                .at_least
                .unwrap_or(if ec.at_most.is_some() { 0 } else { 1 }) as usize;
            n >= lo && ec.at_most.is_none_or(|m| n <= m as usize)
        }
        Condition::Recency(r) => {
            let last = own
                .iter()
                .filter(|e| e.ts <= t && filter_matches(&r.event, e))
                .map(|e| e.ts)
                .max();
            match (r.newer_than, r.older_than, last) {
                (Some(d), _, Some(l)) => l > t - d.millis(),
                (None, Some(d), Some(l)) => l <= t - d.millis(),
                (None, _, None) => r.or_never,
                _ => false,
            }
        }
        Condition::FirstEvent(f) => own
            .iter()
            .filter(|e| filter_matches(&f.event, e))
            .map(|e| e.ts)
            .min()
            .is_some_and(|m| m <= t - f.older_than.millis()),
        Condition::LastSends(ls) => {
            let mut sends: Vec<(Millis, u64)> = contact_events
                .iter()
                .filter_map(|e| match e.kind {
                    EventKind::Send { email } if e.ts <= t => Some((e.ts, email)),
                    _ => None,
                })
                .collect();
            // One send per email id, at its earliest delivery.
            sends.sort_by_key(|s| s.0);
            let mut seen = std::collections::HashSet::new();
            sends.retain(|s| seen.insert(s.1));
            let last = &sends[sends.len().saturating_sub(ls.n as usize)..];
            let engaged = last
                .iter()
                .filter(|(_, email)| {
                    contact_events.iter().any(|e| {
                        e.ts <= t
                            && match e.kind {
                                EventKind::Open { email: m } => {
                                    m == *email && ls.engaged.contains(&SendEngagement::Open)
                                }
                                EventKind::Click { email: m } => {
                                    m == *email && ls.engaged.contains(&SendEngagement::Click)
                                }
                                EventKind::Reply { email: m } => {
                                    m == *email && ls.engaged.contains(&SendEngagement::Reply)
                                }
                                _ => false,
                            }
                    })
                })
                .count();
            engaged >= ls.at_least as usize
        }
        Condition::Contacts(q) => {
            let members: Vec<&String> = w
                .home
                .iter()
                .filter(|(_, h)| h.as_str() == a)
                .map(|(u, _)| u)
                .collect();
            let n = members
                .iter()
                .filter(|m| cond(w, &q.condition, Some(m.as_str()), a, t, false))
                .count();
            match q.quantifier {
                Quantifier::Any => n >= 1,
                Quantifier::All => n > 0 && n == members.len(),
                Quantifier::AtLeast => n >= q.count.unwrap_or(1) as usize,
            }
        }
        Condition::RateChange(r) => {
            let (rc, pr) = (r.recent.millis(), r.prior.millis());
            let recent = count(own, &r.event, t - rc, t) as f64;
            let prior = count(own, &r.event, t - rc - pr, t - rc) as f64;
            prior >= f64::from(r.min_prior)
                && r.max_ratio
                    .is_none_or(|k| recent * pr as f64 <= k * prior * rc as f64)
                && r.min_ratio
                    .is_none_or(|k| recent * pr as f64 >= k * prior * rc as f64)
        }
        Condition::InSegment(key) => {
            if key == crate::compile::SUPPRESSED_KEY {
                return u.is_some_and(|u| suppressed(w, u, t));
            }
            match w.defs.get(key.as_str()) {
                Some(d) if d.entity == Entity::Account => cond(w, &d.condition, None, a, t, true),
                Some(d) => u.is_some_and(|u| contact_member(w, d, u, a, t)),
                None => false,
            }
        }
        Condition::Score(s) => {
            let Ok(target) = crate::labels::Target::parse(&s.target) else {
                return false;
            };
            let scores =
                contact_events
                    .iter()
                    .filter(|e| e.ts <= t)
                    .filter_map(|e| match &e.kind {
                        crate::event::EventKind::Scored(sc) => Some((e.ts, &**sc)),
                        _ => None,
                    });
            crate::scores::current(scores, target).is_some_and(|cur| {
                let p = f64::from(cur.scored.probability);
                let pct = cur.scored.percentile;
                s.at_least.is_none_or(|lo| p >= f64::from(lo as f32))
                    && s.at_most.is_none_or(|hi| p <= f64::from(hi as f32))
                    && s.top_percent
                        .is_none_or(|top| pct.is_some_and(|x| x > (100.0 - top) as f32))
            })
        }
        Condition::Affinity(af) => {
            let target = match (&af.topic, &af.content) {
                (Some(text), _) => w.library.topic(text).map(|v| v.to_vec()),
                (None, Some(id)) => w.library.content(id).map(|i| i.vector.clone()),
                _ => None,
            };
            target
                .and_then(|tv| affinity(w.library, contact_events, &tv, t))
                .is_some_and(|v| v >= af.at_least)
        }
    }
}

/// Affinity straight from the definition of the profile: every engagement
/// at or before `t` on known content, weighted by `2^(-(latest - ts) / H)`,
/// summed in f64, cosine with `target`. Unlike the engine's profile it keeps
/// every item, so it agrees only while a contact's engagements name at most
/// `MAX_INTEREST_ITEMS` distinct keys, registered or not, and while an
/// unregistered content id that falls back to its link always came with
/// the same link (the profile keeps the newest link per id).
pub fn affinity(lib: &ContentLibrary, events: &[&Event], target: &[f32], t: Millis) -> Option<f64> {
    let seen: Vec<(&[f32], f64, Millis)> = events
        .iter()
        .filter(|e| e.ts <= t)
        .filter_map(|e| {
            let (key, w) = interest_of(e)?;
            Some((key.resolve(lib)?.vector.as_slice(), f64::from(w), e.ts))
        })
        .collect();
    let latest = seen.iter().map(|s| s.2).max()?;
    let mut sum = vec![0.0f64; target.len()];
    for (v, w, ts) in &seen {
        let w = w * (-((latest - ts) as f64) / INTEREST_HALF_LIFE as f64).exp2();
        sum.iter_mut()
            .zip(v.iter())
            .for_each(|(s, x)| *s += w * f64::from(*x));
    }
    let n = sum.iter().map(|x| x * x).sum::<f64>().sqrt();
    let tn = target
        .iter()
        .map(|x| f64::from(*x).powi(2))
        .sum::<f64>()
        .sqrt();
    if n == 0.0 || tn == 0.0 {
        return None;
    }
    let d: f64 = sum.iter().zip(target).map(|(s, x)| s * f64::from(*x)).sum();
    Some(d / (n * tn))
}
