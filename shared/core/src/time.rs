//! Instants and durations.
//!
//! Instants are milliseconds since the Unix epoch (`Millis`), event time is
//! data, and the engine never reads a wall clock: callers pass `now`.
//! Durations in definitions are written like `30d`, `12h`, `90m`, `45s`,
//! `250ms` (one unit per value, so they read the same in JSON and YAML).

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Milliseconds since the Unix epoch, UTC.
pub type Millis = i64;

pub const SECOND: Millis = 1_000;
pub const MINUTE: Millis = 60 * SECOND;
pub const HOUR: Millis = 60 * MINUTE;
pub const DAY: Millis = 24 * HOUR;

/// Parses an RFC 3339 timestamp into milliseconds (sub-millisecond digits are truncated).
pub fn parse_rfc3339(text: &str) -> Result<Millis, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|dt| dt.with_timezone(&Utc).timestamp_millis())
        .map_err(|e| format!("not an RFC 3339 timestamp ({e})"))
}

/// Formats milliseconds as RFC 3339 UTC with milliseconds, e.g. `2026-10-01T12:00:00.000Z`.
pub fn format_rfc3339(ms: Millis) -> String {
    match Utc.timestamp_millis_opt(ms).single() {
        Some(dt) => dt.to_rfc3339_opts(SecondsFormat::Millis, true),
        None => format!("@{ms}ms"),
    }
}

/// A positive span of time written with one unit suffix (`d`, `h`, `m`, `s`, `ms`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span(pub Millis);

impl Span {
    pub fn days(d: i64) -> Self {
        Span(d * DAY)
    }
    pub fn millis(self) -> Millis {
        self.0
    }
    pub fn parse(text: &str) -> Result<Span, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| format!("'{text}' has no unit; use d, h, m, s or ms"))?;
        let (num, unit) = text.split_at(split);
        let n: i64 = num
            .parse()
            .map_err(|_| format!("'{text}' must start with a whole number"))?;
        let scale = match unit {
            "d" => DAY,
            "h" => HOUR,
            "m" => MINUTE,
            "s" => SECOND,
            "ms" => 1,
            other => {
                return Err(format!(
                    "unknown unit '{other}' in '{text}'; use d, h, m, s or ms"
                ));
            }
        };
        let ms = n
            .checked_mul(scale)
            .filter(|ms| *ms <= 3650 * DAY)
            .ok_or_else(|| format!("'{text}' is longer than 10 years"))?;
        if ms <= 0 {
            return Err(format!("'{text}' must be positive"));
        }
        Ok(Span(ms))
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0;
        for (unit, scale) in [("d", DAY), ("h", HOUR), ("m", MINUTE), ("s", SECOND)] {
            if ms % scale == 0 {
                return write!(f, "{}{unit}", ms / scale);
            }
        }
        write!(f, "{ms}ms")
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Span::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Span {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^[0-9]+(d|h|m|s|ms)$",
            "description": "A positive duration with one unit: 30d, 12h, 90m, 45s or 250ms."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_parse_and_print() {
        assert_eq!(Span::parse("30d"), Ok(Span(30 * DAY)));
        assert_eq!(Span::parse("250ms"), Ok(Span(250)));
        assert_eq!(Span(36 * HOUR).to_string(), "36h");
        assert!(Span::parse("0d").is_err());
        assert!(Span::parse("3w").is_err_and(|e| e.contains("unknown unit")));
        assert!(Span::parse("d").is_err());
        assert!(Span::parse("99999d").is_err());
    }

    #[test]
    fn rfc3339_round_trip() {
        let ms = parse_rfc3339("2026-10-01T12:00:00.123+02:00");
        assert_eq!(
            ms.map(format_rfc3339),
            Ok("2026-10-01T10:00:00.123Z".to_string())
        );
        assert!(parse_rfc3339("yesterday").is_err());
    }
}
