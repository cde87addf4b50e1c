//! `Builder`: one definition's condition tree into a compiled `Cond`, its
//! dependency masks, and the matchers and traits the set's state must keep.

use super::*;

pub(super) struct Builder<'a> {
    pub(super) set: &'a mut SegmentSet,
    pub(super) errors: &'a mut Vec<ValidationError>,
    pub(super) key: &'a str,
}

impl Builder<'_> {
    /// `account_ctx`: judged for an account (not inside a contacts quantifier).
    pub(super) fn cond_in(&mut self, c: &Condition, path: &str, account_ctx: bool) -> (Cond, Deps) {
        let mut deps = Deps::default();
        let cond = match c {
            Condition::All(cs) | Condition::Any(cs) => {
                let mut out = Vec::new();
                for (i, child) in cs.iter().enumerate() {
                    let (cc, d) = self.cond_in(child, &format!("{path}[{i}]"), account_ctx);
                    deps = deps.union(d);
                    out.push(cc);
                }
                if matches!(c, Condition::All(_)) {
                    Cond::All(out)
                } else {
                    Cond::Any(out)
                }
            }
            Condition::Not(child) => {
                let (cc, d) = self.cond_in(child, path, account_ctx);
                deps = d;
                Cond::Not(Box::new(cc))
            }
            Condition::Trait(t) => {
                let idx = intern(&mut self.set.contact_traits, &t.name);
                deps.contact = contact_trait_bit(idx);
                Cond::ContactTrait {
                    idx,
                    test: t.clone(),
                }
            }
            Condition::AccountTrait(t) => {
                let idx = intern(&mut self.set.account_traits, &t.name);
                deps.account = account_trait_bit(idx);
                Cond::AccountTrait {
                    idx,
                    test: t.clone(),
                }
            }
            Condition::Events(ec) | Condition::AccountEvents(ec) => {
                let scope = if account_ctx || matches!(c, Condition::AccountEvents(_)) {
                    Scope::Account
                } else {
                    Scope::Contact
                };
                let m = self.matcher(scope, &ec.event, ec.within.millis());
                deps = scope_dep(scope, m);
                let at_least = ec
                    .at_least
                    .unwrap_or(if ec.at_most.is_some() { 0 } else { 1 });
                Cond::Count {
                    scope,
                    m,
                    within: ec.within.millis(),
                    at_least,
                    at_most: ec.at_most,
                }
            }
            Condition::Recency(r) => {
                let scope = if account_ctx {
                    Scope::Account
                } else {
                    Scope::Contact
                };
                let horizon = r
                    .newer_than
                    .or(r.older_than)
                    .map(|s| s.millis())
                    .unwrap_or(0);
                let m = self.matcher(scope, &r.event, horizon);
                deps = scope_dep(scope, m);
                Cond::Recency {
                    scope,
                    m,
                    newer_than: r.newer_than.map(|s| s.millis()),
                    older_than: r.older_than.map(|s| s.millis()),
                    or_never: r.or_never,
                }
            }
            Condition::FirstEvent(f) => {
                let scope = if account_ctx {
                    Scope::Account
                } else {
                    Scope::Contact
                };
                let m = self.matcher(scope, &f.event, 0);
                deps = scope_dep(scope, m);
                Cond::First {
                    scope,
                    m,
                    older_than: f.older_than.millis(),
                }
            }
            Condition::LastSends(ls) => {
                self.set.max_sends = self.set.max_sends.max(ls.n as usize);
                deps.contact = FEAT_SENDS;
                let has = |e| ls.engaged.contains(&e);
                Cond::LastSends {
                    n: ls.n as usize,
                    at_least: ls.at_least,
                    open: has(SendEngagement::Open),
                    click: has(SendEngagement::Click),
                    reply: has(SendEngagement::Reply),
                }
            }
            Condition::Contacts(q) => {
                let (inner, d) = self.cond_in(&q.condition, &format!("{path}.contacts"), false);
                // Any contact's change of what the inner condition reads can change the quantifier.
                deps = Deps {
                    contact: 0,
                    account: d.account | FEAT_CONTACT_SET,
                    any_contact: d.contact | d.any_contact,
                };
                let count = match q.quantifier {
                    Quantifier::AtLeast => q.count.unwrap_or(1),
                    _ => 1,
                };
                Cond::Contacts {
                    quantifier: q.quantifier,
                    count,
                    inner: Box::new(inner),
                }
            }
            Condition::RateChange(r) => {
                let scope = if account_ctx {
                    Scope::Account
                } else {
                    Scope::Contact
                };
                let m = self.matcher(scope, &r.event, r.recent.millis() + r.prior.millis());
                deps = scope_dep(scope, m);
                Cond::Rate {
                    scope,
                    m,
                    recent: r.recent.millis(),
                    prior: r.prior.millis(),
                    min_prior: r.min_prior,
                    max_ratio: r.max_ratio,
                    min_ratio: r.min_ratio,
                }
            }
            Condition::InSegment(k) => match self.set.index_of(k) {
                Some(j) => {
                    let target = &self.set.segments[j];
                    let target_entity = target.def.entity;
                    if account_ctx && target_entity == Entity::Contact {
                        self.errors.push(ValidationError::new(
                            format!("{}.{path}", self.key),
                            "an account condition cannot name a contact segment",
                        ));
                    }
                    let d = target.deps;
                    deps = if target_entity == Entity::Account && !account_ctx {
                        // A contact judged on its account's membership: the account's inputs, and any contact's.
                        Deps {
                            contact: 0,
                            account: d.account,
                            any_contact: d.any_contact,
                        }
                    } else {
                        d
                    };
                    Cond::InSegment(j)
                }
                None => {
                    self.errors.push(ValidationError::new(
                        format!("{}.{path}", self.key),
                        format!("unknown segment '{k}'"),
                    ));
                    Cond::Any(vec![])
                }
            },
            Condition::Score(s) => {
                self.set.tracks_scores = true;
                deps.contact = FEAT_SCORES;
                match crate::labels::Target::parse(&s.target) {
                    Ok(target) => Cond::Score {
                        target: {
                            if !self.set.score_targets.contains(&target) {
                                self.set.score_targets.push(target);
                                self.set.score_targets.sort();
                            }
                            target
                        },
                        at_least: s.at_least.map_or(f32::NEG_INFINITY, |v| v as f32),
                        at_most: s.at_most.map_or(f32::INFINITY, |v| v as f32),
                        min_percentile: s.top_percent.map(|p| (100.0 - p) as f32),
                    },
                    Err(e) => {
                        self.errors.push(ValidationError::new(
                            format!("{}.{path}.score.target", self.key),
                            e,
                        ));
                        Cond::Any(vec![])
                    }
                }
            }
            Condition::Affinity(a) => {
                self.set.tracks_interest = true;
                deps.contact = FEAT_INTEREST;
                let (target, label) = match (&a.topic, &a.content) {
                    (Some(t), _) => (self.set.content.topic(t), format!("topic {t:?}")),
                    (None, Some(c)) => (
                        self.set.content.content(c).map(|i| i.vector.clone().into()),
                        format!("content {c}"),
                    ),
                    (None, None) => (None, String::new()),
                };
                match target {
                    Some(target) => Cond::Affinity {
                        target,
                        label,
                        at_least: a.at_least as f32,
                    },
                    None => {
                        let reason = match &a.content {
                            Some(c) if a.topic.is_none() => format!(
                                "content '{c}' is not registered (register it first: liveseg content add)"
                            ),
                            _ => "the topic text has not been embedded (the node embeds topics when a definition is applied; it needs a model)".to_string(),
                        };
                        self.errors.push(ValidationError::new(
                            format!("{}.{path}.affinity", self.key),
                            reason,
                        ));
                        Cond::Any(vec![])
                    }
                }
            }
        };
        (cond, deps)
    }

    fn matcher(&mut self, scope: Scope, f: &EventFilter, horizon: Millis) -> usize {
        let (list, horizons) = match scope {
            Scope::Contact => (
                &mut self.set.contact_matchers,
                &mut self.set.contact_horizon,
            ),
            Scope::Account => (
                &mut self.set.account_matchers,
                &mut self.set.account_horizon,
            ),
        };
        match list.iter().position(|g| g == f) {
            Some(i) => {
                horizons[i] = horizons[i].max(horizon);
                i
            }
            None => {
                list.push(f.clone());
                horizons.push(horizon);
                list.len() - 1
            }
        }
    }
}

fn scope_dep(scope: Scope, m: usize) -> Deps {
    match scope {
        Scope::Contact => Deps {
            contact: matcher_bit(m),
            ..Deps::default()
        },
        Scope::Account => Deps {
            account: matcher_bit(m),
            ..Deps::default()
        },
    }
}

fn intern(list: &mut Vec<String>, name: &str) -> usize {
    match list.iter().position(|n| n == name) {
        Some(i) => i,
        None => {
            list.push(name.to_string());
            list.len() - 1
        }
    }
}
