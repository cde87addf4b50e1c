//! Multi-head self-attention over packed sequences. Each (text, head) pair
//! is one job: scores = Q·Kᵀ read straight out of the fused QKV rows
//! (strided views, no transpose or copy), softmax in place, then
//! scores·V. The jobs run in parallel on rayon's pool; each writes its own
//! slice of a head-major scratch buffer, which is then scattered into the
//! token-major context. A job's arithmetic does not depend on which other
//! texts share the batch.
//!
//! The attention scale 1/sqrt(head_dim) is already folded into Q's weights.

use crate::error::Result;
use crate::gemm_f32::{self, MatRef, Threads};
use crate::kernels;
use rayon::prelude::*;
use std::cell::RefCell;

/// A text's rows in the packed batch.
#[derive(Debug, Clone, Copy)]
pub struct Span {
    pub start: usize,
    pub len: usize,
}

/// The shape of the attention block.
#[derive(Debug, Clone, Copy)]
pub struct Heads {
    pub count: usize,
    pub dim: usize,
}

thread_local! {
    /// One (len x len) score matrix per worker thread, kept across calls so
    /// a long text does not allocate (and page-fault) a fresh 256 KiB each
    /// time.
    static SCORES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

struct Job<'a> {
    span: Span,
    head: usize,
    /// This (text, head)'s `(len, dim)` output.
    out: &'a mut [f32],
}

/// `ctx` (tokens x hidden) from `qkv` (tokens x 3·hidden, Q|K|V).
/// `per_head` is scratch of at least tokens x hidden values.
pub fn attention(
    qkv: &[f32],
    spans: &[Span],
    heads: Heads,
    per_head: &mut [f32],
    ctx: &mut [f32],
) -> Result<()> {
    let hidden = heads.count * heads.dim;
    let mut jobs = Vec::with_capacity(spans.len() * heads.count);
    let mut rest = &mut per_head[..];
    for span in spans {
        for head in 0..heads.count {
            let (out, tail) = std::mem::take(&mut rest).split_at_mut(span.len * heads.dim);
            rest = tail;
            jobs.push(Job {
                span: *span,
                head,
                out,
            });
        }
    }
    jobs.into_par_iter()
        .map(|job| one_head(qkv, hidden, heads.dim, job))
        .collect::<Result<()>>()?;
    // Scatter: head-major per text -> token-major rows.
    for span in spans {
        let base = span.start * hidden;
        for head in 0..heads.count {
            let src = &per_head[base + head * span.len * heads.dim..][..span.len * heads.dim];
            for (i, from) in src.chunks_exact(heads.dim).enumerate() {
                let at = base + i * hidden + head * heads.dim;
                ctx[at..at + heads.dim].copy_from_slice(from);
            }
        }
    }
    Ok(())
}

fn one_head(qkv: &[f32], hidden: usize, dim: usize, job: Job<'_>) -> Result<()> {
    let (n, stride) = (job.span.len, 3 * hidden);
    let rows = &qkv[job.span.start * stride..];
    let col = job.head * dim;
    let q = MatRef::new(&rows[col..], n, dim, stride, 1)?;
    let k_t = MatRef::new(&rows[hidden + col..], dim, n, 1, stride)?;
    let v = MatRef::new(&rows[2 * hidden + col..], n, dim, stride, 1)?;
    SCORES.with(|cell| {
        let mut scores = cell.borrow_mut();
        if scores.len() < n * n {
            scores.resize(n * n, 0.0);
        }
        let scores = &mut scores[..n * n];
        gemm_f32::matmul(scores, n, q, k_t, Threads::One)?;
        kernels::softmax_rows(scores, n);
        gemm_f32::matmul(
            job.out,
            dim,
            MatRef::row_major(scores, n, n)?,
            v,
            Threads::One,
        )
    })
}
