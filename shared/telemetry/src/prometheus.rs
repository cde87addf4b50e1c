//! The process-wide Prometheus recorder for the `metrics` facade.

use std::sync::OnceLock;
use std::time::Duration;

use anyhow::anyhow;
use metrics::Unit;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::names;

/// Histogram buckets (upper bounds, seconds) for every metric whose name ends
/// in `_seconds`: 1 ms to 5 min, roughly 1-2.5-5 per decade. Covers gRPC
/// calls and apply lag at the low end and time-driven exit lag (a scheduler
/// tick behind) at the high end.
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0,
];

/// How often histogram samples are drained into their buckets when nobody
/// scrapes. Without upkeep the raw samples would grow without bound.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The one recorder of this process, or why it could not be installed.
///
/// Installing a global recorder can only succeed once per process, so a
/// failure is permanent and is remembered rather than retried.
static RECORDER: OnceLock<Result<MetricsHandle, String>> = OnceLock::new();

/// Renders the metrics recorded through the `metrics` facade.
///
/// Cheap to clone; all clones read the same recorder.
#[derive(Clone)]
pub struct MetricsHandle {
    prometheus: PrometheusHandle,
}

impl MetricsHandle {
    /// The current metrics in the Prometheus text exposition format (what
    /// `/metrics` should return, with content type
    /// `text/plain; version=0.0.4`).
    pub fn render(&self) -> String {
        self.prometheus.render()
    }
}

impl std::fmt::Debug for MetricsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsHandle").finish_non_exhaustive()
    }
}

/// Installs the Prometheus recorder as the global `metrics` recorder and
/// returns a handle to render it.
///
/// No HTTP listener is started: serve [`MetricsHandle::render`] from your own
/// router. Histograms whose names end in `_seconds` get real Prometheus
/// buckets (see [`names`]); other histograms are rendered as summaries.
///
/// Idempotent: later calls return a handle to the same recorder. A detached
/// background thread (`metrics-upkeep`) drains histogram samples every few
/// seconds; it needs no tokio runtime.
///
/// # Errors
///
/// If another global `metrics` recorder was installed first (by anything
/// other than this function), or the upkeep thread cannot be spawned. The
/// error is the same on every later call.
pub fn install_metrics_recorder() -> anyhow::Result<MetricsHandle> {
    RECORDER
        .get_or_init(|| install().map_err(|err| format!("{err:#}")))
        .clone()
        .map_err(|err| anyhow!("installing the prometheus metrics recorder: {err}"))
}

fn install() -> anyhow::Result<MetricsHandle> {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), SECONDS_BUCKETS)?
        .build_recorder();
    let prometheus = recorder.handle();
    metrics::set_global_recorder(recorder)?;

    let upkeep = prometheus.clone();
    std::thread::Builder::new()
        .name("metrics-upkeep".to_owned())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                upkeep.run_upkeep();
            }
        })?;

    Ok(MetricsHandle { prometheus })
}

/// Registers unit and help text for every metric in [`names`].
///
/// Descriptions go to whichever global recorder is installed at the time of
/// the call, so call it after [`install_metrics_recorder`]. Calling it again
/// is harmless.
pub fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};

    describe_counter!(
        names::INGEST_EVENTS_TOTAL,
        Unit::Count,
        "Events offered to ingest, by outcome (accepted, duplicate, invalid)."
    );
    describe_counter!(
        names::INGEST_ERRORS_TOTAL,
        Unit::Count,
        "Ingest requests that failed for a reason other than the event itself, by kind."
    );
    describe_histogram!(
        names::APPLY_LAG_SECONDS,
        Unit::Seconds,
        "Time from an event being durable to it being applied to its account state."
    );
    describe_histogram!(
        names::EVENT_TO_MEMBERSHIP_CHANGE_SECONDS,
        Unit::Seconds,
        "Time from an event being durable to the membership change it caused being emitted."
    );
    describe_histogram!(
        names::TIME_DRIVEN_EXIT_LAG_SECONDS,
        Unit::Seconds,
        "Delay between a time-driven segment exit becoming due and it being emitted."
    );
    describe_gauge!(
        names::ACTOR_MAILBOX_DEPTH,
        Unit::Count,
        "Messages waiting in an actor mailbox."
    );
    describe_gauge!(
        names::RESIDENT_ACCOUNTS,
        Unit::Count,
        "Accounts whose state is resident in memory on this node."
    );
    describe_gauge!(
        names::RESIDENT_CONTACTS,
        Unit::Count,
        "Contacts whose state is resident in memory on this node."
    );
    describe_counter!(
        names::MEMBERSHIP_CHANGES_TOTAL,
        Unit::Count,
        "Segment membership changes emitted, by kind (enter, exit)."
    );
    describe_histogram!(
        names::CHECKPOINT_DURATION_SECONDS,
        Unit::Seconds,
        "Time taken to write one state checkpoint."
    );
    describe_histogram!(
        names::SHARD_LOAD_SECONDS,
        Unit::Seconds,
        "Time from acquiring a shard lease to serving the shard (checkpoints loaded, tail replayed)."
    );
    describe_counter!(
        names::SHARD_RESUMES_TOTAL,
        Unit::Count,
        "Shards resumed without a load: the lease lapsed and this node acquired the next epoch."
    );
    describe_counter!(
        names::SHARD_STANDBYS_TOTAL,
        Unit::Count,
        "Standby shard loads, by kind: loaded, used after the lease was acquired, or unused."
    );
    describe_counter!(
        names::SHARD_FREEZES_TOTAL,
        Unit::Count,
        "Shards an owner froze for a planned move, by kind: frozen, failed, or thawed (called off)."
    );
    describe_histogram!(
        names::SERVED_CALIBRATION_SECONDS,
        Unit::Seconds,
        "One pass of the live calibration of served scores over the node's logs."
    );
    describe_counter!(
        names::TENANT_REBUILDS_TOTAL,
        Unit::Count,
        "Tenant state rebuilds, by kind (replay of the log, rejudge under new content)."
    );
    describe_counter!(
        names::MODEL_REJECTED_TOTAL,
        Unit::Count,
        "Embedding requests refused by admission control (RESOURCE_EXHAUSTED)."
    );
    describe_histogram!(
        names::MODEL_QUEUE_WAIT_SECONDS,
        Unit::Seconds,
        "Time an embedding request waited for the inference thread."
    );
    describe_histogram!(
        names::MODEL_FORWARD_SECONDS,
        Unit::Seconds,
        "Duration of one forward pass of the embedding model."
    );
    describe_histogram!(
        names::MODEL_BATCH_TOKENS,
        Unit::Count,
        "Tokens in one forward pass of the embedding model."
    );
    describe_counter!(names::MODEL_TEXTS_TOTAL, Unit::Count, "Texts embedded.");
    describe_histogram!(
        names::GRPC_REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "Server-side duration of one gRPC call, by method and status code."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_is_idempotent_and_renders_counters_and_help() -> anyhow::Result<()> {
        let first = install_metrics_recorder()?;
        let second = install_metrics_recorder()?;
        describe_metrics();
        describe_metrics();

        metrics::counter!(names::INGEST_EVENTS_TOTAL, names::label::OUTCOME => names::outcome::ACCEPTED)
            .increment(3);
        metrics::histogram!(names::APPLY_LAG_SECONDS).record(0.2);
        metrics::gauge!(names::RESIDENT_ACCOUNTS).set(7.0);

        // Both handles read the one recorder.
        let text = second.render();
        assert_eq!(text, first.render());

        assert!(
            text.contains(r#"liveseg_ingest_events_total{outcome="accepted"} 3"#),
            "{text}"
        );
        assert!(
            text.contains("# HELP liveseg_ingest_events_total Events offered to ingest"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE liveseg_apply_lag_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains(r#"liveseg_apply_lag_seconds_bucket{le="0.25"} 1"#),
            "{text}"
        );
        assert!(text.contains("liveseg_resident_accounts 7"), "{text}");
        Ok(())
    }

    #[test]
    fn every_name_is_prometheus_style() {
        for name in names::ALL {
            assert!(name.starts_with("liveseg_"), "{name}");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{name}"
            );
        }
        let mut unique = names::ALL.to_vec();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names::ALL.len());
    }
}
