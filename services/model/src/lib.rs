//! liveseg's model service: sentence embeddings of all-MiniLM-L6-v2 on
//! Candle (CPU), served over gRPC with dynamic batching and admission
//! control. See DESIGN.md section 5.

pub mod attention;
pub mod bert;
pub mod dense;
pub mod embedder;
pub mod error;
pub mod files;
pub mod gemm_f32;
mod gemm_i8;
mod int8_tiles;
pub mod kernels;
mod panels;
mod panels_f32;
pub mod precision;
pub mod propensity;
pub mod tokenize;

pub use embedder::{Embedder, MODEL_NAME, cosine};
pub use error::{ModelError, Result};
pub mod queue;
pub mod server;
pub mod service;
