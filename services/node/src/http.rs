//! The Segment-compatible HTTP API beside gRPC on the same port:
//! `POST /v1/batch`, `/v1/{track,identify,page,screen,group,alias}` with the
//! write key as the HTTP Basic username; plus `/metrics` and `/healthz`.

use crate::error::NodeError;
use crate::ingest::{RawItem, Status};
use crate::server::NodeInner;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use liveseg_core::FieldError;
use serde_json::{Value, json};
use std::sync::Arc;

pub fn router(node: Arc<NodeInner>) -> axum::Router {
    axum::Router::new()
        .route("/v1/batch", post(batch))
        .route("/v1/{kind}", post(single))
        .route("/metrics", get(metrics))
        .route(
            "/healthz",
            get(|| async { Json(json!({"status": "serving"})) }),
        )
        .layer(axum::extract::DefaultBodyLimit::max(8 * 1024 * 1024))
        .with_state(node)
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"success": false, "error": message}))).into_response()
}

fn node_error(e: NodeError) -> Response {
    let status = match &e {
        NodeError::Unauthenticated => StatusCode::UNAUTHORIZED,
        NodeError::PermissionDenied(_) => StatusCode::FORBIDDEN,
        NodeError::InvalidArgument(_) => StatusCode::BAD_REQUEST,
        NodeError::Overloaded(_) => StatusCode::TOO_MANY_REQUESTS,
        NodeError::ShuttingDown | NodeError::StaleShape(_) | NodeError::Unavailable(_) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, &e.to_string())
}

/// The tenant of the key in `authorization` (Bearer or Basic) or `x-api-key`.
pub(crate) fn tenant(node: &NodeInner, headers: &HeaderMap) -> Result<String, NodeError> {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    let x = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    let key = crate::auth::key_from_header(auth, x).ok_or(NodeError::Unauthenticated)?;
    node.auth.tenant_for(&key)
}

async fn batch(State(node): State<Arc<NodeInner>>, headers: HeaderMap, body: Bytes) -> Response {
    let tenant = match tenant(&node, &headers) {
        Ok(t) => t,
        Err(e) => return node_error(e),
    };
    let mut v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("malformed JSON: {e}")),
    };
    let Some(Value::Array(batch)) = v.get_mut("batch").map(Value::take) else {
        return error(
            StatusCode::BAD_REQUEST,
            "batch: must be an array of messages",
        );
    };
    // Segment lets a batch carry shared context; merge it under each message's own.
    let shared = v.get("context").and_then(Value::as_object);
    let items: Vec<RawItem> = batch
        .into_iter()
        .map(|mut m| {
            if let (Some(shared), Some(obj)) = (shared, m.as_object_mut()) {
                let ctx = obj.entry("context").or_insert_with(|| json!({}));
                if let Some(ctx) = ctx.as_object_mut() {
                    for (k, v) in shared {
                        ctx.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                }
            }
            Ok(m.into())
        })
        .collect();
    respond(&node, &tenant, items).await
}

async fn single(
    State(node): State<Arc<NodeInner>>,
    Path(kind): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !["track", "identify", "page", "screen", "group", "alias"].contains(&kind.as_str()) {
        return error(
            StatusCode::NOT_FOUND,
            "unknown endpoint; use /v1/batch or /v1/{track,identify,page,screen,group,alias}",
        );
    }
    let tenant = match tenant(&node, &headers) {
        Ok(t) => t,
        Err(e) => return node_error(e),
    };
    let item: RawItem = match serde_json::from_slice::<Value>(&body) {
        Ok(mut v) => {
            if let Some(obj) = v.as_object_mut() {
                obj.entry("type")
                    .or_insert_with(|| Value::String(kind.clone()));
            }
            Ok(v.into())
        }
        Err(e) => Err(FieldError::new("", format!("malformed JSON: {e}"))),
    };
    respond(&node, &tenant, vec![item]).await
}

async fn respond(node: &NodeInner, tenant: &str, items: Vec<RawItem>) -> Response {
    let results = match node.ingestor.ingest(tenant, items).await {
        Ok(r) => r,
        Err(e) => return node_error(e),
    };
    let count = |s: Status| results.iter().filter(|r| r.status == s).count();
    let (accepted, duplicates, invalid) = (
        count(Status::Accepted),
        count(Status::Duplicate),
        count(Status::Invalid),
    );
    let errors: Vec<Value> = results
        .iter()
        .filter(|r| r.status == Status::Invalid)
        .map(|r| json!({"index": r.index, "field": r.field, "reason": r.reason}))
        .collect();
    let status = if invalid > 0 && accepted + duplicates == 0 {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let body = json!({"success": invalid == 0, "accepted": accepted, "duplicates": duplicates, "invalid": invalid, "errors": errors});
    (status, Json(body)).into_response()
}

async fn metrics(State(node): State<Arc<NodeInner>>) -> Response {
    match &node.metrics {
        Some(m) => {
            let mut text = m.render();
            text.push_str(&node.calibration.render());
            ([("content-type", "text/plain; version=0.0.4")], text).into_response()
        }
        None => error(StatusCode::NOT_FOUND, "metrics are not enabled"),
    }
}
