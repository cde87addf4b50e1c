//! Reading typed fields out of a JSON message, each failure naming the
//! field's path and the reason.

use crate::event::{FieldError, Limits};
use serde_json::{Map, Value};

pub(crate) fn required_str<'a>(
    obj: &'a Map<String, Value>,
    field: &str,
    max: usize,
) -> Result<&'a str, FieldError> {
    match obj.get(field) {
        Some(Value::String(s)) if s.is_empty() => Err(FieldError::new(field, "must not be empty")),
        Some(Value::String(s)) if s.len() > max => {
            Err(FieldError::new(field, format!("longer than {max} bytes")))
        }
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => Err(FieldError::new(field, "is required")),
        Some(_) => Err(FieldError::new(field, "must be a string")),
    }
}

pub(crate) fn required_id(
    obj: &Map<String, Value>,
    field: &str,
    limits: &Limits,
) -> Result<String, FieldError> {
    optional_id(obj, field, limits)?.ok_or_else(|| FieldError::new(field, "is required"))
}

/// Ids may be strings or integers (Segment SDKs send both); they are kept as strings.
pub(crate) fn optional_id(
    obj: &Map<String, Value>,
    field: &str,
    limits: &Limits,
) -> Result<Option<String>, FieldError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) if s.len() > limits.max_id_bytes => Err(FieldError::new(
            field,
            format!("longer than {} bytes", limits.max_id_bytes),
        )),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(Some(n.to_string())),
        Some(_) => Err(FieldError::new(field, "must be a string")),
    }
}

pub(crate) fn optional_object<'a>(
    obj: &'a Map<String, Value>,
    field: &str,
) -> Result<Option<&'a Map<String, Value>>, FieldError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(FieldError::new(field, "must be an object")),
    }
}

/// Rejects over-long strings anywhere in the message, naming the path.
pub(crate) fn check_strings(v: &Value, path: &str, limits: &Limits) -> Result<(), FieldError> {
    match v {
        Value::String(s) if s.len() > limits.max_string_bytes => Err(FieldError::new(
            path,
            format!("string longer than {} bytes", limits.max_string_bytes),
        )),
        Value::Object(m) => m.iter().try_for_each(|(k, v)| {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            check_strings(v, &p, limits)
        }),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .try_for_each(|(i, v)| check_strings(v, &format!("{path}[{i}]"), limits)),
        _ => Ok(()),
    }
}
