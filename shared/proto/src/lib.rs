//! The liveseg v1 API, generated from `proto/liveseg/v1/*.proto`.
//!
//! `pb` holds the messages, clients and servers; `FILE_DESCRIPTOR_SET` feeds
//! gRPC server reflection so grpcurl and buf curl work against any node.

#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("liveseg.v1");
}

/// Encoded descriptors of every liveseg service, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("liveseg_descriptor");
