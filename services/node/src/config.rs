//! Node configuration: defaults, overridden by a TOML-free key=value layer
//! the CLI builds from flags and `LIVESEG_*` environment variables.

use liveseg_core::Limits;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClockMode {
    System,
    /// Starts at this instant (ms since epoch) and moves only through AdvanceClock.
    Manual(i64),
}

#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// One port serves gRPC (HTTP/2) and the HTTP JSON API (HTTP/1.1): ingest, /metrics, /healthz.
    pub listen: SocketAddr,
    /// Where the embedded store and the first tenant's credentials live.
    pub data_dir: PathBuf,
    pub clock: ClockMode,
    pub limits: Limits,
    /// How often resident accounts are checkpointed, so restart replays only the tail.
    pub checkpoint_interval: Duration,
    /// Accounts idle this long are flushed and stopped (reloaded on demand).
    pub passivate_after: Duration,
    /// How long a messageId is remembered for deduplication.
    pub dedupe_window: Duration,
    /// Per-account actor mailbox capacity; a full mailbox is backpressure.
    pub mailbox_capacity: usize,
    /// Actor threads (actix arbiters); accounts are spread over them by hash.
    pub actor_threads: usize,
    /// Most ingest requests waiting for the group committer before RESOURCE_EXHAUSTED.
    pub ingest_queue: usize,
    /// Memory of the embedded store (page cache, dedupe filter and buffer);
    /// `dedupe_window_ms` here is ignored in favour of `dedupe_window`.
    pub store: liveseg_store::StoreOptions,
    /// The embedding model for content matching (none by default).
    pub model: crate::embedding::ModelSource,
    /// Live propensity scoring through a model service, when set.
    pub scoring: Option<crate::scorer::ScoringConfig>,
    /// Live calibration of the served scores on /metrics, when set.
    pub calibration: Option<crate::calibration::CalibrationConfig>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            data_dir: PathBuf::from(".liveseg"),
            clock: ClockMode::System,
            limits: Limits::default(),
            checkpoint_interval: Duration::from_secs(2),
            passivate_after: Duration::from_secs(300),
            dedupe_window: Duration::from_secs(7 * 24 * 3600),
            mailbox_capacity: 256,
            actor_threads: std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .clamp(1, 8),
            ingest_queue: 1024,
            store: liveseg_store::StoreOptions::default(),
            model: crate::embedding::ModelSource::None,
            scoring: None,
            calibration: None,
        }
    }
}
