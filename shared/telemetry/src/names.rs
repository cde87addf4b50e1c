//! Metric names and label values shared by every liveseg service.
//!
//! Prometheus style: `liveseg_` prefix, snake_case, base units (`_seconds`),
//! `_total` on counters. Labels are bounded enums only: never tenant, account,
//! contact or user ids (put those on spans, through [`crate::redact_id`] where
//! they identify a person).
//!
//! Every name here gets help text from [`crate::describe_metrics`]; a new
//! name must be added there too.

/// Counter of events offered to ingest, by [`label::OUTCOME`]
/// ([`outcome::ACCEPTED`], [`outcome::DUPLICATE`], [`outcome::INVALID`]).
pub const INGEST_EVENTS_TOTAL: &str = "liveseg_ingest_events_total";

/// Counter of ingest requests that failed for a reason other than the
/// event itself, by [`label::KIND`] (for example `store`, `overloaded`).
pub const INGEST_ERRORS_TOTAL: &str = "liveseg_ingest_errors_total";

/// Histogram: time from an event being durable to it being applied to its
/// account's state.
pub const APPLY_LAG_SECONDS: &str = "liveseg_apply_lag_seconds";

/// Histogram: time from an event being durable to the membership change it
/// caused being emitted.
pub const EVENT_TO_MEMBERSHIP_CHANGE_SECONDS: &str = "liveseg_event_to_membership_change_seconds";

/// Histogram: how late a time-driven exit (a window expiring, no event
/// involved) is emitted after the instant it became due.
pub const TIME_DRIVEN_EXIT_LAG_SECONDS: &str = "liveseg_time_driven_exit_lag_seconds";

/// Gauge: messages waiting in an actor mailbox.
pub const ACTOR_MAILBOX_DEPTH: &str = "liveseg_actor_mailbox_depth";

/// Gauge: accounts whose state is resident in memory on this node.
pub const RESIDENT_ACCOUNTS: &str = "liveseg_resident_accounts";

/// Gauge: contacts whose state is resident in memory on this node.
pub const RESIDENT_CONTACTS: &str = "liveseg_resident_contacts";

/// Counter of segment membership changes emitted, by [`label::KIND`]
/// ([`membership_kind::ENTER`], [`membership_kind::EXIT`]).
pub const MEMBERSHIP_CHANGES_TOTAL: &str = "liveseg_membership_changes_total";

/// Histogram: time taken to write one state checkpoint.
pub const CHECKPOINT_DURATION_SECONDS: &str = "liveseg_checkpoint_duration_seconds";

/// Histogram: time from a shard's activation (lease acquired) to serving
/// (checkpoints loaded, stream tail replayed), in cluster mode.
pub const SHARD_LOAD_SECONDS: &str = "liveseg_shard_load_seconds";

/// Counter: shards resumed without a load, in cluster mode: the node's
/// lease lapsed (Redis away, a pause) and it acquired the next epoch.
pub const SHARD_RESUMES_TOTAL: &str = "liveseg_shard_resumes_total";

/// Counter of standby shard loads (a shard loaded while its silent owner's
/// lease runs out), by [`label::KIND`]: `loaded`, `used` (served from after
/// the lease was acquired) or `unused` (dropped: not activated here, or the
/// shard was written since the load).
pub const SHARD_STANDBYS_TOTAL: &str = "liveseg_shard_standbys_total";

/// Counter of an owner's freezes of a shard for a planned move (the next
/// owner loads a standby meanwhile), by [`label::KIND`]: `frozen`, `failed`
/// (the move goes without) or `thawed` (the move was called off).
pub const SHARD_FREEZES_TOTAL: &str = "liveseg_shard_freezes_total";

/// Histogram: one pass of a node's live calibration of served scores
/// (reading its logs, matching scores to matured outcomes).
pub const SERVED_CALIBRATION_SECONDS: &str = "liveseg_served_calibration_seconds";

/// Counter of a tenant's state being rebuilt, by [`label::KIND`]:
/// `replay` (its log replayed: new definitions, or the first content) or
/// `rejudge` (its state judged again under new content).
pub const TENANT_REBUILDS_TOTAL: &str = "liveseg_tenant_rebuilds_total";

/// Counter: embedding requests refused by the model service's admission
/// control (RESOURCE_EXHAUSTED).
pub const MODEL_REJECTED_TOTAL: &str = "liveseg_model_rejected_total";
/// Histogram: time an embedding request waited for the inference thread.
pub const MODEL_QUEUE_WAIT_SECONDS: &str = "liveseg_model_queue_wait_seconds";
/// Histogram: duration of one forward pass of the embedding model.
pub const MODEL_FORWARD_SECONDS: &str = "liveseg_model_forward_seconds";
/// Histogram: tokens in one forward pass.
pub const MODEL_BATCH_TOKENS: &str = "liveseg_model_batch_tokens";
/// Counter: texts embedded.
pub const MODEL_TEXTS_TOTAL: &str = "liveseg_model_texts_total";

/// Histogram: server-side duration of one gRPC call, by [`label::METHOD`] and
/// [`label::CODE`].
pub const GRPC_REQUEST_DURATION_SECONDS: &str = "liveseg_grpc_request_duration_seconds";

/// Every metric name above, for [`crate::describe_metrics`] and tests.
pub const ALL: &[&str] = &[
    INGEST_EVENTS_TOTAL,
    INGEST_ERRORS_TOTAL,
    APPLY_LAG_SECONDS,
    EVENT_TO_MEMBERSHIP_CHANGE_SECONDS,
    TIME_DRIVEN_EXIT_LAG_SECONDS,
    ACTOR_MAILBOX_DEPTH,
    RESIDENT_ACCOUNTS,
    RESIDENT_CONTACTS,
    MEMBERSHIP_CHANGES_TOTAL,
    CHECKPOINT_DURATION_SECONDS,
    SHARD_LOAD_SECONDS,
    SHARD_RESUMES_TOTAL,
    SHARD_STANDBYS_TOTAL,
    SHARD_FREEZES_TOTAL,
    SERVED_CALIBRATION_SECONDS,
    TENANT_REBUILDS_TOTAL,
    MODEL_REJECTED_TOTAL,
    MODEL_QUEUE_WAIT_SECONDS,
    MODEL_FORWARD_SECONDS,
    MODEL_BATCH_TOKENS,
    MODEL_TEXTS_TOTAL,
    GRPC_REQUEST_DURATION_SECONDS,
];

/// Label keys.
pub mod label {
    /// Result of offering an event to ingest; values in [`super::outcome`].
    pub const OUTCOME: &str = "outcome";
    /// A bounded category: error kind, or membership change kind
    /// (values in [`super::membership_kind`]).
    pub const KIND: &str = "kind";
    /// Fully qualified gRPC method, `package.Service/Method`.
    pub const METHOD: &str = "method";
    /// gRPC status code name, for example `OK` or `UNAVAILABLE`.
    pub const CODE: &str = "code";
}

/// Values of [`label::OUTCOME`] on [`INGEST_EVENTS_TOTAL`].
pub mod outcome {
    /// The event was new and is now durable.
    pub const ACCEPTED: &str = "accepted";
    /// The event's idempotency key was already seen; nothing changed.
    pub const DUPLICATE: &str = "duplicate";
    /// The event failed validation and was rejected.
    pub const INVALID: &str = "invalid";
}

/// Values of [`label::KIND`] on [`MEMBERSHIP_CHANGES_TOTAL`].
pub mod membership_kind {
    /// A contact entered a segment.
    pub const ENTER: &str = "enter";
    /// A contact exited a segment.
    pub const EXIT: &str = "exit";
}
