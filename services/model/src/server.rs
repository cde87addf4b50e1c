//! The model service as a process of its own (cluster mode): gRPC with
//! health and reflection on one port. The port is bound before the model
//! loads, so health can answer NOT_SERVING meanwhile.

use crate::error::{ModelError, Result};
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
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(ModelGrpc::server(model))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| ModelError::Load(format!("serving: {e}")))
}
