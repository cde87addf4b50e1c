//! Point-in-time training rows: features only from events strictly before
//! each send, labels only from events strictly after it within the target's
//! window, and unknown (not negative) labels while a window is open.

mod common;

use common::{Script, T0, at};
use liveseg_core::features::feature_names;
use liveseg_core::labels::{Row, Target, outcome_rows, training_rows};
use liveseg_core::time::{DAY, HOUR, Millis};
use serde_json::json;

fn send(s: &mut Script, user: &str, email: &str, ts: Millis) {
    s.track(
        user,
        Some("acme"),
        "Email Delivered",
        json!({"email_id": email}),
        ts,
    );
}

fn feature(row: &Row, name: &str) -> f32 {
    let i = feature_names()
        .iter()
        .position(|n| n == name)
        .expect("feature name");
    row.features[i]
}

fn row<'a>(rows: &'a [Row], user: &str, send_ts: Millis) -> &'a Row {
    rows.iter()
        .find(|r| r.contact == user && r.send_ts == send_ts)
        .expect("a row for this send")
}

#[test]
fn label_windows_are_strictly_after_the_send_and_closed() {
    let mut s = Script::new();
    let t = at(10.0);
    send(&mut s, "u1", "e1", t);
    // A click on e1 exactly 7 days later counts; u2's click 1 ms past the window does not.
    s.track(
        "u1",
        Some("acme"),
        "Email Link Clicked",
        json!({"email_id":"e1"}),
        t + 7 * DAY,
    );
    send(&mut s, "u2", "e2", t);
    s.track(
        "u2",
        Some("acme"),
        "Email Link Clicked",
        json!({"email_id":"e2"}),
        t + 7 * DAY + 1,
    );
    // u3 clicks a different email, and replies to this one on day 13.
    send(&mut s, "u3", "e3", t);
    s.track(
        "u3",
        Some("acme"),
        "Email Link Clicked",
        json!({"email_id":"other"}),
        t + DAY,
    );
    s.track(
        "u3",
        Some("acme"),
        "Email Replied",
        json!({"email_id":"e3"}),
        t + 13 * DAY,
    );
    // u4 books a meeting at the send's own instant (not after it) and unsubscribes on day 6.
    send(&mut s, "u4", "e4", t);
    s.track("u4", Some("acme"), "Meeting Booked", json!({}), t);
    s.track("u4", Some("acme"), "Unsubscribed", json!({}), t + 6 * DAY);

    let rows = training_rows(s.events.clone(), t + 40 * DAY, Default::default());
    let labels = |u: &str| {
        let r = row(&rows, u, t);
        Target::ALL.map(|x| r.label(x))
    };
    // Order: click_7d, reply, meeting_30d, unsubscribe_7d.
    assert_eq!(
        labels("u1"),
        [Some(true), Some(false), Some(false), Some(false)]
    );
    assert_eq!(
        labels("u2"),
        [Some(false), Some(false), Some(false), Some(false)]
    );
    assert_eq!(
        labels("u3"),
        [Some(false), Some(true), Some(false), Some(false)]
    );
    assert_eq!(
        labels("u4"),
        [Some(false), Some(false), Some(false), Some(true)]
    );

    // As of day 10 after the send: click and unsubscribe windows closed, reply and meeting open.
    let early = training_rows(s.events.clone(), t + 10 * DAY, Default::default());
    let r = row(&early, "u3", t);
    assert_eq!(
        Target::ALL.map(|x| r.label(x)),
        [Some(false), None, None, Some(false)]
    );
    // One day after the send nothing is known yet.
    let none = training_rows(s.events, t + DAY, Default::default());
    assert!(none.iter().all(|r| r.labels == [None; 4]));
}

#[test]
fn features_never_see_the_send_instant_or_later() {
    let mut s = Script::new();
    let t = at(20.0);
    s.track(
        "u1",
        Some("acme"),
        "Email Opened",
        json!({"email_id":"old"}),
        t - HOUR,
    );
    s.track(
        "u1",
        Some("acme"),
        "Email Opened",
        json!({"email_id":"x"}),
        t,
    );
    s.page(Some("u1"), Some("acme"), "/pricing", t);
    send(&mut s, "u1", "e1", t);
    s.track(
        "u1",
        Some("acme"),
        "Email Opened",
        json!({"email_id":"e1"}),
        t + HOUR,
    );
    let rows = training_rows(s.events, t + 30 * DAY, Default::default());
    let r = row(&rows, "u1", t);
    assert_eq!(feature(r, "opens_7d"), 1.0, "only the open an hour before");
    assert_eq!(feature(r, "pages_7d"), 0.0);
    assert_eq!(feature(r, "account_pricing_intent_30d"), 0.0);
    assert_eq!(
        feature(r, "sends_90d"),
        0.0,
        "the send itself is not history"
    );
}

/// A small history with several contacts, accounts, moves and engagement.
fn history() -> Script {
    let mut s = Script::new();
    s.group(
        Some("u1"),
        "acme",
        json!({"tier": 1, "target": true, "icp_fit": 80}),
        at(0.0),
    );
    s.group(Some("u2"), "acme", json!({}), at(0.1));
    s.group(
        Some("u3"),
        "globex",
        json!({"tier": 2, "lifecycle_stage": "customer"}),
        at(0.2),
    );
    for day in 0..60 {
        let d = day as f64;
        for (k, u) in ["u1", "u2", "u3"].iter().enumerate() {
            if (day + k) % 3 == 0 {
                let email = format!("{u}-{day}");
                s.track(
                    u,
                    None,
                    "Email Delivered",
                    json!({"email_id": email}),
                    at(d + 0.3),
                );
                if (day * 7 + k) % 4 != 0 {
                    s.track(
                        u,
                        None,
                        "Email Opened",
                        json!({"email_id": email}),
                        at(d + 0.35),
                    );
                }
                if (day * 5 + k) % 6 == 0 {
                    s.track(
                        u,
                        None,
                        "Email Link Clicked",
                        json!({"email_id": email}),
                        at(d + 1.2),
                    );
                }
            }
        }
        if day % 9 == 0 {
            s.page(Some("u2"), None, "/pricing", at(d + 0.5));
            s.page(None, Some("globex"), "/compare", at(d + 0.6));
        }
        if day == 30 {
            // u2 changes jobs: from now on its sends belong to globex.
            s.group(Some("u2"), "globex", json!({}), at(d + 0.4));
        }
        if day % 17 == 0 {
            s.track("u1", None, "Meeting Booked", json!({}), at(d + 0.8));
        }
    }
    s
}

#[test]
fn no_row_changes_when_the_future_is_removed() {
    let s = history();
    let as_of = at(100.0);
    let rows = training_rows(s.events.clone(), as_of, Default::default());
    assert!(rows.len() > 50, "{} rows", rows.len());
    for r in rows.iter().step_by(3) {
        let past: Vec<_> = s
            .events
            .iter()
            .filter(|e| e.ts <= r.send_ts)
            .cloned()
            .collect();
        let cut = training_rows(past, as_of, Default::default());
        let same = row(&cut, &r.contact, r.send_ts);
        assert_eq!(same.features, r.features, "{} at {}", r.contact, r.send_ts);
        assert_eq!(same.account, r.account);
    }
    // u2's sends after its move count globex's intent, not acme's.
    let moved = rows
        .iter()
        .find(|r| r.contact == "u2" && r.send_ts > at(31.0))
        .expect("a send after the move");
    assert_eq!(moved.account, "globex");
    assert_eq!(feature(moved, "account_customer"), 1.0);
}

#[test]
fn outcome_rows_are_the_training_rows_without_features() {
    let s = history();
    for as_of in [at(20.0), at(100.0)] {
        let full = training_rows(s.events.clone(), as_of, Default::default());
        let bare = outcome_rows(s.events.clone(), as_of);
        assert_eq!(full.len(), bare.len());
        assert!(full.iter().any(|r| r.label(Target::Click7d) == Some(true)));
        for (f, b) in full.iter().zip(&bare) {
            assert!(b.features.is_empty());
            let key = |r: &Row| {
                (
                    r.contact.clone(),
                    r.account.clone(),
                    r.email,
                    r.send_ts,
                    r.labels,
                )
            };
            assert_eq!(key(f), key(b));
        }
    }
}

#[test]
fn duplicates_and_suppressed_contacts_make_no_rows() {
    let mut s = Script::new();
    send(&mut s, "u1", "e1", at(1.0));
    send(&mut s, "u1", "e1", at(1.5)); // the ESP reports the same delivery twice
    let dup = s.events[0].clone();
    s.events.push(dup); // the same messageId again
    s.track(
        "u2",
        Some("acme"),
        "Email Marked as Spam",
        json!({"email_id":"e0"}),
        at(2.0),
    );
    send(&mut s, "u2", "e2", at(3.0));
    let rows = training_rows(s.events, at(60.0), Default::default());
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0].contact.as_str(), rows[0].send_ts), ("u1", at(1.0)));
    assert_eq!(T0 + DAY, at(1.0));
}

/// A send's content-affinity features are for its own content, from
/// engagements strictly before it: a click at the send's instant, or the
/// content of a later send, changes nothing.
#[test]
fn content_affinity_is_for_the_send_s_own_content_before_it() {
    use liveseg_core::content::ContentLibrary;
    let mut lib = ContentLibrary::default();
    lib.insert_content("warehouse", None, &[1.0, 0.0])
        .expect("fixture");
    lib.insert_content("pricing", None, &[0.0, 1.0])
        .expect("fixture");
    let lib = std::sync::Arc::new(lib);
    let mut s = Script::new();
    let click = |s: &mut Script, content: &str, ts: Millis| {
        s.track(
            "u1",
            Some("acme"),
            "Email Link Clicked",
            json!({"email_id": "e0", "content_id": content}),
            ts,
        );
    };
    let send_of = |s: &mut Script, email: &str, content: &str, ts: Millis| {
        s.track(
            "u1",
            Some("acme"),
            "Email Delivered",
            json!({"email_id": email, "content_id": content}),
            ts,
        );
    };
    click(&mut s, "warehouse", at(1.0));
    send_of(&mut s, "e1", "warehouse", at(2.0));
    // At e2's own instant: a click on pricing, which e2 must not see.
    send_of(&mut s, "e2", "pricing", at(3.0));
    click(&mut s, "pricing", at(3.0));
    send_of(&mut s, "e3", "pricing", at(4.0));
    send(&mut s, "u1", "e4", at(5.0));
    let rows = training_rows(s.events, at(60.0), lib);
    let pair = |ts| {
        let r = row(&rows, "u1", ts);
        (
            feature(r, "send_content_affinity"),
            feature(r, "send_content_known"),
        )
    };
    assert_eq!(pair(at(2.0)), (1.0, 1.0));
    assert_eq!(pair(at(3.0)), (0.0, 1.0), "unrelated, and known");
    // By e3, the pricing click (1 day old) outweighs the warehouse one (3 days).
    let (a, known) = pair(at(4.0));
    let (w_old, w_new) = (2f32.powf(-3.0 / 30.0), 2f32.powf(-1.0 / 30.0));
    let expected = w_new / (w_old * w_old + w_new * w_new).sqrt();
    assert!(
        (a - expected).abs() < 1e-5 && known == 1.0,
        "{a} vs {expected}"
    );
    // A send without content: unknown.
    assert_eq!(pair(at(5.0)), (0.0, 0.0));
}
