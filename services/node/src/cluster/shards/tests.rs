//! Standby takeovers against a real `redis-server`: the activation serves
//! the standby itself when nobody committed to the shard since its load
//! began, and loads afresh when someone did.

use super::*;
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
    let process = RedisProcess::start(Fsync::Always).unwrap();
    let redis = RedisStore::connect(RedisOptions {
        io_timeout,
        ..RedisOptions::new(process.url())
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = NodeConfig {
        data_dir: dir.path().to_path_buf(),
        ..NodeConfig::default()
    };
    let runtimes = ShardRuntimes::new(ShardContext {
        redis: redis.clone(),
        catalog: Arc::new(redis.catalog()),
        clock: crate::server::clock_for(&config),
        config,
        pool: Arc::new(ActorPool::start(1).unwrap()),
        shards: 4,
        redis_durable,
        handle: tokio::runtime::Handle::current(),
        node_id: "me".into(),
        standby_for: Duration::from_secs(60),
    });
    Node {
        redis_process: process,
        redis,
        runtimes,
        _dir: dir,
    }
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
