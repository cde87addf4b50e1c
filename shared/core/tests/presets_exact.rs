//! The six starter segments on exact boundaries: every time-driven change
//! happens at exactly its instant, judged with windows `(t - D, t]`.

mod common;
use common::*;
use liveseg_core::time::DAY;
use serde_json::json;

#[test]
fn engaged_target_contact_exits_exactly_30_days_after_last_engagement() {
    let mut s = Script::new();
    s.group(Some("u1"), "acme", json!({"target": true}), at(0.0));
    s.track(
        "u1",
        Some("acme"),
        "Email Opened",
        json!({"email_id":"e1"}),
        at(1.0),
    );
    s.page(Some("u1"), Some("acme"), "/blog/x", at(5.0));
    let (_, changes) = replay(&presets(), &s.events, at(100.0));
    assert_eq!(
        flips(&changes, "engaged_target_contacts", "u1"),
        vec![
            ("enter".to_string(), at(1.0)),
            ("exit".to_string(), at(5.0) + 30 * DAY)
        ]
    );
    assert!(flips(&changes, "engaged_non_target_contacts", "u1").is_empty());
}

#[test]
fn non_target_includes_accounts_with_no_target_trait() {
    let mut s = Script::new();
    s.track("u2", Some("globex"), "Meeting Booked", json!({}), at(3.0));
    let (engine, _) = replay(&presets(), &s.events, at(10.0));
    let m = engine.memberships();
    assert!(
        m.iter().any(|m| m.segment == "engaged_non_target_contacts"
            && m.id == "u2"
            && m.account == "globex"),
        "{m:?}"
    );
}

#[test]
fn dormant_high_fit_account_leaves_on_account_level_visit_and_returns_30_days_later() {
    let mut s = Script::new();
    s.group(None, "initech", json!({"icp_fit": 85}), at(0.0));
    s.page(None, Some("initech"), "/product", at(10.0));
    let (_, changes) = replay(&presets(), &s.events, at(60.0));
    assert_eq!(
        flips(&changes, "dormant_high_fit_accounts", "initech"),
        vec![
            ("enter".to_string(), at(0.0)),
            ("exit".to_string(), at(10.0)),
            ("enter".to_string(), at(40.0))
        ]
    );
}

#[test]
fn decaying_customer_enters_when_the_last_engagement_ages_into_the_prior_window() {
    let mut s = Script::new();
    s.group(
        Some("u3"),
        "hooli",
        json!({"lifecycle_stage": "customer"}),
        at(0.0),
    );
    for d in [0.0, 1.0, 2.0] {
        s.track(
            "u3",
            Some("hooli"),
            "Product Used",
            json!({"feature":"x"}),
            at(d),
        );
    }
    let (_, changes) = replay(&presets(), &s.events, at(200.0));
    // P >= 3 and R = 0 from day 2 + 30d; P drops to 2 when day 0 leaves (t-120d) at day 120.
    assert_eq!(
        flips(&changes, "decaying_customers", "u3"),
        vec![
            ("enter".to_string(), at(32.0)),
            ("exit".to_string(), at(120.0))
        ]
    );
}

#[test]
fn decaying_customer_needs_recent_at_most_half_the_prior_average() {
    let mut s = Script::new();
    s.group(
        Some("u4"),
        "hooli",
        json!({"lifecycle_stage": "customer"}),
        at(0.0),
    );
    for d in 0..6 {
        s.track(
            "u4",
            Some("hooli"),
            "Logged In",
            json!({}),
            at(f64::from(d)),
        );
    }
    // At day 50: P = 6 (days 0-5), R = 1 -> 6R = 6 <= 6: member. A second recent event breaks it.
    s.track("u4", Some("hooli"), "Logged In", json!({}), at(45.0));
    let (engine, _) = replay(&presets(), &s.events, at(50.0));
    assert!(
        engine
            .memberships()
            .iter()
            .any(|m| m.segment == "decaying_customers" && m.id == "u4")
    );
    s.track("u4", Some("hooli"), "Logged In", json!({}), at(49.0));
    let (engine, _) = replay(&presets(), &s.events, at(50.0));
    assert!(
        !engine
            .memberships()
            .iter()
            .any(|m| m.segment == "decaying_customers" && m.id == "u4")
    );
}

#[test]
fn sunset_candidate_enters_exactly_90_days_after_first_send_or_last_open() {
    let mut s = Script::new();
    s.track(
        "u5",
        Some("acme"),
        "Email Delivered",
        json!({"email_id":"a"}),
        at(0.0),
    );
    s.track(
        "u6",
        Some("acme"),
        "Email Delivered",
        json!({"email_id":"b"}),
        at(0.0),
    );
    s.track(
        "u6",
        Some("acme"),
        "Email Opened",
        json!({"email_id":"b"}),
        at(7.5),
    );
    let (_, changes) = replay(&presets(), &s.events, at(200.0));
    assert_eq!(
        flips(&changes, "sunset_candidates", "u5"),
        vec![("enter".to_string(), at(90.0))]
    );
    assert_eq!(
        flips(&changes, "sunset_candidates", "u6"),
        vec![("enter".to_string(), at(97.5))]
    );
}

#[test]
fn tier1_pricing_intent_counts_last_five_sends_and_account_pricing_within_30_days() {
    let mut s = Script::new();
    s.group(Some("u7"), "umbrella", json!({"tier": 1}), at(0.0));
    for i in 0..6 {
        s.track(
            "u7",
            Some("umbrella"),
            "Email Delivered",
            json!({"email_id": format!("s{i}")}),
            at(1.0 + f64::from(i)),
        );
    }
    // The open of s0 is outside the last five sends; s2 is opened, s4 clicked.
    s.track(
        "u7",
        Some("umbrella"),
        "Email Opened",
        json!({"email_id":"s0"}),
        at(8.0),
    );
    s.track(
        "u7",
        Some("umbrella"),
        "Email Opened",
        json!({"email_id":"s2"}),
        at(9.0),
    );
    // Another contact of the account visits pricing: account-level intent.
    s.page(Some("u8"), Some("umbrella"), "/pricing", at(9.5));
    s.track(
        "u7",
        Some("umbrella"),
        "Email Link Clicked",
        json!({"email_id":"s4"}),
        at(10.0),
    );
    let (_, changes) = replay(&presets(), &s.events, at(100.0));
    assert_eq!(
        flips(&changes, "tier1_pricing_intent", "u7"),
        vec![
            ("enter".to_string(), at(10.0)),
            ("exit".to_string(), at(39.5))
        ]
    );
}

#[test]
fn open_arriving_before_its_send_still_counts() {
    let mut s = Script::new();
    s.group(Some("u9"), "umbrella", json!({"tier": 1}), at(0.0));
    s.page(None, Some("umbrella"), "/pricing", at(1.0));
    // Applied in this order (log order), opens first.
    s.track(
        "u9",
        Some("umbrella"),
        "Email Opened",
        json!({"email_id":"x1"}),
        at(2.0),
    );
    s.track(
        "u9",
        Some("umbrella"),
        "Email Opened",
        json!({"email_id":"x2"}),
        at(2.0),
    );
    s.track(
        "u9",
        Some("umbrella"),
        "Email Delivered",
        json!({"email_id":"x1"}),
        at(1.5),
    );
    s.track(
        "u9",
        Some("umbrella"),
        "Email Delivered",
        json!({"email_id":"x2"}),
        at(1.5),
    );
    let set = presets();
    let mut engine = liveseg_core::Engine::new(set);
    let mut out = Vec::new();
    for e in &s.events {
        engine.apply(e, at(2.0), &mut out);
    }
    assert!(
        engine
            .memberships()
            .iter()
            .any(|m| m.segment == "tier1_pricing_intent" && m.id == "u9")
    );
}

#[test]
fn suppressed_contacts_leave_every_other_segment() {
    let mut s = Script::new();
    s.group(Some("u10"), "acme", json!({"target": true}), at(0.0));
    s.track(
        "u10",
        Some("acme"),
        "Email Opened",
        json!({"email_id":"e"}),
        at(1.0),
    );
    s.track("u10", Some("acme"), "Unsubscribed", json!({}), at(2.0));
    let (engine, changes) = replay(&presets(), &s.events, at(3.0));
    assert_eq!(
        flips(&changes, "engaged_target_contacts", "u10"),
        vec![
            ("enter".to_string(), at(1.0)),
            ("exit".to_string(), at(2.0))
        ]
    );
    let m = engine.memberships();
    assert!(m.iter().any(|m| m.segment == "suppressed" && m.id == "u10"));
    assert_eq!(m.iter().filter(|m| m.id == "u10").count(), 1, "{m:?}");
}

#[test]
fn contact_moves_between_accounts_carrying_its_state() {
    let mut s = Script::new();
    s.group(Some("u11"), "acme", json!({"target": true}), at(0.0));
    s.group(None, "globex", json!({"target": false}), at(0.0));
    s.track(
        "u11",
        None,
        "Email Opened",
        json!({"email_id":"e"}),
        at(1.0),
    );
    s.group(Some("u11"), "globex", json!({}), at(2.0));
    let (engine, changes) = replay(&presets(), &s.events, at(3.0));
    let target = flips(&changes, "engaged_target_contacts", "u11");
    assert_eq!(
        target,
        vec![
            ("enter".to_string(), at(1.0)),
            ("exit".to_string(), at(2.0))
        ]
    );
    // The open at day 1 travelled with the contact.
    assert_eq!(
        flips(&changes, "engaged_non_target_contacts", "u11"),
        vec![("enter".to_string(), at(2.0))]
    );
    let m = engine.memberships();
    assert!(
        m.iter()
            .any(|m| m.segment == "engaged_non_target_contacts" && m.account == "globex")
    );
}

#[test]
fn contacts_without_an_account_live_in_a_personal_account_until_grouped() {
    let mut s = Script::new();
    s.track("u12", None, "Meeting Booked", json!({}), at(1.0));
    s.group(Some("u12"), "acme", json!({"target": true}), at(2.0));
    let (engine, changes) = replay(&presets(), &s.events, at(3.0));
    let non = flips(&changes, "engaged_non_target_contacts", "u12");
    assert_eq!(
        non,
        vec![
            ("enter".to_string(), at(1.0)),
            ("exit".to_string(), at(2.0))
        ]
    );
    let first = changes
        .iter()
        .find(|c| c.id == "u12")
        .map(|c| c.account.clone());
    assert_eq!(first.as_deref(), Some("~u12"));
    assert!(
        engine
            .memberships()
            .iter()
            .any(|m| m.segment == "engaged_target_contacts" && m.account == "acme")
    );
}

#[test]
fn explain_names_values_events_and_the_next_change() {
    let mut s = Script::new();
    s.group(Some("u1"), "acme", json!({"target": true}), at(0.0));
    s.track(
        "u1",
        Some("acme"),
        "Email Opened",
        json!({"email_id":"e1"}),
        at(1.0),
    );
    let (engine, _) = replay(&presets(), &s.events, at(2.0));
    let set = &engine.set;
    let seg = set
        .index_of("engaged_target_contacts")
        .unwrap_or(usize::MAX);
    let acme = engine.accounts.get("acme");
    let ex = acme.and_then(|a| a.explain(set, seg, Some("u1"), at(2.0)));
    let Some(ex) = ex else {
        panic!("no explanation")
    };
    assert!(ex.member);
    assert_eq!(ex.next_change, Some(at(31.0)));
    let kids = &ex.condition.children;
    assert_eq!(kids[0].observed, "target = true");
    assert_eq!(kids[1].observed, "1 events");
    assert_eq!(
        kids[1].evidence,
        vec!["2026-01-02T00:00:00.000Z".to_string()]
    );
}

#[test]
fn a_window_expiring_at_the_same_instant_as_another_contacts_event_still_exits() {
    let mut s = Script::new();
    s.track("u3", Some("a0"), "Meeting Booked", json!({}), at(0.0));
    s.track("u0", Some("a0"), "Meeting Booked", json!({}), at(30.0));
    let (engine, changes) = replay(&presets(), &s.events, at(30.0));
    assert_eq!(
        flips(&changes, "engaged_non_target_contacts", "u3"),
        vec![
            ("enter".to_string(), at(0.0)),
            ("exit".to_string(), at(30.0))
        ],
        "{changes:#?}"
    );
    assert!(
        !engine
            .memberships()
            .iter()
            .any(|m| m.id == "u3" && m.segment == "engaged_non_target_contacts")
    );
}

#[test]
fn alias_renames_a_contact_keeping_its_state() {
    let mut s = Script::new();
    s.group(Some("anon-7"), "acme", json!({"target": true}), at(0.0));
    s.track(
        "anon-7",
        Some("acme"),
        "Email Opened",
        json!({"email_id":"e"}),
        at(1.0),
    );
    s.push(
        json!({"type":"alias","userId":"ann","previousId":"anon-7"}),
        at(2.0),
    );
    s.track("ann", None, "Meeting Booked", json!({}), at(3.0));
    let (engine, changes) = replay(&presets(), &s.events, at(4.0));
    assert_eq!(
        flips(&changes, "engaged_target_contacts", "anon-7"),
        vec![
            ("enter".to_string(), at(1.0)),
            ("exit".to_string(), at(2.0))
        ]
    );
    assert_eq!(
        flips(&changes, "engaged_target_contacts", "ann"),
        vec![("enter".to_string(), at(2.0))]
    );
    // The open from before the alias still counts: it exits 30 days after the meeting, not the open.
    let acme = &engine.accounts["acme"];
    assert_eq!(acme.contacts.len(), 1);
    assert_eq!(acme.contact("ann").map(|c| c.series[0].ts.len()), Some(2));
    assert_eq!(engine.directory.get("ann"), Some("acme"));
    assert_eq!(engine.directory.get("anon-7"), None);
}
