//! The liveseg node: a standalone process that ingests Segment-Spec events,
//! keeps each account's live state in an actor and serves the v1 API.
//!
//! Path of an event: `grpc::ingest`/`http` -> `ingest` (validation) -> the
//! store's group committer (durable, then acknowledged) -> `dispatch`
//! (routing in log order) -> `actor` (a thin actix shell over `host`, the
//! plain account logic from liveseg-core) -> `outbox` (durable change log,
//! membership index, live feed) -> `grpc::membership` (queries, explain,
//! watch). `periodic` checkpoints and passivates; `rebuild` re-derives a
//! tenant's state when its definitions change; `server` starts and stops.
//! `content` and `embedding` keep registered content and its vectors (from
//! the in-process or remote model) for affinity conditions and matching;
//! `scorer` keeps propensity scores live through the model service.

pub mod actor;
pub mod actors;
pub mod auth;
pub mod calibration;
#[cfg(test)]
mod checkpoint_cost;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod content;
pub mod dispatch;
pub mod embedding;
pub mod error;
pub mod forward;
pub mod grpc;
pub mod host;
pub mod http;
pub mod ingest;
pub mod insight;
pub mod log_entry;
pub mod outbox;
pub mod periodic;
pub mod rebuild;
pub mod registry;
pub mod routes;
pub mod runtime;
pub mod scorer;
pub mod server;
pub mod tenant;

pub use auth::Credentials;
pub use config::{ClockMode, NodeConfig};
pub use error::NodeError;
pub use server::{NodeHandle, start};

/// Runs a node until `shutdown` completes, then drains and exits.
pub async fn run(
    config: NodeConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    let node = start(config).await?;
    shutdown.await;
    node.shutdown().await
}
