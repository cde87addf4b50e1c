//! The gRPC face of the model service. The model loads (and warms up) in
//! the background: until then health says NOT_SERVING and calls get
//! UNAVAILABLE. Per-text problems (a text too large) are answered per
//! text, so valid neighbours are still embedded.

use crate::embedder::{Embedder, MODEL_NAME};
use crate::error::ModelError;
use crate::queue::{InferenceQueue, QueueConfig};
use liveseg_proto::pb;
use liveseg_proto::pb::model_service_server::{ModelService, ModelServiceServer};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use tonic::{Request, Response, Status};

/// Texts in one Embed call.
pub const MAX_TEXTS: usize = 256;
/// Bytes of one text; longer texts are refused (they would be cut at 256
/// tokens anyway, and tokenizing megabytes wastes the caller's budget).
pub const MAX_TEXT_BYTES: usize = 100_000;

#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub model_dir: PathBuf,
    pub queue: QueueConfig,
    /// Dense-layer weights: f32 (exact, the default), int8 (liveseg's int8
    /// kernel) or q8_0 (Candle's Q8_0 blocks).
    pub precision: crate::precision::Precision,
}

/// The loaded model and its queue, once ready.
pub struct Ready {
    pub embedder: Arc<Embedder>,
    pub queue: InferenceQueue,
}

/// Shared by the gRPC service and whoever embeds in-process (the node).
#[derive(Default)]
pub struct ModelHandle {
    ready: OnceLock<Ready>,
    failed: OnceLock<String>,
}

impl ModelHandle {
    pub fn ready(&self) -> Option<&Ready> {
        self.ready.get()
    }

    /// Why loading failed, if it did.
    pub fn failure(&self) -> Option<&str> {
        self.failed.get().map(String::as_str)
    }

    fn get(&self) -> Result<&Ready, Status> {
        if let Some(r) = self.ready.get() {
            return Ok(r);
        }
        Err(match self.failed.get() {
            Some(e) => Status::failed_precondition(format!("the model failed to load: {e}")),
            None => Status::unavailable("the model is still loading; retry shortly"),
        })
    }
}

/// Texts embedded once at start so the first request does not pay for
/// first-touch page faults and lazily built kernels.
const WARM_UP: [&str; 3] = [
    "Quarterly pricing update",
    "Thanks for joining the webinar on pipeline analytics. Here are the slides and the recording.",
    "",
];

/// Loads the model on a blocking thread, warms it up, starts the queue and
/// flips health to SERVING. Returns at once.
pub fn load_in_background(
    config: ModelConfig,
    health: tonic_health::server::HealthReporter,
) -> Arc<ModelHandle> {
    let handle = Arc::new(ModelHandle::default());
    let h = handle.clone();
    tokio::task::spawn_blocking(move || {
        let t0 = std::time::Instant::now();
        let loaded = Embedder::load_with(&config.model_dir, config.precision).and_then(|e| {
            e.embed(&WARM_UP)?;
            let e = Arc::new(e);
            let queue = InferenceQueue::start(e.clone(), config.queue.clone())?;
            Ok(Ready { embedder: e, queue })
        });
        match loaded {
            Ok(ready) => {
                tracing::info!(elapsed_ms = t0.elapsed().as_millis() as u64, dir = %config.model_dir.display(), "model ready");
                let _ = h.ready.set(ready);
                tokio::runtime::Handle::current().spawn(async move {
                    health.set_serving::<ModelServiceServer<ModelGrpc>>().await;
                });
            }
            Err(e) => {
                tracing::error!(error = %e, "the model failed to load");
                let _ = h.failed.set(e.to_string());
            }
        }
    });
    handle
}

/// Embeds `texts` through the inference queue, in order. A text over
/// [`MAX_TEXT_BYTES`] is refused on its own (`Embedding.error`) while its
/// neighbours are embedded; overload refuses the whole call.
pub async fn embed_texts(
    ready: &Ready,
    texts: &[String],
) -> Result<Vec<pb::Embedding>, ModelError> {
    let mut answers: Vec<pb::Embedding> = vec![pb::Embedding::default(); texts.len()];
    let mut valid: Vec<(usize, &str)> = Vec::with_capacity(texts.len());
    for (i, t) in texts.iter().enumerate() {
        if t.len() > MAX_TEXT_BYTES {
            answers[i].error = format!("texts[{i}]: {} bytes; at most {MAX_TEXT_BYTES}", t.len());
        } else {
            valid.push((i, t.as_str()));
        }
    }
    if valid.is_empty() {
        return Ok(answers);
    }
    let refs: Vec<&str> = valid.iter().map(|(_, t)| *t).collect();
    let tokens = ready.embedder.tokenize(&refs)?;
    let meta: Vec<(u32, bool)> = tokens
        .iter()
        .map(|t| (t.ids.len() as u32, t.truncated))
        .collect();
    let vectors = ready
        .queue
        .embed(tokens.into_iter().map(|t| t.ids).collect())
        .await?;
    for (((i, _), v), (n, cut)) in valid.iter().zip(vectors).zip(meta) {
        answers[*i] = pb::Embedding {
            values: v,
            tokens: n,
            truncated: cut,
            error: String::new(),
        };
    }
    Ok(answers)
}

pub struct ModelGrpc {
    model: Arc<ModelHandle>,
}

impl ModelGrpc {
    pub fn new(model: Arc<ModelHandle>) -> ModelGrpc {
        ModelGrpc { model }
    }

    pub fn server(model: Arc<ModelHandle>) -> ModelServiceServer<ModelGrpc> {
        ModelServiceServer::new(ModelGrpc::new(model))
    }
}

pub fn status_of(e: ModelError) -> Status {
    match e {
        ModelError::Overloaded { .. } => Status::resource_exhausted(e.to_string()),
        ModelError::Invalid { .. } | ModelError::Tokenize { .. } => {
            Status::invalid_argument(e.to_string())
        }
        ModelError::Stopped => Status::unavailable(e.to_string()),
        _ => Status::internal(e.to_string()),
    }
}

#[tonic::async_trait]
impl ModelService for ModelGrpc {
    async fn embed(
        &self,
        request: Request<pb::EmbedRequest>,
    ) -> Result<Response<pb::EmbedResponse>, Status> {
        let ready = self.model.get()?;
        let texts = request.into_inner().texts;
        if texts.is_empty() || texts.len() > MAX_TEXTS {
            return Err(Status::invalid_argument(format!(
                "texts: {} given; must be 1..={MAX_TEXTS}",
                texts.len()
            )));
        }
        let embeddings = embed_texts(ready, &texts).await.map_err(status_of)?;
        Ok(Response::new(pb::EmbedResponse {
            embeddings,
            model_id: ready.embedder.model_id().to_string(),
        }))
    }

    async fn info(&self, _: Request<pb::InfoRequest>) -> Result<Response<pb::ModelInfo>, Status> {
        let ready = self.model.get()?;
        Ok(Response::new(pb::ModelInfo {
            model: MODEL_NAME.to_string(),
            dimensions: ready.embedder.dims() as u32,
            max_tokens: ready.embedder.max_tokens() as u32,
            backend: ready.embedder.backend(),
            threads: ready.embedder.threads() as u32,
            model_id: ready.embedder.model_id().to_string(),
        }))
    }
}
