//! Compact trait values and the comparisons segment conditions make on them.

use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// A trait value as kept in contact/account state: small and cheap to compare.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum TraitValue {
    Bool(bool),
    Num(f64),
    Str(Box<str>),
}

impl TraitValue {
    /// Converts a JSON value; objects, arrays and null are not kept as traits.
    pub fn from_json(v: &serde_json::Value) -> Option<TraitValue> {
        match v {
            serde_json::Value::Bool(b) => Some(TraitValue::Bool(*b)),
            serde_json::Value::Number(n) => {
                n.as_f64().filter(|f| f.is_finite()).map(TraitValue::Num)
            }
            serde_json::Value::String(s) => Some(TraitValue::Str(s.as_str().into())),
            _ => None,
        }
    }

    /// Loose equality with a JSON literal from a definition: numbers compare
    /// numerically (so `"1"` in a trait equals `1` in a rule), strings
    /// case-sensitively, booleans also match the strings "true"/"false".
    pub fn equals(&self, rule: &serde_json::Value) -> bool {
        match (self, rule) {
            (TraitValue::Bool(a), serde_json::Value::Bool(b)) => a == b,
            (TraitValue::Str(a), serde_json::Value::Bool(b)) => {
                a.eq_ignore_ascii_case(if *b { "true" } else { "false" })
            }
            (TraitValue::Str(a), serde_json::Value::String(b)) => a.as_ref() == b,
            _ => match (self.as_f64(), rule_f64(rule)) {
                (Some(a), Some(b)) => a == b,
                _ => false,
            },
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            TraitValue::Num(n) => Some(*n),
            TraitValue::Str(s) => s.trim().parse().ok(),
            TraitValue::Bool(_) => None,
        }
    }

    /// Ordering against a rule literal when both are numeric, else both strings.
    pub fn compare(&self, rule: &serde_json::Value) -> Option<Ordering> {
        if let (Some(a), Some(b)) = (self.as_f64(), rule_f64(rule)) {
            return a.partial_cmp(&b);
        }
        match (self, rule) {
            (TraitValue::Str(a), serde_json::Value::String(b)) => Some(a.as_ref().cmp(b.as_str())),
            _ => None,
        }
    }

    pub fn display(&self) -> String {
        match self {
            TraitValue::Bool(b) => b.to_string(),
            TraitValue::Num(n) => n.to_string(),
            TraitValue::Str(s) => format!("{s:?}"),
        }
    }
}

fn rule_f64(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numeric_equality_is_loose_string_equality_is_exact() {
        assert!(TraitValue::Str("1".into()).equals(&json!(1)));
        assert!(TraitValue::Num(1.0).equals(&json!(1)));
        assert!(!TraitValue::Str("Customer".into()).equals(&json!("customer")));
        assert!(TraitValue::Bool(true).equals(&json!(true)));
        assert!(TraitValue::Str("true".into()).equals(&json!(true)));
        assert_eq!(
            TraitValue::Num(70.0).compare(&json!(70)),
            Some(Ordering::Equal)
        );
        assert_eq!(
            TraitValue::Str("b".into()).compare(&json!("a")),
            Some(Ordering::Greater)
        );
    }
}
