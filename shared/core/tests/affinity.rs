//! Affinity conditions in the incremental engine, with synthetic content
//! vectors (no model): entering on clicks and page views, leaving when
//! newer interests outweigh older ones, agreement with the brute-force
//! reference, explanations naming the content behind the profile, and the
//! checks that refuse unresolved targets.

mod common;

use common::{Script, at, flips, replay};
use liveseg_core::brute;
use liveseg_core::content::ContentLibrary;
use liveseg_core::definition::parse_definitions;
use liveseg_core::{Account, SegmentSet};
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::Arc;

fn library() -> ContentLibrary {
    let mut lib = ContentLibrary::default();
    lib.insert_content("warehouse", Some("/blog/warehouse"), &[1.0, 0.0, 0.0])
        .expect("test fixture");
    lib.insert_content("hiring", None, &[0.0, 1.0, 0.0])
        .expect("test fixture");
    lib.insert_content("lakehouse", None, &[0.8, 0.0, 0.6])
        .expect("test fixture");
    lib.insert_topic("data", &[0.9, 0.0, 0.1])
        .expect("test fixture");
    lib
}

const DEFS: &str = r#"
- key: data_fans
  name: Data fans
  entity: contact
  condition: {affinity: {topic: data, at_least: 0.7}}
- key: warehouse_readers
  name: Warehouse readers
  entity: contact
  condition: {affinity: {content: warehouse, at_least: 0.9}}
- key: accounts_with_data_fans
  name: Accounts with data fans
  entity: account
  condition: {contacts: {quantifier: any, condition: {affinity: {topic: data, at_least: 0.7}}}}
"#;

fn set() -> SegmentSet {
    let defs = parse_definitions(DEFS).expect("test fixture");
    SegmentSet::compile_with(&defs, Arc::new(library())).expect("test fixture")
}

fn click(s: &mut Script, user: &str, content: &str, day: f64) {
    s.track(
        user,
        Some("acme"),
        "Email Link Clicked",
        json!({"email_id": format!("{user}-{day}"), "content_id": content}),
        at(day),
    );
}

#[test]
fn clicks_and_page_views_enter_and_newer_interests_take_over() {
    let set = set();
    let mut s = Script::new();
    click(&mut s, "u1", "warehouse", 1.0);
    // u2 views the warehouse page by URL (query strings do not matter).
    s.page(Some("u2"), Some("acme"), "/blog/warehouse/?utm=x", at(2.0));
    click(&mut s, "u3", "hiring", 3.0);
    // u1 then clicks hiring twice, 60 days later: the old click weighs 1/4.
    click(&mut s, "u1", "hiring", 61.0);
    click(&mut s, "u1", "hiring", 62.0);
    let (engine, changes) = replay(&set, &s.events, at(70.0));
    assert_eq!(
        flips(&changes, "data_fans", "u1"),
        vec![("enter".into(), at(1.0)), ("exit".into(), at(61.0))]
    );
    assert_eq!(
        flips(&changes, "warehouse_readers", "u2"),
        vec![("enter".into(), at(2.0))]
    );
    assert!(flips(&changes, "data_fans", "u3").is_empty());
    assert_eq!(
        flips(&changes, "accounts_with_data_fans", "acme"),
        vec![("enter".into(), at(1.0))],
        "u2 keeps the account in after u1 leaves"
    );
    // The brute-force reference agrees at every instant of interest.
    let defs = parse_definitions(DEFS).unwrap();
    for day in [0.5, 1.0, 2.5, 60.0, 61.0, 62.0, 70.0] {
        let before: Vec<_> = s
            .events
            .iter()
            .filter(|x| x.ts <= at(day))
            .cloned()
            .collect();
        let (e, _) = replay(&set, &before, at(day));
        let got: BTreeSet<_> = e.memberships().into_iter().collect();
        let want = brute::memberships_with(&defs, &library(), &before, at(day));
        assert_eq!(got, want, "at day {day}");
    }
    // Explain names the value, the threshold and the content behind it.
    let acme: &Account = &engine.accounts["acme"];
    let seg = set.index_of("data_fans").unwrap();
    let ex = acme.explain(&set, seg, Some("u1"), at(70.0)).unwrap();
    assert!(!ex.member && ex.next_change.is_none());
    let c = &ex.condition;
    assert_eq!(c.description, "interest affinity to topic \"data\" >= 0.7");
    assert!(c.observed.starts_with("affinity 0.12"), "{}", c.observed);
    assert!(
        c.evidence[0].starts_with("content hiring: 8"),
        "{:?}",
        c.evidence
    );
    assert!(
        c.evidence[1].starts_with("content warehouse: 1"),
        "{:?}",
        c.evidence
    );
}

#[test]
fn engine_and_reference_agree_on_affinity_values() {
    let lib = library();
    let mut s = Script::new();
    click(&mut s, "u1", "lakehouse", 5.0);
    click(&mut s, "u1", "warehouse", 1.0);
    s.page(Some("u1"), Some("acme"), "/blog/warehouse", at(20.0));
    click(&mut s, "u1", "not-registered", 21.0);
    let set = set();
    let (engine, _) = replay(&set, &s.events, at(30.0));
    let c = engine.accounts["acme"].contact("u1").unwrap();
    let target = lib.topic("data").unwrap();
    let got = c.interest.affinity(&set.content, &target).unwrap();
    let refs: Vec<&liveseg_core::Event> = s.events.iter().collect();
    let want = brute::affinity(&lib, &refs, &target, at(30.0)).unwrap();
    assert!((f64::from(got) - want).abs() < 1e-5, "{got} vs {want}");
    // Every engagement key is kept, registered or not (so registering
    // content needs no replay): lakehouse, warehouse by id, warehouse by its
    // page path, and the unregistered item. The page view counts for
    // warehouse, found by its URL, and the unregistered item adds nothing.
    assert_eq!(c.interest.items.len(), 4);
    let shares = c.interest.contributions(&set.content, &target);
    let ids: Vec<&str> = shares.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(
        ids,
        vec!["warehouse", "lakehouse"],
        "one line per content item"
    );
}

#[test]
fn profiles_are_kept_only_when_something_reads_them() {
    let plain = SegmentSet::compile(&liveseg_core::presets::presets()).unwrap();
    assert!(!plain.tracks_interest);
    let mut s = Script::new();
    click(&mut s, "u1", "warehouse", 1.0);
    let (engine, _) = replay(&plain, &s.events, at(2.0));
    assert!(
        engine.accounts["acme"]
            .contact("u1")
            .unwrap()
            .interest
            .is_empty()
    );
    // Registered content alone turns profiles on (matching reads them).
    let with_content =
        SegmentSet::compile_with(&liveseg_core::presets::presets(), Arc::new(library())).unwrap();
    assert!(with_content.tracks_interest);
}

#[test]
fn unresolved_targets_and_bad_thresholds_are_refused_with_a_path() {
    let text = r#"
- key: a
  name: A
  entity: contact
  condition: {affinity: {content: nope, at_least: 0.5}}
- key: b
  name: B
  entity: contact
  condition: {affinity: {topic: "never embedded", at_least: 0.5}}
"#;
    let defs = parse_definitions(text).unwrap();
    let errs = SegmentSet::compile_with(&defs, Arc::new(library())).unwrap_err();
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, vec!["a.condition.affinity", "b.condition.affinity"]);
    assert!(
        errs[0].reason.contains("'nope' is not registered"),
        "{errs:?}"
    );
    let bad = r#"{"key":"c","name":"C","entity":"account","condition":{"affinity":{"topic":"x","content":"y","at_least":2}}}"#;
    let errs = parse_definitions(bad).unwrap_err();
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    assert!(paths.contains(&"condition.affinity"), "{paths:?}");
    assert!(paths.contains(&"condition.affinity.at_least"), "{paths:?}");
    assert_eq!(
        errs.iter()
            .filter(|e| e.path == "condition.affinity")
            .count(),
        2,
        "account context and both targets: {errs:?}"
    );
}

/// What the node relies on to register content without replaying a log:
/// profiles do not depend on the library, so state built before a
/// registration, judged again under the new library, has the memberships
/// of a full replay under it.
#[test]
fn registering_content_needs_only_a_rejudge_not_a_replay() {
    let defs = parse_definitions(DEFS).expect("test fixture");
    // Before: everything but lakehouse is registered.
    let mut before_lib = ContentLibrary::default();
    before_lib
        .insert_content("warehouse", Some("/blog/warehouse"), &[1.0, 0.0, 0.0])
        .expect("test fixture");
    before_lib
        .insert_content("hiring", None, &[0.0, 1.0, 0.0])
        .expect("test fixture");
    before_lib
        .insert_topic("data", &[0.9, 0.0, 0.1])
        .expect("test fixture");
    let before = SegmentSet::compile_with(&defs, Arc::new(before_lib)).expect("test fixture");
    let after = set();
    assert_eq!(
        before.fingerprint(),
        after.fingerprint(),
        "same state shape"
    );
    let mut s = Script::new();
    click(&mut s, "u1", "lakehouse", 1.0);
    click(&mut s, "u2", "lakehouse", 2.0);
    click(&mut s, "u2", "hiring", 3.0);
    s.page(Some("u3"), Some("beta"), "/blog/warehouse", at(4.0));
    let now = at(10.0);
    let (engine, _) = replay(&before, &s.events, now);
    let (full, _) = replay(&after, &s.events, now);
    let members = |set: &SegmentSet, accounts: &mut dyn Iterator<Item = &Account>| {
        let mut out = Vec::new();
        accounts.for_each(|a| liveseg_core::engine::account_memberships(set, a, &mut out));
        out.sort();
        out
    };
    let old = members(&before, &mut engine.accounts.values());
    let mut rejudged = Vec::new();
    for account in engine.accounts.values() {
        let mut a = account.clone();
        let mut changes = Vec::new();
        a.rejudge_all(&after, &mut changes);
        a.advance_to(&after, now, &mut changes);
        rejudged.push(a);
    }
    let new = members(&after, &mut rejudged.iter());
    assert_eq!(new, full.memberships());
    assert_ne!(old, new, "the registration changed who is in");
    assert!(
        new.iter().any(|m| m.segment == "data_fans" && m.id == "u1"),
        "{new:?}"
    );
}
