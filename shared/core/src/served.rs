//! Scores as they were served, matched to the outcomes that followed: the
//! input of calibration tracking per model version.
//!
//! A node logs every score it applies as a `Propensity Scored` record, so
//! its exported log says which probability (and which model version) was
//! current for a contact at any instant. For each send of the history, the
//! score served is the contact's current score strictly before the send
//! (the same choice a segment made then); the outcome is the send's label
//! from `labels::training_rows`, known once its window has closed. Pairs
//! that mature this way measure the models actually in production, version
//! by version, including scores made by the live scorer between trainings.

use crate::event::{Event, EventKind};
use crate::labels::{Row, Target};
use crate::scores::{ScoreSlot, current};
use crate::time::Millis;
use std::collections::HashMap;

/// One send, the score served before it and its outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct ServedRow {
    pub contact: String,
    pub send_ts: Millis,
    /// When the served score was made.
    pub scored_ts: Millis,
    pub version: String,
    pub probability: f32,
    pub outcome: bool,
}

/// Every score record of `target` in `events`, per contact, by time.
pub fn score_records(events: &[Event], target: Target) -> HashMap<String, Vec<ScoreSlot>> {
    let mut by_contact: HashMap<String, Vec<ScoreSlot>> = HashMap::new();
    for e in events {
        if let (EventKind::Scored(s), Some(contact)) = (&e.kind, e.user_id.as_deref())
            && s.target == target
        {
            by_contact
                .entry(contact.to_string())
                .or_default()
                .push(ScoreSlot {
                    ts: e.ts,
                    scored: (**s).clone(),
                });
        }
    }
    for slots in by_contact.values_mut() {
        slots.sort_by_key(|s| s.ts);
    }
    by_contact
}

/// The sends of `rows` that had a served score of `target` and a matured
/// label, in send order.
pub fn served_rows(
    rows: &[Row],
    records: &HashMap<String, Vec<ScoreSlot>>,
    target: Target,
) -> Vec<ServedRow> {
    let mut out: Vec<ServedRow> = rows
        .iter()
        .filter_map(|r| {
            let outcome = r.label(target)?;
            let slots = records.get(&r.contact)?;
            let before = &slots[..slots.partition_point(|s| s.ts < r.send_ts)];
            let served = current(before.iter().map(|s| (s.ts, &s.scored)), target)?;
            Some(ServedRow {
                contact: r.contact.clone(),
                send_ts: r.send_ts,
                scored_ts: served.ts,
                version: served.scored.version.to_string(),
                probability: served.scored.probability,
                outcome,
            })
        })
        .collect();
    out.sort_by(|a, b| {
        a.send_ts
            .cmp(&b.send_ts)
            .then_with(|| a.contact.cmp(&b.contact))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Limits, parse_message};
    use crate::labels::training_rows;
    use serde_json::{Value, json};

    fn msg(v: Value) -> Event {
        parse_message(&v, Millis::MAX / 2, &Limits::default()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn track(id: &str, event: &str, ts: &str, props: Value) -> Event {
        msg(
            json!({"type":"track","event":event,"messageId":id,"userId":"u1",
            "timestamp":ts,"context":{"groupId":"acme"},"properties":props}),
        )
    }

    fn score(id: &str, ts: &str, version: &str, p: f64) -> Event {
        track(
            id,
            "Propensity Scored",
            ts,
            json!({"target":"click_7d","probability":p,"version":version}),
        )
    }

    #[test]
    fn each_send_gets_the_score_current_just_before_it_and_its_outcome() {
        let events = vec![
            score("s0", "2026-03-01T00:00:00Z", "click_7d-v0", 0.10),
            score("s1", "2026-03-09T00:00:00Z", "click_7d-v1", 0.30),
            track(
                "d1",
                "Email Delivered",
                "2026-03-10T00:00:00Z",
                json!({"email_id":"e1"}),
            ),
            // Made at the send's instant: not served to it.
            score("s2", "2026-03-10T00:00:00Z", "click_7d-v2", 0.90),
            track(
                "c1",
                "Email Link Clicked",
                "2026-03-12T00:00:00Z",
                json!({"email_id":"e1"}),
            ),
            track(
                "d2",
                "Email Delivered",
                "2026-03-20T00:00:00Z",
                json!({"email_id":"e2"}),
            ),
            // Still open at as-of: censored.
            track(
                "d3",
                "Email Delivered",
                "2026-04-29T00:00:00Z",
                json!({"email_id":"e3"}),
            ),
        ];
        let as_of = crate::time::parse_rfc3339("2026-05-01T00:00:00Z").unwrap_or_default();
        let records = score_records(&events, Target::Click7d);
        let rows = training_rows(events, as_of, Default::default());
        let served = served_rows(&rows, &records, Target::Click7d);
        let got: Vec<(&str, f32, bool)> = served
            .iter()
            .map(|s| (s.version.as_str(), s.probability, s.outcome))
            .collect();
        assert_eq!(
            got,
            [("click_7d-v1", 0.30, true), ("click_7d-v2", 0.90, false)]
        );
        // Another target's records are not this target's.
        assert!(score_records(&[], Target::Reply).is_empty());
        assert!(
            served_rows(&rows, &score_records(&[], Target::Click7d), Target::Click7d).is_empty()
        );
    }
}
