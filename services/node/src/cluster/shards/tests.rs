//! Standby takeovers and handoffs against a real `redis-server`: the
//! activation serves the standby itself when nobody committed to the shard
//! since its load began, and loads afresh when someone did; an owner frozen
//! for a handoff writes nothing (so the next owner's standby stays good)
//! until it is thawed.

use super::*;
use liveseg_cluster::member::DrainDone;
use liveseg_store::StateStore;
use liveseg_store::redis::{Fsync, LeaseOutcome, RedisOptions, RedisProcess};

struct Node {
    redis_process: RedisProcess,
    redis: RedisStore,
    runtimes: Arc<ShardRuntimes>,
    _dir: tempfile::TempDir,
}

/// A node's shard runtimes (4 shards, node id "me") over a fresh Redis
/// with `appendfsync always`.
fn node(redis_durable: bool) -> Node {
    node_with(redis_durable, Duration::from_secs(2))
}

/// [`node`] whose Redis calls time out after `io_timeout`.
fn node_with(redis_durable: bool, io_timeout: Duration) -> Node {
    node_over(Fsync::Always, redis_durable, io_timeout)
}

/// [`node`] over a Redis with `fsync`.
fn node_over(fsync: Fsync, redis_durable: bool, io_timeout: Duration) -> Node {
    let process = RedisProcess::start(fsync).unwrap();
    let redis = RedisStore::connect(RedisOptions {
        io_timeout,
        ..RedisOptions::new(process.url())
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let runtimes = runtimes_on(&redis, "me", dir.path(), redis_durable);
    Node {
        redis_process: process,
        redis,
        runtimes,
        _dir: dir,
    }
}

/// Node `node_id`'s shard runtimes over `redis`.
fn runtimes_on(
    redis: &RedisStore,
    node_id: &str,
    dir: &std::path::Path,
    redis_durable: bool,
) -> Arc<ShardRuntimes> {
    let config = NodeConfig {
        data_dir: dir.to_path_buf(),
        ..NodeConfig::default()
    };
    ShardRuntimes::new(ShardContext {
        redis: redis.clone(),
        catalog: Arc::new(redis.catalog()),
        clock: crate::server::clock_for(&config),
        config,
        pool: Arc::new(ActorPool::start(1).unwrap()),
        shards: 4,
        redis_durable,
        handle: tokio::runtime::Handle::current(),
        node_id: node_id.into(),
        standby_for: Duration::from_secs(60),
    })
}

/// Polls `f` every 10 ms until it returns something, for at most 20 s.
async fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn acquire(redis: &RedisStore, shard: u32, node: &str) -> Fence {
    match redis.leases().acquire(shard, node, 60_000, None).unwrap() {
        LeaseOutcome::Acquired { epoch } => Fence::new(node, epoch),
        other => panic!("lease of shard {shard}: {other:?}"),
    }
}

/// The standby `prepare` parked for `shard`, once loaded.
async fn standby_of(runtimes: &ShardRuntimes, shard: u32) -> Arc<Runtime> {
    until("the standby to load", || {
        runtimes
            .parked
            .runtime_of(shard)
            .filter(|_| runtimes.parked.standby_of(shard))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_activation_serves_the_standby_nobody_wrote_behind() {
    let n = node(true);
    n.runtimes.prepare(1);
    let standby = standby_of(&n.runtimes, 1).await;
    Host(n.runtimes.clone()).activate(1, acquire(&n.redis, 1, "me"));
    let served = until("the shard to serve", || n.runtimes.runtime(1)).await;
    assert!(Arc::ptr_eq(&served, &standby), "served from the standby");
    assert!(served.is_valid());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_activation_loads_afresh_when_the_shard_was_written_since_the_standby() {
    let n = node(true);
    n.runtimes.prepare(2);
    let standby = standby_of(&n.runtimes, 2).await;
    // Another owner commits in between (its lease, then it lets go).
    let other = acquire(&n.redis, 2, "other");
    let epoch = other.token.rsplit_once('#').unwrap().1.parse().unwrap();
    n.redis
        .shard(2, other)
        .commit(&liveseg_store::CommitBatch {
            watermark: Some(0),
            ..Default::default()
        })
        .unwrap();
    assert!(n.redis.leases().release(2, "other", epoch).unwrap());
    Host(n.runtimes.clone()).activate(2, acquire(&n.redis, 2, "me"));
    let served = until("the shard to serve", || n.runtimes.runtime(2)).await;
    assert!(!Arc::ptr_eq(&served, &standby), "the standby was refused");
    assert!(served.is_valid());
    assert!(!n.runtimes.parked.holds(2), "the refused standby is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_durable_redis_no_standby_is_loaded() {
    let n = node(false);
    n.runtimes.prepare(3);
    assert!(!n.runtimes.standbys.loading().contains_key(&3));
    assert!(!n.runtimes.parked.holds(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_activation_during_the_standby_load_waits_for_it_instead_of_loading() {
    let n = node(true);
    let fence = acquire(&n.redis, 1, "me");
    // Registered at once; the load itself takes several Redis round trips.
    n.runtimes.prepare(1);
    Host(n.runtimes.clone()).activate(1, fence);
    let served = until("the shard to serve", || n.runtimes.runtime(1)).await;
    assert!(served.is_valid());
    assert_eq!(
        n.runtimes.loads.load(Ordering::Relaxed),
        0,
        "no load of its own"
    );
    assert!(!n.runtimes.parked.holds(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_activation_waiting_for_a_failed_standby_gets_a_load() {
    let n = node_with(true, Duration::from_millis(200));
    let fence = acquire(&n.redis, 1, "me");
    n.redis_process.pause().unwrap();
    n.runtimes.prepare(1);
    Host(n.runtimes.clone()).activate(1, fence);
    until("the standby load to fail", || {
        n.runtimes.standbys.failed().contains_key(&1).then_some(())
    })
    .await;
    n.redis_process.resume().unwrap();
    let served = until("the shard to serve", || n.runtimes.runtime(1)).await;
    assert!(served.is_valid());
    assert!(
        n.runtimes.loads.load(Ordering::Relaxed) >= 1,
        "loaded instead"
    );
    assert!(n.runtimes.standbys.loading().is_empty());
}

/// Tenant `t` with one segment, and its shard.
fn tenant_t(redis: &RedisStore) -> u32 {
    let catalog = redis.catalog();
    catalog.create_tenant("t", "T", 0).unwrap();
    let segment = r#"{"key":"webinar","name":"W","entity":"contact","condition":{"events":{"event":{"kind":"custom","name":"Webinar Registered"},"within":"365d"}}}"#;
    catalog.put_segment("t", "webinar", segment).unwrap();
    shard_of("t", 4)
}

/// Appends a `Webinar Registered` of `user` to `shard`'s stream; its seq.
fn append(redis: &RedisStore, shard: u32, user: &str) -> u64 {
    use liveseg_store::{AppendOutcome, EventLog};
    let json = serde_json::json!({
        "type": "track", "event": "Webinar Registered", "messageId": format!("m-{user}"),
        "userId": user, "context": {"groupId": "acme"}, "timestamp": "2026-11-30T10:00:00Z",
    });
    let item = liveseg_store::AppendItem {
        tenant: "t".into(),
        message_id: format!("m-{user}"),
        payload: json.to_string().into_bytes(),
    };
    let store = redis.shard(shard, Fence::new("ingest", 0));
    match store.append(&[item], 0).unwrap()[0] {
        AppendOutcome::Accepted { seq } => seq,
        other => panic!("append: {other:?}"),
    }
}

/// `runtime` knows contact `user` (it applied its event).
async fn knows(runtime: &Runtime, user: &str) {
    until("the event to be applied", || {
        runtime
            .tenants
            .get("t")
            .and_then(|t| t.account_of(user))
            .map(|_| ())
    })
    .await;
}

fn commits(redis: &RedisStore, shard: u32) -> u64 {
    redis
        .shard(shard, Fence::new("reader", 0))
        .commit_count()
        .unwrap()
}

/// Owner "me" serving tenant `t`'s shard with contact u1 applied: the
/// shard, its runtime and the lease's epoch.
async fn serving_t(n: &Node) -> (u32, Arc<Runtime>, u64) {
    let shard = tenant_t(&n.redis);
    let fence = acquire(&n.redis, shard, "me");
    let epoch = crate::cluster::parked::epoch_of(&fence.token).unwrap();
    Host(n.runtimes.clone()).activate(shard, fence);
    let owner = until("the owner to serve", || n.runtimes.runtime(shard)).await;
    append(&n.redis, shard, "u1");
    knows(&owner, "u1").await;
    (shard, owner, epoch)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_owner_writes_nothing_and_its_next_owner_serves_from_the_standby() {
    let n = node(true);
    let (shard, owner, epoch) = serving_t(&n).await;
    let host = Host(n.runtimes.clone());
    let before = commits(&n.redis, shard);
    let frozen = DrainDone::new();
    host.freeze(shard, frozen.clone());
    until("the freeze", || frozen.outcome()).await;
    assert_eq!(frozen.outcome(), Some(true));
    let at_freeze = commits(&n.redis, shard);
    assert!(at_freeze > before, "the freeze checkpointed first");
    // Frozen: it applies and answers, and writes nothing (no change log
    // commit for u2's entry, no checkpoint).
    append(&n.redis, shard, "u2");
    knows(&owner, "u2").await;
    assert!(owner.is_valid());
    assert_eq!(
        owner
            .ask(crate::dispatch::Command::Checkpoint)
            .await
            .unwrap(),
        0
    );
    // The next owner loads a standby meanwhile; it is ready.
    let dir = tempfile::tempdir().unwrap();
    let target = runtimes_on(&n.redis, "target", dir.path(), true);
    let target_host = Host(target.clone());
    target_host.prepare(shard);
    let standby = standby_of(&target, shard).await;
    assert!(target_host.standby_ready(shard));
    // The move: the drain of a frozen shard commits nothing either.
    let drained = DrainDone::new();
    host.drain(shard, drained.clone());
    until("the drain", || drained.outcome()).await;
    assert_eq!(
        commits(&n.redis, shard),
        at_freeze,
        "the freeze kept Redis still"
    );
    assert!(n.redis.leases().release(shard, "me", epoch).unwrap());
    target_host.activate(shard, acquire(&n.redis, shard, "target"));
    let served = until("the target to serve", || target.runtime(shard)).await;
    assert!(Arc::ptr_eq(&served, &standby), "served from the standby");
    assert_eq!(target.loads.load(Ordering::Relaxed), 0, "no load");
    // It reads what came in during the freeze from the stream, and writes
    // the changes the owner carried and dropped.
    knows(&served, "u2").await;
    until("the target's first commit", || {
        (commits(&n.redis, shard) > at_freeze).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thawed_owner_writes_what_it_carried_and_spoils_the_standby() {
    let n = node(true);
    let (shard, owner, _) = serving_t(&n).await;
    owner.freeze(owner.next_freeze_request()).await.unwrap();
    let at_freeze = commits(&n.redis, shard);
    append(&n.redis, shard, "u2");
    knows(&owner, "u2").await;
    let dir = tempfile::tempdir().unwrap();
    let target = runtimes_on(&n.redis, "target", dir.path(), true);
    let target_host = Host(target.clone());
    target_host.prepare(shard);
    standby_of(&target, shard).await;
    assert!(target_host.standby_ready(shard));
    // Definition changes wait for the handoff (nothing is stored).
    assert!(owner.lock_definitions().await.is_err());
    // Called off: the owner writes u2's changes, then checkpoints again.
    Host(n.runtimes.clone()).thaw(shard);
    until("the carried changes", || {
        (commits(&n.redis, shard) > at_freeze).then_some(())
    })
    .await;
    assert!(!owner.is_frozen());
    assert!(owner.lock_definitions().await.is_ok());
    assert!(
        owner
            .ask(crate::dispatch::Command::Checkpoint)
            .await
            .unwrap()
            > 0
    );
    assert!(!target_host.standby_ready(shard), "written since it loaded");
    assert!(!target.parked.holds(shard), "the stale standby is dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_freeze_overtaken_by_a_later_thaw_is_ignored() {
    let n = node(true);
    let (_, owner, _) = serving_t(&n).await;
    // Asked for in this order; the thaw reaches the dispatcher first.
    let freeze = owner.next_freeze_request();
    let thaw = owner.next_freeze_request();
    owner.thaw(thaw).await.unwrap();
    assert!(owner.freeze(freeze).await.is_err());
    assert!(!owner.is_frozen(), "the later thaw stands");
    // And a thaw overtaken by a later freeze leaves it frozen.
    let thaw = owner.next_freeze_request();
    let freeze = owner.next_freeze_request();
    assert!(owner.freeze(freeze).await.unwrap().is_some());
    let _ = owner.thaw(thaw).await;
    assert!(owner.is_frozen(), "the later freeze stands");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_freeze_when_redis_does_not_fsync_every_write() {
    // The operator vouched (`redis_durable`), Redis says otherwise.
    let n = node_over(Fsync::EverySec, true, Duration::from_secs(2));
    let (shard, owner, _) = serving_t(&n).await;
    let frozen = DrainDone::new();
    Host(n.runtimes.clone()).freeze(shard, frozen.clone());
    until("the freeze to answer", || frozen.outcome()).await;
    assert_eq!(frozen.outcome(), Some(false), "refused");
    assert!(!owner.is_frozen());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_parked_from_an_earlier_lease_gives_way_to_a_standby() {
    let n = node(true);
    let (shard, _, epoch) = serving_t(&n).await;
    // This node's lease lapses (a pause): its runtime is parked.
    let host = Host(n.runtimes.clone());
    host.deactivate(shard, StopReason::DeadlinePassed);
    assert!(n.runtimes.parked.holds(shard) && !n.runtimes.parked.standby_of(shard));
    // Another node holds the shard since, and goes silent: this node is
    // named its standby.
    assert!(n.redis.leases().release(shard, "me", epoch).unwrap());
    acquire(&n.redis, shard, "other");
    host.prepare(shard);
    standby_of(&n.runtimes, shard).await;
}
