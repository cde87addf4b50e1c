//! Score conditions over derived `Propensity Scored` records: members enter
//! and leave as scores arrive, the current score is the latest by event
//! time whatever the arrival order, the brute-force reference agrees,
//! explain names the model and its contributions, and bad records and
//! definitions are refused with the field at fault.

mod common;

use common::{Script, at, flips, replay};
use liveseg_core::brute;
use liveseg_core::definition::parse_definitions;
use liveseg_core::event::{Limits, parse_message};
use liveseg_core::labels::Target;
use liveseg_core::scores::{Scored, scored_message};
use liveseg_core::{Account, Millis, SegmentSet};
use serde_json::json;
use std::collections::BTreeSet;

const DEFS: &str = r#"
- key: likely_clickers
  name: Likely clickers
  entity: contact
  condition: {score: {target: click_7d, at_least: 0.2}}
- key: fatigued
  name: Fatigued
  entity: contact
  condition: {score: {target: unsubscribe_7d, at_least: 0.05}}
- key: accounts_with_likely_clickers
  name: Accounts with likely clickers
  entity: account
  condition: {contacts: {quantifier: any, condition: {score: {target: click_7d, at_least: 0.2, at_most: 1}}}}
"#;

fn set() -> SegmentSet {
    SegmentSet::compile(&parse_definitions(DEFS).expect("fixture")).expect("fixture")
}

fn score(s: &mut Script, user: &str, target: &str, p: f64, version: &str, day: f64) {
    s.track(
        user,
        Some("acme"),
        "Propensity Scored",
        json!({"target": target, "probability": p, "version": version,
               "top": [{"feature": "opens_90d", "contribution": 1.25}, {"feature": "sends_7d", "contribution": -0.5}]}),
        at(day),
    );
}

#[test]
fn members_follow_the_latest_score_by_event_time() {
    let set = set();
    let mut s = Script::new();
    score(&mut s, "u1", "click_7d", 0.31, "click_7d-v1", 1.0);
    score(&mut s, "u2", "click_7d", 0.05, "click_7d-v1", 1.0);
    score(&mut s, "u1", "click_7d", 0.08, "click_7d-v2", 5.0);
    score(
        &mut s,
        "u2",
        "unsubscribe_7d",
        0.09,
        "unsubscribe_7d-v1",
        6.0,
    );
    // A late-arriving older score does not replace the newer one.
    score(&mut s, "u1", "click_7d", 0.9, "click_7d-v1", 3.0);
    let (engine, changes) = replay(&set, &s.events, at(10.0));
    assert_eq!(
        flips(&changes, "likely_clickers", "u1"),
        vec![("enter".into(), at(1.0)), ("exit".into(), at(5.0))]
    );
    assert_eq!(
        flips(&changes, "fatigued", "u2"),
        vec![("enter".into(), at(6.0))]
    );
    assert_eq!(
        flips(&changes, "accounts_with_likely_clickers", "acme"),
        vec![("enter".into(), at(1.0)), ("exit".into(), at(5.0))]
    );

    // Arrival order: the same events applied newest first end the same way.
    let mut reversed = s.events.clone();
    reversed.reverse();
    let mut e2 = liveseg_core::Engine::new(set.clone());
    let mut out = Vec::new();
    for e in &reversed {
        e2.apply(e, at(10.0), &mut out);
    }
    assert_eq!(e2.memberships(), engine.memberships());

    let defs = parse_definitions(DEFS).expect("fixture");
    for day in [0.5, 1.0, 3.0, 4.9, 5.0, 6.0, 10.0] {
        let before: Vec<_> = s
            .events
            .iter()
            .filter(|x| x.ts <= at(day))
            .cloned()
            .collect();
        let (e, _) = replay(&set, &before, at(day));
        let got: BTreeSet<_> = e.memberships().into_iter().collect();
        assert_eq!(
            got,
            brute::memberships(&defs, &before, at(day)),
            "at day {day}"
        );
    }

    let acme: &Account = &engine.accounts["acme"];
    let seg = set.index_of("likely_clickers").expect("segment");
    let ex = acme
        .explain(&set, seg, Some("u1"), at(10.0))
        .expect("explain");
    assert!(
        !ex.member && ex.next_change.is_none(),
        "scores do not change by time alone"
    );
    assert_eq!(ex.condition.description, "P(click_7d) >= 0.2");
    assert_eq!(ex.condition.observed, "score 0.080");
    assert!(
        ex.condition.evidence[0].starts_with("model click_7d-v2, scored 2026-01-06")
            && ex.condition.evidence[0].ends_with("opens_90d +1.25, sends_7d -0.50"),
        "{:?}",
        ex.condition.evidence
    );
}

#[test]
fn scores_are_kept_only_when_a_definition_reads_them() {
    let plain = SegmentSet::compile(&liveseg_core::presets::presets()).expect("presets");
    let mut s = Script::new();
    score(&mut s, "u1", "click_7d", 0.5, "v1", 1.0);
    let (engine, _) = replay(&plain, &s.events, at(2.0));
    assert!(
        engine.accounts["acme"]
            .contact("u1")
            .is_some_and(|c| c.scores.is_none())
    );
    let (engine, _) = replay(&set(), &s.events, at(2.0));
    assert!(
        engine.accounts["acme"]
            .contact("u1")
            .is_some_and(|c| c.scores.is_some())
    );
}

fn parse(props: serde_json::Value) -> Result<liveseg_core::Event, liveseg_core::FieldError> {
    let v = json!({"type": "track", "event": "Propensity Scored", "userId": "u1", "messageId": "m",
                   "timestamp": "2026-01-02T00:00:00Z", "properties": props});
    parse_message(&v, Millis::MAX / 2, &Limits::default())
}

#[test]
fn bad_score_records_name_the_field() {
    let cases = [
        (
            json!({"probability": 0.2, "version": "v"}),
            "properties.target",
        ),
        (
            json!({"target": "opens", "probability": 0.2, "version": "v"}),
            "properties.target",
        ),
        (
            json!({"target": "reply", "probability": 1.5, "version": "v"}),
            "properties.probability",
        ),
        (
            json!({"target": "reply", "probability": 0.5}),
            "properties.version",
        ),
        (
            json!({"target": "reply", "probability": 0.5, "version": "v", "top": [{"feature": "x"}]}),
            "properties.top[0]",
        ),
    ];
    for (props, field) in cases {
        let err = parse(props.clone()).expect_err("refused");
        assert_eq!(err.field, field, "{props}: {err}");
    }
    let anonymous = json!({"type": "track", "event": "Propensity Scored", "anonymousId": "a", "messageId": "m",
        "context": {"groupId": "acme"}, "timestamp": "2026-01-02T00:00:00Z",
        "properties": {"target": "reply", "probability": 0.5, "version": "v"}});
    let err = parse_message(&anonymous, Millis::MAX / 2, &Limits::default())
        .expect_err("needs a contact");
    assert_eq!(err.field, "userId");
}

#[test]
fn the_derived_message_of_a_score_parses_back_to_it() {
    let scored = Scored {
        target: Target::Meeting30d,
        probability: 0.125,
        version: "meeting_30d-v3".into(),
        top: vec![("account_tier".into(), 0.75)],
        percentile: Some(87.5),
    };
    let v = scored_message("u9", at(3.0), &scored);
    let e = parse_message(&v, Millis::MAX / 2, &Limits::default()).expect("valid");
    assert_eq!(
        e.kind,
        liveseg_core::EventKind::Scored(Box::new(scored.clone()))
    );
    assert_eq!(
        e.group_id, None,
        "a score never names (or moves to) an account"
    );
    assert_eq!(
        v["messageId"],
        "score:meeting_30d:meeting_30d-v3:u9:1767484800000"
    );
}

#[test]
fn bad_score_conditions_are_refused_with_a_path() {
    let bad = r#"[
      {"key":"a","name":"A","entity":"account","condition":{"score":{"target":"click_7d","at_least":0.2}}},
      {"key":"b","name":"B","entity":"contact","condition":{"score":{"target":"opens","at_least":2}}},
      {"key":"c","name":"C","entity":"contact","condition":{"score":{"target":"reply"}}},
      {"key":"d","name":"D","entity":"contact","condition":{"score":{"target":"reply","at_least":0.5,"at_most":0.1}}},
      {"key":"e","name":"E","entity":"contact","condition":{"score":{"target":"reply","top_percent":0}}}
    ]"#;
    let errs = parse_definitions(bad).expect_err("refused");
    let got: Vec<(String, &str)> = errs
        .iter()
        .map(|e| (e.path.clone(), e.reason.as_str()))
        .collect();
    let has = |path: &str, words: &str| {
        got.iter()
            .any(|(p, r)| p.ends_with(path) && r.contains(words))
    };
    assert!(has("condition.score", "contact condition"), "{got:?}");
    assert!(
        has("condition.score.target", "unknown target 'opens'"),
        "{got:?}"
    );
    assert!(has("condition.score.at_least", "[0, 1]"), "{got:?}");
    assert!(
        has("condition.score", "set at_least, at_most or top_percent"),
        "{got:?}"
    );
    assert!(has("condition.score.at_most", "below at_least"), "{got:?}");
    assert!(has("condition.score.top_percent", "(0, 100]"), "{got:?}");
}

#[test]
fn a_score_stamped_ahead_of_the_clock_takes_effect_at_its_instant() {
    let set = set();
    let mut s = Script::new();
    score(&mut s, "u1", "click_7d", 0.5, "click_7d-v1", 1.0);
    score(&mut s, "u1", "click_7d", 0.01, "click_7d-v2", 2.0);
    // Both arrive while the processing clock reads day 1.
    let mut engine = liveseg_core::Engine::new(set.clone());
    let mut changes = Vec::new();
    for e in &s.events {
        engine.apply(e, at(1.0), &mut changes);
    }
    assert_eq!(
        flips(&changes, "likely_clickers", "u1"),
        vec![("enter".into(), at(1.0))]
    );
    // The account's timer fires at day 2, when the lower score becomes current.
    engine.advance_all(at(3.0), &mut changes);
    assert_eq!(
        flips(&changes, "likely_clickers", "u1"),
        vec![("enter".into(), at(1.0)), ("exit".into(), at(2.0))]
    );
    let defs = parse_definitions(DEFS).expect("fixture");
    let got: BTreeSet<_> = engine.memberships().into_iter().collect();
    assert_eq!(got, brute::memberships(&defs, &s.events, at(3.0)));
}

#[test]
fn top_percent_reads_the_percentile_the_scorer_stamped() {
    let defs = parse_definitions(
        "[{key: top10, name: Top 10%, entity: contact, condition: {score: {target: reply, top_percent: 10}}}]",
    )
    .expect("fixture");
    let set = SegmentSet::compile(&defs).expect("fixture");
    let mut s = Script::new();
    for (user, pct) in [("u1", 95.0), ("u2", 89.0)] {
        s.track(
            user,
            Some("acme"),
            "Propensity Scored",
            json!({"target": "reply", "probability": 0.02, "version": "reply-v1", "percentile": pct}),
            at(1.0),
        );
    }
    // u3's score has no percentile: it cannot be in a top-k segment.
    score(&mut s, "u3", "reply", 0.9, "reply-v1", 1.0);
    let (engine, _) = replay(&set, &s.events, at(2.0));
    let members: Vec<String> = engine
        .memberships()
        .into_iter()
        .filter(|m| m.segment == "top10")
        .map(|m| m.id)
        .collect();
    assert_eq!(members, vec!["u1".to_string()]);
    let got: BTreeSet<_> = engine.memberships().into_iter().collect();
    assert_eq!(got, brute::memberships(&defs, &s.events, at(2.0)));
    let seg = set.index_of("top10").expect("segment");
    let ex = engine.accounts["acme"]
        .explain(&set, seg, Some("u1"), at(2.0))
        .expect("explain");
    assert_eq!(ex.condition.description, "P(reply) in the top 10%");
    assert!(
        ex.condition.evidence[0].contains("percentile 95"),
        "{:?}",
        ex.condition.evidence
    );
    let bad =
        parse(json!({"target": "reply", "probability": 0.5, "version": "v", "percentile": 101}));
    assert_eq!(bad.expect_err("refused").field, "properties.percentile");
    assert_eq!(
        liveseg_core::scores::percentiles(&[0.3, 0.1, 0.2, 0.2]),
        vec![100.0, 25.0, 75.0, 75.0]
    );
}
