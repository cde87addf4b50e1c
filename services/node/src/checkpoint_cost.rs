//! What a checkpoint image of a large account costs: bytes stored, and the
//! time to encode it, decode it and rebuild its indexes. A measurement, run
//! by hand (it asserts only that the image round-trips):
//! `cargo nextest run -p liveseg-node --run-ignored only -E 'test(checkpoint_image_cost)' --no-capture`

use crate::host::{AccountHost, Checkpoint, Delivery};
use liveseg_core::event::{Limits, parse_message};
use liveseg_core::{Account, SegmentSet};
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

/// One account of the cluster fault mix at the end of a 300 s run: 35k
/// contacts with one `Fault Probe` event each, under the starter segments
/// and the two probe segments.
#[test]
#[ignore = "a measurement; run by the command in the module comment"]
fn checkpoint_image_cost() {
    let mut defs = liveseg_core::presets::presets();
    for (key, at_least) in [("probe_seen", 1), ("probe_twice", 2)] {
        let def = json!({
            "key": key, "name": key, "entity": "contact",
            "condition": {"events": {"event": {"kind": "custom", "name": "Fault Probe"},
                                     "within": "365d", "at_least": at_least}}
        });
        defs.push(serde_json::from_value(def).expect("probe definition"));
    }
    let set = Arc::new(SegmentSet::compile(&defs).expect("definitions compile"));
    let mut host = AccountHost::new("t".into(), set.clone(), Account::new("a1", &set), 0);
    let contacts = 35_000;
    let now = liveseg_core::time::parse_rfc3339("2026-06-02T00:00:00Z").expect("instant");
    let batch: Vec<Delivery> = (0..contacts)
        .map(|i| {
            let v = json!({"type": "track", "event": "Fault Probe", "messageId": format!("p-{i}"),
                           "userId": format!("c1-{i}-3"), "timestamp": "2026-06-01T00:00:00Z",
                           "context": {"groupId": "a1"}});
            Delivery {
                seq: i as u64 + 1,
                event: parse_message(&v, now, &Limits::default()).expect("valid event"),
                arriving: None,
            }
        })
        .collect();
    host.apply(batch, now, &mut Vec::new());
    for round in 0..3 {
        let started = Instant::now();
        let (_, bytes) = host.snapshot(true).expect("encodes").expect("an image");
        let encode = started.elapsed();
        let started = Instant::now();
        let image = Checkpoint::decode(&bytes).expect("decodes");
        let decode = started.elapsed();
        let started = Instant::now();
        let account = image.account.restore();
        let restore = started.elapsed();
        assert_eq!(account.contacts.len(), contacts);
        eprintln!(
            "round {round}: {contacts} contacts, image {} bytes ({:.1} per contact), \
             encode {encode:?}, decode {decode:?}, indexes {restore:?}",
            bytes.len(),
            bytes.len() as f64 / contacts as f64
        );
    }
}
