//! The node's errors and their one mapping to gRPC status codes.

use liveseg_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("missing or unknown API key")]
    Unauthenticated,
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("overloaded: {0}; retry with backoff")]
    Overloaded(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("state of tenant {0} was built for other segment definitions and must be rebuilt")]
    StaleShape(String),
    #[error("the node is shutting down")]
    ShuttingDown,
    /// A dependency (the model) is not ready yet; retry shortly.
    #[error("{0}")]
    Unavailable(String),
    /// This node stopped serving the data (a shard moved or is moving).
    #[error("{}", moved_text(*.0))]
    Moved(Option<u32>),
    /// Another node owns the data; `owner` is its address when known.
    #[error("shard {shard} is served by {}; retry there or on any node", .owner.as_deref().unwrap_or("no node yet"))]
    NotHere { shard: u32, owner: Option<String> },
    #[error("bad configuration: {0}")]
    Config(String),
    /// Changes could not be made durable (the store is away); the outbox
    /// keeps them and sends them again.
    #[error("change log: {0}")]
    ChangeLog(String),
    #[error("internal: {0}")]
    Internal(String),
}

pub type Result<T, E = NodeError> = std::result::Result<T, E>;

/// Whether the store may take the same write later, so what it refused is
/// kept and sent again: Redis was away or loading, the shard's lease
/// lapsed (the runtime is parked, and may resume), or a disk error, which a
/// full disk being cleared can end. A refusal the store would repeat (out
/// of memory, a stale or corrupt image) is not.
pub fn store_may_recover(e: &StoreError) -> bool {
    e.is_transient_redis() || matches!(e, StoreError::Fenced { .. } | StoreError::Io { .. })
}

impl From<NodeError> for tonic::Status {
    fn from(e: NodeError) -> Self {
        use tonic::Code;
        let code = match &e {
            NodeError::Store(StoreError::Overloaded) => Code::ResourceExhausted,
            // Indeterminate (the write may have landed) or fenced: re-send.
            NodeError::Store(StoreError::Redis(_) | StoreError::Fenced { .. }) => Code::Unavailable,
            NodeError::Store(_) => Code::Internal,
            NodeError::Unauthenticated => Code::Unauthenticated,
            NodeError::PermissionDenied(_) => Code::PermissionDenied,
            NodeError::InvalidArgument(_) => Code::InvalidArgument,
            NodeError::NotFound(_) => Code::NotFound,
            NodeError::Overloaded(_) => Code::ResourceExhausted,
            NodeError::FailedPrecondition(_) => Code::FailedPrecondition,
            NodeError::StaleShape(_) => Code::Unavailable,
            NodeError::ShuttingDown => Code::Unavailable,
            NodeError::Unavailable(_) => Code::Unavailable,
            NodeError::Moved(_) | NodeError::NotHere { .. } => Code::Unavailable,
            NodeError::Config(_) => Code::Internal,
            NodeError::ChangeLog(_) => Code::Unavailable,
            NodeError::Internal(_) => Code::Internal,
        };
        let mut status = tonic::Status::new(code, e.to_string());
        if let NodeError::NotHere {
            owner: Some(owner), ..
        } = &e
            && let Ok(v) = owner.parse()
        {
            status.metadata_mut().insert(OWNER_HEADER, v);
        }
        status
    }
}

/// Response metadata naming the node that serves the caller's data.
pub const OWNER_HEADER: &str = "x-liveseg-owner";

fn moved_text(shard: Option<u32>) -> String {
    match shard {
        Some(s) => format!(
            "shard {s} moved or is moving to another node; retry (any node routes to its owner)"
        ),
        None => "the node stopped serving; retry".into(),
    }
}
