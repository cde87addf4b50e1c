//! Telemetry setup shared by every liveseg binary.
//!
//! - [`init`] (in `subscriber`) installs the process-wide `tracing` subscriber: an
//!   `EnvFilter` (`RUST_LOG`, else [`TelemetryConfig::default_filter`]) and a
//!   human or JSON formatter writing to **stderr** (stdout is reserved for
//!   command output). When `OTEL_EXPORTER_OTLP_ENDPOINT` is set it also adds a
//!   `tracing-opentelemetry` layer fed by the OTLP/gRPC pipeline in `otlp`, and
//!   returns a [`TelemetryGuard`] that flushes spans on shutdown.
//! - `otlp` builds that pipeline: a tonic span exporter, owned by a small
//!   dedicated tokio runtime, behind the SDK's batch span processor, plus the
//!   W3C TraceContext propagator.
//! - [`install_metrics_recorder`] (in `prometheus`) installs the global
//!   `metrics` recorder; the node serves [`MetricsHandle::render`] on its own
//!   `/metrics` route. [`names`] holds every metric name and label so services
//!   agree on them, and [`describe_metrics`] registers their help text.
//! - [`redact_id`] turns a contact or user id into a short stable token, so
//!   logs and spans can correlate records without carrying PII.

pub mod names;
mod otlp;
mod prometheus;
mod redact;
mod subscriber;

pub use prometheus::{MetricsHandle, describe_metrics, install_metrics_recorder};
pub use redact::redact_id;
pub use subscriber::{LogFormat, TelemetryConfig, TelemetryGuard, init};
