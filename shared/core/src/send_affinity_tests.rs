use super::*;
use crate::content::content_key;
use crate::event::{Limits, parse_message};
use crate::time::{DAY, format_rfc3339};
use serde_json::json;

/// 2026-01-01T00:00:00Z
const T0: Millis = 1_767_225_600_000;

fn ev(n: usize, ts: Millis, v: serde_json::Value) -> Event {
    let mut v = v;
    v["messageId"] = json!(format!("m{n}"));
    v["timestamp"] = json!(format_rfc3339(ts));
    v["userId"] = json!("u");
    parse_message(&v, Millis::MAX / 2, &Limits::default()).expect("test event")
}

fn send(n: usize, ts: Millis, content: Option<&str>) -> Event {
    let mut props = json!({"email_id": format!("e{n}")});
    if let Some(c) = content {
        props["content_id"] = json!(c);
    }
    ev(
        n,
        ts,
        json!({"type":"track","event":"Email Delivered","properties":props}),
    )
}

fn click(n: usize, ts: Millis, content: &str) -> Event {
    ev(
        n,
        ts,
        json!({"type":"track","event":"Email Link Clicked",
            "properties":{"email_id":"e0","content_id":content}}),
    )
}

fn page(n: usize, ts: Millis, path: &str) -> Event {
    ev(n, ts, json!({"type":"page","properties":{"path":path}}))
}

/// warehouse (1,0,0) also at /blog/warehouse, pricing (0,1,0), mixed
/// (1,1,0)/sqrt2, and a dataless id nobody registered.
fn library() -> ContentLibrary {
    let mut l = ContentLibrary::default();
    l.insert_content("warehouse", Some("/blog/warehouse"), &[1.0, 0.0, 0.0])
        .expect("fixture");
    l.insert_content("pricing", None, &[0.0, 1.0, 0.0])
        .expect("fixture");
    l.insert_content("mixed", None, &[1.0, 1.0, 0.0])
        .expect("fixture");
    l
}

fn trail(events: &[Event]) -> ContentTrail {
    let mut t = ContentTrail::default();
    events.iter().for_each(|e| t.apply(e));
    t
}

fn key(id: &str) -> Option<u64> {
    Some(content_key(id))
}

#[test]
fn affinity_reads_engagements_strictly_before_the_instant() {
    let lib = library();
    // A page view of the warehouse post reaches it by its URL.
    let t = trail(&[page(1, T0, "https://x.io/blog/warehouse/")]);
    assert_eq!(t.affinity(&lib, T0, key("warehouse")), [0.0, 0.0]);
    assert_eq!(t.affinity(&lib, T0 + 1, key("warehouse")), [1.0, 1.0]);
    // Unrelated content is a cosine of 0 that is known, not unknown.
    assert_eq!(t.affinity(&lib, T0 + 1, key("pricing")), [0.0, 1.0]);
    let mixed = t.affinity(&lib, T0 + 1, key("mixed"));
    assert!((mixed[0] - 0.5f32.sqrt()).abs() < 1e-6, "{mixed:?}");
    // No content, content nobody registered: unknown.
    assert_eq!(t.affinity(&lib, T0 + 1, None), [0.0, 0.0]);
    assert_eq!(t.affinity(&lib, T0 + 1, key("webinar")), [0.0, 0.0]);
    // Engagement with content the library does not know: unknown.
    let t = trail(&[click(1, T0, "webinar")]);
    assert_eq!(t.affinity(&lib, T0 + 1, key("warehouse")), [0.0, 0.0]);
}

#[test]
fn older_engagement_weighs_less_by_the_half_life() {
    let lib = library();
    let half_life = crate::interest::INTEREST_HALF_LIFE;
    let t = trail(&[
        click(1, T0, "warehouse"),
        click(2, T0 + half_life, "pricing"),
    ]);
    // At the second click's instant + 1 ms: warehouse weighs ~0.5 of pricing.
    let at = T0 + half_life + 1;
    let [a, known] = t.affinity(&lib, at, key("warehouse"));
    assert_eq!(known, 1.0);
    assert!((a - 0.5 / 1.25f32.sqrt()).abs() < 1e-4, "{a}");
    // Ninety days on, the first click has left the window: pricing only.
    let at = T0 + HORIZON + 1;
    assert_eq!(t.affinity(&lib, at, key("warehouse")), [0.0, 1.0]);
}

#[test]
fn arrival_order_changes_no_bit() {
    let events: Vec<Event> = (0..40)
        .map(|i| {
            let ts = T0 + (i as Millis % 7) * DAY + (i as Millis % 3);
            match i % 4 {
                0 => click(i, ts, "warehouse"),
                1 => page(i, ts, "/blog/warehouse"),
                2 => click(i, ts, "pricing"),
                _ => send(i, ts, Some(if i % 8 == 3 { "mixed" } else { "pricing" })),
            }
        })
        .collect();
    let forward = trail(&events);
    let mut reversed = events.clone();
    reversed.reverse();
    let mut interleaved: Vec<Event> = events.iter().step_by(2).cloned().collect();
    interleaved.extend(events.iter().skip(1).step_by(2).cloned());
    let lib = library();
    for other in [trail(&reversed), trail(&interleaved)] {
        assert_eq!(other, forward);
        let at = T0 + 8 * DAY;
        let content = forward.latest_send_content(at);
        assert_eq!(other.latest_send_content(at), content);
        let (a, b) = (
            forward.affinity(&lib, at, content),
            other.affinity(&lib, at, content),
        );
        assert_eq!(a.map(f32::to_bits), b.map(f32::to_bits));
        assert_eq!(a[1], 1.0);
    }
}

#[test]
fn latest_send_content_is_the_last_send_s_before_the_instant() {
    let t = trail(&[
        send(1, T0, Some("warehouse")),
        send(2, T0 + DAY, None),
        send(3, T0 + 2 * DAY, Some("pricing")),
    ]);
    assert_eq!(t.latest_send_content(T0), None);
    assert_eq!(t.latest_send_content(T0 + 1), key("warehouse"));
    // The latest send named no content: none, not an older send's.
    assert_eq!(t.latest_send_content(T0 + DAY + 1), None);
    assert_eq!(t.latest_send_content(T0 + 2 * DAY), None);
    assert_eq!(t.latest_send_content(T0 + 2 * DAY + 1), key("pricing"));
}

#[test]
fn pruning_changes_no_row_from_its_instant_on() {
    let lib = library();
    let events: Vec<Event> = (0..60)
        .map(|i| {
            let ts = T0 + i as Millis * 3 * DAY;
            match i % 3 {
                0 => click(i, ts, "warehouse"),
                1 => page(i, ts, "/blog/warehouse"),
                _ => send(i, ts, Some(if i % 2 == 0 { "mixed" } else { "pricing" })),
            }
        })
        .collect();
    let full = trail(&events);
    for now in [T0 + 50 * DAY, T0 + 120 * DAY, T0 + 200 * DAY] {
        let mut pruned = full.clone();
        pruned.prune(now);
        let kept = |t: &ContentTrail| t.clicks.len() + t.pages.len();
        assert!(kept(&pruned) < kept(&full) || now < T0 + HORIZON);
        for t in [now, now + 1, now + 5 * DAY, now + 100 * DAY] {
            let content = full.latest_send_content(t);
            assert_eq!(pruned.latest_send_content(t), content, "at {t}");
            for c in [content, key("warehouse")] {
                assert_eq!(
                    pruned.affinity(&lib, t, c).map(f32::to_bits),
                    full.affinity(&lib, t, c).map(f32::to_bits),
                    "now {now}, at {t}"
                );
            }
        }
    }
}

#[test]
fn keeps_the_latest_engagements_past_the_cap() {
    let events: Vec<Event> = (0..MAX_TIMES + 10)
        .map(|i| click(i, T0 + i as Millis, "warehouse"))
        .collect();
    let t = trail(&events);
    assert_eq!(t.clicks.len(), MAX_TIMES);
    assert_eq!(t.clicks[0].ts, T0 + 10);
    // One older than all kept, arriving late, is not kept.
    let mut late = t.clone();
    late.apply(&click(999, T0 - 1, "pricing"));
    assert_eq!(late, t);
    // Page views, however many, do not push the clicks out.
    let mut browsed = t.clone();
    for i in 0..3 * MAX_TIMES {
        browsed.apply(&page(2000 + i, T0 + 1000 + i as Millis, "/unknown"));
    }
    assert_eq!(browsed.clicks, t.clicks);
    assert_eq!(browsed.pages.len(), MAX_TIMES);
    let lib = library();
    assert_eq!(
        browsed.affinity(&lib, T0 + DAY, key("warehouse")),
        [1.0, 1.0]
    );
}
