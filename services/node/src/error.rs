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
    #[error("bad configuration: {0}")]
    Config(String),
    #[error("internal: {0}")]
    Internal(String),
}

pub type Result<T, E = NodeError> = std::result::Result<T, E>;

impl From<NodeError> for tonic::Status {
    fn from(e: NodeError) -> Self {
        use tonic::Code;
        let code = match &e {
            NodeError::Store(StoreError::Overloaded) => Code::ResourceExhausted,
            NodeError::Store(_) => Code::Internal,
            NodeError::Unauthenticated => Code::Unauthenticated,
            NodeError::PermissionDenied(_) => Code::PermissionDenied,
            NodeError::InvalidArgument(_) => Code::InvalidArgument,
            NodeError::NotFound(_) => Code::NotFound,
            NodeError::Overloaded(_) => Code::ResourceExhausted,
            NodeError::FailedPrecondition(_) => Code::FailedPrecondition,
            NodeError::StaleShape(_) => Code::Unavailable,
            NodeError::ShuttingDown => Code::Unavailable,
            NodeError::Config(_) => Code::Internal,
            NodeError::Internal(_) => Code::Internal,
        };
        tonic::Status::new(code, e.to_string())
    }
}
