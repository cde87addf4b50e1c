//! State is laid out by segment, matcher and trait positions, and a
//! checkpoint is trusted when its fingerprint matches: the same definitions
//! must give the same layout in whatever order they were stored or applied.

mod common;

use common::{Script, at, replay};
use liveseg_core::definition::parse_definitions;
use liveseg_core::engine::account_memberships;
use liveseg_core::{Account, SegmentSet};
use serde_json::json;

const EXTRA: &str = r#"
- key: zz_clickers
  name: Clickers
  entity: contact
  condition: {events: {event: {kind: click}, within: 30d}}
- key: aa_vps
  name: VPs
  entity: contact
  condition: {trait: {name: seniority, op: eq, value: vp}}
"#;

#[test]
fn a_checkpoint_made_under_one_order_is_read_correctly_under_another() {
    let mut defs = liveseg_core::presets::presets();
    defs.extend(parse_definitions(EXTRA).expect("fixture"));
    let mut reversed = defs.clone();
    reversed.reverse();
    let a = SegmentSet::compile(&defs).expect("compiles");
    let b = SegmentSet::compile(&reversed).expect("compiles");
    assert_eq!(a.fingerprint(), b.fingerprint());
    for d in &defs {
        assert_eq!(a.index_of(&d.key), b.index_of(&d.key), "{}", d.key);
    }

    let mut s = Script::new();
    s.group(
        Some("u1"),
        "acme",
        json!({"tier": 1, "target": true}),
        at(0.0),
    );
    s.push(
        json!({"type":"identify","userId":"u1","traits":{"seniority":"vp"}}),
        at(0.5),
    );
    s.track(
        "u1",
        Some("acme"),
        "Email Link Clicked",
        json!({"email_id": "e1"}),
        at(1.0),
    );
    let (engine, _) = replay(&a, &s.events, at(2.0));
    // The account's checkpoint image, read back by a node whose set was
    // compiled from the other order.
    let image = serde_json::to_vec(&engine.accounts["acme"]).expect("serialises");
    let restored: Account = serde_json::from_slice::<Account>(&image)
        .expect("decodes")
        .restore();
    let mut from_image = Vec::new();
    account_memberships(&b, &restored, &mut from_image);
    let (fresh, _) = replay(&b, &s.events, at(2.0));
    assert_eq!(from_image, fresh.memberships());
    assert!(from_image.iter().any(|m| m.segment == "aa_vps"));
    assert!(from_image.iter().any(|m| m.segment == "zz_clickers"));
}
