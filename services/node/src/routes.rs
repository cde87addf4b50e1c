//! One router for the port: the gRPC services (with health checking and
//! server reflection, so grpcurl works) and the HTTP JSON API.

use crate::error::{NodeError, Result};
use crate::grpc::{
    admin::AdminApi, content::ContentApi, ingest::IngestApi, insight::InsightApi,
    membership::MembershipApi, segments::SegmentsApi,
};
use crate::server::NodeInner;
use liveseg_proto::pb;
use std::sync::Arc;

pub fn router<H>(node: Arc<NodeInner>, health: H) -> Result<axum::Router>
where
    H: tonic::server::NamedService
        + tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + Sync
        + 'static,
    H::Future: Send + 'static,
{
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(liveseg_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| NodeError::Internal(format!("reflection: {e}")))?;
    // Big enough for a full batch of maximal messages, and no bigger.
    let max = node
        .config
        .limits
        .max_batch_items
        .saturating_mul(node.config.limits.max_message_bytes)
        .clamp(4 << 20, 64 << 20);
    let grpc = tonic::service::Routes::new(health)
        .add_service(reflection)
        .add_service(
            pb::ingest_service_server::IngestServiceServer::new(IngestApi(node.clone()))
                .max_decoding_message_size(max),
        )
        .add_service(pb::segment_service_server::SegmentServiceServer::new(
            SegmentsApi(node.clone()),
        ))
        .add_service(pb::membership_service_server::MembershipServiceServer::new(
            MembershipApi(node.clone()),
        ))
        .add_service(pb::admin_service_server::AdminServiceServer::new(AdminApi(
            node.clone(),
        )))
        .add_service(pb::content_service_server::ContentServiceServer::new(
            ContentApi(node.clone()),
        ))
        .add_service(pb::insight_service_server::InsightServiceServer::new(
            InsightApi(node.clone()),
        ))
        .into_axum_router();
    let routed = axum::middleware::from_fn_with_state(node.clone(), crate::forward::route);
    Ok(grpc.merge(crate::http::router(node)).layer(routed))
}
