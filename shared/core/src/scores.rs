//! Propensity scores as derived, logged records.
//!
//! A scorer (`liveseg model score --ingest`, or any system with its own
//! model) sends a `track` event `Propensity Scored` for a contact:
//! `{target, probability, version, top: [{feature, contribution}]}`. It is
//! validated and logged like any event, so a replay reproduces the scores a
//! contact had at every instant, whatever model is active later. The state
//! keeps the latest score per target (by event time; ties by version, then
//! probability, so the order of arrival never matters), which `score`
//! conditions read and explain shows with its model version and its
//! largest feature contributions.

use crate::event::FieldError;
use crate::labels::Target;
use crate::time::{Millis, format_rfc3339};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// The `track` event name of a score.
pub const SCORED_EVENT: &str = "Propensity Scored";
/// Contributions kept per score for explain.
pub const TOP_KEPT: usize = 3;
/// Longest model version accepted.
const MAX_VERSION: usize = 128;

/// One score of a contact.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    pub target: Target,
    pub probability: f32,
    pub version: Box<str>,
    /// Largest contributions first: (feature, share of the log-odds).
    pub top: Vec<(Box<str>, f32)>,
    /// Percentile rank among the tenant's contacts scored in the same
    /// round (0-100: the share scored lower), when the scorer knows it.
    pub percentile: Option<f32>,
}

/// Validates the properties of a `Propensity Scored` event.
pub fn parse(props: &Map<String, Value>) -> Result<Scored, FieldError> {
    let target = match props.get("target") {
        Some(Value::String(t)) => {
            Target::parse(t).map_err(|e| FieldError::new("properties.target", e))?
        }
        _ => {
            return Err(FieldError::new(
                "properties.target",
                "is required: click_7d, reply, meeting_30d or unsubscribe_7d",
            ));
        }
    };
    let probability = match props.get("probability").and_then(Value::as_f64) {
        Some(p) if (0.0..=1.0).contains(&p) => p as f32,
        _ => {
            return Err(FieldError::new(
                "properties.probability",
                "must be a number in [0, 1]",
            ));
        }
    };
    let version = match props.get("version") {
        Some(Value::String(v)) if !v.is_empty() && v.len() <= MAX_VERSION => v.as_str().into(),
        _ => {
            return Err(FieldError::new(
                "properties.version",
                format!("must be the model version, 1-{MAX_VERSION} bytes"),
            ));
        }
    };
    let mut top = Vec::new();
    match props.get("top") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let feature = item.get("feature").and_then(Value::as_str);
                let share = item.get("contribution").and_then(Value::as_f64);
                match (feature, share) {
                    (Some(f), Some(c)) if !f.is_empty() && c.is_finite() => {
                        if top.len() < TOP_KEPT {
                            top.push((f.into(), c as f32));
                        }
                    }
                    _ => {
                        return Err(FieldError::new(
                            format!("properties.top[{i}]"),
                            "must be {\"feature\": name, \"contribution\": number}",
                        ));
                    }
                }
            }
        }
        Some(_) => {
            return Err(FieldError::new(
                "properties.top",
                "must be an array of {feature, contribution}",
            ));
        }
    }
    let percentile = match props.get("percentile") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_f64() {
            Some(p) if (0.0..=100.0).contains(&p) => Some(p as f32),
            _ => {
                return Err(FieldError::new(
                    "properties.percentile",
                    "must be a number in [0, 100]",
                ));
            }
        },
    };
    Ok(Scored {
        target,
        probability,
        version,
        top,
        percentile,
    })
}

/// A score and the event time it was made at.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoreSlot {
    pub ts: Millis,
    pub scored: Scored,
}

impl ScoreSlot {
    /// The order that decides which of two scores is the current one.
    fn rank(&self) -> (Millis, &str, u32) {
        (
            self.ts,
            &self.scored.version,
            self.scored.probability.to_bits(),
        )
    }
}

/// The scores of one contact that can still be current: per target, the
/// latest at or before the last prune instant and any later ones (a score
/// stamped ahead of the processing clock takes effect at its own instant,
/// like every event).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ContactScores {
    pub slots: Vec<ScoreSlot>,
}

impl ContactScores {
    /// Adds a score; returns whether it can change what is current (false
    /// for an exact repeat or one ranked below a score at the same instant).
    pub fn apply(&mut self, ts: Millis, s: &Scored) -> bool {
        let slot = ScoreSlot {
            ts,
            scored: s.clone(),
        };
        let same = |x: &ScoreSlot| x.scored.target == s.target && x.ts == ts;
        match self.slots.iter_mut().find(|x| same(x)) {
            Some(cur) if slot.rank() > cur.rank() => {
                *cur = slot;
                true
            }
            Some(_) => false,
            None => {
                self.slots.push(slot);
                true
            }
        }
    }

    /// The current score of `target` at instant `t`: the latest at or before `t`.
    pub fn get(&self, target: Target, t: Millis) -> Option<&ScoreSlot> {
        self.slots
            .iter()
            .filter(|x| x.scored.target == target && x.ts <= t)
            .max_by(|a, b| a.rank().cmp(&b.rank()))
    }

    /// The next instant after `t` at which a later score of `target` takes effect.
    pub fn next_after(&self, target: Target, t: Millis) -> Option<Millis> {
        self.slots
            .iter()
            .filter(|x| x.scored.target == target && x.ts > t)
            .map(|x| x.ts)
            .min()
    }

    /// Drops the scores that can no longer be current from `now` on.
    pub fn prune(&mut self, now: Millis) {
        let mut keep: Vec<ScoreSlot> = Vec::with_capacity(self.slots.len());
        for x in self.slots.drain(..) {
            let current = |k: &ScoreSlot| k.scored.target == x.scored.target && k.ts <= now;
            if x.ts > now {
                keep.push(x);
            } else if let Some(i) = keep.iter().position(current) {
                if x.rank() > keep[i].rank() {
                    keep[i] = x;
                }
            } else {
                keep.push(x);
            }
        }
        self.slots = keep;
    }
}

/// The current score of `target` among `scores` (event time, score), all
/// at or before the judging instant: the same choice `ContactScores::get`
/// makes, straight over raw events (the brute-force reference uses it).
pub fn current<'a>(
    scores: impl Iterator<Item = (Millis, &'a Scored)>,
    target: Target,
) -> Option<ScoreSlot> {
    scores
        .filter(|(_, s)| s.target == target)
        .map(|(ts, s)| ScoreSlot {
            ts,
            scored: s.clone(),
        })
        .max_by(|a, b| a.rank().cmp(&b.rank()))
}

/// One line of explain: the score, its model and why.
pub fn describe(slot: &ScoreSlot) -> String {
    let top: Vec<String> = slot
        .scored
        .top
        .iter()
        .map(|(f, c)| format!("{f} {c:+.2}"))
        .collect();
    format!(
        "model {}, scored {}{}{}",
        slot.scored.version,
        format_rfc3339(slot.ts),
        slot.scored
            .percentile
            .map_or(String::new(), |p| format!(", percentile {p:.0}")),
        if top.is_empty() {
            String::new()
        } else {
            format!("; largest contributions: {}", top.join(", "))
        }
    )
}

/// The derived record of a score, as the Segment-Spec message a scorer
/// sends. Its messageId is determined by (target, version, contact,
/// instant), so sending it again is a duplicate, not a second score. It
/// carries no groupId: it goes to wherever the contact lives when it is
/// applied, and can never move the contact (a groupId other than the
/// contact's current account would).
pub fn scored_message(contact: &str, at: Millis, scored: &Scored) -> Value {
    let mut v = json!({
        "type": "track",
        "event": SCORED_EVENT,
        "messageId": format!("score:{}:{}:{contact}:{at}", scored.target.name(), scored.version),
        "userId": contact,
        "timestamp": format_rfc3339(at),
        "properties": {
            "target": scored.target.name(),
            "probability": scored.probability,
            "version": &*scored.version,
            "top": scored.top.iter().map(|(f, c)| json!({"feature": &**f, "contribution": c})).collect::<Vec<_>>(),
        },
    });
    if let Some(p) = scored.percentile {
        v["properties"]["percentile"] = json!(p);
    }
    v
}

/// Percentile ranks (0-100) of each probability, in input order: 100 times
/// the share of `probabilities` NOT strictly higher, so tied contacts share
/// the higher rank. `top_percent: k` holds above `100 - k`: the top k% with
/// ties included.
pub fn percentiles(probabilities: &[f32]) -> Vec<f32> {
    let mut sorted: Vec<f32> = probabilities.to_vec();
    sorted.sort_by(f32::total_cmp);
    let n = sorted.len().max(1) as f32;
    probabilities
        .iter()
        .map(|p| {
            let higher = sorted.len() - sorted.partition_point(|x| x <= p);
            100.0 * (1.0 - higher as f32 / n)
        })
        .collect()
}
