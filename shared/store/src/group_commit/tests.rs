#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use super::*;
use crate::embedded::{EmbeddedStore, StoreOptions};
use crate::traits::Seq;

/// Wraps a real log, counts `append` calls, and can slow them down (so that
/// requests pile up and get grouped) or fail them.
struct CountingLog {
    inner: EmbeddedStore,
    calls: AtomicUsize,
    delay: Duration,
    fail: AtomicBool,
    /// When set, `append` waits until it is cleared (to hold the thread busy).
    hold: AtomicBool,
    entered: AtomicUsize,
}

impl CountingLog {
    fn new(dir: &std::path::Path, delay: Duration) -> Arc<Self> {
        Arc::new(CountingLog {
            inner: EmbeddedStore::open(dir, StoreOptions::default()).unwrap(),
            calls: AtomicUsize::new(0),
            delay,
            fail: AtomicBool::new(false),
            hold: AtomicBool::new(false),
            entered: AtomicUsize::new(0),
        })
    }
}

impl EventLog for CountingLog {
    fn append(&self, items: &[AppendItem], now_ms: i64) -> Result<Vec<AppendOutcome>> {
        self.entered.fetch_add(1, Ordering::SeqCst);
        while self.hold.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        self.calls.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(self.delay);
        if self.fail.load(Ordering::SeqCst) {
            return Err(StoreError::Internal("injected failure".to_owned()));
        }
        self.inner.append(items, now_ms)
    }
    fn read_after(&self, after: Seq, limit: usize) -> Result<Vec<LogEntry>> {
        self.inner.read_after(after, limit)
    }
    fn head(&self) -> Result<Seq> {
        self.inner.head()
    }
    fn prune_dedupe(&self, older_than_ms: i64) -> Result<usize> {
        self.inner.prune_dedupe(older_than_ms)
    }
}

fn item(tenant: &str, id: &str) -> AppendItem {
    AppendItem {
        tenant: tenant.to_owned(),
        message_id: id.to_owned(),
        payload: format!("payload-{tenant}-{id}").into_bytes(),
    }
}

/// Poll `ready` until it holds; fail (rather than hang) after 10 s.
async fn wait_until(mut ready: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !ready() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

type Seen = Arc<Mutex<Vec<LogEntry>>>;

fn recorder() -> (Seen, CommitCallback) {
    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let cb: CommitCallback = Box::new(move |entries: &[LogEntry]| {
        sink.lock().unwrap().extend_from_slice(entries);
    });
    (seen, cb)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_are_grouped_and_answered_correctly() {
    let tmp = tempfile::tempdir().unwrap();
    let log = CountingLog::new(tmp.path(), Duration::from_millis(5));
    let (seen, cb) = recorder();
    let gc = GroupCommitter::start(log.clone(), GroupCommitOptions::default(), cb).unwrap();

    const TASKS: usize = 50;
    let barrier = Arc::new(tokio::sync::Barrier::new(TASKS));
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let gc = gc.clone();
        let barrier = Arc::clone(&barrier);
        handles.push(tokio::spawn(async move {
            barrier.wait().await;
            let tenant = format!("tenant-{}", t % 3);
            // Two new ids plus a repeat of the first within the same request.
            let items = vec![
                item(&tenant, &format!("m{t}-a")),
                item(&tenant, &format!("m{t}-b")),
                item(&tenant, &format!("m{t}-a")),
            ];
            let out = gc.append(items, 1_000).await.unwrap();
            (t, out)
        }));
    }

    let mut accepted_seqs = Vec::new();
    for h in handles {
        let (t, out) = h.await.unwrap();
        assert_eq!(out.len(), 3, "task {t}");
        let (AppendOutcome::Accepted { seq: a }, AppendOutcome::Accepted { seq: b }) =
            (out[0], out[1])
        else {
            panic!("task {t}: expected two accepts, got {out:?}");
        };
        assert_eq!(out[2], AppendOutcome::Duplicate { seq: a }, "task {t}");
        assert!(b > a, "task {t}: seqs follow item order");
        accepted_seqs.extend([a, b]);
    }
    accepted_seqs.sort_unstable();
    let expected: Vec<Seq> = (1..=(2 * TASKS as u64)).collect();
    assert_eq!(accepted_seqs, expected, "every accepted item once, gapless");

    // Each entry appears once in the log, with its own payload.
    let entries = log.read_after(0, 10_000).unwrap();
    assert_eq!(entries.len(), 2 * TASKS);
    let mut ids: Vec<Vec<u8>> = entries.iter().map(|e| e.payload.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 2 * TASKS);

    // The callback saw exactly the accepted entries, once each, in seq order.
    assert_eq!(*seen.lock().unwrap(), entries);

    let calls = log.calls.load(Ordering::SeqCst);
    assert!(
        calls < TASKS,
        "expected grouping, got {calls} appends for {TASKS} requests"
    );
    gc.shutdown();
}

#[tokio::test]
async fn duplicates_across_requests_in_one_group() {
    let tmp = tempfile::tempdir().unwrap();
    let log = CountingLog::new(tmp.path(), Duration::ZERO);
    let (seen, cb) = recorder();
    let gc = GroupCommitter::start(log.clone(), GroupCommitOptions::default(), cb).unwrap();

    // Hold the thread busy so both requests below land in the same group.
    log.hold.store(true, Ordering::SeqCst);
    let first = tokio::spawn({
        let gc = gc.clone();
        async move { gc.append(vec![item("t", "warmup")], 1).await }
    });
    wait_until(|| log.entered.load(Ordering::SeqCst) > 0).await;
    let a = tokio::spawn({
        let gc = gc.clone();
        async move { gc.append(vec![item("t", "x")], 2).await }
    });
    wait_until(|| lock(&gc.inner.tx).as_ref().unwrap().capacity() == 1023).await;
    let b = tokio::spawn({
        let gc = gc.clone();
        async move { gc.append(vec![item("t", "x"), item("t", "y")], 3).await }
    });
    wait_until(|| lock(&gc.inner.tx).as_ref().unwrap().capacity() == 1022).await;
    log.hold.store(false, Ordering::SeqCst);

    assert_eq!(
        first.await.unwrap().unwrap(),
        vec![AppendOutcome::Accepted { seq: 1 }]
    );
    assert_eq!(
        a.await.unwrap().unwrap(),
        vec![AppendOutcome::Accepted { seq: 2 }]
    );
    assert_eq!(
        b.await.unwrap().unwrap(),
        vec![
            AppendOutcome::Duplicate { seq: 2 },
            AppendOutcome::Accepted { seq: 3 }
        ]
    );
    assert_eq!(log.calls.load(Ordering::SeqCst), 2);
    let seqs: Vec<Seq> = seen.lock().unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    gc.shutdown();
}

#[tokio::test]
async fn full_queue_is_overloaded() {
    let tmp = tempfile::tempdir().unwrap();
    let log = CountingLog::new(tmp.path(), Duration::ZERO);
    let gc = GroupCommitter::start(
        log.clone(),
        GroupCommitOptions {
            max_batch_items: 100,
            queue_capacity: 1,
        },
        Box::new(|_| {}),
    )
    .unwrap();

    log.hold.store(true, Ordering::SeqCst);
    let busy = tokio::spawn({
        let gc = gc.clone();
        async move { gc.append(vec![item("t", "1")], 1).await }
    });
    // Wait until the thread has taken request 1 and is stuck in append.
    wait_until(|| log.entered.load(Ordering::SeqCst) > 0).await;
    let queued = tokio::spawn({
        let gc = gc.clone();
        async move { gc.append(vec![item("t", "2")], 1).await }
    });
    wait_until(|| lock(&gc.inner.tx).as_ref().unwrap().capacity() == 0).await;
    let err = gc.append(vec![item("t", "3")], 1).await.unwrap_err();
    assert!(matches!(err, StoreError::Overloaded), "got {err:?}");

    log.hold.store(false, Ordering::SeqCst);
    assert_eq!(
        busy.await.unwrap().unwrap(),
        vec![AppendOutcome::Accepted { seq: 1 }]
    );
    assert_eq!(
        queued.await.unwrap().unwrap(),
        vec![AppendOutcome::Accepted { seq: 2 }]
    );
    // Nothing of the rejected request was written.
    assert_eq!(log.head().unwrap(), 2);
}

#[tokio::test]
async fn failed_group_fails_every_request_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let log = CountingLog::new(tmp.path(), Duration::ZERO);
    let (seen, cb) = recorder();
    let gc = GroupCommitter::start(log.clone(), GroupCommitOptions::default(), cb).unwrap();

    log.fail.store(true, Ordering::SeqCst);
    let mut handles = Vec::new();
    for i in 0..5 {
        let gc = gc.clone();
        handles.push(tokio::spawn(async move {
            gc.append(vec![item("t", &format!("m{i}"))], 1).await
        }));
    }
    for h in handles {
        let err = h.await.unwrap().unwrap_err();
        assert!(err.to_string().contains("injected failure"), "got {err}");
    }
    assert_eq!(log.head().unwrap(), 0);
    assert!(seen.lock().unwrap().is_empty());

    // The committer keeps working after a failed group.
    log.fail.store(false, Ordering::SeqCst);
    let out = gc.append(vec![item("t", "m0")], 2).await.unwrap();
    assert_eq!(out, vec![AppendOutcome::Accepted { seq: 1 }]);
}

#[tokio::test]
async fn shutdown_drains_queue_then_rejects() {
    let tmp = tempfile::tempdir().unwrap();
    let log = CountingLog::new(tmp.path(), Duration::ZERO);
    let (seen, cb) = recorder();
    let gc = GroupCommitter::start(
        log.clone(),
        GroupCommitOptions {
            max_batch_items: 2,
            queue_capacity: 64,
        },
        cb,
    )
    .unwrap();

    log.hold.store(true, Ordering::SeqCst);
    let spawn_one = |i: usize| {
        let gc = gc.clone();
        tokio::spawn(async move { gc.append(vec![item("t", &format!("m{i}"))], 1).await })
    };
    // Request 0 occupies the (held) thread; 1..10 then wait in the queue.
    let mut handles = vec![spawn_one(0)];
    wait_until(|| log.entered.load(Ordering::SeqCst) > 0).await;
    handles.extend((1..10).map(spawn_one));
    wait_until(|| lock(&gc.inner.tx).as_ref().unwrap().capacity() == 64 - 9).await;
    log.hold.store(false, Ordering::SeqCst);
    // Blocking join on the test's runtime thread is fine here.
    gc.shutdown();
    gc.shutdown();

    for h in handles {
        h.await.unwrap().unwrap();
    }
    assert_eq!(log.head().unwrap(), 10);
    assert_eq!(seen.lock().unwrap().len(), 10);
    // max_batch_items = 2: at least 5 groups for 10 single-item requests.
    assert!(log.calls.load(Ordering::SeqCst) >= 5);
    let err = gc.append(vec![item("t", "late")], 1).await.unwrap_err();
    assert!(matches!(err, StoreError::Closed));
}

#[tokio::test]
async fn panicking_callback_does_not_fail_the_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let log = CountingLog::new(tmp.path(), Duration::ZERO);
    let gc = GroupCommitter::start(
        log.clone(),
        GroupCommitOptions::default(),
        Box::new(|_| panic!("callback bug")),
    )
    .unwrap();
    let out = gc.append(vec![item("t", "a")], 1).await.unwrap();
    assert_eq!(out, vec![AppendOutcome::Accepted { seq: 1 }]);
    let out = gc.append(vec![item("t", "b")], 1).await.unwrap();
    assert_eq!(out, vec![AppendOutcome::Accepted { seq: 2 }]);
}

#[tokio::test]
async fn empty_request_and_drop_joins_thread() {
    let tmp = tempfile::tempdir().unwrap();
    let log = CountingLog::new(tmp.path(), Duration::ZERO);
    let gc = GroupCommitter::start(log.clone(), GroupCommitOptions::default(), Box::new(|_| {}))
        .unwrap();
    assert!(gc.append(Vec::new(), 1).await.unwrap().is_empty());
    assert_eq!(log.calls.load(Ordering::SeqCst), 0);
    gc.append(vec![item("t", "a")], 1).await.unwrap();
    drop(gc);
    // The thread held the only other reference to the log; after the join it is released.
    assert_eq!(Arc::strong_count(&log), 1);
}
