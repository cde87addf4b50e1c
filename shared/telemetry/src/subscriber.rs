//! The process-wide `tracing` subscriber and its guard.

use std::io::IsTerminal as _;
use std::sync::{Mutex, PoisonError};

use anyhow::{Context as _, bail};
use tracing_subscriber::filter::{EnvFilter, filter_fn};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer as _, Registry, fmt};

use crate::otlp::{self, OtlpPipeline};

/// How [`init`] sets up telemetry for one binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// `service.name` of exported spans unless `OTEL_SERVICE_NAME` is set,
    /// e.g. `liveseg-node`.
    pub service_name: String,
    /// Format of the log lines written to stderr.
    pub log_format: LogFormat,
    /// `EnvFilter` directives used when `RUST_LOG` is unset, empty or
    /// invalid, e.g. `info` or `info,liveseg_node=debug`.
    pub default_filter: String,
}

/// Format of the log lines written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One human-readable line per event, coloured when stderr is a terminal.
    #[default]
    Pretty,
    /// One JSON object per line, with the current span and its parents, for
    /// log collectors.
    Json,
}

/// Whether [`init`] has installed the subscriber in this process. The lock
/// also serialises concurrent calls.
static INSTALLED: Mutex<bool> = Mutex::new(false);

/// Flushes and stops span export when dropped or on [`TelemetryGuard::shutdown`].
///
/// Keep it alive for the life of the process (bind it in `main`, not to `_`).
/// The log subscriber itself stays installed after the guard is gone.
#[must_use = "dropping the guard stops span export"]
#[derive(Default)]
pub struct TelemetryGuard {
    /// `None` when OTLP export is off or this guard is a no-op.
    otlp: Option<OtlpPipeline>,
}

impl TelemetryGuard {
    /// Whether this guard owns a span export pipeline (false when OTLP export
    /// is off, and for the guard of a repeated [`init`]).
    pub fn exports_spans(&self) -> bool {
        self.otlp.is_some()
    }

    /// Exports the spans still buffered and stops the exporter.
    ///
    /// Blocks for at most about 5 s (when the collector is unreachable).
    /// Safe to call from async code on any runtime flavour: the exporter does
    /// not depend on the caller's runtime making progress. Prefer this over
    /// dropping the guard when you want to see a failure.
    ///
    /// # Errors
    ///
    /// If the last spans could not be exported in time.
    pub fn shutdown(mut self) -> anyhow::Result<()> {
        match self.otlp.take() {
            Some(mut pipeline) => pipeline.shutdown(),
            None => Ok(()),
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(mut pipeline) = self.otlp.take()
            && let Err(err) = pipeline.shutdown()
        {
            tracing::warn!(
                error = format!("{err:#}"),
                "span export did not shut down cleanly"
            );
        }
    }
}

impl std::fmt::Debug for TelemetryGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetryGuard")
            .field("exports_spans", &self.exports_spans())
            .finish()
    }
}

/// Installs the global `tracing` subscriber (and, when
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is set, OTLP span export).
///
/// - Filter: `RUST_LOG`, else `cfg.default_filter`. An invalid `RUST_LOG` is
///   reported as a warning and the default is used.
/// - Output: stderr, in `cfg.log_format`. Records from the `log` crate are
///   forwarded too.
/// - With `OTEL_EXPORTER_OTLP_ENDPOINT` set (non-empty): spans are also
///   exported over OTLP/gRPC (tonic; plain `http://` endpoints) through the
///   SDK's batch span processor, with `service.name` from
///   `OTEL_SERVICE_NAME` or `cfg.service_name`; the other `OTEL_EXPORTER_OTLP_*`
///   and `OTEL_BSP_*` variables apply. The SDK provider becomes the
///   OpenTelemetry global tracer provider and the W3C TraceContext
///   propagator is installed. Spans from the export path itself (tonic, h2,
///   hyper, tower, opentelemetry) are never exported.
///
/// Needs no tokio runtime, with or without OTLP: the exporter runs on a
/// small runtime of its own (one `otlp-export` thread), so it can be called
/// before a runtime exists, from inside one, or from a CLI without one.
///
/// Calling it again in the same process does nothing and returns a no-op
/// guard ([`TelemetryGuard::exports_spans`] is false); the first call's
/// settings stay in force.
///
/// # Errors
///
/// If `cfg.default_filter` does not parse, the OTLP exporter cannot be built
/// (e.g. a malformed endpoint), or a global `tracing` subscriber was already
/// installed by something other than this function.
pub fn init(cfg: &TelemetryConfig) -> anyhow::Result<TelemetryGuard> {
    let mut installed = INSTALLED.lock().unwrap_or_else(PoisonError::into_inner);
    if *installed {
        return Ok(TelemetryGuard::default());
    }
    if tracing::dispatcher::has_been_set() {
        bail!(
            "a global tracing subscriber is already installed by something other than liveseg_telemetry::init"
        );
    }

    let (filter, ignored_rust_log) = env_filter(&cfg.default_filter)?;
    let otlp = if otlp::endpoint_configured() {
        Some(OtlpPipeline::start(&cfg.service_name)?)
    } else {
        None
    };

    let fmt_layer = fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let fmt_layer = match cfg.log_format {
        LogFormat::Pretty => fmt_layer.boxed(),
        LogFormat::Json => fmt_layer.json().boxed(),
    };
    let otel_layer = otlp.as_ref().and_then(OtlpPipeline::tracer).map(|tracer| {
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(filter_fn(|metadata| {
                otlp::exportable_target(metadata.target())
            }))
    });

    let subscriber = Registry::default()
        .with(filter)
        .with(fmt_layer)
        .with(otel_layer);
    if let Err(err) = subscriber.try_init() {
        // `try_init` sets the tracing subscriber first, then the `log`
        // bridge. Having checked for a subscriber above, a failure here
        // almost surely means another `log` logger is installed: our
        // subscriber is in place but `log` records bypass it.
        if !tracing::dispatcher::has_been_set() {
            return Err(err).context("installing the tracing subscriber");
        }
        tracing::warn!(error = %err, "log crate records are not forwarded to tracing");
    }
    *installed = true;

    if let Some(pipeline) = &otlp {
        pipeline.install_globals();
    }
    if let Some(rust_log) = ignored_rust_log {
        tracing::warn!(%rust_log, default_filter = %cfg.default_filter, "ignoring invalid RUST_LOG");
    }
    tracing::debug!(
        service_name = %cfg.service_name,
        log_format = ?cfg.log_format,
        otlp_export = otlp.is_some(),
        "telemetry initialised"
    );
    Ok(TelemetryGuard { otlp })
}

/// The filter from `RUST_LOG`, else from `default_filter`. Also returns the
/// value of `RUST_LOG` when it was set but did not parse, to warn about once
/// the subscriber is up.
fn env_filter(default_filter: &str) -> anyhow::Result<(EnvFilter, Option<String>)> {
    let rust_log = std::env::var(EnvFilter::DEFAULT_ENV)
        .ok()
        .filter(|value| !value.trim().is_empty());
    if let Some(rust_log) = rust_log {
        match EnvFilter::try_new(&rust_log) {
            Ok(filter) => return Ok((filter, None)),
            Err(_) => return Ok((default(default_filter)?, Some(rust_log))),
        }
    }
    Ok((default(default_filter)?, None))
}

fn default(default_filter: &str) -> anyhow::Result<EnvFilter> {
    EnvFilter::try_new(default_filter)
        .with_context(|| format!("invalid default log filter {default_filter:?}"))
}
