use super::*;
use crate::event::{Limits, parse_message};
use crate::time::format_rfc3339;
use serde_json::json;

/// 2026-01-01T00:00:00Z
const T0: Millis = 1_767_225_600_000;

fn ev(n: usize, ts: Millis, v: serde_json::Value) -> Event {
    let mut v = v;
    v["messageId"] = json!(format!("m{n}"));
    v["timestamp"] = json!(format_rfc3339(ts));
    parse_message(&v, Millis::MAX / 2, &Limits::default()).expect("test event")
}

fn track(n: usize, ts: Millis, name: &str, props: serde_json::Value) -> Event {
    ev(
        n,
        ts,
        json!({"type":"track","userId":"u","event":name,"properties":props}),
    )
}

/// Features for a send without content (the affinity pair reads `[0, 0]`).
fn no_content(c: &FeatureState, a: &AccountSignals, t: Millis) -> Vec<f32> {
    features_at(c, a, &ContentLibrary::default(), t, None)
}

fn value(names: &[String], v: &[f32], name: &str) -> f32 {
    let i = names.iter().position(|n| n == name).expect("feature name");
    v[i]
}

#[test]
fn names_match_the_vector() {
    let names = feature_names();
    assert_eq!(names.len(), FEATURE_COUNT);
    let v = no_content(&FeatureState::default(), &AccountSignals::default(), T0);
    assert_eq!(v.len(), FEATURE_COUNT);
    let unique: std::collections::HashSet<_> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "duplicate feature names");
}

#[test]
fn windows_cover_the_instants_strictly_before_t() {
    let mut c = FeatureState::default();
    // Clicks 7 days before t (inside [t-7d, t)), 1 ms after that edge, and at t itself.
    let t = T0 + 30 * DAY;
    for (n, ts) in [t - 7 * DAY, t - 7 * DAY - 1, t, t - HOUR]
        .into_iter()
        .enumerate()
    {
        c.apply(&track(
            n,
            ts,
            "Email Link Clicked",
            json!({"email_id": format!("e{n}")}),
        ));
    }
    let names = feature_names();
    let v = no_content(&c, &AccountSignals::default(), t);
    assert_eq!(
        value(&names, &v, "clicks_7d"),
        2.0,
        "t-7d and t-1h; not t, not before t-7d"
    );
    assert_eq!(value(&names, &v, "clicks_30d"), 3.0);
    assert!((value(&names, &v, "days_since_last_click") - 1.0 / 24.0).abs() < 1e-6);
    assert_eq!(
        value(&names, &v, "days_since_last_reply"),
        365.0,
        "never: the cap"
    );
}

#[test]
fn last_sends_count_engagement_before_t_even_when_it_arrives_first() {
    let mut c = FeatureState::default();
    // The open of e1 arrives before its send (out of order), the click of e2 after t.
    c.apply(&track(
        1,
        T0 + 2 * HOUR,
        "Email Opened",
        json!({"email_id":"e1"}),
    ));
    c.apply(&track(2, T0, "Email Delivered", json!({"email_id":"e1"})));
    c.apply(&track(
        3,
        T0 + DAY,
        "Email Delivered",
        json!({"email_id":"e2"}),
    ));
    c.apply(&track(
        4,
        T0 + 3 * DAY,
        "Email Link Clicked",
        json!({"email_id":"e2"}),
    ));
    let names = feature_names();
    let v = no_content(&c, &AccountSignals::default(), T0 + 2 * DAY);
    assert_eq!(value(&names, &v, "last5_sends_opened"), 1.0);
    assert_eq!(
        value(&names, &v, "last5_sends_clicked"),
        0.0,
        "the click is after t"
    );
    assert_eq!(value(&names, &v, "sends_7d"), 2.0);
    assert!((value(&names, &v, "days_since_first_send") - 2.0).abs() < 1e-6);
    let later = no_content(&c, &AccountSignals::default(), T0 + 4 * DAY);
    assert_eq!(value(&names, &later, "last5_sends_clicked"), 1.0);
}

#[test]
fn arrival_order_does_not_change_features() {
    // Ten emails, each sent and then opened, clicked and replied; the sends
    // are spread over ten days in a scrambled order.
    let mut by_email = Vec::new();
    for m in 0..10usize {
        let base = T0 + ((m * 7) % 10) as Millis * DAY;
        let names = [
            "Email Delivered",
            "Email Opened",
            "Email Link Clicked",
            "Email Replied",
        ];
        let group: Vec<Event> = names
            .iter()
            .enumerate()
            .map(|(k, name)| {
                track(
                    m * 4 + k,
                    base + k as Millis * HOUR,
                    name,
                    json!({"email_id": format!("e{m}")}),
                )
            })
            .collect();
        by_email.push(group);
    }
    let ids =
        json!({"type":"identify","userId":"u","traits":{"seniority":"VP","role":"Marketing Ops"}});
    let older = json!({"type":"identify","userId":"u","traits":{"seniority":"Manager"}});
    let traits = [ev(99, T0 + DAY, ids), ev(98, T0, older)];
    let run = |order: &[&Event]| {
        let mut c = FeatureState::default();
        for e in order {
            c.apply(e);
        }
        no_content(&c, &AccountSignals::default(), T0 + 30 * DAY)
    };
    let mut sorted: Vec<&Event> = by_email.iter().flatten().chain(&traits).collect();
    sorted.sort_by_key(|e| e.ts);
    // Each email's engagement arrives before its send (orphans waiting for
    // their send, at most MAX_ORPHANS at a time), and the traits last-first.
    let scrambled: Vec<&Event> = by_email
        .iter()
        .rev()
        .flat_map(|g| g.iter().rev())
        .chain(traits.iter())
        .collect();
    assert_eq!(run(&scrambled), run(&sorted));
    let names = feature_names();
    let v = run(&sorted);
    assert_eq!(value(&names, &v, "last5_sends_replied"), 5.0);
    assert_eq!(
        value(&names, &v, "seniority_level"),
        3.0,
        "the latest identify wins: VP"
    );
    assert_eq!(value(&names, &v, "role_marketing"), 1.0);
}

#[test]
fn pruning_keeps_every_feature_from_now_on() {
    let mut c = FeatureState::default();
    for i in 0..30i64 {
        let name = if i % 3 == 0 {
            "Email Delivered"
        } else {
            "Email Opened"
        };
        c.apply(&track(
            i as usize,
            T0 + i * 5 * DAY,
            name,
            json!({"email_id": format!("e{}", i / 3)}),
        ));
    }
    let now = T0 + 150 * DAY;
    let mut pruned = c.clone();
    pruned.prune(now);
    assert!(pruned.times[Kind::Open as usize].ts.len() < c.times[Kind::Open as usize].ts.len());
    for t in [now, now + DAY, now + 40 * DAY, now + 400 * DAY] {
        assert_eq!(
            no_content(&pruned, &AccountSignals::default(), t),
            no_content(&c, &AccountSignals::default(), t),
            "at +{} days",
            (t - now) / DAY
        );
    }
}

#[test]
fn a_burst_over_the_cap_keeps_the_latest() {
    let mut c = FeatureState::default();
    for i in 0..(MAX_TIMES as i64 + 10) {
        c.apply(&track(
            i as usize,
            T0 + i * HOUR,
            "Email Opened",
            json!({"email_id":"e"}),
        ));
    }
    assert_eq!(c.times[Kind::Open as usize].ts.len(), MAX_TIMES);
    let v = no_content(&c, &AccountSignals::default(), T0 + 10 * DAY);
    assert_eq!(value(&feature_names(), &v, "opens_30d"), MAX_TIMES as f32);
    assert!(
        (value(&feature_names(), &v, "days_since_last_open") - (10.0 - 73.0 / 24.0)).abs() < 1e-5
    );
}

#[test]
fn account_signals_read_traits_and_intent() {
    let mut a = AccountSignals::default();
    let group = |n, ts, traits| {
        ev(
            n,
            ts,
            json!({"type":"group","userId":"u","groupId":"acme","traits":traits}),
        )
    };
    a.apply(&group(
        1,
        T0 + DAY,
        json!({"tier": 1, "target": true, "icp_fit": 82, "lifecycle_stage": "Customer"}),
    ));
    a.apply(&group(2, T0, json!({"tier": 3})));
    a.apply(&ev(3, T0 + 2 * DAY, json!({"type":"page","anonymousId":"x","context":{"groupId":"acme"},"properties":{"path":"/pricing"}})));
    let names = feature_names();
    let v = no_content(&FeatureState::default(), &a, T0 + 3 * DAY);
    assert_eq!(
        value(&names, &v, "account_tier"),
        1.0,
        "an older group call does not overwrite"
    );
    assert_eq!(value(&names, &v, "account_target"), 1.0);
    assert_eq!(value(&names, &v, "account_icp_fit"), 82.0);
    assert_eq!(value(&names, &v, "account_customer"), 1.0);
    assert_eq!(value(&names, &v, "account_pricing_intent_30d"), 1.0);
    assert_eq!(value(&names, &v, "account_engagement_30d"), 1.0);
}

#[test]
fn a_later_null_trait_wins_in_any_arrival_order() {
    let identify = |n, ts, seniority: serde_json::Value| {
        ev(
            n,
            ts,
            json!({"type":"identify","userId":"u","traits":{"seniority": seniority}}),
        )
    };
    let cleared = identify(1, T0 + 10 * DAY, serde_json::Value::Null);
    let older = identify(2, T0 + 5 * DAY, json!("VP"));
    let names = feature_names();
    for order in [[&cleared, &older], [&older, &cleared]] {
        let mut c = FeatureState::default();
        for e in order {
            c.apply(e);
        }
        let v = no_content(&c, &AccountSignals::default(), T0 + 20 * DAY);
        assert_eq!(
            value(&names, &v, "seniority_level"),
            0.0,
            "cleared at day 10"
        );
    }
}
