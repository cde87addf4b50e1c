//! Harness for cluster fault tests: one real `redis-server` and several
//! `liveseg serve --cluster` processes, node `i` listening on 127.0.0.(2+i)
//! with fault-test timers (2 s lease) and an ownership journal on the
//! shared CLOCK_MONOTONIC. Faults are real signals: SIGKILL, SIGSTOP /
//! SIGCONT, SIGTERM; Redis is killed and restarted on the same AOF.

use crate::{Auth, poll};
use anyhow::{Context, Result, bail};
use liveseg_proto::pb;
use liveseg_store::redis::{Fsync, RedisOptions, RedisProcess, RedisStore};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// One node process of the cluster.
pub struct NodeProc {
    child: Option<Child>,
    pub slot: usize,
    pub addr: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub journal: PathBuf,
    /// SIGSTOPped: clients should not pick it.
    pub stopped: bool,
}

impl NodeProc {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn running(&self) -> bool {
        self.child.is_some() && !self.stopped
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn signal(&self, sig: &str) -> Result<()> {
        let pid = self.pid().context("node not running")?;
        let ok = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()?
            .success();
        if !ok {
            bail!("kill {sig} {pid} failed");
        }
        Ok(())
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = self.signal("-CONT");
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Redis + nodes, all killed on drop.
pub struct Cluster {
    pub redis: RedisProcess,
    pub dir: tempfile::TempDir,
    pub shards: u32,
    /// Extra `serve` flags of every node.
    pub extra: Vec<String>,
    pub nodes: Vec<NodeProc>,
    pub api_key: String,
    pub admin_key: String,
}

impl Cluster {
    /// Starts Redis and `n` nodes and waits until every shard is served.
    pub async fn start(n: usize, shards: u32, fsync: Fsync) -> Result<Cluster> {
        Self::start_with(n, shards, fsync, &[]).await
    }

    /// As `start`, with extra `serve` flags for every node.
    pub async fn start_with(
        n: usize,
        shards: u32,
        fsync: Fsync,
        extra: &[&str],
    ) -> Result<Cluster> {
        let redis = RedisProcess::start(fsync).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut dir = tempfile::Builder::new()
            .prefix("liveseg-cluster")
            .tempdir()?;
        // For post-mortems: keep node logs and journals after the test.
        if std::env::var_os("LIVESEG_KEEP_CLUSTER").is_some() {
            dir.disable_cleanup(true);
            eprintln!("cluster files kept in {}", dir.path().display());
        }
        let mut c = Cluster {
            redis,
            dir,
            shards,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            nodes: Vec::new(),
            api_key: String::new(),
            admin_key: String::new(),
        };
        for _ in 0..n {
            c.add_node().await?;
            if c.api_key.is_empty() {
                let creds: serde_json::Value = serde_json::from_slice(&std::fs::read(
                    c.nodes[0].data_dir.join("credentials.json"),
                )?)?;
                c.api_key = creds["api_key"].as_str().unwrap_or_default().into();
                c.admin_key = creds["admin_key"].as_str().unwrap_or_default().into();
            }
        }
        c.wait_balanced(Duration::from_secs(30)).await?;
        Ok(c)
    }

    pub fn redis_store(&self) -> Result<RedisStore> {
        RedisStore::connect(RedisOptions::new(self.redis.url())).map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// Starts one more node in a new slot; returns the slot.
    pub async fn add_node(&mut self) -> Result<usize> {
        let slot = self.nodes.len();
        let node = self.spawn(slot).await?;
        self.nodes.push(node);
        Ok(slot)
    }

    async fn spawn(&self, slot: usize) -> Result<NodeProc> {
        let data_dir = self.dir.path().join(format!("n{slot}"));
        std::fs::create_dir_all(&data_dir)?;
        let addr_file = data_dir.join("node.addr");
        let _ = std::fs::remove_file(&addr_file);
        let log = data_dir.join("node.log");
        let journal = data_dir.join("ownership.jsonl");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let ip = format!("127.0.0.{}", 2 + slot);
        let child = Command::new(crate::liveseg_bin())
            .args(["serve", "--cluster", "--test-timers", "--listen"])
            .arg(format!("{ip}:0"))
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--redis-url", &self.redis.url()])
            .args(["--shards", &self.shards.to_string()])
            .args(["--node-name", &format!("n{slot}")])
            .arg("--ownership-journal")
            .arg(&journal)
            .args(["--checkpoint-interval", "1s"])
            // One Redis, never failed over: durable exactly when it runs
            // with `appendfsync always`, which nodes read from Redis itself.
            .arg("--redis-durable")
            .args(&self.extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {}", crate::liveseg_bin().display()))?;
        let mut node = NodeProc {
            child: Some(child),
            slot,
            addr: String::new(),
            data_dir,
            log,
            journal,
            stopped: false,
        };
        node.addr = poll(Duration::from_secs(60), "node.addr", || {
            let text = std::fs::read_to_string(&addr_file).ok();
            async move { text.filter(|t| !t.is_empty()) }
        })
        .await
        .with_context(|| node.log_tail())?;
        Ok(node)
    }

    /// SIGKILL: no drain, no release; the lease must expire.
    pub fn kill9(&mut self, slot: usize) {
        if let Some(mut c) = self.nodes[slot].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts a killed node again (a new member: new node id, same slot).
    pub async fn restart(&mut self, slot: usize) -> Result<()> {
        self.kill9(slot);
        self.nodes[slot] = self.spawn(slot).await?;
        Ok(())
    }

    pub fn sigstop(&mut self, slot: usize) -> Result<()> {
        self.nodes[slot].signal("-STOP")?;
        self.nodes[slot].stopped = true;
        Ok(())
    }

    pub fn sigcont(&mut self, slot: usize) -> Result<()> {
        self.nodes[slot].signal("-CONT")?;
        self.nodes[slot].stopped = false;
        Ok(())
    }

    /// SIGTERM (graceful handoff) and wait for the exit.
    pub async fn terminate(&mut self, slot: usize) -> Result<std::process::ExitStatus> {
        self.nodes[slot].signal("-TERM")?;
        let mut child = self.nodes[slot].child.take().context("not running")?;
        let status = poll(Duration::from_secs(60), "exit after SIGTERM", || {
            let s = child.try_wait().ok().flatten();
            async move { s }
        })
        .await;
        if status.is_err() {
            let _ = child.kill();
        }
        status
    }

    /// URLs of nodes a client may call now (running, not stopped).
    pub fn live_urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.running())
            .map(NodeProc::url)
            .collect()
    }

    pub fn journals(&self) -> Vec<PathBuf> {
        self.nodes.iter().map(|n| n.journal.clone()).collect()
    }

    /// The slot of the node holding `shard`'s lease now.
    pub fn lease_holder(&self, shard: u32) -> Result<Option<usize>> {
        let holder = self
            .redis_store()?
            .leases()
            .holder(shard)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(holder.and_then(|h| slot_of(&h)))
    }

    /// How many shard leases the nodes in `slots` hold now.
    pub fn leases_held_by(&self, slots: &[usize]) -> Result<usize> {
        let mut n = 0;
        for s in 0..self.shards {
            if self.lease_holder(s)?.is_some_and(|h| slots.contains(&h)) {
                n += 1;
            }
        }
        Ok(n)
    }

    /// The slot of the coordinator leader now.
    pub fn leader(&self) -> Result<Option<usize>> {
        let store = self.redis_store()?;
        let lease = liveseg_cluster::coordinator::Coordinator::new(store)
            .leader()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(lease.and_then(|h| slot_of(&h)))
    }

    /// Slots of nodes whose process runs (paused ones included).
    fn running_slots(&self) -> Vec<usize> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.slot)
            .collect()
    }

    /// Polls until every shard's lease is held by a running node.
    pub async fn wait_all_shards_served(&self, deadline: Duration) -> Result<()> {
        let store = self.redis_store()?;
        let leases = store.leases();
        let running = self.running_slots();
        poll(deadline, "every shard leased by a running node", || {
            let all = (0..self.shards).all(|s| {
                leases
                    .holder(s)
                    .ok()
                    .flatten()
                    .and_then(|h| slot_of(&h))
                    .is_some_and(|slot| running.contains(&slot))
            });
            async move { all.then_some(()) }
        })
        .await
    }

    /// Polls until the placement has settled after a join or a leave:
    /// every shard is assigned to a running node and that node holds its
    /// lease.
    pub async fn wait_balanced(&self, deadline: Duration) -> Result<()> {
        self.wait_all_shards_served(deadline).await?;
        let store = self.redis_store()?;
        let leases = store.leases();
        let coordinator = liveseg_cluster::coordinator::Coordinator::new(store);
        let running = self.running_slots();
        poll(deadline, "settled placement", || {
            let settled = coordinator.assignment().ok().is_some_and(|a| {
                (0..self.shards).all(|s| {
                    let owner = a.owners.get(&s);
                    let holder = leases.holder(s).ok().flatten();
                    let holder_node = holder.as_deref().and_then(|h| h.split('#').next());
                    owner.is_some_and(|o| {
                        holder_node == Some(o.as_str())
                            && slot_of(o).is_some_and(|slot| running.contains(&slot))
                    })
                })
            });
            async move { settled.then_some(()) }
        })
        .await
    }

    /// `wait_balanced`, and then until placement has nothing left to do:
    /// the assignment is the fixed point the leader converges to once no
    /// shard settles and no node warms up (the same pure `plan`, with the
    /// nodes' own timers and limits). Balancing moves a fault defers, such
    /// as the move back onto a restarted or woken node, have then happened,
    /// so they cannot land in the next fault's recovery.
    pub async fn wait_placed(&self, deadline: Duration) -> Result<()> {
        use liveseg_cluster::placement::{Node, PlacementInput, Settling, plan};
        self.wait_balanced(deadline).await?;
        let coordinator = liveseg_cluster::coordinator::Coordinator::new(self.redis_store()?);
        let config = liveseg_cluster::member::MemberConfig::test("harness", "", self.shards);
        let dead_after_ms = config.dead_after.as_millis() as u64;
        poll(deadline, "placement at its fixed point", || {
            let done = (|| {
                let live: Vec<Node> = coordinator
                    .live_nodes(dead_after_ms)
                    .ok()?
                    .into_iter()
                    .map(|id| Node { id, weight: 1 })
                    .collect();
                let table = coordinator.assignment().ok()?;
                let current: Vec<Option<String>> = (0..self.shards)
                    .map(|s| table.owners.get(&s).cloned())
                    .collect();
                let pending = plan(&PlacementInput {
                    shards: self.shards,
                    live: &live,
                    current: &current,
                    max_moves: config.max_moves,
                    load_factor: config.load_factor,
                    settling: Settling::NONE,
                    // Nothing is ownerless at a fixed point.
                    standby: &[],
                });
                pending.moves.is_empty().then_some(())
            })();
            async move { done }
        })
        .await?;
        // The last move's new owner may still be acquiring and loading.
        self.wait_balanced(deadline).await
    }

    /// Admin client on any live node.
    pub async fn admin(
        &self,
    ) -> Result<pb::admin_service_client::AdminServiceClient<InterceptedService<Channel, Auth>>>
    {
        let url = self.live_urls().first().cloned().context("no live node")?;
        let channel = Channel::from_shared(url)?.connect().await?;
        Ok(
            pb::admin_service_client::AdminServiceClient::with_interceptor(
                channel,
                Auth(self.admin_key.clone()),
            ),
        )
    }

    /// Creates `n` tenants (spread over shards by their names) with the
    /// probe segments installed; returns `(tenant, api key)` pairs.
    pub async fn tenants_with_probes(&self, n: usize) -> Result<Vec<(String, String)>> {
        let mut admin = self.admin().await?;
        let mut out = Vec::new();
        for i in 0..n {
            let r = admin
                .create_tenant(pb::CreateTenantRequest {
                    name: format!("t{i}"),
                })
                .await?
                .into_inner();
            out.push((r.tenant, r.api_key));
        }
        for (_, key) in &out {
            crate::load::install_probe_segments(self, key).await?;
        }
        Ok(out)
    }
}

/// Node ids are `n<slot>-<pid>-<hex>` (and lease values `<id>#<epoch>`).
fn slot_of(node_id: &str) -> Option<usize> {
    node_id.strip_prefix('n')?.split('-').next()?.parse().ok()
}

/// Reads every node's ownership journal.
pub fn read_journals(paths: &[PathBuf]) -> Result<Vec<liveseg_cluster::journal::Record>> {
    let existing: Vec<&Path> = paths
        .iter()
        .filter(|p| p.exists())
        .map(PathBuf::as_path)
        .collect();
    Ok(liveseg_cluster::journal::read(&existing)?)
}

/// Redis fsync policy, re-exported for scenario code.
pub use liveseg_store::redis::Fsync as RedisFsync;
