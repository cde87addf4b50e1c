use super::*;
use crate::content::tests::lib;
use crate::time::DAY;

fn id(name: &str) -> InterestKey {
    InterestKey::single(content_key(name))
}

fn ev(v: serde_json::Value) -> Event {
    use crate::event::{Limits, parse_message};
    parse_message(&v, i64::MAX / 2, &Limits::default()).unwrap()
}

fn click(props: serde_json::Value) -> Event {
    ev(
        serde_json::json!({"type":"track","messageId":"m","userId":"u",
        "event":"Email Link Clicked","timestamp":"2026-01-01T00:00:00Z","properties":props}),
    )
}

fn page(path: &str) -> Event {
    ev(
        serde_json::json!({"type":"page","messageId":"m","userId":"u",
        "timestamp":"2026-01-01T00:00:00Z","properties":{"path":path}}),
    )
}

#[test]
fn newer_engagement_outweighs_older_by_the_half_life() {
    let l = lib();
    let mut p = Interest::default();
    p.add(id("warehouse"), 1.0, 0);
    p.add(id("pricing"), 1.0, INTEREST_HALF_LIFE);
    // warehouse now weighs 0.5, pricing 1: cosine with warehouse = 0.5/sqrt(1.25).
    let a = p.affinity(&l, &[1.0, 0.0, 0.0]).unwrap();
    assert!((a - 0.5 / 1.25f32.sqrt()).abs() < 1e-6, "{a}");
    // The same engagements in the other arrival order give the same weights.
    let mut q = Interest::default();
    q.add(id("pricing"), 1.0, INTEREST_HALF_LIFE);
    q.add(id("warehouse"), 1.0, 0);
    assert_eq!(p.items.len(), q.items.len());
    let b = q.affinity(&l, &[1.0, 0.0, 0.0]).unwrap();
    assert!((a - b).abs() < 1e-6);
    let c = p.contributions(&l, &[1.0, 0.0, 0.0]);
    assert_eq!(c[0].0, "pricing");
    assert!((c[0].1 - 2.0 / 3.0).abs() < 1e-6 && c[1].2 == 1.0, "{c:?}");
}

#[test]
fn engagement_before_registration_counts_once_registered() {
    let mut p = Interest::default();
    let (key, w) = interest_of(&click(
        serde_json::json!({"email_id":"e","content_id":"later","url":"https://x.io/later"}),
    ))
    .unwrap();
    p.add(key, w, 10);
    let mut l = lib();
    assert_eq!(p.affinity(&l, &[1.0, 0.0, 0.0]), None);
    l.insert_content("later", None, &[0.0, 0.0, 1.0]).unwrap();
    assert_eq!(p.affinity(&l, &[0.0, 0.0, 1.0]), Some(1.0));
}

#[test]
fn an_unregistered_content_id_falls_back_to_a_registered_link() {
    let l = lib();
    let (key, w) = interest_of(&click(
        serde_json::json!({"email_id":"e","content_id":"email-7","url":"https://x.io/blog/warehouse"}),
    ))
    .unwrap();
    assert_eq!(w, CLICK_WEIGHT);
    assert_eq!(key.key, content_key("email-7"));
    assert_eq!(key.resolve(&l).map(|i| i.id.as_str()), Some("warehouse"));
    // A registered content id wins over the link.
    let (key, _) = interest_of(&click(
        serde_json::json!({"email_id":"e","content_id":"pricing","url":"https://x.io/blog/warehouse"}),
    ))
    .unwrap();
    assert_eq!(key.resolve(&l).map(|i| i.id.as_str()), Some("pricing"));
}

#[test]
fn events_name_content_by_id_link_or_path() {
    let l = lib();
    assert_eq!(
        interest_of(&click(
            serde_json::json!({"email_id":"e","content_id":"pricing"})
        )),
        Some((id("pricing"), CLICK_WEIGHT))
    );
    assert_eq!(
        interest_of(&click(serde_json::json!({"email_id":"e","content_id":7}))),
        Some((id("7"), CLICK_WEIGHT)),
        "numeric ids are read as text"
    );
    assert_eq!(
        interest_of(&click(serde_json::json!({"email_id":"e"}))),
        None,
        "a click naming nothing is not an interest"
    );
    let (key, w) = interest_of(&page("/blog/warehouse/")).unwrap();
    assert_eq!(
        (key, w),
        (InterestKey::single(url_key("/blog/warehouse")), PAGE_WEIGHT)
    );
    assert_eq!(key.resolve(&l).map(|i| i.id.as_str()), Some("warehouse"));
    let (careers, _) = interest_of(&page("/careers")).unwrap();
    assert!(
        careers.resolve(&l).is_none(),
        "kept, but unknown to the library"
    );
}

#[test]
fn an_item_reached_by_id_and_by_url_is_one_contribution() {
    let l = lib();
    let mut p = Interest::default();
    p.add(id("warehouse"), CLICK_WEIGHT, 0);
    p.add(
        InterestKey::single(url_key("/blog/warehouse")),
        PAGE_WEIGHT,
        0,
    );
    p.add(InterestKey::single(url_key("/careers")), PAGE_WEIGHT, 0);
    let c = p.contributions(&l, &[1.0, 0.0, 0.0]);
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(c[0].0, "warehouse");
    assert!(
        (c[0].1 - 1.0).abs() < 1e-6,
        "unknown keys take no share: {c:?}"
    );
}

#[test]
fn profile_is_bounded_and_drops_the_lightest() {
    let mut p = Interest::default();
    for i in 0..(MAX_INTEREST_ITEMS as i64 + 4) {
        p.add(InterestKey::single(i as u64 + 1), 1.0, i * DAY);
    }
    assert_eq!(p.items.len(), MAX_INTEREST_ITEMS);
    // The four oldest (lightest) went.
    assert!(p.items.iter().all(|i| i.key.key >= 5), "{:?}", p.items);
}

#[test]
fn one_content_id_with_changing_links_keeps_one_slot() {
    let mut l = ContentLibrary::default();
    l.insert_content("guide", Some("/guide"), &[1.0, 0.0])
        .unwrap();
    let mut p = Interest::default();
    for (i, url) in ["https://x.io/a?u=1", "https://x.io/b", "https://x.io/guide"]
        .iter()
        .enumerate()
    {
        let (key, w) = interest_of(&click(
            serde_json::json!({"email_id":"e","content_id":"email-9","url":url}),
        ))
        .unwrap();
        p.add(key, w, i as i64);
    }
    assert_eq!(p.items.len(), 1, "{:?}", p.items);
    // The newest link is the fallback: the unregistered email resolves to it.
    assert_eq!(p.contributions(&l, &[1.0, 0.0])[0].0, "guide");
    // An older engagement does not replace the newest fallback.
    let (key, w) = interest_of(&click(
        serde_json::json!({"email_id":"e","content_id":"email-9","url":"https://x.io/old"}),
    ))
    .unwrap();
    p.add(key, w, -5);
    assert_eq!(p.contributions(&l, &[1.0, 0.0])[0].0, "guide");
}
