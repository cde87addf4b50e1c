//! The inference queue with the real model: requests that arrive while a
//! forward pass runs are served together in the next pass, each gets
//! exactly its own vectors back, and a batch budget smaller than a request
//! splits it over several passes without changing any result.

use liveseg_model::Embedder;
use liveseg_model::queue::{InferenceQueue, QueueConfig};
use std::path::PathBuf;
use std::sync::Arc;

fn embedder() -> Arc<Embedder> {
    let dir = std::env::var_os("LIVESEG_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/all-MiniLM-L6-v2")
        });
    Arc::new(Embedder::load(&dir).unwrap_or_else(|e| panic!("{e}")))
}

fn ids(e: &Embedder, text: &str) -> Vec<u32> {
    e.tokenize(&[text]).expect("tokenize")[0].ids.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_requests_share_a_forward_pass_and_get_their_own_answers() {
    let e = embedder();
    let queue = InferenceQueue::start(e.clone(), QueueConfig::default()).expect("queue");
    let long = "pipeline review ".repeat(200);
    let shorts: Vec<String> = (0..10)
        .map(|i| format!("subject line number {i}"))
        .collect();
    let first = {
        let q = queue.clone();
        let seqs = vec![ids(&e, &long); 4];
        tokio::spawn(async move { q.embed(seqs).await })
    };
    let mut rest = Vec::new();
    for s in &shorts {
        let q = queue.clone();
        let seqs = vec![ids(&e, s)];
        rest.push(tokio::spawn(async move { q.embed(seqs).await }));
    }
    let first = first.await.expect("join").expect("embed");
    assert_eq!(first.len(), 4);
    for (s, handle) in shorts.iter().zip(rest) {
        let got = handle.await.expect("join").expect("embed");
        assert_eq!(got, e.embed(&[s.as_str()]).expect("alone"), "{s}");
    }
    assert!(
        queue.forwards() < 1 + shorts.len(),
        "{} forward passes for {} requests: nothing was batched",
        queue.forwards(),
        1 + shorts.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_the_batch_budget_is_split_without_changing_results() {
    let e = embedder();
    let config = QueueConfig {
        max_batch_tokens: 300,
        ..QueueConfig::default()
    };
    let queue = InferenceQueue::start(e.clone(), config).expect("queue");
    let texts: Vec<String> = (0..6)
        .map(|i| format!("{} {i}", "renewal reminder for the annual plan ".repeat(12)))
        .collect();
    let seqs: Vec<Vec<u32>> = texts.iter().map(|t| ids(&e, t)).collect();
    let tokens: usize = seqs.iter().map(Vec::len).sum();
    let got = queue.embed(seqs).await.expect("embed");
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    assert_eq!(got, e.embed(&refs).expect("direct"));
    assert!(
        queue.forwards() >= tokens.div_ceil(300),
        "{} passes for {tokens} tokens at 300 per pass",
        queue.forwards()
    );
}
