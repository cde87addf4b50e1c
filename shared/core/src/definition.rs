//! Segment definitions as data: the condition tree users write in JSON or
//! YAML, its published JSON Schema, and parsing with path + reason errors.
//!
//! Semantics (DESIGN.md section 4): a window `within D` at instant t covers
//! event timestamps in `(t - D, t]`; membership at t is judged on events with
//! timestamp <= t.

use crate::time::Span;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One segment: a key, a name, the entity it selects and its condition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SegmentDefinition {
    /// Stable identifier: lowercase letters, digits, `_` and `-`, at most 64.
    pub key: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub entity: Entity,
    pub condition: Condition,
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Entity {
    Contact,
    Account,
}

impl Entity {
    pub fn as_str(self) -> &'static str {
        match self {
            Entity::Contact => "contact",
            Entity::Account => "account",
        }
    }
}

/// A node of the condition tree. Exactly one key per node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Condition {
    /// Every child holds.
    All(Vec<Condition>),
    /// At least one child holds.
    Any(Vec<Condition>),
    /// The child does not hold.
    Not(Box<Condition>),
    /// A trait of the contact (contact segments, or inside `contacts`).
    Trait(TraitTest),
    /// A trait of the account.
    AccountTrait(TraitTest),
    /// Count of the entity's own events in a window: a contact's events, or
    /// for an account segment every event on the account.
    Events(EventCount),
    /// Count of every event on the account (any contact, or account-level).
    AccountEvents(EventCount),
    /// The last matching event is newer or older than a duration.
    Recency(Recency),
    /// The first matching event ever is at or before `t - older_than`.
    FirstEvent(FirstEvent),
    /// Of the contact's last `n` sends, at least `at_least` were engaged with.
    LastSends(LastSends),
    /// Quantifier over the account's contacts (account segments only).
    Contacts(ContactQuantifier),
    /// Engagement in the recent window against the average of a prior one.
    RateChange(RateChange),
    /// Member of another segment (a contact segment may name an account
    /// segment: its account must be a member).
    InSegment(String),
    /// The contact's interest profile (content clicked, pages viewed) is
    /// similar to a topic text or a registered content item.
    Affinity(Affinity),
    /// The contact's current propensity score of a target (a derived
    /// `Propensity Scored` record) is within bounds.
    Score(ScoreTest),
}

/// Holds when the contact's current score of `target` is at least
/// `at_least` and at most `at_most` (either may be left out, not both). A
/// contact never scored for the target does not hold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScoreTest {
    /// click_7d, reply, meeting_30d or unsubscribe_7d.
    pub target: String,
    /// Lowest probability, in [0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_least: Option<f64>,
    /// Highest probability, in [0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_most: Option<f64>,
    /// Only the top this-many percent of the tenant's scored contacts, in
    /// (0, 100]: the percentile the scorer stamped on the contact's score
    /// (the share not scored higher) is above 100 - top_percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_percent: Option<f64>,
}

/// Cosine similarity of the contact's interest vector with the embedding
/// of `topic` (a text, embedded once when the definition is applied) or of
/// registered content `content`: holds when it is at least `at_least`.
/// A contact with no engagement on registered content never holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Affinity {
    /// A topic text, e.g. "cloud data warehouse pricing". Exactly one of
    /// `topic` and `content`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// A registered content id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Cosine threshold in [-1, 1]; for all-MiniLM-L6-v2, 0.3-0.5 means
    /// related and above 0.6 close.
    pub at_least: f64,
}

/// A comparison on a trait or property.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TraitTest {
    pub name: String,
    pub op: TraitOp,
    /// The literal: an array for `in`, `[low, high]` (inclusive) for `between`, absent for `exists`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TraitOp {
    /// Equal (false when the trait is missing).
    Eq,
    /// Not equal (true when the trait is missing).
    Ne,
    In,
    Gt,
    Gte,
    Lt,
    Lte,
    Between,
    Exists,
    NotExists,
    Prefix,
}

/// Which events count.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventFilter {
    /// One kind or a list (any of them).
    pub kind: KindSet,
    /// Exact event name (track event or page name), e.g. "Webinar Registered".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Property tests that must all hold.
    #[serde(default, rename = "where", skip_serializing_if = "Vec::is_empty")]
    pub where_: Vec<TraitTest>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum KindSet {
    One(EventKindName),
    Many(Vec<EventKindName>),
}

impl KindSet {
    pub fn kinds(&self) -> &[EventKindName] {
        match self {
            KindSet::One(k) => std::slice::from_ref(k),
            KindSet::Many(ks) => ks,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKindName {
    /// Open, click, reply, page, meeting or product usage.
    Engagement,
    Send,
    Open,
    Click,
    Reply,
    Bounce,
    HardBounce,
    Complaint,
    Unsubscribe,
    Meeting,
    Intent,
    /// First-party pricing/comparison page or intent signal.
    PricingIntent,
    ProductUsage,
    Page,
    Identify,
    Group,
    /// A track event outside the liveseg vocabulary.
    Custom,
    /// Any track event (combine with `name`).
    Track,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventCount {
    pub event: EventFilter,
    pub within: Span,
    /// Default 1 when `at_most` is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_least: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_most: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Recency {
    pub event: EventFilter,
    /// Last matching event within this duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newer_than: Option<Span>,
    /// Last matching event at or before `t - older_than`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub older_than: Option<Span>,
    /// With `older_than`: also hold when there was no such event at all.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub or_never: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FirstEvent {
    pub event: EventFilter,
    pub older_than: Span,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LastSends {
    /// How many of the most recent sends to look at (1 to 50).
    pub n: u32,
    pub at_least: u32,
    /// Which engagement with a send counts; default open and click.
    #[serde(default = "default_engaged")]
    pub engaged: Vec<SendEngagement>,
}

fn default_engaged() -> Vec<SendEngagement> {
    vec![SendEngagement::Open, SendEngagement::Click]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SendEngagement {
    Open,
    Click,
    Reply,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactQuantifier {
    pub quantifier: Quantifier,
    /// Required with `at_least`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// A contact condition, judged for each contact of the account.
    pub condition: Box<Condition>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Quantifier {
    Any,
    /// Every contact (an account with no contacts does not match).
    All,
    AtLeast,
}

/// R = matching events in `(t - recent, t]`, P = in `(t - recent - prior, t - recent]`.
/// Holds when P >= `min_prior` and the recent rate R/recent compared with the
/// prior rate P/prior is at most `max_ratio` (decay) and/or at least `min_ratio` (surge).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateChange {
    pub event: EventFilter,
    pub recent: Span,
    pub prior: Span,
    #[serde(default)]
    pub min_prior: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ratio: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_ratio: Option<f64>,
}

/// One problem in a definition: where, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct ValidationError {
    pub path: String,
    pub reason: String,
}

impl ValidationError {
    pub fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        ValidationError {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// Parses JSON or YAML text (YAML is a superset, so one parser reads both)
/// into definitions: a single definition, a list, or `{segments: [...]}`.
pub fn parse_definitions(text: &str) -> Result<Vec<SegmentDefinition>, Vec<ValidationError>> {
    let value: Value = serde_yaml_ng::from_str(text).map_err(|e| {
        vec![ValidationError::new(
            "",
            format!("not valid JSON or YAML: {e}"),
        )]
    })?;
    let (items, prefix) = match value {
        Value::Array(items) => (items, "[".to_string()),
        Value::Object(mut m) if m.contains_key("segments") => match m.remove("segments") {
            Some(Value::Array(items)) => (items, "segments[".to_string()),
            _ => {
                return Err(vec![ValidationError::new(
                    "segments",
                    "must be a list of definitions",
                )]);
            }
        },
        other => (vec![other], String::new()),
    };
    let mut defs = Vec::new();
    let mut errors = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let at = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}{i}]")
        };
        match parse_value(item) {
            Ok(d) => defs.push(d),
            Err(es) => errors.extend(
                es.into_iter()
                    .map(|e| ValidationError::new(join(&at, &e.path), e.reason)),
            ),
        }
    }
    if errors.is_empty() {
        Ok(defs)
    } else {
        Err(errors)
    }
}

/// Parses one definition from a JSON value, with the path of the first structural error.
pub fn parse_value(value: Value) -> Result<SegmentDefinition, Vec<ValidationError>> {
    let def: SegmentDefinition = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        vec![ValidationError::new(path, e.into_inner().to_string())]
    })?;
    let errors = check_definition(&def);
    if errors.is_empty() {
        Ok(def)
    } else {
        Err(errors)
    }
}

fn join(prefix: &str, path: &str) -> String {
    match (prefix.is_empty(), path.is_empty()) {
        (true, _) => path.to_string(),
        (_, true) => prefix.to_string(),
        _ => format!("{prefix}.{path}"),
    }
}

/// The published JSON Schema of a segment definition.
pub fn json_schema() -> Value {
    serde_json::to_value(schemars::schema_for!(SegmentDefinition)).unwrap_or(Value::Null)
}

pub use crate::check::check_definition;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_and_json_parse_to_the_same_definition() {
        let yaml = "key: k\nname: K\nentity: contact\ncondition:\n  events:\n    event: {kind: engagement}\n    within: 30d\n";
        let json = r#"{"key":"k","name":"K","entity":"contact","condition":{"events":{"event":{"kind":"engagement"},"within":"30d"}}}"#;
        let a = parse_definitions(yaml);
        assert!(a.is_ok(), "{a:?}");
        assert_eq!(a, parse_definitions(json));
    }

    #[test]
    fn structural_errors_carry_a_path() {
        let json = r#"{"key":"k","name":"K","entity":"contact","condition":{"all":[{"events":{"event":{"kind":"engagement"},"within":"30 days"}}]}}"#;
        let errs = parse_definitions(json).err().unwrap_or_default();
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].path.starts_with("condition.all[0].events.within"),
            "{errs:?}"
        );
        assert!(errs[0].reason.contains("unit"), "{errs:?}");
    }

    #[test]
    fn semantic_errors_are_all_reported() {
        let json = r#"{"key":"Bad Key","name":"","entity":"account","condition":{"all":[
            {"last_sends":{"n":5,"at_least":7}},
            {"trait":{"name":"title","op":"in","value":"x"}},
            {"contacts":{"quantifier":"at_least","condition":{"trait":{"name":"role","op":"exists"}}}}]}}"#;
        let errs = parse_definitions(json).err().unwrap_or_default();
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        for want in [
            "key",
            "name",
            "condition.all[0].last_sends",
            "condition.all[0].last_sends.at_least",
            "condition.all[1].trait",
            "condition.all[1].trait.value",
            "condition.all[2].contacts.count",
        ] {
            assert!(paths.contains(&want), "missing {want} in {paths:?}");
        }
    }

    #[test]
    fn schema_is_published() {
        let schema = json_schema();
        let text = schema.to_string();
        assert!(
            text.contains("last_sends")
                && text.contains("rate_change")
                && text.contains("Duration")
        );
    }
}
