//! Starting and stopping a standalone node: open the store, recover
//! (checkpoints + log tail), then serve gRPC and HTTP on one port. Shutdown
//! runs in order: stop intake, drain the committer, let the dispatcher
//! apply everything and checkpoint, stop the actors, drain the outbox.

use crate::actors::ActorPool;
use crate::auth::{ADMIN_TENANT, Auth, Credentials};
use crate::clock::{ManualClock, SharedClock, SystemClock};
use crate::config::{ClockMode, NodeConfig};
use crate::dispatch::{Command, Dispatcher, Progress};
use crate::error::{NodeError, Result};
use crate::ingest::Ingestor;
use crate::registry::{AccountKey, Registry};
use crate::tenant::{TenantState, Tenants};
use liveseg_core::{Directory, Millis, SegmentDefinition, SegmentSet};
use liveseg_store::{
    Catalog, EmbeddedStore, EventLog, GroupCommitOptions, GroupCommitter, StateStore, StoreOptions,
};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Everything the API handlers share.
pub struct NodeInner {
    pub config: NodeConfig,
    pub clock: SharedClock,
    pub store: Arc<EmbeddedStore>,
    pub tenants: Arc<Tenants>,
    pub registry: Arc<Registry>,
    pub auth: Auth,
    pub ingestor: Ingestor,
    /// In-band commands to the dispatcher; closed at shutdown.
    pub dispatch: mpsc::Sender<Command>,
    pub progress: Arc<Progress>,
    /// Serialises definition changes per node (read-modify-write of a tenant's set).
    pub definitions_lock: tokio::sync::Mutex<()>,
    pub metrics: Option<liveseg_telemetry::MetricsHandle>,
}

/// A running node.
pub struct NodeHandle {
    pub addr: SocketAddr,
    pub credentials: Credentials,
    inner: Arc<NodeInner>,
    stop_serving: watch::Sender<bool>,
    server: JoinHandle<()>,
    dispatcher: JoinHandle<Result<()>>,
    outbox: JoinHandle<()>,
    outbox_stop: tokio::sync::oneshot::Sender<()>,
    periodic: Vec<JoinHandle<()>>,
    health: tonic_health::server::HealthReporter,
}

/// Loads (or reloads) one tenant's definitions and directory.
pub fn load_tenant(store: &EmbeddedStore, tenants: &Tenants, id: &str) -> Result<Arc<TenantState>> {
    let mut defs: Vec<SegmentDefinition> = Vec::new();
    for (key, json, _) in store.segments(id)? {
        defs.push(
            serde_json::from_str(&json)
                .map_err(|e| NodeError::Internal(format!("stored definition {key}: {e}")))?,
        );
    }
    let set = SegmentSet::compile(&defs)
        .map_err(|e| NodeError::Internal(format!("stored definitions do not compile: {e:?}")))?;
    let directory = Directory::from_entries(store.directory_all(id)?);
    let t = Arc::new(TenantState::new(id, set, directory));
    tenants.insert(t.clone());
    Ok(t)
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
    let clock: SharedClock = match config.clock {
        ClockMode::System => Arc::new(SystemClock),
        ClockMode::Manual(at) => Arc::new(ManualClock::new(at)),
    };
    let credentials = crate::auth::bootstrap(store.as_ref(), &config.data_dir, clock.now())?
        .ok_or_else(|| {
            NodeError::Config(format!(
                "{}/credentials.json is missing or unreadable",
                config.data_dir.display()
            ))
        })?;
    let tenants = Arc::new(Tenants::default());
    for t in store
        .tenants()?
        .into_iter()
        .filter(|t| t.id != ADMIN_TENANT)
    {
        load_tenant(&store, &tenants, &t.id)?;
    }
    let (outbox_tx, outbox_rx) = crate::outbox::channel();
    let pool = ActorPool::start(config.actor_threads).map_err(NodeError::Internal)?;
    let state_store: Arc<dyn StateStore> = store.clone();
    let registry = Arc::new(Registry::new(
        pool,
        state_store.clone(),
        clock.clone(),
        outbox_tx,
        config.mailbox_capacity,
    ));
    let (outbox_stop, outbox_stop_rx) = tokio::sync::oneshot::channel();
    let outbox = tokio::spawn(crate::outbox::run_writer(
        outbox_rx,
        state_store.clone(),
        tenants.clone(),
        outbox_stop_rx,
    ));

    // Recovery: every checkpointed account, then the log after the watermark.
    let progress = Arc::new(Progress::default());
    let sleepers: Arc<Mutex<BTreeSet<(Millis, AccountKey)>>> = Arc::default();
    let log: Arc<dyn EventLog> = store.clone();
    let mut stale = BTreeSet::new();
    for (tenant, account, _) in store.checkpoint_index()? {
        let Some(t) = tenants.get(&tenant) else {
            continue;
        };
        match registry.get(&t, &account, false) {
            Err(NodeError::StaleShape(_)) => {
                stale.insert(tenant);
            }
            Err(e) => return Err(e),
            Ok(_) => {}
        }
    }
    let watermark = store.watermark()?;
    let mut dispatcher = Dispatcher::new(
        tenants.clone(),
        registry.clone(),
        state_store.clone(),
        log.clone(),
        clock.clone(),
        progress.clone(),
        sleepers.clone(),
        watermark,
    );
    let replayed = dispatcher.recover().await?;
    for id in stale {
        if let Some(t) = tenants.get(&id) {
            let set = (*t.set()).clone();
            crate::rebuild::rebuild_tenant(&dispatcher, &t, set).await?;
        }
    }
    build_index(&registry, &tenants).await;
    tracing::info!(replayed, watermark, accounts = registry.len(), "recovered");

    // Small on purpose: each entry batch can hold thousands of events, and
    // a deep queue only adds memory and latency, not throughput.
    let (dispatch_tx, dispatch_rx) = mpsc::channel::<Command>(4);
    let dispatcher = tokio::spawn(dispatcher.run(dispatch_rx));
    let committed_tx = dispatch_tx.clone();
    let committer = GroupCommitter::start(
        log.clone(),
        GroupCommitOptions {
            queue_capacity: config.ingest_queue,
            ..GroupCommitOptions::default()
        },
        Box::new(move |entries| {
            // Blocking here is the backpressure: the committer waits for the dispatcher.
            let _ = committed_tx.blocking_send(Command::Entries(
                entries.to_vec(),
                std::time::Instant::now(),
            ));
        }),
    )?;
    let metrics = liveseg_telemetry::install_metrics_recorder().ok();
    let inner = Arc::new(NodeInner {
        ingestor: Ingestor {
            committer,
            clock: clock.clone(),
            limits: config.limits.clone(),
        },
        config: config.clone(),
        clock: clock.clone(),
        store: store.clone(),
        tenants,
        registry,
        auth: Auth::new(store.clone()),
        dispatch: dispatch_tx.clone(),
        progress,
        definitions_lock: tokio::sync::Mutex::new(()),
        metrics,
    });
    let periodic = crate::periodic::spawn_all(&inner, sleepers);

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
    let (stop_serving, mut stop_rx) = watch::channel(false);
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
    Ok(NodeHandle {
        addr,
        credentials,
        inner,
        stop_serving,
        server,
        dispatcher,
        outbox,
        outbox_stop,
        periodic,
        health,
    })
}

/// Fills each tenant's membership index from its resident accounts.
async fn build_index(registry: &Registry, tenants: &Tenants) {
    for (key, actor) in registry.resident(None) {
        let Some(t) = tenants.get(&key.0) else {
            continue;
        };
        if let Ok(crate::host::Answer::Members(members)) =
            actor.ask(crate::host::Query::Members).await
        {
            let mut index = t.index.write().unwrap_or_else(|p| p.into_inner());
            for (segment, contact) in members {
                let (entity, id) = match contact {
                    Some(c) => (liveseg_core::Entity::Contact, c),
                    None => (liveseg_core::Entity::Account, key.1.clone()),
                };
                index.insert((segment, key.1.clone(), entity, id));
            }
        }
    }
}

impl NodeHandle {
    pub fn inner(&self) -> &Arc<NodeInner> {
        &self.inner
    }

    /// Stops intake, applies and checkpoints everything accepted, exits.
    pub async fn shutdown(self) -> Result<()> {
        self.health
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
        let _ = self.stop_serving.send(true);
        // Open watch streams never end by themselves: give connections a grace period.
        let mut server = self.server;
        if tokio::time::timeout(std::time::Duration::from_secs(5), &mut server)
            .await
            .is_err()
        {
            server.abort();
        }
        for p in &self.periodic {
            p.abort();
        }
        // Every accepted event reaches the dispatcher before the shutdown command.
        self.inner.ingestor.committer.shutdown();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sent = self
            .inner
            .dispatch
            .send(crate::dispatch::Command::Shutdown(tx))
            .await;
        let checkpointed = match sent {
            Ok(()) => rx.await.unwrap_or(Err(NodeError::ShuttingDown)),
            Err(_) => Err(NodeError::ShuttingDown),
        };
        let result = match self.dispatcher.await {
            Ok(r) => r.and(checkpointed.map(|_| ())),
            Err(e) => Err(NodeError::Internal(format!("dispatcher task: {e}"))),
        };
        self.inner.registry.stop();
        let _ = self.outbox_stop.send(());
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), self.outbox).await;
        tracing::info!("liveseg node stopped");
        result
    }
}

/// Wakes passivated accounts whose timers come due.
pub(crate) fn wake_due(
    sleepers: &Mutex<BTreeSet<(Millis, AccountKey)>>,
    now: Millis,
) -> Vec<AccountKey> {
    let mut s = sleepers.lock().unwrap_or_else(|p| p.into_inner());
    let mut due = Vec::new();
    while let Some((t, _)) = s.first() {
        if *t > now {
            break;
        }
        if let Some((_, k)) = s.pop_first() {
            due.push(k);
        }
    }
    due
}
