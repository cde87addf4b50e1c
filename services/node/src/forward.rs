//! Routing in cluster mode: any node takes any request. Calls that need the
//! tenant's live state (membership queries, explain, watch, definitions)
//! are forwarded at the HTTP/2 level to the node that serves the tenant's
//! shard: the gRPC call, streaming included, passes through unchanged.
//!
//! A forwarded call carries `x-liveseg-forwarded`, and a node never
//! forwards such a call again: if ownership moved meanwhile it answers
//! `UNAVAILABLE` with `x-liveseg-owner` (the handler's `NotHere` error), and
//! the client retries. A call that a shard's move interrupts here (the
//! handler's `Moved`: the shard started draining, or its lease lapsed) gets
//! the same metadata, naming the owner the assignment gives now. Ingest is
//! never forwarded: every node appends to the shard's stream itself.

use crate::error::{NodeError, OWNER_HEADER};
use crate::server::{NodeInner, Units};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tonic::transport::{Channel, Endpoint};

/// Marks a call one node forwarded to another.
pub const FORWARDED_HEADER: &str = "x-liveseg-forwarded";

/// gRPC services whose calls run where the tenant's state is.
const ROUTED: &[&str] = &[
    "/liveseg.v1.MembershipService/",
    "/liveseg.v1.SegmentService/",
    "/liveseg.v1.ContentService/",
    "/liveseg.v1.InsightService/",
];

/// Lazily connected channels to peer nodes, by address.
#[derive(Default)]
pub struct Peers {
    channels: Mutex<HashMap<String, Channel>>,
}

impl Peers {
    fn channel(&self, addr: &str) -> Result<Channel, String> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = channels.get(addr) {
            return Ok(c.clone());
        }
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| format!("peer address {addr}: {e}"))?
            .connect_timeout(std::time::Duration::from_secs(1))
            .tcp_nodelay(true)
            .connect_lazy();
        channels.insert(addr.to_owned(), channel.clone());
        Ok(channel)
    }

    /// Sends the call to `owner` and streams its answer back.
    async fn forward(&self, owner: &str, req: Request) -> Response {
        let channel = match self.channel(owner) {
            Ok(c) => c,
            Err(e) => return unavailable(owner, e),
        };
        let (mut parts, body) = req.into_parts();
        parts
            .headers
            .insert(FORWARDED_HEADER, http::HeaderValue::from_static("1"));
        let req = http::Request::from_parts(parts, tonic::body::Body::new(body));
        match tower::ServiceExt::oneshot(channel, req).await {
            Ok(resp) => resp.map(axum::body::Body::new),
            Err(e) => unavailable(owner, format!("forwarding to {owner}: {e}")),
        }
    }
}

fn unavailable(owner: &str, message: String) -> Response {
    let mut status = tonic::Status::unavailable(message);
    if let Ok(v) = owner.parse() {
        status.metadata_mut().insert(OWNER_HEADER, v);
    }
    status.into_http()
}

/// The axum middleware: serve here, or forward to the shard's owner.
pub async fn route(State(node): State<Arc<NodeInner>>, req: Request, next: Next) -> Response {
    let Units::Cluster(cluster) = &node.units else {
        return next.run(req).await;
    };
    let path = req.uri().path();
    if !ROUTED.iter().any(|p| path.starts_with(p)) || req.headers().contains_key(FORWARDED_HEADER) {
        return next.run(req).await;
    }
    // A bad key is the handler's to reject, with its usual error.
    let Ok(tenant) = crate::http::tenant(&node, req.headers()) else {
        return next.run(req).await;
    };
    let own = cluster
        .addr
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    match cluster.runtime_for(&tenant) {
        Err(NodeError::NotHere {
            owner: Some(owner), ..
        }) if owner != own => cluster.peers.forward(&owner, req).await,
        // Served here; or assigned here and still loading, or owned by
        // nobody yet: the handler answers (UNAVAILABLE while not served).
        _ => {
            let mut resp = next.run(req).await;
            name_new_owner(&mut resp, || {
                cluster.owner_of(&tenant).filter(|owner| *owner != own)
            });
            resp
        }
    }
}

/// Adds `x-liveseg-owner` to an `UNAVAILABLE` answer that lacks it (a
/// `Moved`: the shard began moving while the call ran here), naming the
/// owner from `owner()` when that is another node. Only errors sent before
/// any message are touched: their status is in the response headers
/// (gRPC "trailers-only"); a stream cut by a move already sent its headers.
fn name_new_owner(resp: &mut Response, owner: impl FnOnce() -> Option<String>) {
    let unavailable = resp
        .headers()
        .get("grpc-status")
        .is_some_and(|v| v.as_bytes() == b"14");
    if !unavailable || resp.headers().contains_key(OWNER_HEADER) {
        return;
    }
    if let Some(v) = owner().and_then(|o| http::HeaderValue::from_str(&o).ok()) {
        resp.headers_mut().insert(OWNER_HEADER, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: tonic::Status) -> Response {
        status.into_http::<axum::body::Body>()
    }

    fn owner_header(resp: &Response) -> Option<&str> {
        resp.headers()
            .get(OWNER_HEADER)
            .and_then(|v| v.to_str().ok())
    }

    #[test]
    fn a_moved_answer_names_the_new_owner() {
        let mut resp = answer(NodeError::Moved(Some(5)).into());
        name_new_owner(&mut resp, || Some("127.0.0.3:7070".into()));
        assert_eq!(owner_header(&resp), Some("127.0.0.3:7070"));
    }

    #[test]
    fn other_answers_are_left_alone() {
        // The handler already named an owner (NotHere).
        let mut resp = answer(
            NodeError::NotHere {
                shard: 5,
                owner: Some("127.0.0.4:7070".into()),
            }
            .into(),
        );
        name_new_owner(&mut resp, || Some("127.0.0.3:7070".into()));
        assert_eq!(owner_header(&resp), Some("127.0.0.4:7070"));
        // Not UNAVAILABLE.
        let mut resp = answer(tonic::Status::not_found("no such account"));
        name_new_owner(&mut resp, || Some("127.0.0.3:7070".into()));
        assert_eq!(owner_header(&resp), None);
        // No other owner known (still this node, or nobody).
        let mut resp = answer(NodeError::Moved(Some(5)).into());
        name_new_owner(&mut resp, || None);
        assert_eq!(owner_header(&resp), None);
        // A success.
        let mut resp = Response::new(axum::body::Body::empty());
        name_new_owner(&mut resp, || Some("127.0.0.3:7070".into()));
        assert_eq!(owner_header(&resp), None);
    }
}
