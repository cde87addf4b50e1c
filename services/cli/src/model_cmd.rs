//! The model service from the command line: `liveseg model serve` runs it
//! as a process of its own (cluster mode), and `liveseg embed` turns texts
//! on stdin (one per line) into JSON vectors on stdout (one per line),
//! either in this process or through a running model service.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use liveseg_model::precision::Precision;
use liveseg_model::propensity::PropensityConfig;
use liveseg_model::queue::QueueConfig;
use liveseg_model::service::ModelConfig;
use liveseg_proto::pb;
use liveseg_proto::pb::model_service_client::ModelServiceClient;

#[derive(Subcommand, Debug)]
pub enum ModelCommand {
    /// Serve the embedding model (and, with --registry, propensity scoring) over gRPC until SIGTERM or Ctrl-C.
    Serve(ModelServeArgs),
    /// Train propensity models over an event history into the model registry.
    Train(crate::propensity_cmd::TrainArgs),
    /// List the registry's model versions (* marks the active ones).
    List(crate::propensity_cmd::ListArgs),
    /// Make a model version the active one of its target.
    Activate(crate::propensity_cmd::ActivateArgs),
    /// Go back to the previously active version of a target.
    Rollback(crate::propensity_cmd::RollbackArgs),
    /// A model's validation report; with --events, calibration and drift week by week.
    Report(crate::propensity_cmd::ReportArgs),
    /// Score every contact of a history as of an instant (JSON lines), with send hour and fatigue.
    Score(crate::score_cmd::ScoreArgs),
    /// Discover segments: k-means over contact features, each cluster described.
    Cluster(crate::discover_cmd::ClusterArgs),
    /// The non-members most like a seed segment's members.
    Lookalike(crate::discover_cmd::LookalikeArgs),
}

impl ModelCommand {
    /// Everything but `serve` runs on files, without an async runtime.
    pub fn run_offline(&self) -> Option<Result<()>> {
        use crate::propensity_cmd as p;
        Some(match self {
            ModelCommand::Serve(_) | ModelCommand::Score(_) => return None,
            ModelCommand::Train(a) => p::train(a),
            ModelCommand::List(a) => p::list(a),
            ModelCommand::Activate(a) => p::activate(a),
            ModelCommand::Rollback(a) => p::rollback(a),
            ModelCommand::Report(a) => p::report(a),
            ModelCommand::Cluster(a) => crate::discover_cmd::cluster(a),
            ModelCommand::Lookalike(a) => crate::discover_cmd::lookalike(a),
        })
    }
}

#[derive(Args, Debug, Clone)]
pub struct ModelDir {
    /// Directory with model.safetensors, tokenizer.json and config.json (scripts/fetch-model.sh fetches them).
    #[arg(long, env = "LIVESEG_MODEL_DIR", value_name = "DIR", default_value = liveseg_model::files::DEFAULT_DIR)]
    pub model_dir: PathBuf,
    /// Dense-layer precision: f32 (exact, the default), int8 (liveseg's int8 kernel: fastest, approximate) or q8_0 (Candle's Q8_0 blocks: closer to f32, slower); BENCHMARKS.md has their accuracy. Stored vectors whose model id says int8 (not int8-rows) are Candle's Q8_0: keep them with q8_0, or reembed.
    #[arg(long, env = "LIVESEG_MODEL_PRECISION", value_name = "f32|int8|q8_0", default_value_t = Precision::F32)]
    pub precision: Precision,
}

#[derive(Args, Debug)]
pub struct ModelServeArgs {
    /// Address to listen on (port 0 picks a free one; see --addr-file).
    #[arg(long, env = "LIVESEG_MODEL_LISTEN", default_value = "127.0.0.1:7080")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub dir: ModelDir,
    /// Write the bound address here once listening.
    #[arg(long, env = "LIVESEG_MODEL_ADDR_FILE", value_name = "FILE")]
    pub addr_file: Option<PathBuf>,
    /// Tokens in one forward pass.
    #[arg(long, env = "LIVESEG_MODEL_MAX_BATCH_TOKENS", default_value_t = QueueConfig::default().max_batch_tokens)]
    pub max_batch_tokens: usize,
    /// Tokens queued before requests are refused with RESOURCE_EXHAUSTED.
    #[arg(long, env = "LIVESEG_MODEL_MAX_QUEUED_TOKENS", default_value_t = QueueConfig::default().max_queued_tokens)]
    pub max_queued_tokens: usize,
    /// Serve propensity scoring from this model registry (`liveseg model train` writes it).
    #[arg(long, env = "LIVESEG_MODEL_REGISTRY", value_name = "DIR")]
    pub registry: Option<PathBuf>,
    /// Raise the drift alert when a scored feature's PSI exceeds this.
    #[arg(long, env = "LIVESEG_PSI_ALERT", default_value_t = 0.25)]
    pub psi_alert: f64,
}

#[derive(Args, Debug)]
pub struct EmbedArgs {
    #[command(flatten)]
    pub dir: ModelDir,
    /// Ask this model service (e.g. http://127.0.0.1:7080) instead of loading the model here.
    #[arg(long, env = "LIVESEG_MODEL_SERVER", value_name = "URL")]
    pub model_server: Option<String>,
    /// Texts per request.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub batch: u16,
}

pub async fn serve(
    a: &ModelServeArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    if a.max_batch_tokens < liveseg_model::tokenize::MAX_TOKENS {
        bail!(crate::exit::usage(format!(
            "--max-batch-tokens: {} is less than one full text ({} tokens)",
            a.max_batch_tokens,
            liveseg_model::tokenize::MAX_TOKENS
        )));
    }
    let config = ModelConfig {
        model_dir: a.dir.model_dir.clone(),
        precision: a.dir.precision,
        queue: QueueConfig {
            max_batch_tokens: a.max_batch_tokens,
            max_queued_tokens: a.max_queued_tokens,
            ..QueueConfig::default()
        },
    };
    // Fail fast, before listening, when the files are not there.
    liveseg_model::files::ModelFiles::locate(&config.model_dir)?;
    // Logs on stderr (a failed model load is only visible there) and spans.
    let telemetry = liveseg_telemetry::init(&liveseg_telemetry::TelemetryConfig {
        service_name: "liveseg-model".into(),
        log_format: liveseg_telemetry::LogFormat::Pretty,
        default_filter: "info".into(),
    })
    .context("starting telemetry")?;
    liveseg_telemetry::describe_metrics();
    let propensity = a.registry.clone().map(|registry| PropensityConfig {
        registry,
        psi_alert: a.psi_alert,
    });
    let served = liveseg_model::server::serve(
        a.listen,
        config,
        propensity,
        a.addr_file.as_deref(),
        shutdown,
    )
    .await;
    if let Err(e) = telemetry.shutdown() {
        tracing::warn!(
            error = format!("{e:#}"),
            "span export did not shut down cleanly"
        );
    }
    served?;
    Ok(())
}

/// Where embeddings come from.
enum Source {
    Local(Box<liveseg_model::Embedder>),
    Remote(ModelServiceClient<tonic::transport::Channel>),
}

impl Source {
    /// One vector per text, or the reason that text was refused.
    async fn embed(&mut self, texts: &[String]) -> Result<Vec<Result<Vec<f32>, String>>> {
        match self {
            Source::Local(e) => {
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                Ok(e.embed(&refs)?.into_iter().map(Ok).collect())
            }
            Source::Remote(client) => {
                let reply = client
                    .embed(pb::EmbedRequest {
                        texts: texts.to_vec(),
                    })
                    .await
                    .map_err(|s| anyhow::anyhow!("model service: {}", s.message()))?
                    .into_inner();
                Ok(reply
                    .embeddings
                    .into_iter()
                    .map(|e| {
                        if e.error.is_empty() {
                            Ok(e.values)
                        } else {
                            Err(e.error)
                        }
                    })
                    .collect())
            }
        }
    }
}

pub async fn embed(a: &EmbedArgs) -> Result<()> {
    let mut source = match &a.model_server {
        Some(url) => Source::Remote(
            ModelServiceClient::connect(url.clone())
                .await
                .with_context(|| format!("connecting to the model service at {url}"))?,
        ),
        None => Source::Local(Box::new(liveseg_model::Embedder::load_with(
            &a.dir.model_dir,
            a.dir.precision,
        )?)),
    };
    let stdin = std::io::stdin();
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    let mut lines = stdin.lock().lines();
    let mut failed = 0usize;
    let mut line_no = 0usize;
    loop {
        let mut batch = Vec::with_capacity(a.batch as usize);
        for line in lines.by_ref().take(a.batch as usize) {
            batch.push(line.context("reading stdin")?);
        }
        if batch.is_empty() {
            break;
        }
        for result in source.embed(&batch).await? {
            line_no += 1;
            match result {
                Ok(v) => serde_json::to_writer(&mut stdout, &v)?,
                Err(reason) => {
                    // Keep output lines aligned with input lines.
                    failed += 1;
                    eprintln!("line {line_no}: {reason}");
                    stdout.write_all(b"null")?;
                }
            }
            stdout.write_all(b"\n")?;
        }
    }
    stdout.flush()?;
    if failed > 0 {
        bail!("{failed} of {line_no} texts were refused");
    }
    Ok(())
}
