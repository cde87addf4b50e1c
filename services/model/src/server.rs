//! The model service as a process of its own (cluster mode): gRPC with
//! health and reflection, and Prometheus `GET /metrics` (queue wait,
//! forward time, batch sizes, rejections), on one port. The port is bound
//! before the model loads, so health can answer NOT_SERVING meanwhile.
//! With a model registry, propensity scoring (`PropensityService`) is served
//! on the same port.

use crate::error::{ModelError, Result};
use crate::propensity::{Propensity, PropensityConfig};
use crate::service::{ModelConfig, ModelGrpc, ModelHandle, load_in_background};
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

/// Serves until `shutdown` completes, then finishes the calls in flight.
/// Writes the bound address to `addr_file` (if given) once listening, for
/// tools started with port 0.
pub async fn serve(
    listen: SocketAddr,
    config: ModelConfig,
    propensity: Option<PropensityConfig>,
    addr_file: Option<&Path>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| ModelError::Load(format!("binding {listen}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| ModelError::Load(e.to_string()))?;
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_not_serving::<liveseg_proto::pb::model_service_server::ModelServiceServer<ModelGrpc>>()
        .await;
    // Propensity models need no embedding model: they serve from the start.
    let propensity = match propensity {
        Some(p) => Some(Arc::new(Propensity::open(&p).map_err(|e| {
            ModelError::Load(format!("model registry {}: {e}", p.registry.display()))
        })?)),
        None => None,
    };
    let model: Arc<ModelHandle> = load_in_background(config, health.clone());
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(liveseg_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ModelError::Load(format!("reflection: {e}")))?;
    if let Some(path) = addr_file {
        std::fs::write(path, addr.to_string())
            .map_err(|e| ModelError::Load(format!("writing {}: {e}", path.display())))?;
    }
    tracing::info!(%addr, "liveseg model service listening (health NOT_SERVING until the model is warm)");
    let metrics = liveseg_telemetry::install_metrics_recorder()
        .map_err(|e| tracing::warn!(error = %e, "metrics are not exported"))
        .ok();
    let router = tonic::service::Routes::new(health_service)
        .add_service(reflection)
        .add_service(ModelGrpc::server(model));
    let router = match propensity {
        Some(p) => router.add_service(p.server()),
        None => router,
    };
    let router = router.into_axum_router().route(
        "/metrics",
        axum::routing::get(move || {
            let text = metrics.as_ref().map(|m| m.render());
            async move {
                match text {
                    Some(t) => (http::StatusCode::OK, t),
                    None => (
                        http::StatusCode::NOT_FOUND,
                        "metrics are not enabled\n".to_string(),
                    ),
                }
            }
        }),
    );
    // Small gRPC frames would otherwise wait on delayed ACKs.
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| ModelError::Load(format!("serving: {e}")))
}
