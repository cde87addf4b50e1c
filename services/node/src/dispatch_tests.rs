//! A runtime whose store fails for a while (as Redis does while it
//! restarts) keeps everything a failed checkpoint carried, and writes it
//! once the store is back: account images, directory entries, watermark
//! and membership changes. The store is the real embedded one behind a
//! switch that turns its commits into connection errors.

use crate::actors::ActorPool;
use crate::config::NodeConfig;
use crate::dispatch::Command;
use crate::runtime::{Runtime, RuntimeParts};
use liveseg_store::{
    AppendItem, Catalog, CheckpointImage, CommitBatch, EmbeddedStore, EventLog, Seq, StateStore,
    StoreError, StoreOptions,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The embedded store, with commits failing while `down` is set: every
/// commit, or (`only_checkpoints`) only those that move the watermark, so
/// the change log gets through and the checkpoint's own commit fails.
struct Flaky {
    inner: Arc<EmbeddedStore>,
    down: AtomicBool,
    only_checkpoints: bool,
    /// Refuses every commit as Redis does when out of memory: an error
    /// the same write would meet again.
    refusing: AtomicBool,
}

impl StateStore for Flaky {
    fn commit(&self, batch: &CommitBatch) -> liveseg_store::Result<Vec<u64>> {
        if self.refusing.load(Ordering::Acquire) {
            return Err(StoreError::Internal("OOM command not allowed".into()));
        }
        if self.down.load(Ordering::Acquire)
            && (!self.only_checkpoints || batch.watermark.is_some())
        {
            let e = redis::RedisError::from(std::io::Error::from(
                std::io::ErrorKind::ConnectionRefused,
            ));
            return Err(StoreError::Redis(Arc::new(e)));
        }
        self.inner.commit(batch)
    }
    fn load_checkpoint(&self, t: &str, a: &str) -> liveseg_store::Result<Option<(Seq, Vec<u8>)>> {
        self.inner.load_checkpoint(t, a)
    }
    fn load_checkpoints(
        &self,
        keys: &[(String, String)],
    ) -> liveseg_store::Result<Vec<Option<CheckpointImage>>> {
        self.inner.load_checkpoints(keys)
    }
    fn checkpoint_index(&self) -> liveseg_store::Result<Vec<(String, String, Seq)>> {
        self.inner.checkpoint_index()
    }
    fn directory_lookup(&self, t: &str, c: &str) -> liveseg_store::Result<Option<String>> {
        self.inner.directory_lookup(t, c)
    }
    fn directory_all(&self, t: &str) -> liveseg_store::Result<Vec<(String, String)>> {
        self.inner.directory_all(t)
    }
    fn changes_after(
        &self,
        t: &str,
        after: u64,
        limit: usize,
    ) -> liveseg_store::Result<Vec<(u64, Vec<u8>)>> {
        self.inner.changes_after(t, after, limit)
    }
    fn change_head(&self, t: &str) -> liveseg_store::Result<u64> {
        self.inner.change_head(t)
    }
    fn watermark(&self) -> liveseg_store::Result<Seq> {
        self.inner.watermark()
    }
}

fn event(id: &str, user: &str) -> AppendItem {
    let json = serde_json::json!({
        "type": "track", "event": "Webinar Registered", "messageId": id,
        "userId": user, "context": {"groupId": "acme"}, "timestamp": "2026-11-30T10:00:00Z",
    });
    AppendItem {
        tenant: "t".into(),
        message_id: id.into(),
        payload: json.to_string().into_bytes(),
    }
}

/// Logs `items` and hands them to the runtime's dispatcher.
async fn append_and_dispatch(inner: &EmbeddedStore, runtime: &Runtime, items: &[AppendItem]) {
    inner.append(items, 0).unwrap();
    let entries = inner.read_after(0, 10).unwrap();
    runtime
        .dispatch
        .send(Command::Entries(entries, std::time::Instant::now(), 0))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_that_fails_is_kept_and_written_by_the_next_one() {
    // The store away for everything: the change log flush fails first.
    outage_then_recovery(false).await;
    // Only the checkpoint's commit fails, after its changes were written.
    outage_then_recovery(true).await;
}

/// A started runtime over the embedded store behind `Flaky`, tenant `t`
/// with one segment.
async fn flaky_runtime(
    dir: &std::path::Path,
    only_checkpoints: bool,
) -> (Arc<EmbeddedStore>, Arc<Flaky>, Arc<Runtime>) {
    let inner = Arc::new(EmbeddedStore::open(dir, StoreOptions::default()).unwrap());
    inner.create_tenant("t", "T", 0).unwrap();
    let segment = r#"{"key":"webinar","name":"W","entity":"contact","condition":{"events":{"event":{"kind":"custom","name":"Webinar Registered"},"within":"365d"}}}"#;
    inner.put_segment("t", "webinar", segment).unwrap();
    let store = Arc::new(Flaky {
        inner: inner.clone(),
        down: AtomicBool::new(false),
        only_checkpoints,
        refusing: AtomicBool::new(false),
    });
    let config = NodeConfig {
        data_dir: dir.to_path_buf(),
        ..NodeConfig::default()
    };
    let runtime = Runtime::start(RuntimeParts {
        shard: None,
        catalog: inner.clone(),
        state: store.clone(),
        log: inner.clone(),
        clock: crate::server::clock_for(&config),
        config: config.clone(),
        pool: Arc::new(ActorPool::start(1).unwrap()),
        valid: Arc::new(|| true),
        owns: Arc::new(|_| true),
    })
    .await
    .unwrap();
    (inner, store, runtime)
}

async fn outage_then_recovery(only_checkpoints: bool) {
    let dir = tempfile::tempdir().unwrap();
    let (inner, store, runtime) = flaky_runtime(dir.path(), only_checkpoints).await;

    // Two contacts join while the store is away: their changes, images and
    // directory entries cannot be written.
    store.down.store(true, Ordering::Release);
    append_and_dispatch(&inner, &runtime, &[event("m1", "ann"), event("m2", "bob")]).await;
    let failed = runtime.ask(Command::Checkpoint).await;
    assert!(failed.is_err(), "the checkpoint cannot have been written");
    assert!(
        runtime.is_valid(),
        "a store outage must not stop the runtime"
    );
    assert!(inner.checkpoint_index().unwrap().is_empty());
    let changes_during = inner.changes_after("t", 0, 10).unwrap().len();
    assert_eq!(changes_during, if only_checkpoints { 2 } else { 0 });

    // Back: the next checkpoint writes what the failed one carried (the
    // actors are clean by now, so only the kept images can).
    store.down.store(false, Ordering::Release);
    let written = runtime.ask(Command::Checkpoint).await.unwrap();
    let index = inner.checkpoint_index().unwrap();
    assert_eq!(written, index.len(), "{index:?}");
    assert_eq!(index, vec![("t".into(), "acme".into(), 2)]);
    assert_eq!(inner.watermark().unwrap(), 2);
    let mut directory = inner.directory_all("t").unwrap();
    directory.sort();
    assert_eq!(
        directory,
        vec![("ann".into(), "acme".into()), ("bob".into(), "acme".into())]
    );
    // Both entries made it to the change log, once each.
    let changes = inner.changes_after("t", 0, 10).unwrap();
    let texts: Vec<String> = changes
        .iter()
        .map(|(_, p)| String::from_utf8_lossy(p).into_owned())
        .collect();
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(
        texts.iter().any(|t| t.contains("\"ann\"")) && texts.iter().any(|t| t.contains("\"bob\""))
    );
    runtime.abort().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passivation_the_change_log_cannot_take_stops_no_actor() {
    let dir = tempfile::tempdir().unwrap();
    let (inner, store, runtime) = flaky_runtime(dir.path(), false).await;
    // Down before the change reaches the outbox, so it is owed.
    store.down.store(true, Ordering::Release);
    append_and_dispatch(&inner, &runtime, &[event("m1", "ann")]).await;
    // Every actor is idle before this cutoff.
    let everyone = i64::MAX / 2;
    let refused = runtime.ask(|tx| Command::Passivate(everyone, tx)).await;
    assert!(refused.is_err(), "the change log is away: {refused:?}");
    assert!(runtime.is_valid(), "nothing was lost: the runtime goes on");
    assert_eq!(
        runtime.registry.resident(None).len(),
        1,
        "the actor still holds its state"
    );

    store.down.store(false, Ordering::Release);
    let passivated = runtime.ask(|tx| Command::Passivate(everyone, tx)).await;
    assert_eq!(passivated.ok(), Some(1));
    assert!(runtime.registry.resident(None).is_empty());
    assert_eq!(
        inner.checkpoint_index().unwrap(),
        vec![("t".into(), "acme".into(), 1)]
    );
    assert_eq!(inner.changes_after("t", 0, 10).unwrap().len(), 1);
    runtime.abort().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_refuses_writes_stops_the_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let (inner, store, runtime) = flaky_runtime(dir.path(), false).await;
    store.refusing.store(true, Ordering::Release);
    append_and_dispatch(&inner, &runtime, &[event("m1", "ann")]).await;
    assert!(runtime.ask(Command::Checkpoint).await.is_err());
    // Not kept for later: the shard must reload where writes can land.
    let mut health = runtime.health();
    let failed = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        health.wait_for(|h| matches!(h, crate::runtime::Health::Failed(_))),
    )
    .await
    // Not the guard: it holds the health lock that abort() writes.
    .is_ok_and(|r| r.is_ok());
    assert!(failed, "the runtime must stop");
    runtime.abort().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_definition_the_catalog_took_but_the_runtime_never_installed_is_seen() {
    let dir = tempfile::tempdir().unwrap();
    let (inner, _store, runtime) = flaky_runtime(dir.path(), false).await;
    assert_eq!(runtime.differs_from_catalog(inner.as_ref()).unwrap(), None);
    // As when a client's write reaches a stalled Redis after it timed out:
    // stored, never installed. A resumed shard must not go on without it.
    let pricing = r#"{"key":"pricing","name":"P","entity":"contact","condition":{"events":{"event":{"kind":"page"},"within":"30d"}}}"#;
    inner.put_segment("t", "pricing", pricing).unwrap();
    assert_eq!(
        runtime.differs_from_catalog(inner.as_ref()).unwrap(),
        Some("t".to_string())
    );
    runtime.abort().await;
}
