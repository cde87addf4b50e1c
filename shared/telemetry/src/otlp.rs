//! The OTLP/gRPC span pipeline, built only when `OTEL_EXPORTER_OTLP_ENDPOINT`
//! is set.

use std::time::Duration;

use anyhow::Context as _;
use opentelemetry::global;
use opentelemetry_otlp::SpanExporter;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tokio::runtime::Runtime;

/// Enables OTLP export; also the collector address (`http://host:4317`).
pub(crate) const ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// Overrides [`crate::TelemetryConfig::service_name`] on exported spans.
const SERVICE_NAME_ENV: &str = "OTEL_SERVICE_NAME";
/// Instrumentation scope name of the spans bridged from `tracing`.
const TRACER_NAME: &str = "liveseg";
/// Longest a shutdown waits for the last batch to be exported.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// Targets whose spans are never exported: the export path itself (tonic,
/// its HTTP/2 stack, the SDK), so exporting a batch cannot create spans that
/// need exporting.
const EXPORT_PATH_TARGETS: &[&str] = &[
    "h2",
    "hyper",
    "hyper_util",
    "tonic",
    "tower",
    "opentelemetry",
    "opentelemetry_sdk",
    "opentelemetry_otlp",
];

/// Whether OTLP export is requested (the endpoint variable is set and not
/// empty).
pub(crate) fn endpoint_configured() -> bool {
    std::env::var_os(ENDPOINT_ENV).is_some_and(|value| !value.is_empty())
}

/// Whether spans from `target` may be exported (see [`EXPORT_PATH_TARGETS`]).
pub(crate) fn exportable_target(target: &str) -> bool {
    let crate_name = target.split("::").next().unwrap_or(target);
    !EXPORT_PATH_TARGETS.contains(&crate_name)
}

/// A running span export pipeline: tonic exporter, batch span processor and
/// the runtime the exporter's connection lives on.
pub(crate) struct OtlpPipeline {
    /// `None` once shut down.
    provider: Option<SdkTracerProvider>,
    /// Drives the tonic channel (connection and request-buffer tasks).
    ///
    /// Owned here instead of borrowing the caller's runtime: the SDK's batch
    /// processor polls exports from its own thread, and they only make
    /// progress while the channel's tasks run. On a caller's current-thread
    /// runtime that is blocked in [`OtlpPipeline::shutdown`] they would not,
    /// and shutdown would stall until its timeout. Closed (without blocking,
    /// so it is safe inside async code) by `shutdown`, after the provider.
    runtime: Option<Runtime>,
}

impl OtlpPipeline {
    /// Builds the exporter and provider. Reads the `OTEL_EXPORTER_OTLP_*`,
    /// `OTEL_BSP_*` and resource variables; the service name is
    /// `OTEL_SERVICE_NAME` if set, else `default_service_name`.
    pub(crate) fn start(default_service_name: &str) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("otlp-export")
            .enable_all()
            .build()
            .context("starting the otlp export runtime")?;

        let exporter = {
            // The tonic channel spawns its tasks on the runtime it is built in.
            let _entered = runtime.enter();
            SpanExporter::builder()
                .with_tonic()
                .build()
                .context("building the otlp span exporter")?
        };

        let resource = Resource::builder()
            .with_service_name(service_name(default_service_name))
            .build();
        let provider = SdkTracerProvider::builder()
            .with_resource(resource)
            .with_batch_exporter(exporter)
            .build();

        Ok(Self {
            provider: Some(provider),
            runtime: Some(runtime),
        })
    }

    /// The tracer the `tracing-opentelemetry` layer records into.
    pub(crate) fn tracer(&self) -> Option<SdkTracer> {
        use opentelemetry::trace::TracerProvider as _;
        self.provider
            .as_ref()
            .map(|provider| provider.tracer(TRACER_NAME))
    }

    /// Makes this pipeline the OpenTelemetry global tracer provider and sets
    /// the W3C TraceContext propagator, for code that injects or extracts
    /// `traceparent` across gRPC calls and actor messages.
    pub(crate) fn install_globals(&self) {
        if let Some(provider) = &self.provider {
            global::set_tracer_provider(provider.clone());
        }
        global::set_text_map_propagator(TraceContextPropagator::new());
    }

    /// Exports buffered spans and stops the pipeline, waiting at most
    /// [`SHUTDOWN_TIMEOUT`]. Later calls do nothing.
    pub(crate) fn shutdown(&mut self) -> anyhow::Result<()> {
        let result = match self.provider.take() {
            Some(provider) => provider
                .shutdown_with_timeout(SHUTDOWN_TIMEOUT)
                .context("shutting down the otlp tracer provider"),
            None => Ok(()),
        };
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
        result
    }
}

impl Drop for OtlpPipeline {
    fn drop(&mut self) {
        // A no-op after an explicit shutdown, whose caller saw the result;
        // otherwise this is an early-error path in `init` with nothing
        // exported yet, so there is nothing worth reporting.
        let _ = self.shutdown();
    }
}

fn service_name(default: &str) -> String {
    std::env::var(SERVICE_NAME_ENV)
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_path_targets_are_not_exported() {
        assert!(!exportable_target("h2::proto::connection"));
        assert!(!exportable_target("tonic"));
        assert!(!exportable_target("opentelemetry_sdk"));
        assert!(exportable_target("liveseg_node::ingest"));
        assert!(exportable_target("h2o"));
    }
}
