//! Cluster mode of the node (`liveseg serve --cluster`): the state lives in
//! Redis, shards move between nodes under fenced leases, and any node takes
//! any request.
//!
//! - Ingest appends to the tenant's shard stream from whichever node the
//!   client called ([`ShardIntake`]); the owner's tail picks it up. Events
//!   keep being accepted while a shard moves: they wait in the stream.
//! - Queries, explain, watch and definition changes run where the shard's
//!   runtime is (`shards`): a non-owner forwards them (`crate::forward`) or
//!   answers `UNAVAILABLE` naming the owner.
//! - The member's control loop (liveseg-cluster) decides which shards this
//!   node serves; SIGTERM leaves gracefully: each shard is handed off
//!   (frozen here while the next owner loads it, then released), or,
//!   without `--redis-durable`, drained with a final fenced checkpoint.

mod backoff;
mod parked;
pub mod shards;
mod tail;

use crate::actors::ActorPool;
use crate::auth::Credentials;
use crate::error::{NodeError, Result};
use crate::ingest::{Ingestor, Sink};
use crate::runtime::Runtime;
use crate::server::{NodeHandle, NodeInner, Units};
use liveseg_cluster::coordinator::Coordinator;
use liveseg_cluster::member::{Member, MemberConfig, Viewer};
use liveseg_cluster::placement::shard_of;
use liveseg_store::redis::{Fence, RedisOptions, RedisStore};
use liveseg_store::{AppendItem, AppendOutcome, Catalog, EventLog, StoreError};
use shards::{Host, ShardContext, ShardRuntimes};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Cluster settings on top of the node's own.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `redis://host:port/` of the Redis primary every node shares.
    pub redis_url: String,
    /// A readable prefix of this node's id (the id adds the pid and start
    /// time, so a restarted process is a new member).
    pub node_name: String,
    /// The address other nodes and clients reach this node at; defaults to
    /// the bound listen address.
    pub advertise: Option<String>,
    /// Timers, shard count and journal. `node_id` and `addr` are filled in
    /// at start.
    pub member: MemberConfig,
}

impl ClusterConfig {
    pub fn new(redis_url: &str, shards: u32) -> Self {
        ClusterConfig {
            redis_url: redis_url.to_owned(),
            node_name: "node".into(),
            advertise: None,
            member: MemberConfig::new("", "", shards),
        }
    }
}

/// Cluster state the API layer reads.
pub struct ClusterState {
    pub shards: Arc<ShardRuntimes>,
    pub node_id: String,
    /// This node's advertised address.
    pub addr: Mutex<String>,
    coordinator: Coordinator,
    member: Mutex<Option<Member>>,
    /// The member's view; kept while the member is leaving.
    viewer: Mutex<Option<Viewer>>,
    /// Node id → address; ids are per process start, so entries never go stale.
    addresses: Mutex<HashMap<String, String>>,
    /// Channels to the nodes calls are forwarded to.
    pub peers: crate::forward::Peers,
}

impl ClusterState {
    /// The local runtime of the tenant's shard, or where the shard is.
    pub fn runtime_for(&self, tenant: &str) -> Result<Arc<Runtime>> {
        let shard = shard_of(tenant, self.shards.shard_count());
        match self.shards.runtime(shard) {
            Some(rt) if rt.is_valid() => Ok(rt),
            _ => Err(NodeError::NotHere {
                shard,
                owner: self.owner_addr(shard),
            }),
        }
    }

    /// The address of the node the assignment gives the tenant's shard to.
    pub fn owner_of(&self, tenant: &str) -> Option<String> {
        self.owner_addr(shard_of(tenant, self.shards.shard_count()))
    }

    /// The address of the node the assignment gives `shard` to.
    pub fn owner_addr(&self, shard: u32) -> Option<String> {
        let owner = self.view()?.assignment.get(&shard).cloned()?;
        if let Some(a) = self
            .addresses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&owner)
        {
            return Some(a.clone());
        }
        let addr = self.coordinator.address(&owner).ok().flatten()?;
        self.addresses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(owner, addr.clone());
        Some(addr)
    }

    fn view(&self) -> Option<liveseg_cluster::member::View> {
        let viewer = self.viewer.lock().unwrap_or_else(|p| p.into_inner());
        viewer.as_ref().map(Viewer::view)
    }

    /// Whether this node leads the coordinator now.
    pub fn is_leader(&self) -> bool {
        self.view().is_some_and(|v| v.leader)
    }

    /// Graceful leave (blocking): every shard is handed off (or drained)
    /// and released (`Member::leave`).
    pub fn leave(&self) {
        let member = self.member.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(m) = member {
            m.leave();
        }
    }
}

/// Appends accepted events to their tenant's shard stream, from any node.
pub struct ShardIntake {
    redis: RedisStore,
    shards: u32,
    /// Admission: requests waiting or writing; beyond it, RESOURCE_EXHAUSTED.
    admitted: Arc<tokio::sync::Semaphore>,
    /// Concurrent Redis writes (each holds a pooled connection and a thread).
    writers: Arc<tokio::sync::Semaphore>,
    closed: AtomicBool,
}

/// Concurrent ingest scripts per node.
const INTAKE_WRITERS: usize = 32;

impl ShardIntake {
    pub fn new(redis: RedisStore, shards: u32, queue: usize) -> Self {
        ShardIntake {
            redis,
            shards,
            admitted: Arc::new(tokio::sync::Semaphore::new(queue.max(1))),
            writers: Arc::new(tokio::sync::Semaphore::new(INTAKE_WRITERS)),
            closed: AtomicBool::new(false),
        }
    }

    /// Appends one tenant's items at `now_ms` (the engine clock; the dedupe
    /// window is measured on it). An `Err` is indeterminate: some items may
    /// be durable; re-sending the same messageIds is always safe.
    pub async fn append(
        &self,
        tenant: &str,
        items: Vec<AppendItem>,
        now_ms: i64,
    ) -> std::result::Result<Vec<AppendOutcome>, StoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        let _admitted = self
            .admitted
            .clone()
            .try_acquire_owned()
            .map_err(|_| StoreError::Overloaded)?;
        let writer = self
            .writers
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        let shard = shard_of(tenant, self.shards);
        // Appends are not fenced (any node may write the stream); a commit
        // through this handle is refused before it is sent.
        let log = self.redis.shard(
            shard,
            Fence {
                token: "intake#0".into(),
                valid: Arc::new(|| false),
            },
        );
        tokio::task::spawn_blocking(move || {
            let _writer = writer;
            log.append(&items, now_ms)
        })
        .await
        .map_err(|e| StoreError::Internal(format!("ingest task: {e}")))?
    }

    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }
}

/// Starts a cluster node: connect to Redis, bootstrap the catalog once per
/// cluster, serve, then join (heartbeat, leases, placement).
pub async fn start(config: crate::NodeConfig, cluster: ClusterConfig) -> Result<NodeHandle> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| NodeError::Config(format!("data dir {}: {e}", config.data_dir.display())))?;
    let shards = cluster.member.shards;
    if shards == 0 {
        return Err(NodeError::Config("shards: must be at least 1".into()));
    }
    let redis = RedisStore::connect(RedisOptions {
        dedupe_window_ms: config.dedupe_window.as_millis() as u64,
        ..RedisOptions::new(cluster.redis_url.clone())
    })
    .map_err(|e| NodeError::Config(format!("redis at {}: {e}", cluster.redis_url)))?;
    let clock = crate::server::clock_for(&config);
    let catalog: Arc<dyn Catalog> = Arc::new(redis.catalog());
    let credentials = bootstrap(catalog.as_ref(), &config.data_dir, clock.now())?;
    let pool = Arc::new(ActorPool::start(config.actor_threads).map_err(NodeError::Internal)?);
    let node_id = format!(
        "{}-{}-{:x}",
        cluster.node_name.replace('#', "_"),
        std::process::id(),
        clock.now()
    );
    let runtimes = ShardRuntimes::new(ShardContext {
        redis: redis.clone(),
        catalog: catalog.clone(),
        clock: clock.clone(),
        config: config.clone(),
        pool: pool.clone(),
        shards,
        redis_durable: cluster.member.redis_durable,
        handle: tokio::runtime::Handle::current(),
        node_id: node_id.clone(),
        standby_for: (cluster.member.lease_ttl + cluster.member.dead_after) * 2,
    });
    let state = Arc::new(ClusterState {
        shards: runtimes.clone(),
        node_id: node_id.clone(),
        addr: Mutex::new(String::new()),
        coordinator: Coordinator::new(redis.clone()),
        member: Mutex::new(None),
        viewer: Mutex::new(None),
        addresses: Mutex::new(HashMap::new()),
        peers: Default::default(),
    });
    let inner = Arc::new(NodeInner {
        ingestor: Ingestor {
            sink: Sink::Shards(ShardIntake::new(redis.clone(), shards, config.ingest_queue)),
            clock: clock.clone(),
            limits: config.limits.clone(),
        },
        config: config.clone(),
        clock,
        catalog: catalog.clone(),
        auth: crate::auth::Auth::new(catalog),
        units: Units::Cluster(state.clone()),
        metrics: liveseg_telemetry::install_metrics_recorder().ok(),
        models: crate::embedding::Embeddings::start(&config.model)?,
        calibration: crate::calibration::ServedCalibration::new(config.calibration.as_ref()),
    });
    let serving = crate::server::serve(&inner).await?;
    let addr = cluster
        .advertise
        .clone()
        .unwrap_or_else(|| serving.addr.to_string());
    *state.addr.lock().unwrap_or_else(|p| p.into_inner()) = addr.clone();
    let member_config = MemberConfig {
        node_id: node_id.clone(),
        addr: addr.clone(),
        ..cluster.member
    };
    let host = Arc::new(Host(runtimes));
    let member = tokio::task::spawn_blocking(move || Member::start(redis, member_config, host))
        .await
        .map_err(|e| NodeError::Internal(e.to_string()))?
        .map_err(|e| NodeError::Config(format!("joining the cluster: {e}")))?;
    *state.viewer.lock().unwrap_or_else(|p| p.into_inner()) = Some(member.viewer());
    *state.member.lock().unwrap_or_else(|p| p.into_inner()) = Some(member);
    tracing::info!(node = %node_id, %addr, shards, "joined the cluster");
    Ok(NodeHandle::new(inner, pool, serving, credentials, vec![]))
}

/// The admin key and first tenant, created by whichever node of the
/// cluster starts first; it writes `credentials.json` into its data dir.
/// The others find the catalog bootstrapped and read their own file if any.
fn bootstrap(
    catalog: &dyn Catalog,
    data_dir: &std::path::Path,
    now: i64,
) -> Result<Option<Credentials>> {
    match crate::auth::bootstrap(catalog, data_dir, now) {
        Ok(c) => Ok(c),
        // Two nodes started at once: the other one bootstrapped.
        Err(NodeError::Store(StoreError::AlreadyExists { .. })) => Ok(None),
        Err(e) => Err(e),
    }
}
