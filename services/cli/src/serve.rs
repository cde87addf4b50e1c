//! `liveseg serve`: a standalone node in this process. Flags (or their
//! `LIVESEG_*` variables) override the node's defaults field by field; an
//! unset flag keeps `NodeConfig::default()`, so the defaults live in one place.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::{Args, ValueEnum};
use liveseg_core::Millis;
use liveseg_node::{ClockMode, NodeConfig, NodeError};
use liveseg_telemetry::{LogFormat, TelemetryConfig};

use crate::args::{parse_clock, parse_duration, parse_duration_or_zero};
use crate::exit::usage;

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormatArg {
    Pretty,
    Json,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address for gRPC and HTTP (one port) [default: 127.0.0.1:7070].
    #[arg(long, env = "LIVESEG_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Processing clock: system, manual (starting now) or manual:<RFC 3339>.
    #[arg(long, env = "LIVESEG_CLOCK", value_parser = parse_clock, default_value = "system")]
    pub clock: ClockMode,
    /// How often resident accounts are checkpointed [default: 2s].
    #[arg(long, env = "LIVESEG_CHECKPOINT_INTERVAL", value_parser = parse_duration, value_name = "DURATION")]
    pub checkpoint_interval: Option<Duration>,
    /// Idle time after which an account is flushed and stopped [default: 5m].
    #[arg(long, env = "LIVESEG_PASSIVATE_AFTER", value_parser = parse_duration, value_name = "DURATION")]
    pub passivate_after: Option<Duration>,
    /// How long a messageId is remembered for deduplication [default: 7d].
    #[arg(long, env = "LIVESEG_DEDUPE_WINDOW", value_parser = parse_duration, value_name = "DURATION")]
    pub dedupe_window: Option<Duration>,
    /// Per-account mailbox capacity; a full mailbox is backpressure [default: 256].
    #[arg(long, env = "LIVESEG_MAILBOX_CAPACITY", value_parser = parse_positive, value_name = "N")]
    pub mailbox_capacity: Option<usize>,
    /// Actor threads [default: CPU count, at most 8].
    #[arg(long, env = "LIVESEG_ACTOR_THREADS", value_parser = parse_positive, value_name = "N")]
    pub actor_threads: Option<usize>,
    /// Ingest requests that may wait for the committer before RESOURCE_EXHAUSTED [default: 1024].
    #[arg(long, env = "LIVESEG_INGEST_QUEUE", value_parser = parse_positive, value_name = "N")]
    pub ingest_queue: Option<usize>,
    /// The store's page cache in bytes [default: 67108864].
    #[arg(long, env = "LIVESEG_STORE_CACHE_BYTES", value_parser = parse_positive, value_name = "BYTES")]
    pub store_cache_bytes: Option<usize>,
    /// The store's in-memory messageId filter in bytes; 0 turns it off [default: 16777216].
    #[arg(long, env = "LIVESEG_DEDUPE_FILTER_BYTES", value_name = "BYTES")]
    pub dedupe_filter_bytes: Option<usize>,
    /// Most messages per ingest batch [default: 500].
    #[arg(long, env = "LIVESEG_MAX_BATCH", value_parser = parse_positive, value_name = "N")]
    pub max_batch: Option<usize>,
    /// Largest accepted message in bytes of JSON [default: 32768].
    #[arg(long, env = "LIVESEG_MAX_MESSAGE_BYTES", value_parser = parse_positive, value_name = "BYTES")]
    pub max_message_bytes: Option<usize>,
    /// Longest accepted string in a message, in bytes [default: 8192].
    #[arg(long, env = "LIVESEG_MAX_STRING_BYTES", value_parser = parse_positive, value_name = "BYTES")]
    pub max_string_bytes: Option<usize>,
    /// Longest accepted id (messageId, userId, groupId, ...) in bytes [default: 256].
    #[arg(long, env = "LIVESEG_MAX_ID_BYTES", value_parser = parse_positive, value_name = "BYTES")]
    pub max_id_bytes: Option<usize>,
    /// How far in the future an event timestamp may be [default: 5m].
    #[arg(long, env = "LIVESEG_MAX_FUTURE_SKEW", value_parser = parse_duration, value_name = "DURATION")]
    pub max_future_skew: Option<Duration>,
    /// Load the embedding model from this directory into the node (content
    /// registration, affinity segments, matching); see scripts/fetch-model.sh.
    #[arg(
        long,
        env = "LIVESEG_MODEL_DIR",
        value_name = "DIR",
        conflicts_with = "model_server"
    )]
    pub model_dir: Option<PathBuf>,
    /// Use a `liveseg model serve` process for embeddings instead, e.g.
    /// http://127.0.0.1:7090 (cluster mode).
    #[arg(long, env = "LIVESEG_MODEL_SERVER", value_name = "URL")]
    pub model_server: Option<String>,
    /// Keep propensity scores live: every DURATION, score changed contacts
    /// of tenants whose segments read scores (e.g. 30s; off by default).
    #[arg(long, env = "LIVESEG_SCORE_EVERY", value_parser = parse_duration, value_name = "DURATION")]
    pub score_every: Option<Duration>,
    /// The model service with the propensity models (`liveseg model serve
    /// --registry`) [default: --model-server].
    #[arg(long, env = "LIVESEG_SCORING_SERVER", value_name = "URL")]
    pub scoring_server: Option<String>,
    /// Write a new score only when the probability moved at least this much.
    #[arg(long, env = "LIVESEG_SCORE_MIN_CHANGE", default_value_t = 0.01)]
    pub score_min_change: f32,
    /// Between --score-every rounds, rescore the contacts of accounts that
    /// received events this often (0s: only the full rounds).
    #[arg(long, env = "LIVESEG_SCORE_REFRESH", value_parser = parse_duration_or_zero, value_name = "DURATION", default_value = "1s")]
    pub score_refresh: Duration,
    /// Longest wait for one Score call of the live scorer: a model service
    /// that hangs fails the pass, whose accounts the next refresh retries.
    #[arg(long, env = "LIVESEG_SCORE_TIMEOUT", value_parser = parse_duration, value_name = "DURATION", default_value = "30s")]
    pub score_timeout: Duration,
    /// Match the scores this node served to the outcomes that matured
    /// since and export their calibration per model version on /metrics,
    /// this often [default: 1h with --score-every, else off; 0s: off].
    #[arg(long, env = "LIVESEG_CALIBRATION_EVERY", value_parser = parse_duration_or_zero, value_name = "DURATION")]
    pub calibration_every: Option<Duration>,
    /// Raise a version's calibration alert when its predicted/observed
    /// ratio is off 1 by more than this.
    #[arg(long, env = "LIVESEG_CALIBRATION_ALERT", default_value_t = 0.15)]
    pub calibration_alert: f64,
    /// Log line format on stderr.
    #[arg(long, env = "LIVESEG_LOG_FORMAT", value_enum, default_value_t = LogFormatArg::Pretty)]
    pub log_format: LogFormatArg,
    /// A file of LIVESEG_*=value lines; flags and the environment override it.
    #[arg(long, env = "LIVESEG_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub cluster: crate::cluster_args::ClusterArgs,
}

fn parse_positive(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("'{text}' is not a whole number")),
    }
}

fn millis(d: Duration, flag: &str) -> Result<Millis> {
    Millis::try_from(d.as_millis()).map_err(|_| usage(format!("{flag}: duration too large")))
}

impl ServeArgs {
    /// The node's defaults with every given flag applied.
    pub fn node_config(&self, data_dir: PathBuf) -> Result<NodeConfig> {
        let mut c = NodeConfig {
            data_dir,
            clock: self.clock.clone(),
            ..NodeConfig::default()
        };
        if let Some(v) = self.listen {
            c.listen = v;
        }
        if let Some(v) = self.checkpoint_interval {
            c.checkpoint_interval = v;
        }
        if let Some(dir) = &self.model_dir {
            c.model = liveseg_node::embedding::ModelSource::Local(dir.clone());
        } else if let Some(url) = &self.model_server {
            c.model = liveseg_node::embedding::ModelSource::Remote(url.clone());
        }
        if let Some(every) = self.score_every {
            let Some(server) = self
                .scoring_server
                .clone()
                .or_else(|| self.model_server.clone())
            else {
                bail!(usage(
                    "--score-every needs a model service: --scoring-server URL (or --model-server URL)"
                ));
            };
            if !(0.0..1.0).contains(&self.score_min_change) {
                bail!(usage("--score-min-change: must be in [0, 1)"));
            }
            c.scoring = Some(liveseg_node::scorer::ScoringConfig {
                server,
                every,
                min_change: self.score_min_change,
                refresh: self.score_refresh,
                timeout: self.score_timeout,
            });
        }
        let calibration_every = match self.calibration_every {
            Some(d) => d,
            None if self.score_every.is_some() => Duration::from_secs(3600),
            None => Duration::ZERO,
        };
        if !calibration_every.is_zero() {
            // Each pass reads the node's logs: a tight loop would be all it did.
            if calibration_every < Duration::from_secs(1) {
                bail!(usage("--calibration-every: at least 1s (or 0s: off)"));
            }
            if !(self.calibration_alert.is_finite() && self.calibration_alert > 0.0) {
                bail!(usage("--calibration-alert: must be a positive number"));
            }
            c.calibration = Some(liveseg_node::calibration::CalibrationConfig {
                every: calibration_every,
                alert: self.calibration_alert,
            });
        }
        if let Some(v) = self.passivate_after {
            c.passivate_after = v;
        }
        if let Some(v) = self.dedupe_window {
            c.dedupe_window = v;
        }
        if let Some(v) = self.mailbox_capacity {
            c.mailbox_capacity = v;
        }
        if let Some(v) = self.actor_threads {
            c.actor_threads = v;
        }
        if let Some(v) = self.ingest_queue {
            c.ingest_queue = v;
        }
        if let Some(v) = self.store_cache_bytes {
            c.store.cache_bytes = v;
        }
        if let Some(v) = self.dedupe_filter_bytes {
            c.store.dedupe_filter_bytes = v;
        }
        if let Some(v) = self.max_batch {
            c.limits.max_batch_items = v;
        }
        if let Some(v) = self.max_message_bytes {
            c.limits.max_message_bytes = v;
        }
        if let Some(v) = self.max_string_bytes {
            c.limits.max_string_bytes = v;
        }
        if let Some(v) = self.max_id_bytes {
            c.limits.max_id_bytes = v;
        }
        if let Some(v) = self.max_future_skew {
            c.limits.max_future_skew = millis(v, "--max-future-skew")?;
        }
        if c.data_dir.as_os_str().is_empty() {
            return Err(usage("--data-dir must not be empty"));
        }
        Ok(c)
    }
}

pub async fn run(args: &ServeArgs, data_dir: PathBuf) -> Result<()> {
    let config = args.node_config(data_dir)?;
    let cluster = args.cluster.config()?;
    let log_format = match args.log_format {
        LogFormatArg::Pretty => LogFormat::Pretty,
        LogFormatArg::Json => LogFormat::Json,
    };
    let telemetry = liveseg_telemetry::init(&TelemetryConfig {
        service_name: "liveseg-node".into(),
        log_format,
        default_filter: "info".into(),
    })
    .context("starting telemetry")?;
    liveseg_telemetry::install_metrics_recorder()?;
    liveseg_telemetry::describe_metrics();
    let shutdown = shutdown_signal().context("installing signal handlers")?;
    tracing::info!(
        listen = %config.listen,
        data_dir = %config.data_dir.display(),
        "starting liveseg node"
    );
    let started = match cluster {
        None => liveseg_node::start(config).await,
        Some(c) => liveseg_node::cluster::start(config, c).await,
    };
    let stopped = match started {
        Ok(node) => {
            shutdown.await;
            node.shutdown().await
        }
        Err(e) => Err(e),
    };
    match stopped {
        Ok(()) => {}
        Err(NodeError::Config(msg)) => return Err(usage(format!("bad configuration: {msg}"))),
        Err(e) => return Err(anyhow::Error::new(e).context("the node failed")),
    }
    tracing::info!("node stopped");
    if let Err(e) = telemetry.shutdown() {
        tracing::warn!(
            error = format!("{e:#}"),
            "span export did not shut down cleanly"
        );
    }
    Ok(())
}

/// Completes on SIGTERM or Ctrl-C. Handlers are installed now, not at the
/// first poll, so a signal that arrives during startup is not lost.
pub fn shutdown_signal() -> Result<impl Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let ctrl_c = tokio::signal::ctrl_c();
    Ok(async move {
        let interrupt = async {
            if ctrl_c.await.is_err() {
                // No Ctrl-C handler: rely on SIGTERM alone.
                std::future::pending::<()>().await;
            }
        };
        #[cfg(unix)]
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received; shutting down"),
            () = interrupt => tracing::info!("interrupt received; shutting down"),
        }
        #[cfg(not(unix))]
        {
            interrupt.await;
            tracing::info!("interrupt received; shutting down");
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn config(argv: &[&str]) -> Result<NodeConfig> {
        let w = Wrapper::try_parse_from(std::iter::once("serve").chain(argv.iter().copied()))?;
        w.args.node_config(PathBuf::from("/tmp/x"))
    }

    #[test]
    fn unset_flags_keep_the_node_defaults() {
        let c = config(&[]).expect("config");
        let d = NodeConfig::default();
        assert_eq!(c.listen, d.listen);
        assert_eq!(c.checkpoint_interval, d.checkpoint_interval);
        assert_eq!(c.limits.max_batch_items, d.limits.max_batch_items);
        assert_eq!(c.clock, ClockMode::System);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn flags_override_each_field() {
        let c = config(&[
            "--listen=0.0.0.0:9000",
            "--clock=manual:2026-01-01T00:00:00Z",
            "--checkpoint-interval=10s",
            "--passivate-after=1h",
            "--dedupe-window=2d",
            "--mailbox-capacity=64",
            "--actor-threads=3",
            "--ingest-queue=10",
            "--max-batch=100",
            "--max-future-skew=1m",
            "--store-cache-bytes=1048576",
            "--dedupe-filter-bytes=0",
        ])
        .expect("config");
        assert_eq!(
            (c.store.cache_bytes, c.store.dedupe_filter_bytes),
            (1 << 20, 0)
        );
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.clock, ClockMode::Manual(1_767_225_600_000));
        assert_eq!(c.checkpoint_interval, Duration::from_secs(10));
        assert_eq!(c.passivate_after, Duration::from_secs(3600));
        assert_eq!(c.dedupe_window, Duration::from_secs(2 * 86_400));
        assert_eq!(
            (c.mailbox_capacity, c.actor_threads, c.ingest_queue),
            (64, 3, 10)
        );
        assert_eq!(c.limits.max_batch_items, 100);
        assert_eq!(c.limits.max_future_skew, 60_000);
    }

    #[test]
    fn bad_values_are_usage_errors() {
        assert!(config(&["--mailbox-capacity=0"]).is_err());
        assert!(config(&["--checkpoint-interval=2"]).is_err());
        assert!(config(&["--clock=sundial"]).is_err());
        assert!(config(&["--listen=localhost"]).is_err());
        assert!(config(&["--store-cache-bytes=0"]).is_err());
        let err = config(&["--calibration-every=1m", "--calibration-alert=-1"])
            .err()
            .map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("--calibration-alert")),
            "{err:?}"
        );
        assert!(config(&["--calibration-every=100ms"]).is_err());
    }

    #[test]
    fn calibration_follows_scoring_unless_set() {
        assert!(config(&[]).expect("config").calibration.is_none());
        let scoring = ["--score-every=30s", "--scoring-server=http://127.0.0.1:1"];
        let on = config(&scoring).expect("config").calibration;
        assert_eq!(on.map(|c| c.every), Some(Duration::from_secs(3600)));
        let off = config(&[&scoring[..], &["--calibration-every=0s"]].concat()).expect("config");
        assert!(off.calibration.is_none());
        // Zero turns the refresh between rounds off.
        let refresh = config(&[&scoring[..], &["--score-refresh=0s"]].concat()).expect("config");
        assert_eq!(refresh.scoring.map(|s| s.refresh), Some(Duration::ZERO));
        let set = config(&["--calibration-every=5m", "--calibration-alert=0.3"]).expect("config");
        let set = set.calibration.map(|c| (c.every, c.alert));
        assert_eq!(set, Some((Duration::from_secs(300), 0.3)));
    }
}
