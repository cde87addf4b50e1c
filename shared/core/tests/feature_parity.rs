//! Train/serve parity: the features a live account computes for its
//! contacts (what the node's scorer sends to the model service) equal the
//! features training computes from the same history, whatever order the
//! events arrived in, the content-affinity features included (sends with
//! content, clicks on content, page views, one content item reached by its
//! URL).

mod common;

use common::{Script, at};
use liveseg_core::content::ContentLibrary;
use liveseg_core::definition::parse_definitions;
use liveseg_core::labels::replay_until;
use liveseg_core::{Engine, SegmentSet};
use serde_json::json;
use std::sync::Arc;

/// The tenant's content: what the sends carry, the clicked guide, and the
/// pricing page (reached by its path).
fn library() -> Arc<ContentLibrary> {
    let mut l = ContentLibrary::default();
    for (id, url, v) in [
        ("guide", None, [1.0, 0.2, 0.0]),
        (
            "pricing",
            Some("https://acme.example/pricing"),
            [0.1, 1.0, 0.3],
        ),
        ("launch", None, [0.7, 0.7, 0.1]),
        ("webinar", None, [0.0, 0.3, 1.0]),
    ] {
        l.insert_content(id, url, &v).expect("fixture");
    }
    Arc::new(l)
}

fn scored_set() -> SegmentSet {
    let defs = parse_definitions(
        "[{key: hot, name: Hot, entity: contact, condition: {score: {target: click_7d, at_least: 0.5}}}]",
    )
    .expect("fixture");
    SegmentSet::compile_with(&defs, library()).expect("fixture")
}

/// Contacts in three accounts, a job move, traits, sends and engagement.
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
        json!({"lifecycle_stage": "customer"}),
        at(0.2),
    );
    s.push(json!({"type":"identify","userId":"u1","traits":{"seniority":"Director","role":"Data Engineering"}}), at(0.3));
    for day in 0..80usize {
        let d = day as f64;
        for (k, u) in ["u1", "u2", "u3"].iter().enumerate() {
            if (day + k) % 2 == 0 {
                let email = format!("{u}-{day}");
                // Content in turn: launch, webinar, none, and one nobody
                // registered (the last send: u1's, u2's launch, u3's webinar).
                let content = ["launch", "webinar", "", "unregistered"][(day / 2 + k) % 4];
                s.track(
                    u,
                    None,
                    "Email Delivered",
                    json!({"email_id": email, "content_id": content}),
                    at(d + 0.3),
                );
                if (day * 3 + k) % 5 != 0 {
                    s.track(
                        u,
                        None,
                        "Email Opened",
                        json!({"email_id": email}),
                        at(d + 0.4),
                    );
                }
                if (day + 2 * k) % 7 == 0 {
                    s.track(
                        u,
                        None,
                        "Email Link Clicked",
                        json!({"email_id": email, "content_id": "guide"}),
                        at(d + 1.1),
                    );
                }
            }
        }
        // Past the content trail's caps (64 clicks and 64 page views in 90
        // days), arriving out of order in the reversed blocks: u2 reads the
        // pricing page and an unregistered one daily, u3 clicks twice a day.
        s.page(Some("u2"), None, "/pricing", at(d + 0.2));
        s.page(Some("u2"), None, "/blog/unregistered", at(d + 0.25));
        for (content, hour) in [("guide", 0.9), ("webinar", 0.95)] {
            s.track(
                "u3",
                None,
                "Email Link Clicked",
                json!({"email_id": "x", "content_id": content}),
                at(d + hour),
            );
        }
        if day % 6 == 0 {
            s.page(Some("u2"), None, "/pricing", at(d + 0.5));
            s.page(None, Some("globex"), "/compare", at(d + 0.6));
        }
        if day == 40 {
            s.group(Some("u2"), "globex", json!({}), at(d + 0.45));
        }
        if day % 19 == 0 {
            s.track("u3", None, "Meeting Booked", json!({}), at(d + 0.7));
            s.track(
                "u1",
                None,
                "Email Bounced",
                json!({"email_id": "x", "type": "soft"}),
                at(d + 0.8),
            );
        }
    }
    s
}

#[test]
fn live_feature_rows_equal_training_features() {
    let s = history();
    let t = at(81.0);
    let expected = replay_until(s.events.clone(), t, library());
    // Arrival orders: in time order, and each block of 25 events reversed
    // (opens before their sends, pages before the group call that moves u2).
    let mut blocks = s.events.clone();
    blocks.sort_by_key(|e| e.ts);
    let in_order = blocks.clone();
    for chunk in blocks.chunks_mut(25) {
        chunk.reverse();
    }
    for (name, order) in [("time order", in_order), ("blocks reversed", blocks)] {
        let mut engine = Engine::new(scored_set());
        let mut out = Vec::new();
        let mut now = i64::MIN;
        for e in &order {
            now = now.max(e.ts);
            engine.apply(e, now, &mut out);
        }
        let (mut rows, mut known_rows) = (0, 0);
        let set = scored_set();
        let known = liveseg_core::features::feature_names()
            .iter()
            .position(|n| n == "send_content_known")
            .expect("feature");
        for (id, account) in &engine.accounts {
            for (contact, live) in account.feature_rows(&set, t + 1) {
                let trained = expected.features(&contact, id, t + 1);
                assert_eq!(live, trained, "{name}: {contact} in {id}");
                rows += 1;
                known_rows += live[known] as usize;
            }
        }
        assert_eq!(rows, 3, "{name}: every contact has a row");
        assert_eq!(known_rows, 2, "{name}: u1's last content is unknown");
        let trail = |c: &str| &expected.contacts[c].content;
        assert_eq!(trail("u2").pages.len(), liveseg_core::features::MAX_TIMES);
        assert_eq!(trail("u3").clicks.len(), liveseg_core::features::MAX_TIMES);
    }
}

/// Training keeps only what features and labels read of each event
/// (`keep_for_features`): the rows are the same, and the events smaller.
#[test]
fn slim_events_give_the_same_training_rows() {
    let mut s = history();
    // What real histories carry besides: names, campaign properties, CRM traits.
    s.push(
        json!({"type":"identify","userId":"u2","anonymousId":"anon-2",
        "traits":{"email":"u2@acme.example","seniority":"VP","phone":"+1 555"}}),
        at(0.35),
    );
    // An alias with only an anonymous id: the contact is routed by it.
    s.push(
        json!({"type":"alias","anonymousId":"u4","previousId":"u3"}),
        at(50.5),
    );
    for e in &mut s.events {
        e.properties.insert("campaign".into(), json!("q3-launch"));
    }
    let t = at(81.0);
    let full = liveseg_core::labels::training_rows(s.events.clone(), t, library());
    let slim: Vec<_> = s
        .events
        .iter()
        .cloned()
        .map(liveseg_core::features::keep_for_features)
        .collect();
    let kept = |events: &[liveseg_core::Event]| -> usize {
        events
            .iter()
            .map(|e| e.properties.len() + e.traits.len())
            .sum()
    };
    assert!(
        kept(&slim) * 3 < kept(&s.events),
        "{} of {}",
        kept(&slim),
        kept(&s.events)
    );
    assert!(slim.iter().all(|e| e.name.is_none()));
    let rows = liveseg_core::labels::training_rows(slim, t, library());
    assert!(rows.len() > 100);
    let known = liveseg_core::features::feature_names()
        .iter()
        .position(|n| n == "send_content_known")
        .expect("feature");
    assert!(rows.iter().filter(|r| r.features[known] == 1.0).count() > 30);
    assert_eq!(format!("{rows:?}"), format!("{full:?}"));
}

#[test]
fn features_are_kept_only_when_scores_are_read() {
    let s = history();
    let plain = SegmentSet::compile(&liveseg_core::presets::presets()).expect("presets");
    let mut engine = Engine::new(plain.clone());
    let mut out = Vec::new();
    for e in &s.events {
        engine.apply(e, e.ts, &mut out);
    }
    assert!(
        engine
            .accounts
            .values()
            .all(|a| a.feature_rows(&plain, at(81.0)).is_empty())
    );
}
