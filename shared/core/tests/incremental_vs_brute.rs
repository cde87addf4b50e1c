//! Property: the incremental engine (compact state, pruning, dependency
//! masks, timers) agrees with brute-force judgement over the raw events,
//! at every sampled instant, including instants exactly on window edges,
//! whether events arrive in time order (replay) or shuffled and late (live).

mod common;
use common::*;
use liveseg_core::definition::parse_definitions;
use liveseg_core::time::{DAY, HOUR, Millis};
use liveseg_core::{Engine, Event, Membership, SegmentDefinition, SegmentSet, brute};
use proptest::prelude::*;
use serde_json::json;
use std::collections::BTreeSet;

/// Extra definitions that exercise every condition kind beyond the presets.
const EXTRA: &str = r#"
- key: busy_accounts
  name: Accounts with two engaged contacts this week
  entity: account
  condition:
    contacts:
      quantifier: at_least
      count: 2
      condition: {events: {event: {kind: engagement}, within: 7d}}
- key: all_buyers
  name: Accounts whose every contact is a buyer
  entity: account
  condition:
    contacts: {quantifier: all, condition: {trait: {name: role, op: eq, value: buyer}}}
- key: quiet_readers
  name: No page view for 10 days (or never), in a target account
  entity: contact
  condition:
    all:
      - recency: {event: {kind: page}, older_than: 10d, or_never: true}
      - in_segment: engaged_target_contacts
- key: surging
  name: Engagement surge
  entity: contact
  condition:
    rate_change: {event: {kind: engagement}, recent: 7d, prior: 21d, min_prior: 1, min_ratio: 2}
- key: at_dormant_accounts
  name: Contacts of dormant high-fit accounts
  entity: contact
  condition:
    any:
      - in_segment: dormant_high_fit_accounts
      - not: {recency: {event: {kind: custom, name: Webinar Registered, where: [{name: tier, op: eq, value: gold}]}, newer_than: 3d}}
- key: recent_clickers
  name: Clicked within 2 days, first seen long ago
  entity: contact
  condition:
    all:
      - events: {event: {kind: click}, within: 2d}
      - first_event: {event: {kind: engagement}, older_than: 5d}
"#;

fn definitions() -> Vec<SegmentDefinition> {
    let mut defs = liveseg_core::presets::presets();
    match parse_definitions(EXTRA) {
        Ok(extra) => defs.extend(extra),
        Err(e) => panic!("extra definitions: {e:?}"),
    }
    defs
}

#[derive(Clone, Debug)]
enum Op {
    Group {
        user: Option<u8>,
        account: u8,
        tier: u8,
        target: bool,
        fit: u8,
        customer: bool,
    },
    Identify {
        user: u8,
        buyer: bool,
    },
    Send {
        user: u8,
        email: u8,
    },
    Open {
        user: u8,
        email: u8,
    },
    Click {
        user: u8,
        email: u8,
    },
    Page {
        user: Option<u8>,
        account: Option<u8>,
        pricing: bool,
    },
    Engage {
        user: u8,
        kind: u8,
    },
    Webinar {
        user: u8,
        gold: bool,
    },
    Suppress {
        user: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let user = 0u8..5;
    let account = 0u8..3;
    prop_oneof![
        2 => (proptest::option::of(user.clone()), account.clone(), 1u8..4, any::<bool>(), 0u8..101, any::<bool>())
            .prop_map(|(user, account, tier, target, fit, customer)| Op::Group { user, account, tier, target, fit, customer }),
        1 => (user.clone(), any::<bool>()).prop_map(|(user, buyer)| Op::Identify { user, buyer }),
        4 => (user.clone(), 0u8..12).prop_map(|(user, email)| Op::Send { user, email }),
        3 => (user.clone(), 0u8..12).prop_map(|(user, email)| Op::Open { user, email }),
        2 => (user.clone(), 0u8..12).prop_map(|(user, email)| Op::Click { user, email }),
        3 => (proptest::option::of(user.clone()), proptest::option::of(account.clone()), any::<bool>())
            .prop_map(|(user, account, pricing)| Op::Page { user, account, pricing }),
        3 => (user.clone(), 0u8..3).prop_map(|(user, kind)| Op::Engage { user, kind }),
        1 => (user.clone(), any::<bool>()).prop_map(|(user, gold)| Op::Webinar { user, gold }),
        1 => user.prop_map(|user| Op::Suppress { user }),
    ]
}

/// Timestamps on a coarse grid so many events share edges exactly (1-day
/// and 12-hour steps against 2d/3d/5d/7d/10d/30d/90d/120d windows).
fn ts() -> impl Strategy<Value = Millis> {
    (0i64..240, 0i64..2).prop_map(|(d, h)| T0 + d * DAY + h * 12 * HOUR)
}

fn build(ops: &[(Op, Millis, bool)]) -> Vec<Event> {
    let mut s = Script::new();
    let mut sent = std::collections::HashSet::new();
    for (i, (op, ts, with_group)) in ops.iter().enumerate() {
        let u = |n: &u8| format!("u{n}");
        // Contacts 0-2 start in a0-a2 when a group is given; the rest rely on the directory.
        let ctx = |n: &u8| {
            if *with_group {
                Some(format!("a{}", n % 3))
            } else {
                None
            }
        };
        // Email ids are unique per user so a send has one owner.
        let email = |user: &u8, e: &u8| json!({"email_id": format!("{user}-{e}")});
        match op {
            Op::Group {
                user,
                account,
                tier,
                target,
                fit,
                customer,
            } => {
                let stage = if *customer { "customer" } else { "prospect" };
                let traits = json!({"tier": tier, "target": target, "icp_fit": fit, "lifecycle_stage": stage});
                s.group(
                    user.map(|n| u(&n)).as_deref(),
                    &format!("a{account}"),
                    traits,
                    *ts,
                );
            }
            Op::Identify { user, buyer } => {
                let role = if *buyer { "buyer" } else { "user" };
                s.push(
                    json!({"type":"identify","userId":u(user),"traits":{"role":role}}),
                    *ts,
                );
            }
            Op::Send { user, email: e } => {
                // Never re-send an email id: a repeat of a pruned send is the documented exception.
                if !sent.insert((*user, *e)) {
                    continue;
                }
                s.track(
                    &u(user),
                    ctx(user).as_deref(),
                    "Email Delivered",
                    email(user, e),
                    *ts,
                );
            }
            Op::Open { user, email: e } => {
                s.track(
                    &u(user),
                    ctx(user).as_deref(),
                    "Email Opened",
                    email(user, e),
                    *ts,
                );
            }
            Op::Click { user, email: e } => {
                s.track(
                    &u(user),
                    ctx(user).as_deref(),
                    "Email Link Clicked",
                    email(user, e),
                    *ts,
                );
            }
            Op::Page {
                user,
                account,
                pricing,
            } => {
                let path = if *pricing { "/pricing" } else { "/blog" };
                let acct = account.map(|a| format!("a{a}"));
                match user {
                    Some(n) => s.page(Some(&u(n)), acct.as_deref(), path, *ts),
                    None => s.page(None, Some(acct.as_deref().unwrap_or("a0")), path, *ts),
                };
            }
            Op::Engage { user, kind } => {
                let name = ["Meeting Booked", "Product Used", "Email Replied"][*kind as usize];
                let props = if *kind == 2 {
                    email(user, &(i as u8 % 12))
                } else {
                    json!({})
                };
                s.track(&u(user), ctx(user).as_deref(), name, props, *ts);
            }
            Op::Webinar { user, gold } => {
                let tier = if *gold { "gold" } else { "silver" };
                s.track(
                    &u(user),
                    ctx(user).as_deref(),
                    "Webinar Registered",
                    json!({"tier": tier}),
                    *ts,
                );
            }
            Op::Suppress { user } => {
                s.track(
                    &u(user),
                    ctx(user).as_deref(),
                    "Unsubscribed",
                    json!({}),
                    *ts,
                );
            }
        }
    }
    s.events
}

fn compiled() -> SegmentSet {
    match SegmentSet::compile(&definitions()) {
        Ok(s) => s,
        Err(e) => panic!("{e:?}"),
    }
}

fn engine_members(engine: &Engine) -> BTreeSet<Membership> {
    engine.memberships().into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, .. ProptestConfig::default() })]

    /// Replay: events in time order, clock at each event; at each sample the
    /// engine (timers fired up to it) equals brute force over events <= sample.
    #[test]
    fn replay_agrees_with_brute_force_at_every_sample(
        ops in proptest::collection::vec((op(), ts(), any::<bool>()), 1..60),
        samples in proptest::collection::vec(ts(), 1..8),
    ) {
        let set = compiled();
        let defs = definitions();
        let mut events = build(&ops);
        events.sort_by_key(|e| e.ts);
        // Samples also land exactly on window edges of event instants.
        let mut samples = samples;
        if let Some(e) = events.first() {
            samples.extend([e.ts + 30 * DAY, e.ts + 7 * DAY, e.ts + 90 * DAY]);
        }
        samples.sort();
        let mut engine = Engine::new(set);
        let mut out = Vec::new();
        let mut applied = 0;
        for s in samples {
            while applied < events.len() && events[applied].ts <= s {
                engine.apply(&events[applied], events[applied].ts, &mut out);
                applied += 1;
            }
            engine.advance_all(s, &mut out);
            let want = brute::memberships(&defs, &events[..applied], s);
            prop_assert_eq!(engine_members(&engine), want, "at sample {}", s);
        }
        // Folding the emitted enter/exit records gives the same final membership.
        let mut folded = BTreeSet::new();
        for c in &out {
            let m = Membership { segment: c.segment.clone(), entity: c.entity.as_str(), id: c.id.clone(), account: c.account.clone() };
            match c.kind {
                liveseg_core::ChangeKind::Enter => prop_assert!(folded.insert(m), "double enter {:?}", c),
                liveseg_core::ChangeKind::Exit => prop_assert!(folded.remove(&m), "exit without enter {:?}", c),
            }
        }
        prop_assert_eq!(folded, engine_members(&engine));
    }

    /// Live: events arrive shuffled and late; the clock only moves forward.
    #[test]
    fn shuffled_late_arrivals_agree_with_brute_force(
        ops in proptest::collection::vec((op(), ts(), any::<bool>()), 1..60),
        steps in proptest::collection::vec(0i64..(20 * DAY), 60),
        end in 0i64..(300 * DAY),
    ) {
        let set = compiled();
        let defs = definitions();
        let events = build(&ops); // arrival order = generation order, times unordered
        let mut engine = Engine::new(set);
        let mut out = Vec::new();
        let mut now = T0;
        for (i, e) in events.iter().enumerate() {
            // Processing time never trails the event by less than zero: events are never from the future here.
            now = now.max(e.ts) + steps[i % steps.len()] / 4;
            engine.apply(e, now, &mut out);
            if i % 7 == 0 {
                // Other accounts' timers fire on their own in a node; here, explicitly.
                engine.advance_all(now, &mut out);
                let want = brute::memberships(&defs, &events[..=i], now);
                prop_assert_eq!(engine_members(&engine), want, "after event {} at {}", i, now);
            }
        }
        let t = now + end;
        engine.advance_all(t, &mut out);
        prop_assert_eq!(engine_members(&engine), brute::memberships(&defs, &events, t));
    }
}

/// Checkpoint round trip: a restored account continues exactly as the original.
#[test]
fn restored_checkpoint_continues_identically() {
    let set = compiled();
    let mut s = Script::new();
    s.group(
        Some("u1"),
        "a0",
        json!({"target": true, "tier": 1}),
        at(0.0),
    );
    s.track(
        "u1",
        Some("a0"),
        "Email Opened",
        json!({"email_id":"x"}),
        at(1.0),
    );
    s.page(None, Some("a0"), "/pricing", at(2.0));
    let mut a = liveseg_core::Account::new("a0", &set);
    let mut out = Vec::new();
    for e in &s.events {
        a.apply(&set, e, None, e.ts, &mut out);
    }
    let bytes = match serde_json::to_vec(&a) {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    };
    let restored: liveseg_core::Account = match serde_json::from_slice(&bytes) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    let mut b = restored.restore();
    let (mut o1, mut o2) = (Vec::new(), Vec::new());
    a.advance_to(&set, at(100.0), &mut o1);
    b.advance_to(&set, at(100.0), &mut o2);
    assert!(!o1.is_empty());
    assert_eq!(o1, o2);
}
