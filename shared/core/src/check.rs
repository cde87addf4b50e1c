//! Semantic checks of one definition that the JSON Schema cannot express
//! (entity rules, bounds, literals per operator). Cross-segment checks
//! (references, cycles) happen when a set is compiled.

use crate::definition::*;
use serde_json::Value;

/// Semantic checks that the schema cannot express. Cross-segment checks
/// (references, cycles) happen when a set is compiled.
pub fn check_definition(def: &SegmentDefinition) -> Vec<ValidationError> {
    let mut errors = Vec::new();
    let key_ok = !def.key.is_empty()
        && def.key.len() <= 64
        && def
            .key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !key_ok {
        errors.push(ValidationError::new(
            "key",
            "must be 1-64 characters of a-z, 0-9, '_' or '-'",
        ));
    }
    if def.key == crate::compile::SUPPRESSED_KEY {
        errors.push(ValidationError::new(
            "key",
            "'suppressed' is the system segment and cannot be redefined",
        ));
    }
    if def.name.trim().is_empty() {
        errors.push(ValidationError::new("name", "must not be empty"));
    }
    check_condition(&def.condition, "condition", def.entity, false, &mut errors);
    errors
}

fn check_condition(
    c: &Condition,
    path: &str,
    entity: Entity,
    in_quantifier: bool,
    errors: &mut Vec<ValidationError>,
) {
    let contact_ctx = entity == Entity::Contact || in_quantifier;
    let mut err = |p: String, r: &str| errors.push(ValidationError::new(p, r));
    match c {
        Condition::All(cs) | Condition::Any(cs) => {
            let op = if matches!(c, Condition::All(_)) {
                "all"
            } else {
                "any"
            };
            if cs.is_empty() {
                err(format!("{path}.{op}"), "must list at least one condition");
            }
            for (i, child) in cs.iter().enumerate() {
                check_condition(
                    child,
                    &format!("{path}.{op}[{i}]"),
                    entity,
                    in_quantifier,
                    errors,
                );
            }
        }
        Condition::Not(child) => {
            check_condition(child, &format!("{path}.not"), entity, in_quantifier, errors)
        }
        Condition::Trait(t) => {
            if !contact_ctx {
                err(
                    format!("{path}.trait"),
                    "contact traits need a contact segment or a `contacts` quantifier; use account_trait",
                );
            }
            check_test(t, &format!("{path}.trait"), errors);
        }
        Condition::AccountTrait(t) => check_test(t, &format!("{path}.account_trait"), errors),
        Condition::Events(ec) | Condition::AccountEvents(ec) => {
            let p = format!(
                "{path}.{}",
                if matches!(c, Condition::Events(_)) {
                    "events"
                } else {
                    "account_events"
                }
            );
            check_filter(&ec.event, &format!("{p}.event"), errors);
            if let (Some(lo), Some(hi)) = (ec.at_least, ec.at_most)
                && lo > hi
            {
                errors.push(ValidationError::new(p, "at_least is greater than at_most"));
            }
        }
        Condition::Recency(r) => {
            let p = format!("{path}.recency");
            check_filter(&r.event, &format!("{p}.event"), errors);
            if r.newer_than.is_some() == r.older_than.is_some() {
                errors.push(ValidationError::new(
                    p.clone(),
                    "set exactly one of newer_than and older_than",
                ));
            }
            if r.or_never && r.older_than.is_none() {
                errors.push(ValidationError::new(p, "or_never needs older_than"));
            }
        }
        Condition::FirstEvent(f) => {
            check_filter(&f.event, &format!("{path}.first_event.event"), errors)
        }
        Condition::LastSends(ls) => {
            let p = format!("{path}.last_sends");
            if !contact_ctx {
                err(
                    p.clone(),
                    "last_sends needs a contact segment or a `contacts` quantifier",
                );
            }
            if !(1..=50).contains(&ls.n) {
                errors.push(ValidationError::new(
                    format!("{p}.n"),
                    "must be from 1 to 50",
                ));
            }
            if ls.at_least > ls.n {
                errors.push(ValidationError::new(
                    format!("{p}.at_least"),
                    "is greater than n",
                ));
            }
            if ls.engaged.is_empty() {
                errors.push(ValidationError::new(
                    format!("{p}.engaged"),
                    "must list open, click and/or reply",
                ));
            }
        }
        Condition::Contacts(q) => {
            let p = format!("{path}.contacts");
            if entity != Entity::Account || in_quantifier {
                err(
                    p.clone(),
                    "a contacts quantifier belongs directly in an account segment",
                );
            }
            match (q.quantifier, q.count) {
                (Quantifier::AtLeast, None) => errors.push(ValidationError::new(
                    format!("{p}.count"),
                    "is required with at_least",
                )),
                (Quantifier::AtLeast, Some(0)) => errors.push(ValidationError::new(
                    format!("{p}.count"),
                    "must be at least 1",
                )),
                (Quantifier::Any | Quantifier::All, Some(_)) => errors.push(ValidationError::new(
                    format!("{p}.count"),
                    "only applies to at_least",
                )),
                _ => {}
            }
            check_condition(
                &q.condition,
                &format!("{p}.condition"),
                entity,
                true,
                errors,
            );
        }
        Condition::RateChange(r) => {
            let p = format!("{path}.rate_change");
            check_filter(&r.event, &format!("{p}.event"), errors);
            if r.max_ratio.is_none() && r.min_ratio.is_none() {
                errors.push(ValidationError::new(
                    p.clone(),
                    "set max_ratio and/or min_ratio",
                ));
            }
            for (field, v) in [("max_ratio", r.max_ratio), ("min_ratio", r.min_ratio)] {
                if v.is_some_and(|v| !v.is_finite() || v < 0.0) {
                    errors.push(ValidationError::new(
                        format!("{p}.{field}"),
                        "must be a finite number >= 0",
                    ));
                }
            }
        }
        Condition::InSegment(key) => {
            if key.is_empty() {
                err(format!("{path}.in_segment"), "must name a segment");
            }
        }
        Condition::Score(s) => {
            let p = format!("{path}.score");
            if !contact_ctx {
                errors.push(ValidationError::new(
                    p.clone(),
                    "score is a contact condition: use it in a contact segment or inside contacts",
                ));
            }
            if let Err(e) = crate::labels::Target::parse(&s.target) {
                errors.push(ValidationError::new(format!("{p}.target"), e));
            }
            for (name, bound) in [("at_least", s.at_least), ("at_most", s.at_most)] {
                if bound.is_some_and(|b| !b.is_finite() || !(0.0..=1.0).contains(&b)) {
                    errors.push(ValidationError::new(
                        format!("{p}.{name}"),
                        "must be a probability in [0, 1]",
                    ));
                }
            }
            if s.top_percent
                .is_some_and(|t| !t.is_finite() || t <= 0.0 || t > 100.0)
            {
                errors.push(ValidationError::new(
                    format!("{p}.top_percent"),
                    "must be a percentage in (0, 100]",
                ));
            }
            match (s.at_least, s.at_most) {
                (None, None) if s.top_percent.is_none() => errors.push(ValidationError::new(
                    p.clone(),
                    "set at_least, at_most or top_percent",
                )),
                (Some(lo), Some(hi)) if lo > hi => errors.push(ValidationError::new(
                    format!("{p}.at_most"),
                    format!("{hi} is below at_least {lo}"),
                )),
                _ => {}
            }
        }
        Condition::Affinity(a) => {
            let p = format!("{path}.affinity");
            let mut add =
                |at: String, reason: String| errors.push(ValidationError::new(at, reason));
            if !contact_ctx {
                add(
                    p.clone(),
                    "affinity is a contact condition: use it in a contact segment or inside contacts"
                        .into(),
                );
            }
            match (&a.topic, &a.content) {
                (Some(_), Some(_)) | (None, None) => {
                    add(p.clone(), "set exactly one of topic and content".into())
                }
                (Some(t), None) if t.trim().is_empty() || t.len() > MAX_TOPIC_BYTES => add(
                    format!("{p}.topic"),
                    format!("must be 1-{MAX_TOPIC_BYTES} bytes of text, not only whitespace"),
                ),
                (None, Some(c)) if c.is_empty() || c.len() > 256 => add(
                    format!("{p}.content"),
                    "must be a content id of 1-256 bytes".into(),
                ),
                _ => {}
            }
            if !a.at_least.is_finite() || !(-1.0..=1.0).contains(&a.at_least) {
                add(
                    format!("{p}.at_least"),
                    "must be a cosine in [-1, 1]".into(),
                );
            }
        }
    }
}

/// Longest topic text of an affinity condition.
pub const MAX_TOPIC_BYTES: usize = 1000;

fn check_filter(f: &EventFilter, path: &str, errors: &mut Vec<ValidationError>) {
    if f.kind.kinds().is_empty() {
        errors.push(ValidationError::new(
            format!("{path}.kind"),
            "must name at least one kind",
        ));
    }
    for (i, t) in f.where_.iter().enumerate() {
        check_test(t, &format!("{path}.where[{i}]"), errors);
    }
}

fn check_test(t: &TraitTest, path: &str, errors: &mut Vec<ValidationError>) {
    if t.name.is_empty() {
        errors.push(ValidationError::new(
            format!("{path}.name"),
            "must not be empty",
        ));
    }
    let needs = match t.op {
        TraitOp::Exists | TraitOp::NotExists => None,
        TraitOp::In => Some("an array of values"),
        TraitOp::Between => Some("[low, high]"),
        TraitOp::Prefix => Some("a string"),
        _ => Some("a value"),
    };
    let ok = match (t.op, &t.value) {
        (TraitOp::Exists | TraitOp::NotExists, v) => v.is_none(),
        (TraitOp::In, Some(Value::Array(a))) => !a.is_empty(),
        (TraitOp::Between, Some(Value::Array(a))) => a.len() == 2,
        (TraitOp::Prefix, Some(Value::String(_))) => true,
        (
            TraitOp::Eq | TraitOp::Ne | TraitOp::Gt | TraitOp::Gte | TraitOp::Lt | TraitOp::Lte,
            Some(v),
        ) => !v.is_null() && !v.is_array() && !v.is_object(),
        _ => false,
    };
    if !ok {
        let reason = match needs {
            Some(n) => format!("op {:?} needs value: {n}", t.op).to_lowercase(),
            None => "exists/not_exists take no value".to_string(),
        };
        errors.push(ValidationError::new(format!("{path}.value"), reason));
    }
}
