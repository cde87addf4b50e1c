//! IngestService: batches of Segment-Spec messages with per-item results.

use super::{struct_to_json, tenant_id_of};
use crate::ingest::{Input, RawItem, Status};
use crate::server::NodeInner;
use liveseg_core::FieldError;
use liveseg_proto::pb;
use serde_json::{Map, Value};
use std::sync::Arc;
use tonic::{Request, Response, Status as RpcStatus};

pub struct IngestApi(pub Arc<NodeInner>);

#[tonic::async_trait]
impl pb::ingest_service_server::IngestService for IngestApi {
    #[tracing::instrument(skip_all, fields(tenant, items))]
    async fn ingest(
        &self,
        req: Request<pb::IngestRequest>,
    ) -> Result<Response<pb::IngestResponse>, RpcStatus> {
        let tenant = tenant_id_of(&self.0, &req)?;
        let messages = req.into_inner().messages;
        tracing::Span::current().record("items", messages.len());
        let items: Vec<RawItem> = messages.into_iter().map(to_json).collect();
        let results = self.0.ingestor.ingest(&tenant, items).await?;
        let mut out = pb::IngestResponse::default();
        for r in results {
            let status = match r.status {
                Status::Accepted => {
                    out.accepted += 1;
                    pb::ItemStatus::Accepted
                }
                Status::Duplicate => {
                    out.duplicates += 1;
                    pb::ItemStatus::Duplicate
                }
                Status::Invalid => {
                    out.invalid += 1;
                    pb::ItemStatus::Invalid
                }
            };
            out.results.push(pb::ItemResult {
                index: r.index as u32,
                status: status as i32,
                field: r.field,
                reason: r.reason,
                sequence: r.seq,
            });
        }
        Ok(Response::new(out))
    }
}

fn to_json(m: pb::SegmentMessage) -> RawItem {
    match m.payload {
        None => Err(FieldError::new("", "empty message: set fields or json")),
        Some(pb::segment_message::Payload::Json(text)) => {
            match serde_json::from_str::<Value>(&text) {
                Ok(value) => Ok(Input {
                    value,
                    text: Some(text.into_bytes()),
                }),
                Err(e) => Err(FieldError::new("", format!("malformed JSON: {e}"))),
            }
        }
        Some(pb::segment_message::Payload::Fields(f)) => {
            let mut obj = Map::new();
            let mut put = |k: &str, v: String| {
                if !v.is_empty() {
                    obj.insert(k.to_string(), Value::String(v));
                }
            };
            put("type", f.r#type);
            put("messageId", f.message_id);
            put("userId", f.user_id);
            put("anonymousId", f.anonymous_id);
            put("timestamp", f.timestamp);
            put("event", f.event);
            put("name", f.name);
            put("groupId", f.group_id);
            put("previousId", f.previous_id);
            for (k, s) in [
                ("properties", f.properties),
                ("traits", f.traits),
                ("context", f.context),
            ] {
                if let Some(s) = s {
                    obj.insert(k.to_string(), struct_to_json(&s));
                }
            }
            Ok(Value::Object(obj).into())
        }
    }
}
