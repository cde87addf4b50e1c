//! Starting and stopping a node. Standalone: open the embedded store,
//! recover one runtime over it (checkpoints + log tail), then serve gRPC and
//! HTTP on one port. Shutdown runs in order: stop intake, drain the
//! committer, let the dispatcher apply everything and checkpoint, stop the
//! actors, drain the outbox. Cluster mode starts from `cluster::start` and
//! shares the serving half here.

use crate::actors::ActorPool;
use crate::auth::{Auth, Credentials};
use crate::clock::{ManualClock, SharedClock, SystemClock};
use crate::config::{ClockMode, NodeConfig};
use crate::dispatch::Command;
use crate::error::{NodeError, Result};
use crate::ingest::{Ingestor, Sink};
use crate::runtime::{Runtime, RuntimeParts};
use liveseg_core::Millis;
use liveseg_store::{
    Catalog, EmbeddedStore, EventLog, GroupCommitOptions, GroupCommitter, StoreOptions,
};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Everything the API handlers share.
pub struct NodeInner {
    pub config: NodeConfig,
    pub clock: SharedClock,
    /// Tenants, API keys and segment definitions.
    pub catalog: Arc<dyn Catalog>,
    pub auth: Auth,
    pub ingestor: Ingestor,
    pub units: Units,
    pub metrics: Option<liveseg_telemetry::MetricsHandle>,
    /// Embeds content and topic texts (in-process model, remote, or none).
    pub models: crate::embedding::Embeddings,
    /// The latest calibration figures of the scores served here.
    pub calibration: crate::calibration::ServedCalibration,
}

/// Where tenants' live state is.
pub enum Units {
    /// One runtime over the embedded store holds every tenant.
    Standalone {
        runtime: Arc<Runtime>,
        store: Arc<EmbeddedStore>,
    },
    /// One runtime per shard this node owns; the others are elsewhere.
    Cluster(Arc<crate::cluster::ClusterState>),
}

impl NodeInner {
    /// The runtime holding `tenant`'s state on this node, or where it is.
    pub fn runtime_for(&self, tenant: &str) -> Result<Arc<Runtime>> {
        match &self.units {
            Units::Standalone { runtime, .. } => Ok(runtime.clone()),
            Units::Cluster(c) => c.runtime_for(tenant),
        }
    }

    /// Every runtime serving on this node.
    pub fn runtimes(&self) -> Vec<Arc<Runtime>> {
        match &self.units {
            Units::Standalone { runtime, .. } => vec![runtime.clone()],
            Units::Cluster(c) => c.shards.local(),
        }
    }
}

/// A running node.
pub struct NodeHandle {
    pub addr: SocketAddr,
    /// The first tenant's and admin keys, when this node created them.
    pub credentials: Option<Credentials>,
    inner: Arc<NodeInner>,
    pool: Arc<ActorPool>,
    serving: Serving,
    background: Vec<JoinHandle<()>>,
}

pub(crate) fn clock_for(config: &NodeConfig) -> SharedClock {
    match config.clock {
        ClockMode::System => Arc::new(SystemClock),
        ClockMode::Manual(at) => Arc::new(ManualClock::new(at)),
    }
}

pub async fn start(config: NodeConfig) -> Result<NodeHandle> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| NodeError::Config(format!("data dir {}: {e}", config.data_dir.display())))?;
    let store = Arc::new(EmbeddedStore::open(
        &config.data_dir,
        StoreOptions {
            dedupe_window_ms: config.dedupe_window.as_millis() as i64,
            ..config.store.clone()
        },
    )?);
    let clock = clock_for(&config);
    let credentials = crate::auth::bootstrap(store.as_ref(), &config.data_dir, clock.now())?
        .ok_or_else(|| {
            NodeError::Config(format!(
                "{}/credentials.json is missing or unreadable",
                config.data_dir.display()
            ))
        })?;
    let pool = Arc::new(ActorPool::start(config.actor_threads).map_err(NodeError::Internal)?);
    let log: Arc<dyn EventLog> = store.clone();
    let runtime = Runtime::start(RuntimeParts {
        shard: None,
        catalog: store.clone(),
        state: store.clone(),
        log: log.clone(),
        clock: clock.clone(),
        config: config.clone(),
        pool: pool.clone(),
        valid: Arc::new(|| true),
        owns: Arc::new(|_| true),
    })
    .await?;
    let committed_tx = runtime.dispatch.clone();
    let committer = GroupCommitter::start(
        log,
        GroupCommitOptions {
            queue_capacity: config.ingest_queue,
            ..GroupCommitOptions::default()
        },
        Box::new(move |entries| {
            // Blocking here is the backpressure: the committer waits for the dispatcher.
            let _ = committed_tx.blocking_send(Command::Entries(
                entries.to_vec(),
                std::time::Instant::now(),
                0,
            ));
        }),
    )?;
    let inner = Arc::new(NodeInner {
        ingestor: Ingestor {
            sink: Sink::Committer(committer),
            clock: clock.clone(),
            limits: config.limits.clone(),
        },
        config: config.clone(),
        clock: clock.clone(),
        catalog: store.clone(),
        auth: Auth::new(store.clone()),
        units: Units::Standalone {
            runtime,
            store: store.clone(),
        },
        metrics: liveseg_telemetry::install_metrics_recorder().ok(),
        models: crate::embedding::Embeddings::start(&config.model)?,
        calibration: crate::calibration::ServedCalibration::new(config.calibration.as_ref()),
    });
    let background = vec![prune_dedupe(store, clock, config.dedupe_window)];
    let serving = serve(&inner).await?;
    Ok(NodeHandle::new(
        inner,
        pool,
        serving,
        Some(credentials),
        background,
    ))
}

/// Forgets messageIds older than the dedupe window, hourly.
fn prune_dedupe(
    store: Arc<EmbeddedStore>,
    clock: SharedClock,
    window: std::time::Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let cutoff = clock.now() - window.as_millis() as Millis;
            let store = store.clone();
            let _ =
                tokio::task::spawn_blocking(move || EventLog::prune_dedupe(store.as_ref(), cutoff))
                    .await;
        }
    })
}

/// The serving half: the listener, the router and the health reporter.
pub(crate) struct Serving {
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
    health: tonic_health::server::HealthReporter,
}

pub(crate) async fn serve(inner: &Arc<NodeInner>) -> Result<Serving> {
    let config = &inner.config;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| NodeError::Config(format!("binding {}: {e}", config.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| NodeError::Internal(e.to_string()))?;
    // Tools and tests started with port 0 read the bound address from here.
    let addr_file = config.data_dir.join("node.addr");
    std::fs::write(&addr_file, addr.to_string())
        .map_err(|e| NodeError::Config(format!("writing {}: {e}", addr_file.display())))?;
    let (health, health_service) = tonic_health::server::health_reporter();
    let router = crate::routes::router(inner.clone(), health_service)?;
    let (stop, mut stop_rx) = watch::channel(false);
    let server = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        };
        // Without TCP_NODELAY small HTTP/2 frames (acks, watch records) wait on delayed ACKs (~40 ms).
        use axum::serve::ListenerExt;
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        if let Err(e) = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "server stopped with an error");
        }
    });
    health
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "liveseg node serving gRPC and HTTP");
    Ok(Serving {
        addr,
        stop,
        server,
        health,
    })
}

impl Serving {
    async fn not_serving(&self) {
        self.health
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        // Open watch streams never end by themselves: give connections a grace period.
        let mut server = self.server;
        if tokio::time::timeout(std::time::Duration::from_secs(5), &mut server)
            .await
            .is_err()
        {
            server.abort();
        }
    }
}

impl NodeHandle {
    pub(crate) fn new(
        inner: Arc<NodeInner>,
        pool: Arc<ActorPool>,
        serving: Serving,
        credentials: Option<Credentials>,
        mut background: Vec<JoinHandle<()>>,
    ) -> Self {
        if let Some(scoring) = inner.config.scoring.clone() {
            tracing::info!(server = %scoring.server, every = ?scoring.every, "live scoring on");
            background.push(crate::scorer::spawn(Arc::downgrade(&inner), scoring));
        }
        if let Some(calibration) = inner.config.calibration.clone() {
            tracing::info!(every = ?calibration.every, "served calibration on");
            background.push(crate::calibration::spawn(
                Arc::downgrade(&inner),
                calibration,
            ));
        }
        NodeHandle {
            addr: serving.addr,
            credentials,
            inner,
            pool,
            serving,
            background,
        }
    }

    pub fn inner(&self) -> &Arc<NodeInner> {
        &self.inner
    }

    /// Standalone: stops intake, applies and checkpoints everything
    /// accepted, exits. Cluster: hands every shard off (frozen while the
    /// next owner loads it, then released; or drained with a final fenced
    /// checkpoint) while still routing, then exits.
    pub async fn shutdown(self) -> Result<()> {
        self.serving.not_serving().await;
        let result = match &self.inner.units {
            Units::Standalone { runtime, .. } => {
                self.serving.stop().await;
                // Every accepted event reaches the dispatcher before the shutdown command.
                self.inner.ingestor.sink.close();
                runtime.shutdown().await
            }
            Units::Cluster(cluster) => {
                let c = cluster.clone();
                let left = tokio::task::spawn_blocking(move || c.leave()).await;
                self.serving.stop().await;
                self.inner.ingestor.sink.close();
                // Anything not handed off (a drain that failed) stops here;
                // its next owner replays it from the stream.
                for rt in cluster.shards.local() {
                    rt.abort().await;
                }
                left.map_err(|e| NodeError::Internal(format!("leaving the cluster: {e}")))
            }
        };
        for b in &self.background {
            b.abort();
        }
        self.pool.stop();
        tracing::info!("liveseg node stopped");
        result
    }
}
