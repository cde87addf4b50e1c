//! Where the node gets text embeddings: the model in-process (standalone:
//! `--model-dir`), a model service process (cluster: `--model-server`), or
//! none. Content registration and topic texts of affinity conditions are
//! the only callers: texts are embedded once and their vectors stored, so
//! the event path never waits on a model.

use crate::error::{NodeError, Result};
use liveseg_model::service::{ModelConfig, ModelHandle, embed_texts, status_of};
use liveseg_proto::pb;
use liveseg_proto::pb::model_service_client::ModelServiceClient;
use std::path::PathBuf;
use std::sync::Arc;
use tonic::transport::{Channel, Endpoint};

/// Which model the node uses; from `--model-dir` / `--model-server`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ModelSource {
    /// No model: content registration and topic affinities are refused.
    #[default]
    None,
    /// Load the model files from this directory into the node.
    Local(PathBuf),
    /// A `liveseg model serve` process at this URL (`http://host:port`).
    Remote(String),
}

/// One embedded text.
#[derive(Debug, Clone)]
pub struct TextVector {
    pub values: Vec<f32>,
    pub tokens: u32,
    pub truncated: bool,
}

/// Embedded texts and the model that embedded them.
#[derive(Debug)]
pub struct Embedded {
    /// The model's id (`liveseg_model::Embedder::model_id`).
    pub model: String,
    /// One per text, in order; a text the model refused is `Err`.
    pub vectors: Vec<Result<TextVector, String>>,
}

pub enum Embeddings {
    None,
    /// The in-process model; loads in the background after start.
    Local(Arc<ModelHandle>),
    Remote {
        url: String,
        client: ModelServiceClient<Channel>,
    },
}

impl Embeddings {
    /// Starts loading a local model, or connects lazily to a remote one.
    /// Must run inside a tokio runtime.
    pub fn start(source: &ModelSource) -> Result<Embeddings> {
        match source {
            ModelSource::None => Ok(Embeddings::None),
            ModelSource::Local(dir) => {
                // The node does not serve ModelService itself, so nobody reads
                // this reporter; the handle says when the model is ready.
                let (health, _) = tonic_health::server::health_reporter();
                let config = ModelConfig {
                    model_dir: dir.clone(),
                    precision: Default::default(),
                    queue: Default::default(),
                };
                Ok(Embeddings::Local(
                    liveseg_model::service::load_in_background(config, health),
                ))
            }
            ModelSource::Remote(url) => {
                let channel = Endpoint::from_shared(url.clone())
                    .map_err(|e| NodeError::Config(format!("--model-server {url}: {e}")))?
                    .connect_timeout(std::time::Duration::from_secs(2))
                    // A hung model must not hold a tenant's definitions lock.
                    .timeout(std::time::Duration::from_secs(30))
                    .tcp_nodelay(true)
                    .connect_lazy();
                Ok(Embeddings::Remote {
                    url: url.clone(),
                    client: ModelServiceClient::new(channel)
                        .max_decoding_message_size(64 << 20)
                        .max_encoding_message_size(64 << 20),
                })
            }
        }
    }

    /// Embeds `texts` in order; a text the model refuses gets `Err` on its
    /// own. Overload is `Overloaded` (RESOURCE_EXHAUSTED) for the whole call.
    pub async fn embed(&self, texts: &[String]) -> Result<Embedded> {
        let (model, answers) = match self {
            Embeddings::None => {
                return Err(NodeError::FailedPrecondition(
                    "no model is configured: start the node with --model-dir DIR (in-process) or --model-server URL (run scripts/fetch-model.sh for the files)".into(),
                ));
            }
            Embeddings::Local(handle) => {
                let Some(ready) = handle.ready() else {
                    return Err(match handle.failure() {
                        Some(e) => {
                            NodeError::FailedPrecondition(format!("the model failed to load: {e}"))
                        }
                        None => NodeError::Unavailable(
                            "the model is still loading; retry shortly".into(),
                        ),
                    });
                };
                let answers = embed_texts(ready, texts).await.map_err(from_status)?;
                (ready.embedder.model_id().to_string(), answers)
            }
            Embeddings::Remote { url, client } => {
                let mut answers = Vec::with_capacity(texts.len());
                let mut model: Option<String> = None;
                // The model service takes at most 256 texts per call.
                for chunk in texts.chunks(liveseg_model::service::MAX_TEXTS) {
                    let reply = client
                        .clone()
                        .embed(pb::EmbedRequest {
                            texts: chunk.to_vec(),
                        })
                        .await
                        .map_err(|s| remote_error(url, s))?
                        .into_inner();
                    // A model service that does not name its model (one from
                    // before model ids) could be any model: its vectors cannot
                    // be checked against the stored ones, so none is kept.
                    if reply.model_id.is_empty() {
                        return Err(NodeError::FailedPrecondition(format!(
                            "the model service at {url} does not name its model (it predates model ids); upgrade it to this node's version"
                        )));
                    }
                    let id = reply.model_id;
                    match &model {
                        Some(m) if *m != id => {
                            return Err(NodeError::Unavailable(format!(
                                "model at {url}: the model changed during the call ({m}, then {id}); retry"
                            )));
                        }
                        _ => model = Some(id),
                    }
                    answers.extend(reply.embeddings);
                }
                let model =
                    model.ok_or_else(|| NodeError::InvalidArgument("no texts to embed".into()))?;
                (model, answers)
            }
        };
        if answers.len() != texts.len() {
            return Err(NodeError::Internal(format!(
                "the model answered {} embeddings for {} texts",
                answers.len(),
                texts.len()
            )));
        }
        let vectors = answers
            .into_iter()
            .map(|e| {
                if e.error.is_empty() {
                    Ok(TextVector {
                        values: e.values,
                        tokens: e.tokens,
                        truncated: e.truncated,
                    })
                } else {
                    Err(e.error)
                }
            })
            .collect();
        Ok(Embedded { model, vectors })
    }
}

fn from_status(e: liveseg_model::ModelError) -> NodeError {
    remote_error("the in-process model", status_of(e))
}

fn remote_error(who: &str, s: tonic::Status) -> NodeError {
    match s.code() {
        tonic::Code::ResourceExhausted => {
            NodeError::Overloaded(format!("model at {who}: {}", s.message()))
        }
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => {
            NodeError::Unavailable(format!("model at {who}: {}", s.message()))
        }
        tonic::Code::InvalidArgument => NodeError::InvalidArgument(s.message().to_string()),
        tonic::Code::FailedPrecondition => {
            NodeError::FailedPrecondition(format!("model at {who}: {}", s.message()))
        }
        _ => NodeError::Internal(format!("model at {who}: {}", s.message())),
    }
}
