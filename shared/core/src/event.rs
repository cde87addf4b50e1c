//! Segment-Spec messages: validation and the typed events the engine applies.
//!
//! `parse_message` turns one JSON message (identify, track, page, group,
//! alias) into an [`Event`] or a [`FieldError`] naming the offending field and
//! the reason. It never panics on any input. The vocabulary follows
//! DESIGN.md section 3; unknown `track` names are kept as custom events.

use crate::fields::{check_strings, optional_id, optional_object, required_id, required_str};
use crate::time::{MINUTE, Millis, parse_rfc3339};
use serde_json::{Map, Value};

/// Input limits, configurable per node and documented in the README.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest accepted message, in bytes of JSON.
    pub max_message_bytes: usize,
    /// Longest accepted string anywhere in a message, in bytes.
    pub max_string_bytes: usize,
    /// Longest id (messageId, userId, anonymousId, groupId), in bytes.
    pub max_id_bytes: usize,
    /// Most messages accepted in one batch; later items are rejected per item.
    pub max_batch_items: usize,
    /// How far in the future an event timestamp may be.
    pub max_future_skew: Millis,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 32 * 1024,
            max_string_bytes: 8 * 1024,
            max_id_bytes: 256,
            max_batch_items: 500,
            max_future_skew: 5 * MINUTE,
        }
    }
}

/// Why one message was rejected: the field as a JSON path, and the reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// A validated event, routed by `user_id` (the contact) and `group_id` (the account).
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub message_id: String,
    pub ts: Millis,
    pub user_id: Option<String>,
    pub anonymous_id: Option<String>,
    /// `context.groupId`, or `groupId` of a group call.
    pub group_id: Option<String>,
    pub kind: EventKind,
    /// The `track` event name or `page` name, for filters by name.
    pub name: Option<String>,
    /// `properties` (track, page) kept for property filters; not stored in state.
    pub properties: Map<String, Value>,
    /// `traits` (identify, group).
    pub traits: Map<String, Value>,
    /// The content it names, by library key (`crate::interest::content_named`):
    /// read from `properties` once, when the event is parsed, so that
    /// training can drop the properties it holds
    /// (`features::keep_for_features`).
    pub content: Option<crate::interest::InterestKey>,
}

/// What an event means to the engine.
#[derive(Clone, Debug, PartialEq)]
pub enum EventKind {
    Send {
        email: u64,
    },
    Open {
        email: u64,
    },
    Click {
        email: u64,
    },
    Reply {
        email: u64,
    },
    Bounce {
        email: u64,
        hard: bool,
    },
    Complaint {
        email: u64,
    },
    Unsubscribe,
    Meeting,
    Intent {
        first_party: bool,
        pricing: bool,
    },
    ProductUsage,
    Page {
        pricing: bool,
    },
    Identify,
    Group,
    Alias {
        previous_id: String,
    },
    /// `Propensity Scored`: a model's score of the contact, a derived record
    /// (see `crate::scores`).
    Scored(Box<crate::scores::Scored>),
    Custom,
}

impl EventKind {
    /// Engagement events: open, click, reply, page, meeting, product usage.
    pub fn is_engagement(&self) -> bool {
        matches!(
            self,
            EventKind::Open { .. }
                | EventKind::Click { .. }
                | EventKind::Reply { .. }
                | EventKind::Page { .. }
                | EventKind::Meeting
                | EventKind::ProductUsage
        )
    }

    /// First-party pricing/comparison intent (DESIGN.md section 3).
    pub fn is_pricing_intent(&self) -> bool {
        matches!(
            self,
            EventKind::Page { pricing: true }
                | EventKind::Intent {
                    first_party: true,
                    pricing: true
                }
        )
    }

    /// Suppressing events: unsubscribe, complaint, hard bounce.
    pub fn suppresses(&self) -> bool {
        matches!(
            self,
            EventKind::Unsubscribe
                | EventKind::Complaint { .. }
                | EventKind::Bounce { hard: true, .. }
        )
    }
}

/// A stable 64-bit FNV-1a hash, used for email ids in compact state. Stable
/// across processes and versions (never `DefaultHasher`).
pub fn stable_hash(text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Validates one Segment-Spec message. `now` bounds future timestamps; a
/// missing timestamp is an error here (the ingest edge fills it from its
/// clock before calling, like Segment's `receivedAt`).
pub fn parse_message(v: &Value, now: Millis, limits: &Limits) -> Result<Event, FieldError> {
    parse_inner(v, now, limits, true)
}

/// Like `parse_message`, but moves `properties` and `traits` out of the
/// message instead of copying them (the hot ingest and replay paths).
pub fn parse_owned(mut v: Value, now: Millis, limits: &Limits) -> Result<Event, FieldError> {
    let mut e = parse_inner(&v, now, limits, false)?;
    if let Some(obj) = v.as_object_mut() {
        if let Some(Value::Object(p)) = obj.remove("properties") {
            e.properties = p;
        }
        if let Some(Value::Object(t)) = obj.remove("traits") {
            e.traits = t;
        }
    }
    Ok(e)
}

fn parse_inner(
    v: &Value,
    now: Millis,
    limits: &Limits,
    copy_maps: bool,
) -> Result<Event, FieldError> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    let empty = EMPTY.get_or_init(Map::new);
    let obj = v
        .as_object()
        .ok_or_else(|| FieldError::new("", "message must be a JSON object"))?;
    check_strings(v, "", limits)?;
    let kind_name = required_str(obj, "type", limits.max_string_bytes)?;
    let message_id = required_str(obj, "messageId", limits.max_id_bytes)?.to_string();
    let user_id = optional_id(obj, "userId", limits)?;
    let anonymous_id = optional_id(obj, "anonymousId", limits)?;
    let ts_text = required_str(obj, "timestamp", limits.max_string_bytes)?;
    let ts = parse_rfc3339(ts_text).map_err(|r| FieldError::new("timestamp", r))?;
    if ts > now + limits.max_future_skew {
        return Err(FieldError::new(
            "timestamp",
            "more than 5 minutes in the future",
        ));
    }
    if ts < 946_684_800_000 {
        return Err(FieldError::new("timestamp", "before 2000-01-01"));
    }
    let context = optional_object(obj, "context")?;
    let mut group_id = match context.and_then(|c| c.get("groupId")) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(_) => {
            return Err(FieldError::new(
                "context.groupId",
                "must be a non-empty string",
            ));
        }
    };
    let properties = optional_object(obj, "properties")?.unwrap_or(empty);
    let traits = optional_object(obj, "traits")?.unwrap_or(empty);
    let mut name = None;
    let kind = match kind_name {
        "track" => {
            let event = required_str(obj, "event", limits.max_string_bytes)?;
            name = Some(event.to_string());
            track_kind(event, properties)?
        }
        "page" | "screen" => {
            name = obj.get("name").and_then(Value::as_str).map(str::to_string);
            EventKind::Page {
                pricing: page_is_pricing(properties, name.as_deref()),
            }
        }
        "identify" => EventKind::Identify,
        "group" => {
            let gid = required_id(obj, "groupId", limits)?;
            group_id = Some(gid);
            check_group_traits(traits)?;
            EventKind::Group
        }
        "alias" => EventKind::Alias {
            previous_id: required_id(obj, "previousId", limits)?,
        },
        other => {
            return Err(FieldError::new(
                "type",
                format!(
                    "unknown type '{other}'; expected identify, track, page, screen, group or alias"
                ),
            ));
        }
    };
    if group_id
        .as_deref()
        .is_some_and(|g| g.starts_with(crate::engine::PERSONAL_PREFIX))
    {
        let field = if matches!(kind, EventKind::Group) {
            "groupId"
        } else {
            "context.groupId"
        };
        return Err(FieldError::new(
            field,
            "must not start with '~' (reserved for personal accounts)",
        ));
    }
    if user_id.is_none() && anonymous_id.is_none() {
        return Err(FieldError::new(
            "userId",
            "userId or anonymousId is required",
        ));
    }
    if user_id.is_none() && group_id.is_none() && !matches!(kind, EventKind::Alias { .. }) {
        // An anonymous event with no account cannot be attributed to anything we keep.
        return Err(FieldError::new(
            "context.groupId",
            "an event without userId needs context.groupId (its account)",
        ));
    }
    if matches!(kind, EventKind::Identify) && user_id.is_none() {
        return Err(FieldError::new("userId", "identify needs a userId"));
    }
    if matches!(kind, EventKind::Scored(_)) && user_id.is_none() {
        return Err(FieldError::new(
            "userId",
            "a score is of a contact: userId is required",
        ));
    }
    let content = crate::interest::content_named(&kind, properties);
    Ok(Event {
        message_id,
        ts,
        user_id,
        anonymous_id,
        group_id,
        content,
        kind,
        name,
        properties: if copy_maps {
            properties.clone()
        } else {
            Map::new()
        },
        traits: if copy_maps {
            traits.clone()
        } else {
            Map::new()
        },
    })
}

fn track_kind(event: &str, props: &Map<String, Value>) -> Result<EventKind, FieldError> {
    let email = || email_id(props);
    Ok(match event {
        "Email Delivered" | "Email Sent" => EventKind::Send { email: email()? },
        "Email Opened" => EventKind::Open { email: email()? },
        "Email Link Clicked" => EventKind::Click { email: email()? },
        "Email Replied" => EventKind::Reply { email: email()? },
        "Email Bounced" => {
            let hard = match props.get("type") {
                None | Some(Value::Null) => false,
                Some(Value::String(t)) if t.eq_ignore_ascii_case("hard") => true,
                Some(Value::String(t)) if t.eq_ignore_ascii_case("soft") => false,
                Some(_) => {
                    return Err(FieldError::new(
                        "properties.type",
                        "must be \"hard\" or \"soft\"",
                    ));
                }
            };
            EventKind::Bounce {
                email: email()?,
                hard,
            }
        }
        "Email Marked as Spam" => EventKind::Complaint { email: email()? },
        "Unsubscribed" => EventKind::Unsubscribe,
        "Meeting Booked" => EventKind::Meeting,
        "Product Used" | "Logged In" => EventKind::ProductUsage,
        "Intent Signal" => intent_kind(props)?,
        crate::scores::SCORED_EVENT => EventKind::Scored(Box::new(crate::scores::parse(props)?)),
        _ => EventKind::Custom,
    })
}

fn intent_kind(props: &Map<String, Value>) -> Result<EventKind, FieldError> {
    let first_party = match props.get("source") {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) if s == "first_party" => true,
        Some(Value::String(s)) if s == "third_party" => false,
        Some(_) => {
            return Err(FieldError::new(
                "properties.source",
                "must be \"first_party\" or \"third_party\"",
            ));
        }
    };
    match props.get("strength") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) if n.as_f64().is_some_and(|s| (0.0..=100.0).contains(&s)) => {}
        Some(_) => {
            return Err(FieldError::new(
                "properties.strength",
                "must be a number from 0 to 100",
            ));
        }
    }
    let pricing = match props.get("topic") {
        Some(Value::String(t)) => {
            t.eq_ignore_ascii_case("pricing") || t.eq_ignore_ascii_case("comparison")
        }
        None | Some(Value::Null) => false,
        Some(_) => return Err(FieldError::new("properties.topic", "must be a string")),
    };
    Ok(EventKind::Intent {
        first_party,
        pricing,
    })
}

fn page_is_pricing(props: &Map<String, Value>, _name: Option<&str>) -> bool {
    let category = props.get("category").and_then(Value::as_str).unwrap_or("");
    let path = props.get("path").and_then(Value::as_str).unwrap_or("");
    category.eq_ignore_ascii_case("pricing")
        || category.eq_ignore_ascii_case("comparison")
        || path.starts_with("/pricing")
        || path.starts_with("/compare")
}

fn email_id(props: &Map<String, Value>) -> Result<u64, FieldError> {
    match props.get("email_id") {
        Some(Value::String(s)) if !s.is_empty() => Ok(stable_hash(s)),
        Some(Value::Number(n)) => Ok(stable_hash(&n.to_string())),
        None | Some(Value::Null) => Err(FieldError::new(
            "properties.email_id",
            "is required for email events",
        )),
        Some(_) => Err(FieldError::new(
            "properties.email_id",
            "must be a non-empty string",
        )),
    }
}

fn check_group_traits(traits: &Map<String, Value>) -> Result<(), FieldError> {
    match traits.get("tier") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) if n.as_i64().is_some() => {}
        Some(Value::String(s)) if s.trim().parse::<i64>().is_ok() => {}
        Some(_) => return Err(FieldError::new("traits.tier", "must be an integer")),
    }
    match traits.get("target") {
        None | Some(Value::Null) | Some(Value::Bool(_)) => {}
        Some(_) => return Err(FieldError::new("traits.target", "must be a boolean")),
    }
    match traits.get("icp_fit") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) if n.as_f64().is_some_and(|f| (0.0..=100.0).contains(&f)) => {}
        Some(_) => {
            return Err(FieldError::new(
                "traits.icp_fit",
                "must be a number from 0 to 100",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: Millis = 1_790_000_000_000;

    fn parse(v: Value) -> Result<Event, FieldError> {
        parse_message(&v, NOW, &Limits::default())
    }

    fn track(event: &str, props: Value) -> Value {
        json!({"type":"track","messageId":"m1","userId":"u1","timestamp":"2026-09-01T00:00:00Z","event":event,"properties":props})
    }

    #[test]
    fn vocabulary_is_recognised() {
        let open = parse(track("Email Opened", json!({"email_id":"e1"}))).map(|e| e.kind);
        assert_eq!(
            open,
            Ok(EventKind::Open {
                email: stable_hash("e1")
            })
        );
        let sent = parse(track("Email Sent", json!({"email_id":"e1"}))).map(|e| e.kind);
        assert_eq!(
            sent,
            Ok(EventKind::Send {
                email: stable_hash("e1")
            })
        );
        let intent = parse(track(
            "Intent Signal",
            json!({"topic":"Pricing","source":"first_party","strength":80}),
        ));
        assert!(intent.map(|e| e.kind.is_pricing_intent()).unwrap_or(false));
        let third = parse(track(
            "Intent Signal",
            json!({"topic":"pricing","source":"third_party"}),
        ));
        assert!(!third.map(|e| e.kind.is_pricing_intent()).unwrap_or(true));
        let custom = parse(track("Webinar Registered", json!({})));
        assert_eq!(
            custom.map(|e| (e.kind, e.name)),
            Ok((EventKind::Custom, Some("Webinar Registered".into())))
        );
        let hard = parse(track(
            "Email Bounced",
            json!({"email_id":"e1","type":"hard"}),
        ));
        assert!(hard.map(|e| e.kind.suppresses()).unwrap_or(false));
    }

    #[test]
    fn pricing_pages_by_category_or_path() {
        for props in [
            json!({"category":"PRICING"}),
            json!({"path":"/pricing/enterprise"}),
            json!({"path":"/compare/x"}),
        ] {
            let v = json!({"type":"page","messageId":"m","userId":"u","timestamp":"2026-09-01T00:00:00Z","properties":props});
            assert_eq!(
                parse(v).map(|e| e.kind),
                Ok(EventKind::Page { pricing: true })
            );
        }
        let v = json!({"type":"page","messageId":"m","userId":"u","timestamp":"2026-09-01T00:00:00Z","properties":{"path":"/blog/pricing"}});
        assert_eq!(
            parse(v).map(|e| e.kind),
            Ok(EventKind::Page { pricing: false })
        );
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (json!([1]), ""),
            (
                json!({"type":"track","userId":"u","timestamp":"2026-09-01T00:00:00Z","event":"x"}),
                "messageId",
            ),
            (
                json!({"type":"track","messageId":"m","timestamp":"2026-09-01T00:00:00Z","event":"x"}),
                "userId",
            ),
            (
                json!({"type":"track","messageId":"m","userId":"u","timestamp":"soon","event":"x"}),
                "timestamp",
            ),
            (
                json!({"type":"track","messageId":"m","userId":"u","timestamp":"2030-01-01T00:00:00Z","event":"x"}),
                "timestamp",
            ),
            (
                json!({"type":"track","messageId":"m","userId":7.5,"timestamp":"2026-09-01T00:00:00Z","event":"x"}),
                "userId",
            ),
            (
                json!({"type":"track","messageId":"m","userId":"u","timestamp":"2026-09-01T00:00:00Z"}),
                "event",
            ),
            (track("Email Opened", json!({})), "properties.email_id"),
            (
                json!({"type":"group","messageId":"m","userId":"u","timestamp":"2026-09-01T00:00:00Z","groupId":"a","traits":{"tier":"one"}}),
                "traits.tier",
            ),
            (
                json!({"type":"blink","messageId":"m","userId":"u","timestamp":"2026-09-01T00:00:00Z"}),
                "type",
            ),
            (
                json!({"type":"track","messageId":"m","anonymousId":"x","timestamp":"2026-09-01T00:00:00Z","event":"x"}),
                "context.groupId",
            ),
            (
                track("x", json!({"big": "a".repeat(9000)})),
                "properties.big",
            ),
        ];
        for (input, field) in cases {
            let err = parse(input.clone()).err();
            assert_eq!(
                err.as_ref().map(|e| e.field.as_str()),
                Some(field),
                "input {input}"
            );
            assert!(err.is_some_and(|e| !e.reason.is_empty()));
        }
    }

    #[test]
    fn account_level_events_need_only_group() {
        let v = json!({"type":"page","messageId":"m","anonymousId":"anon","timestamp":"2026-09-01T00:00:00Z","context":{"groupId":"acme"},"properties":{"path":"/pricing"}});
        let e = parse(v);
        assert_eq!(
            e.as_ref().map(|e| e.group_id.clone()),
            Ok(Some("acme".into()))
        );
        assert_eq!(e.map(|e| e.user_id), Ok(None));
    }
}
