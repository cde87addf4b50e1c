//! Ingest: per-item validation, then one durable append through the group
//! committer. An item is acknowledged (accepted or duplicate) only once it
//! is durable; a bad item never costs its valid neighbours their place.

use crate::clock::SharedClock;
use crate::error::{NodeError, Result};
use liveseg_core::event::{FieldError, Limits, parse_owned};
use liveseg_core::time::format_rfc3339;
use liveseg_store::{AppendItem, AppendOutcome, GroupCommitter, Seq, StoreError};
use liveseg_telemetry::names;
use serde_json::Value;

/// One raw item: parsed JSON (with its original text when it came as text,
/// so it can be logged without serialising it again), or why it could not be read.
pub type RawItem = std::result::Result<Input, FieldError>;

#[derive(Debug)]
pub struct Input {
    pub value: Value,
    pub text: Option<Vec<u8>>,
}

impl From<Value> for Input {
    fn from(value: Value) -> Self {
        Input { value, text: None }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Accepted,
    Duplicate,
    Invalid,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemResult {
    pub index: usize,
    pub status: Status,
    pub field: String,
    pub reason: String,
    pub seq: Seq,
}

/// Where accepted events become durable.
pub enum Sink {
    /// Standalone: the embedded log's group committer.
    Committer(GroupCommitter),
    /// Cluster: the tenant's shard stream in Redis, written from any node.
    Shards(crate::cluster::ShardIntake),
}

impl Sink {
    async fn append(
        &self,
        tenant: &str,
        items: Vec<AppendItem>,
        now: i64,
    ) -> std::result::Result<Vec<AppendOutcome>, StoreError> {
        match self {
            Sink::Committer(c) => c.append(items, now).await,
            Sink::Shards(s) => s.append(tenant, items, now).await,
        }
    }

    /// Refuses new appends; those in flight finish.
    pub fn close(&self) {
        match self {
            Sink::Committer(c) => c.shutdown(),
            Sink::Shards(s) => s.close(),
        }
    }
}

pub struct Ingestor {
    pub sink: Sink,
    pub clock: SharedClock,
    pub limits: Limits,
}

impl Ingestor {
    pub async fn ingest(&self, tenant: &str, items: Vec<RawItem>) -> Result<Vec<ItemResult>> {
        let now = self.clock.now();
        let mut results = Vec::with_capacity(items.len());
        let mut append = Vec::new();
        let mut positions = Vec::new();
        for (index, item) in items.into_iter().enumerate() {
            match self.validate(index, item, now) {
                Ok((message_id, payload)) => {
                    positions.push(results.len());
                    results.push(ItemResult {
                        index,
                        status: Status::Accepted,
                        field: String::new(),
                        reason: String::new(),
                        seq: 0,
                    });
                    append.push(AppendItem {
                        tenant: tenant.to_string(),
                        message_id,
                        payload,
                    });
                }
                Err(e) => results.push(ItemResult {
                    index,
                    status: Status::Invalid,
                    field: e.field,
                    reason: e.reason,
                    seq: 0,
                }),
            }
        }
        if !append.is_empty() {
            let outcomes = self
                .sink
                .append(tenant, append, now)
                .await
                .map_err(|e| match e {
                    StoreError::Overloaded => {
                        NodeError::Overloaded("the ingest queue is full".into())
                    }
                    StoreError::Closed => NodeError::ShuttingDown,
                    other => NodeError::Store(other),
                })?;
            for (pos, outcome) in positions.into_iter().zip(outcomes) {
                let r = &mut results[pos];
                match outcome {
                    AppendOutcome::Accepted { seq } => r.seq = seq,
                    AppendOutcome::Duplicate { seq } => {
                        r.seq = seq;
                        r.status = Status::Duplicate;
                    }
                }
            }
        }
        for r in &results {
            let outcome = match r.status {
                Status::Accepted => names::outcome::ACCEPTED,
                Status::Duplicate => names::outcome::DUPLICATE,
                Status::Invalid => names::outcome::INVALID,
            };
            metrics::counter!(names::INGEST_EVENTS_TOTAL, names::label::OUTCOME => outcome)
                .increment(1);
        }
        Ok(results)
    }

    /// Returns (messageId, normalised payload) or the item's error.
    fn validate(
        &self,
        index: usize,
        item: RawItem,
        now: i64,
    ) -> std::result::Result<(String, Vec<u8>), FieldError> {
        if index >= self.limits.max_batch_items {
            return Err(FieldError::new(
                "",
                format!(
                    "batch has more than {} messages; send the rest in another batch",
                    self.limits.max_batch_items
                ),
            ));
        }
        let Input {
            value: mut v,
            mut text,
        } = item?;
        // Like Segment's receivedAt: a message without a timestamp happened now.
        if let Some(obj) = v.as_object_mut()
            && obj.get("timestamp").is_none_or(Value::is_null)
        {
            obj.insert("timestamp".into(), Value::String(format_rfc3339(now)));
            text = None;
        }
        let payload = match text {
            Some(t) => t,
            None => serde_json::to_vec(&v).map_err(|e| FieldError::new("", e.to_string()))?,
        };
        let event = parse_owned(v, now, &self.limits)?;
        if payload.len() > self.limits.max_message_bytes {
            return Err(FieldError::new(
                "",
                format!(
                    "message is {} bytes; the limit is {}",
                    payload.len(),
                    self.limits.max_message_bytes
                ),
            ));
        }
        Ok((event.message_id, payload))
    }
}
