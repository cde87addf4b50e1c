//! The inference queue: one OS thread owns the model and runs every forward
//! pass; requests reach it through a bounded queue, each with its own reply
//! channel. The thread batches dynamically: it takes whatever requests are
//! waiting, up to a token budget, never waiting to fill a batch, and splits
//! large requests over several forward passes of at most the budget.
//!
//! Admission control counts queued tokens: a request that would push the
//! queue past its limit is refused at once (`Overloaded`, which the gRPC
//! layer answers with RESOURCE_EXHAUSTED) instead of waiting behind work
//! the thread cannot finish in time. An empty queue admits any request, so
//! a single large one is never refused forever.
//!
//! Request spans cross the queue: each batch's span follows from the spans
//! of the requests it serves.

use crate::embedder::Embedder;
use crate::error::{ModelError, Result};
use liveseg_telemetry::names;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// Tokens in one forward pass (texts are packed, so this bounds the
    /// matrix rows of the dense layers).
    pub max_batch_tokens: usize,
    /// Texts in one forward pass.
    pub max_batch_texts: usize,
    /// Tokens admitted but not yet answered.
    pub max_queued_tokens: usize,
    /// Requests admitted but not yet taken by the thread.
    pub max_queued_requests: usize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        // Batching gains little on 2 CPU cores (research note §0.4): a
        // moderate budget keeps the latency of short requests low.
        QueueConfig {
            max_batch_tokens: 2048,
            max_batch_texts: 64,
            max_queued_tokens: 64 * 1024,
            max_queued_requests: 1024,
        }
    }
}

struct Job {
    seqs: Vec<Vec<u32>>,
    tokens: usize,
    reply: oneshot::Sender<Result<Vec<Vec<f32>>>>,
    span: tracing::Span,
    queued_at: Instant,
}

/// The handle callers use; cheap to clone.
#[derive(Clone)]
pub struct InferenceQueue {
    tx: mpsc::Sender<Job>,
    queued_tokens: Arc<AtomicUsize>,
    /// Forward passes run so far (batching is visible as fewer passes
    /// than requests).
    forwards: Arc<AtomicUsize>,
    config: QueueConfig,
}

impl InferenceQueue {
    /// Starts the inference thread, which owns `embedder` until every
    /// handle is dropped.
    pub fn start(embedder: Arc<Embedder>, config: QueueConfig) -> Result<InferenceQueue> {
        let (tx, rx) = mpsc::channel(config.max_queued_requests.max(1));
        let queued_tokens = Arc::new(AtomicUsize::new(0));
        let forwards = Arc::new(AtomicUsize::new(0));
        let worker = Worker {
            embedder,
            rx,
            queued_tokens: queued_tokens.clone(),
            forwards: forwards.clone(),
            config: config.clone(),
        };
        std::thread::Builder::new()
            .name("inference".into())
            .spawn(move || worker.run())
            .map_err(|e| ModelError::Load(format!("starting the inference thread: {e}")))?;
        Ok(InferenceQueue {
            tx,
            queued_tokens,
            forwards,
            config,
        })
    }

    /// Forward passes run so far.
    pub fn forwards(&self) -> usize {
        self.forwards.load(Ordering::Acquire)
    }

    /// Tokens admitted and not yet answered.
    pub fn queued_tokens(&self) -> usize {
        self.queued_tokens.load(Ordering::Acquire)
    }

    /// Embeds tokenized texts; refused with `Overloaded` when the queue is
    /// full.
    pub async fn embed(&self, seqs: Vec<Vec<u32>>) -> Result<Vec<Vec<f32>>> {
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        let tokens: usize = seqs.iter().map(Vec::len).sum();
        let limit = self.config.max_queued_tokens;
        let before = self.queued_tokens.fetch_add(tokens, Ordering::AcqRel);
        if before > 0 && before + tokens > limit {
            self.queued_tokens.fetch_sub(tokens, Ordering::AcqRel);
            metrics::counter!(names::MODEL_REJECTED_TOTAL).increment(1);
            return Err(ModelError::Overloaded {
                queued_tokens: before,
                limit,
            });
        }
        let (reply, answer) = oneshot::channel();
        let job = Job {
            seqs,
            tokens,
            reply,
            span: tracing::Span::current(),
            queued_at: Instant::now(),
        };
        if let Err(e) = self.tx.try_send(job) {
            self.queued_tokens.fetch_sub(tokens, Ordering::AcqRel);
            return Err(match e {
                mpsc::error::TrySendError::Full(_) => {
                    metrics::counter!(names::MODEL_REJECTED_TOTAL).increment(1);
                    ModelError::Overloaded {
                        queued_tokens: before,
                        limit,
                    }
                }
                mpsc::error::TrySendError::Closed(_) => ModelError::Stopped,
            });
        }
        answer.await.map_err(|_| ModelError::Stopped)?
    }
}

struct Worker {
    embedder: Arc<Embedder>,
    rx: mpsc::Receiver<Job>,
    queued_tokens: Arc<AtomicUsize>,
    forwards: Arc<AtomicUsize>,
    config: QueueConfig,
}

/// Where one text of a round goes back to: (job, index in the job).
type Slot = (usize, usize);

impl Worker {
    fn run(mut self) {
        while let Some(first) = self.rx.blocking_recv() {
            let mut jobs = vec![first];
            let mut tokens = jobs[0].tokens;
            // Take what is waiting, without waiting for more.
            while tokens < self.config.max_batch_tokens {
                match self.rx.try_recv() {
                    Ok(job) => {
                        tokens += job.tokens;
                        jobs.push(job);
                    }
                    Err(_) => break,
                }
            }
            self.round(jobs);
        }
    }

    /// Serves the jobs of one round in forward passes of at most the
    /// budget, then answers each job.
    fn round(&self, jobs: Vec<Job>) {
        let span = tracing::info_span!("embed_batch", jobs = jobs.len());
        for job in &jobs {
            span.follows_from(job.span.id());
            metrics::histogram!(names::MODEL_QUEUE_WAIT_SECONDS)
                .record(job.queued_at.elapsed().as_secs_f64());
        }
        let _entered = span.enter();
        let mut results: Vec<Result<Vec<Vec<f32>>>> = jobs
            .iter()
            .map(|j| Ok(Vec::with_capacity(j.seqs.len())))
            .collect();
        let slots: Vec<Slot> = jobs
            .iter()
            .enumerate()
            .flat_map(|(j, job)| (0..job.seqs.len()).map(move |i| (j, i)))
            .collect();
        let mut start = 0;
        while start < slots.len() {
            let mut end = start;
            let mut batch_tokens = 0;
            while end < slots.len() && end - start < self.config.max_batch_texts {
                let (j, i) = slots[end];
                let len = jobs[j].seqs[i].len();
                if end > start && batch_tokens + len > self.config.max_batch_tokens {
                    break;
                }
                batch_tokens += len;
                end += 1;
            }
            let batch = &slots[start..end];
            let seqs: Vec<&[u32]> = batch
                .iter()
                .map(|&(j, i)| jobs[j].seqs[i].as_slice())
                .collect();
            let t0 = Instant::now();
            let out = self.embedder.embed_tokens(&seqs);
            self.forwards.fetch_add(1, Ordering::AcqRel);
            metrics::histogram!(names::MODEL_FORWARD_SECONDS).record(t0.elapsed().as_secs_f64());
            metrics::histogram!(names::MODEL_BATCH_TOKENS).record(batch_tokens as f64);
            metrics::counter!(names::MODEL_TEXTS_TOTAL).increment(seqs.len() as u64);
            match out {
                Ok(vectors) => {
                    // Slots are in job order, so each job's vectors arrive
                    // in its own order.
                    for (&(j, _), v) in batch.iter().zip(vectors) {
                        if let Ok(r) = &mut results[j] {
                            r.push(v);
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "forward pass failed");
                    for &(j, _) in batch {
                        results[j] = Err(ModelError::Inference(e.to_string()));
                    }
                }
            }
            start = end;
        }
        for (job, result) in jobs.into_iter().zip(results) {
            self.queued_tokens.fetch_sub(job.tokens, Ordering::AcqRel);
            // The caller may have gone away (cancelled): nothing to do.
            let _ = job.reply.send(result);
        }
    }
}
