//! The gRPC API v1: one struct per service over the shared node state, and
//! the helpers they share (authentication from metadata, struct <-> JSON).

pub mod admin;
pub mod content;
pub mod ingest;
pub mod insight;
pub mod membership;
pub mod segments;

use crate::error::NodeError;
use crate::runtime::Runtime;
use crate::server::NodeInner;
use crate::tenant::TenantState;
use std::sync::Arc;
use tonic::Request;

/// The caller's key from request metadata.
pub fn key_of<T>(req: &Request<T>) -> Option<String> {
    let md = req.metadata();
    let auth = md.get("authorization").and_then(|v| v.to_str().ok());
    let x = md.get("x-api-key").and_then(|v| v.to_str().ok());
    crate::auth::key_from_header(auth, x)
}

/// The id of the tenant the caller's key belongs to.
pub fn tenant_id_of<T>(node: &NodeInner, req: &Request<T>) -> Result<String, NodeError> {
    let key = key_of(req).ok_or(NodeError::Unauthenticated)?;
    let id = node.auth.tenant_for(&key)?;
    tracing::Span::current().record("tenant", id.as_str());
    Ok(id)
}

/// A request's tenant and the runtime holding its live state.
pub struct Scope {
    pub rt: Arc<Runtime>,
    pub tenant: Arc<TenantState>,
}

/// The caller's tenant, served here (or `UNAVAILABLE` naming the owner).
pub fn tenant_of<T>(node: &NodeInner, req: &Request<T>) -> Result<Scope, NodeError> {
    let id = tenant_id_of(node, req)?;
    let rt = node.runtime_for(&id)?;
    let tenant = rt
        .tenants
        .get_or_load(&id)?
        .ok_or(NodeError::Unauthenticated)?;
    Ok(Scope { rt, tenant })
}

/// `google.protobuf.Struct` to JSON.
pub fn struct_to_json(s: &prost_types::Struct) -> serde_json::Value {
    serde_json::Value::Object(
        s.fields
            .iter()
            .map(|(k, v)| (k.clone(), value_to_json(v)))
            .collect(),
    )
}

fn value_to_json(v: &prost_types::Value) -> serde_json::Value {
    use prost_types::value::Kind;
    match &v.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::NumberValue(n)) => {
            // Integers stay integers so ids and tiers compare as written.
            if n.fract() == 0.0 && n.abs() < 9.0e15 {
                serde_json::Value::from(*n as i64)
            } else {
                serde_json::Number::from_f64(*n)
                    .map_or(serde_json::Value::Null, serde_json::Value::Number)
            }
        }
        Some(Kind::StringValue(s)) => serde_json::Value::String(s.clone()),
        Some(Kind::BoolValue(b)) => serde_json::Value::Bool(*b),
        Some(Kind::StructValue(s)) => struct_to_json(s),
        Some(Kind::ListValue(l)) => {
            serde_json::Value::Array(l.values.iter().map(value_to_json).collect())
        }
    }
}
