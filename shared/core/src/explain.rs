//! Explanations: why a condition node holds or not, with the values and
//! the events behind them, for `Explain` and `liveseg explain`.

use crate::compile::{Cond, Scope};
use crate::definition::Quantifier;
use crate::eval::{Ctx, engaged_sends, holds, series};
use crate::state::ContactState;
use crate::time::{Millis, format_rfc3339};

/// Why a condition node holds or not, with the values and events behind it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ExplainNode {
    pub path: String,
    pub description: String,
    pub holds: bool,
    pub observed: String,
    /// Instants of the events behind the value, most recent first (at most 10).
    pub evidence: Vec<String>,
    pub children: Vec<ExplainNode>,
}

/// Explains segment `seg` for an entity at `t`.
pub fn explain(x: &Ctx, seg: usize, contact: Option<&ContactState>, t: Millis) -> ExplainNode {
    let s = &x.set.segments[seg];
    explain_cond(&s.cond, x, contact, t, "condition".into())
}

fn explain_cond(
    c: &Cond,
    x: &Ctx,
    contact: Option<&ContactState>,
    t: Millis,
    path: String,
) -> ExplainNode {
    let holds_now = holds(c, x, contact, t);
    let node =
        |description: String, observed: String, evidence: Vec<String>, children| ExplainNode {
            path: path.clone(),
            description,
            holds: holds_now,
            observed,
            evidence,
            children,
        };
    let names = |scope: Scope, m: usize| {
        let list = match scope {
            Scope::Contact => &x.set.contact_matchers,
            Scope::Account => &x.set.account_matchers,
        };
        list.get(m).map_or_else(String::new, |f| {
            serde_json::to_string(&f.kind)
                .unwrap_or_default()
                .replace('"', "")
        })
    };
    let whose = |scope: Scope| {
        if scope == Scope::Account {
            "account"
        } else {
            "contact"
        }
    };
    let evidence_in = |scope: Scope, m: usize, lo: Millis, hi: Millis| -> Vec<String> {
        series(x, contact, scope, m).map_or_else(Vec::new, |s| {
            s.in_range(lo, hi).take(10).map(format_rfc3339).collect()
        })
    };
    match c {
        Cond::All(cs) | Cond::Any(cs) => {
            let op = if matches!(c, Cond::All(_)) {
                "all"
            } else {
                "any"
            };
            let kids: Vec<ExplainNode> = cs
                .iter()
                .enumerate()
                .map(|(i, k)| explain_cond(k, x, contact, t, format!("{path}.{op}[{i}]")))
                .collect();
            let held = kids.iter().filter(|k| k.holds).count();
            node(
                format!("{op} of {} conditions", kids.len()),
                format!("{held} of {} hold", kids.len()),
                vec![],
                kids,
            )
        }
        Cond::Not(k) => {
            let kid = explain_cond(k, x, contact, t, format!("{path}.not"));
            node(
                "not".into(),
                format!(
                    "inner {}",
                    if kid.holds { "holds" } else { "does not hold" }
                ),
                vec![],
                vec![kid],
            )
        }
        Cond::ContactTrait { idx, test } | Cond::AccountTrait { idx, test } => {
            let (who, v) = match c {
                Cond::ContactTrait { .. } => {
                    ("contact", contact.and_then(|c| c.traits.get(*idx)?.clone()))
                }
                _ => ("account", x.account.traits.get(*idx).cloned().flatten()),
            };
            let lit = test
                .value
                .as_ref()
                .map(|v| format!(" {v}"))
                .unwrap_or_default();
            let desc = format!("{who} trait {} {:?}{lit}", test.name, test.op).to_lowercase();
            node(
                desc,
                format!(
                    "{} = {}",
                    test.name,
                    v.map_or("(missing)".into(), |v| v.display())
                ),
                vec![],
                vec![],
            )
        }
        Cond::Count {
            scope,
            m,
            within,
            at_least,
            at_most,
        } => {
            let n = series(x, contact, *scope, *m).map_or(0, |s| s.count_in(t - within, t));
            let bound = match at_most {
                Some(hi) if *at_least > 0 => format!("{at_least} to {hi}"),
                Some(hi) => format!("at most {hi}"),
                None => format!("at least {at_least}"),
            };
            let desc = format!(
                "{bound} {} events of the {} within {}",
                names(*scope, *m),
                whose(*scope),
                crate::time::Span(*within)
            );
            node(
                desc,
                format!("{n} events"),
                evidence_in(*scope, *m, t - within, t),
                vec![],
            )
        }
        Cond::Recency {
            scope,
            m,
            newer_than,
            older_than,
            or_never,
        } => {
            let last = series(x, contact, *scope, *m).and_then(|s| s.last_at_or_before(t));
            let desc = match (newer_than, older_than) {
                (Some(d), _) => format!(
                    "last {} event newer than {}",
                    names(*scope, *m),
                    crate::time::Span(*d)
                ),
                (_, Some(d)) => format!(
                    "last {} event older than {}{}",
                    names(*scope, *m),
                    crate::time::Span(*d),
                    if *or_never { " (or none)" } else { "" }
                ),
                _ => String::new(),
            };
            let obs = last.map_or("no such event".into(), |l| {
                format!("last at {}", format_rfc3339(l))
            });
            node(
                desc,
                obs,
                last.map(format_rfc3339).into_iter().collect(),
                vec![],
            )
        }
        Cond::First {
            scope,
            m,
            older_than,
        } => {
            let first = series(x, contact, *scope, *m).and_then(|s| s.first);
            let desc = format!(
                "first {} event at or before now - {}",
                names(*scope, *m),
                crate::time::Span(*older_than)
            );
            let obs = first.map_or("no such event".into(), |f| {
                format!("first at {}", format_rfc3339(f))
            });
            node(
                desc,
                obs,
                first.map(format_rfc3339).into_iter().collect(),
                vec![],
            )
        }
        Cond::LastSends {
            n,
            at_least,
            open,
            click,
            reply,
        } => {
            let (k, looked) = contact.map_or((0, vec![]), |c| {
                engaged_sends(c, *n, (*open, *click, *reply), t)
            });
            let ev = looked
                .iter()
                .map(|(ts, e)| {
                    format!(
                        "send at {}: {}",
                        format_rfc3339(*ts),
                        if *e { "engaged" } else { "not engaged" }
                    )
                })
                .collect();
            node(
                format!("at least {at_least} of the last {n} sends engaged"),
                format!("{k} of {} sends", looked.len()),
                ev,
                vec![],
            )
        }
        Cond::Contacts {
            quantifier,
            count,
            inner,
        } => {
            let matching: Vec<&ContactState> = x
                .contacts
                .iter()
                .filter(|c| holds(inner, x, Some(c), t))
                .collect();
            let desc = match quantifier {
                Quantifier::Any => "any contact matches".to_string(),
                Quantifier::All => "all contacts match".to_string(),
                Quantifier::AtLeast => format!("at least {count} contacts match"),
            };
            let ev = matching
                .iter()
                .take(10)
                .map(|c| format!("contact {}", c.id))
                .collect();
            let kids = matching
                .first()
                .map(|c| explain_cond(inner, x, Some(c), t, format!("{path}.contacts")))
                .into_iter()
                .collect();
            node(
                desc,
                format!("{} of {} contacts", matching.len(), x.contacts.len()),
                ev,
                kids,
            )
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
            let s = series(x, contact, *scope, *m);
            let r = s.map_or(0, |s| s.count_in(t - recent, t));
            let p = s.map_or(0, |s| s.count_in(t - recent - prior, t - recent));
            let desc = format!(
                "{} rate in last {} vs prior {} (prior >= {min_prior}{}{})",
                names(*scope, *m),
                crate::time::Span(*recent),
                crate::time::Span(*prior),
                max_ratio
                    .map(|k| format!(", ratio <= {k}"))
                    .unwrap_or_default(),
                min_ratio
                    .map(|k| format!(", ratio >= {k}"))
                    .unwrap_or_default(),
            );
            node(
                desc,
                format!("recent {r}, prior {p}"),
                evidence_in(*scope, *m, t - recent - prior, t),
                vec![],
            )
        }
        Cond::InSegment(j) => {
            let key = &x.set.segments[*j].def.key;
            node(
                format!("member of segment {key}"),
                if holds_now { "member" } else { "not a member" }.to_string(),
                vec![],
                vec![],
            )
        }
        Cond::Suppressed => {
            let at = contact.map(|c| c.suppressed_at).filter(|a| *a <= t);
            node(
                "suppressed (unsubscribed, complained or hard bounce)".into(),
                at.map_or("not suppressed".into(), |a| {
                    format!("since {}", format_rfc3339(a))
                }),
                vec![],
                vec![],
            )
        }
        Cond::Score {
            target,
            at_least,
            at_most,
            min_percentile,
        } => {
            let slot = contact.and_then(|c| c.scores.as_ref()?.get(*target, t));
            let mut bounds = match (at_least.is_finite(), at_most.is_finite()) {
                (true, true) => format!(" in [{at_least}, {at_most}]"),
                (true, false) => format!(" >= {at_least}"),
                (false, true) => format!(" <= {at_most}"),
                (false, false) => String::new(),
            };
            if let Some(m) = min_percentile {
                bounds.push_str(&format!(" in the top {}%", 100.0 - m));
            }
            node(
                format!("P({}){bounds}", target.name()),
                slot.map_or_else(
                    || "not scored".into(),
                    |s| format!("score {:.3}", s.scored.probability),
                ),
                slot.map(crate::scores::describe).into_iter().collect(),
                vec![],
            )
        }
        Cond::Affinity {
            target,
            label,
            at_least,
        } => {
            let lib = &x.set.content;
            let profile = contact.map(|c| &c.interest);
            let value = profile.and_then(|p| p.affinity(lib, target));
            // The content behind the profile, heaviest first.
            let evidence = profile.map_or_else(Vec::new, |p| {
                p.contributions(lib, target)
                    .into_iter()
                    .take(5)
                    .map(|(id, share, sim)| {
                        format!(
                            "content {id}: {:.0}% of interest, similarity {sim:.3}",
                            share * 100.0
                        )
                    })
                    .collect()
            });
            node(
                format!("interest affinity to {label} >= {at_least}"),
                value.map_or_else(
                    || "no engagement with registered content".into(),
                    |v| format!("affinity {v:.3}"),
                ),
                evidence,
                vec![],
            )
        }
    }
}
