//! Exact top-N similarity search, for lookalikes and "contacts like this one".
//!
//! Everything here is a brute-force scan over a row-major `f32` matrix that
//! keeps the best `n` in a bounded min-heap ([`TopN`]): memory is O(n) on top
//! of the rows, never O(rows²), so a 1M × 64 scan needs no extra buffers.
//! [`TopN`] is generic over its key and mergeable, which is how the node's
//! scatter-gather works: each account actor (or shard) scans its own rows
//! into a `TopN<ContactId>`, and the caller merges the partial results; the
//! merge equals a global scan because ties are always broken by the lower key.
//!
//! Scores that are not finite (a NaN or infinite feature, a cosine against a
//! zero row) mean a broken or empty row, not a great match: such rows are
//! skipped, never returned.
//!
//! ## When an approximate index takes over
//!
//! The research note (model-service §9) measured brute force at ~88 ms per
//! query for 1M × 384 f32 on 2 cores: a single query is memory-bound (~17.5
//! GB/s), so the cost is the bytes scanned. Many queries at once should be
//! batched as one GEMM (~5 ms per query for 256 queries), which is the right
//! shape for offline lookalike expansion; `SeedScoring::Centroid` already
//! folds a whole seed list into one query. An HNSW index (`hnsw_rs`,
//! `usearch`; recall@10 ≥ 0.99 at ef = 32–64 on clustered data) pays off for
//! *online* top-k beyond ~1M rows or at many queries per second, at the cost
//! of a slow build (~1,155 inserts/s, ~15 min for 1M) and approximate
//! results. Below that, this exact scan is simpler and has nothing to
//! rebuild when contacts change.
//!
//! Measured here (the `#[ignore]`d timing test, 100k × 64, one core of a
//! shared 2-core machine, no `target-cpu` flags): ~5 ms per query for dot,
//! ~7.5 ms for cosine, so ~50–75 ms for 1M × 64. `KNearestSeeds` costs one
//! comparison per seed per candidate (~0.45 s for 100 seeds over 100k): fine
//! offline, too slow online; there the centroid, or several centroids from
//! `kmeans` over the seeds, is the tool.

use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Errors from malformed inputs; each names the parameter at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NeighbourError {
    #[error("dim must be at least 1")]
    ZeroDim,
    #[error("{what} has {len} values, not a multiple of dim = {dim} (ragged input)")]
    Ragged {
        what: &'static str,
        len: usize,
        dim: usize,
    },
    #[error("query has {len} values but dim = {dim}")]
    QueryLength { len: usize, dim: usize },
    #[error("query is all zeros: cosine similarity to it is undefined")]
    ZeroQuery,
    #[error("seed rows: non-finite value at row {row}, column {column}")]
    NonFiniteSeed { row: usize, column: usize },
    #[error("seed rows: no usable seed (none given, or all zero under cosine)")]
    NoUsableSeeds,
    #[error("seed scoring: KNearestSeeds(k) needs k >= 1")]
    ZeroSeedK,
    #[error("dim = {given} does not match the seed profile's dim = {profile}")]
    DimMismatch { profile: usize, given: usize },
}

/// How a candidate row is compared with a query row. Higher is more similar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Similarity {
    /// Cosine of the angle; rows are normalised on the fly, so they need not
    /// be unit length. A zero row has no direction and is skipped.
    Cosine,
    /// Raw inner product: use when rows are already unit length (it is then
    /// the cosine without the norm computation) or magnitude should count.
    Dot,
    /// Minus the Euclidean distance, so that "higher is better" holds.
    NegEuclidean,
}

/// One search hit: the row index within the scanned matrix and its score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Neighbour {
    pub index: usize,
    pub score: f32,
}

/// A heap entry. Its `Ord` says which entry is *worse*: the heap is a
/// max-heap, so the worst of the kept entries sits on top, ready to evict.
#[derive(Debug, Clone)]
struct Entry<K> {
    score: f32,
    key: K,
}

impl<K: Ord> Entry<K> {
    /// Better = higher score, then lower key. Scores are finite by the time
    /// they get here, so `partial_cmp` never fails; `-0.0 == 0.0` is a tie.
    fn goodness(&self, other: &Self) -> Ordering {
        self.score
            .partial_cmp(&other.score)
            .unwrap_or(Ordering::Equal)
            .then_with(|| other.key.cmp(&self.key))
    }
}

impl<K: Ord> PartialEq for Entry<K> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl<K: Ord> Eq for Entry<K> {}
impl<K: Ord> PartialOrd for Entry<K> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<K: Ord> Ord for Entry<K> {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: the worse entry is the greater one.
        other.goodness(self)
    }
}

/// The best `capacity` (key, score) pairs seen so far: a bounded min-heap.
///
/// Deterministic whatever the push or merge order: higher score first, equal
/// scores by lower key, non-finite scores dropped. So shards can each keep a
/// `TopN` and the caller [`merge`](TopN::merge)s them into the global answer.
#[derive(Debug, Clone)]
pub struct TopN<K> {
    capacity: usize,
    heap: BinaryHeap<Entry<K>>,
}

impl<K: Ord + Clone> TopN<K> {
    pub fn new(capacity: usize) -> Self {
        // Capped so a huge `n` from a request cannot pre-allocate gigabytes.
        Self {
            capacity,
            heap: BinaryHeap::with_capacity(capacity.min(4096) + 1),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Offers one candidate; returns whether it is (for now) kept.
    pub fn push(&mut self, key: K, score: f32) -> bool {
        if !score.is_finite() || self.capacity == 0 {
            return false;
        }
        let entry = Entry { score, key };
        if self.heap.len() < self.capacity {
            self.heap.push(entry);
            return true;
        }
        match self.heap.peek() {
            // `worst > entry` in heap order means the new entry is better.
            Some(worst) if *worst > entry => {
                self.heap.pop();
                self.heap.push(entry);
                true
            }
            _ => false,
        }
    }

    /// The score a new candidate must beat once the heap is full.
    pub fn threshold(&self) -> Option<f32> {
        (self.heap.len() == self.capacity)
            .then(|| self.heap.peek().map(|e| e.score))
            .flatten()
    }

    /// Folds another partial result in. Keeps `self`'s capacity.
    pub fn merge(&mut self, other: TopN<K>) {
        for e in other.heap {
            self.push(e.key, e.score);
        }
    }

    /// Best first.
    pub fn into_sorted_vec(self) -> Vec<(K, f32)> {
        // `into_sorted_vec` is ascending in heap order, i.e. best first here.
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|e| (e.key, e.score))
            .collect()
    }
}

impl TopN<usize> {
    pub fn into_neighbours(self) -> Vec<Neighbour> {
        self.into_sorted_vec()
            .into_iter()
            .map(|(index, score)| Neighbour { index, score })
            .collect()
    }
}

/// Inner product with eight independent accumulators over fixed-size
/// `[f32; 8]` blocks: the compiler may not reorder float adds, so one
/// running sum would stay scalar, and fixed-size blocks drop bounds checks.
/// Callers pass equal lengths.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let (ca, ra) = a.as_chunks::<8>();
    let (cb, rb) = b.as_chunks::<8>();
    let mut acc = [0f32; 8];
    for (x, y) in ca.iter().zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// Squared Euclidean distance, vectorised like [`dot`].
pub(crate) fn sq_dist(a: &[f32], b: &[f32]) -> f32 {
    let (ca, ra) = a.as_chunks::<8>();
    let (cb, rb) = b.as_chunks::<8>();
    let mut acc = [0f32; 8];
    for (x, y) in ca.iter().zip(cb) {
        for i in 0..8 {
            let d = x[i] - y[i];
            acc[i] += d * d;
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| (x - y) * (x - y)).sum();
    acc.iter().sum::<f32>() + tail
}

/// A query prepared once for a scan: for cosine it is normalised up front so
/// each row costs one pass (dot and norm together).
struct Prepared<'a> {
    query: std::borrow::Cow<'a, [f32]>,
    similarity: Similarity,
}

impl<'a> Prepared<'a> {
    fn new(query: &'a [f32], similarity: Similarity) -> Result<Self, NeighbourError> {
        let query = match similarity {
            Similarity::Cosine => {
                let norm = dot(query, query).sqrt();
                if norm == 0.0 {
                    return Err(NeighbourError::ZeroQuery);
                }
                query.iter().map(|v| v / norm).collect::<Vec<_>>().into()
            }
            _ => query.into(),
        };
        Ok(Self { query, similarity })
    }

    /// NaN for an undefined score (e.g. cosine with a zero row); the heap drops it.
    fn score(&self, row: &[f32]) -> f32 {
        match self.similarity {
            // Two passes over the row (norm, then dot): a fused single-pass
            // loop measured ~40% slower here (it did not vectorise), and the
            // second pass reads a 256-byte row straight from L1.
            Similarity::Cosine => self.score_with_norm(row, dot(row, row).sqrt()),
            _ => self.score_with_norm(row, 1.0),
        }
    }

    /// `score` with the row's L2 norm supplied (read under cosine only), for
    /// a caller that scores one row against many queries: one norm, not many.
    fn score_with_norm(&self, row: &[f32], row_norm: f32) -> f32 {
        match self.similarity {
            Similarity::Dot => dot(&self.query, row),
            Similarity::NegEuclidean => -sq_dist(&self.query, row).sqrt(),
            Similarity::Cosine if row_norm == 0.0 => f32::NAN,
            Similarity::Cosine => dot(&self.query, row) / row_norm,
        }
    }
}

fn check_matrix(what: &'static str, data: &[f32], dim: usize) -> Result<usize, NeighbourError> {
    if dim == 0 {
        return Err(NeighbourError::ZeroDim);
    }
    if !data.len().is_multiple_of(dim) {
        return Err(NeighbourError::Ragged {
            what,
            len: data.len(),
            dim,
        });
    }
    Ok(data.len() / dim)
}

/// Exact top-`n` rows by similarity to `query`, best first; rows for which
/// `exclude(index)` is true are skipped (e.g. the seeds themselves, or
/// suppressed contacts). Equal scores go to the lower index.
pub fn top_n(
    query: &[f32],
    rows: &[f32],
    dim: usize,
    n: usize,
    similarity: Similarity,
    exclude: impl Fn(usize) -> bool,
) -> Result<Vec<Neighbour>, NeighbourError> {
    let mut top = TopN::new(n);
    scan_into(query, rows, dim, similarity, &mut top, |i| {
        (!exclude(i)).then_some(i)
    })?;
    Ok(top.into_neighbours())
}

/// The shard-side scan: pushes every row into `top` under the key
/// `key(index)`, skipping rows for which it returns `None`. Use this to carry
/// contact ids instead of indices and merge partial results later.
pub fn scan_into<K: Ord + Clone>(
    query: &[f32],
    rows: &[f32],
    dim: usize,
    similarity: Similarity,
    top: &mut TopN<K>,
    key: impl Fn(usize) -> Option<K>,
) -> Result<(), NeighbourError> {
    scan_matrix("rows", query, rows, dim, similarity, top, key)
}

fn scan_matrix<K: Ord + Clone>(
    what: &'static str,
    query: &[f32],
    rows: &[f32],
    dim: usize,
    similarity: Similarity,
    top: &mut TopN<K>,
    key: impl Fn(usize) -> Option<K>,
) -> Result<(), NeighbourError> {
    check_matrix(what, rows, dim)?;
    if query.len() != dim {
        return Err(NeighbourError::QueryLength {
            len: query.len(),
            dim,
        });
    }
    let prepared = Prepared::new(query, similarity)?;
    for (i, row) in rows.chunks_exact(dim).enumerate() {
        if let Some(k) = key(i) {
            top.push(k, prepared.score(row));
        }
    }
    Ok(())
}

/// How a candidate is scored against a seed list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SeedScoring {
    /// Similarity to the seeds' centroid: one dot per candidate, and robust
    /// to a noisy seed list, so the default.
    #[default]
    Centroid,
    /// Mean of the `k` highest similarities to individual seeds: finds rows
    /// like *some* seeds when the seed list is multi-modal (e.g. two
    /// personas). Costs one comparison per seed per candidate. `k` larger
    /// than the number of seeds means all seeds.
    KNearestSeeds(usize),
}

/// A seed list ("customers like these") prepared for lookalike scoring.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeedProfile {
    pub dim: usize,
    pub similarity: Similarity,
    pub scoring: SeedScoring,
    /// Mean of the usable seeds (of their unit vectors, renormalised, under cosine).
    pub centroid: Vec<f32>,
    /// Usable seeds, row-major (unit length under cosine).
    pub seeds: Vec<f32>,
    /// Indices of seed rows left out because they are all zeros (cosine only).
    pub skipped: Vec<usize>,
}

impl SeedProfile {
    /// Builds the profile with [`SeedScoring::Centroid`]. Non-finite seed
    /// values are an error (a data bug upstream); all-zero seeds under cosine
    /// have no direction and are skipped and listed in `skipped`.
    pub fn from_rows(
        rows: &[f32],
        dim: usize,
        similarity: Similarity,
    ) -> Result<Self, NeighbourError> {
        let n = check_matrix("seed rows", rows, dim)?;
        if let Some(pos) = rows.iter().position(|v| !v.is_finite()) {
            return Err(NeighbourError::NonFiniteSeed {
                row: pos / dim,
                column: pos % dim,
            });
        }
        let mut seeds = Vec::with_capacity(rows.len());
        let mut skipped = Vec::new();
        for (i, row) in rows.chunks_exact(dim).enumerate() {
            if similarity == Similarity::Cosine {
                let norm = dot(row, row).sqrt();
                if norm == 0.0 {
                    skipped.push(i);
                    continue;
                }
                seeds.extend(row.iter().map(|v| v / norm));
            } else {
                seeds.extend_from_slice(row);
            }
        }
        let used = n - skipped.len();
        if used == 0 {
            return Err(NeighbourError::NoUsableSeeds);
        }
        // Accumulate in f64: seed lists can be long and f32 sums drift.
        let mut sum = vec![0f64; dim];
        for row in seeds.chunks_exact(dim) {
            for (s, v) in sum.iter_mut().zip(row) {
                *s += f64::from(*v);
            }
        }
        let centroid: Vec<f32> = sum.iter().map(|s| (s / used as f64) as f32).collect();
        // Under cosine a zero centroid (seeds pointing every which way) has
        // no direction to score against.
        if similarity == Similarity::Cosine && dot(&centroid, &centroid) == 0.0 {
            return Err(NeighbourError::ZeroQuery);
        }
        Ok(Self {
            dim,
            similarity,
            scoring: SeedScoring::Centroid,
            centroid,
            seeds,
            skipped,
        })
    }

    pub fn with_scoring(mut self, scoring: SeedScoring) -> Result<Self, NeighbourError> {
        if scoring == SeedScoring::KNearestSeeds(0) {
            return Err(NeighbourError::ZeroSeedK);
        }
        self.scoring = scoring;
        Ok(self)
    }

    pub fn seed_count(&self) -> usize {
        self.seeds.len() / self.dim
    }

    /// Scans `candidates` into `top` (see [`scan_into`] for `key`).
    pub fn scan_into<K: Ord + Clone>(
        &self,
        candidates: &[f32],
        dim: usize,
        top: &mut TopN<K>,
        key: impl Fn(usize) -> Option<K>,
    ) -> Result<(), NeighbourError> {
        if dim != self.dim {
            return Err(NeighbourError::DimMismatch {
                profile: self.dim,
                given: dim,
            });
        }
        match self.scoring {
            SeedScoring::Centroid => scan_matrix(
                "candidates",
                &self.centroid,
                candidates,
                dim,
                self.similarity,
                top,
                key,
            ),
            // `scoring` is a public field, so 0 can arrive without `with_scoring`.
            SeedScoring::KNearestSeeds(0) => Err(NeighbourError::ZeroSeedK),
            SeedScoring::KNearestSeeds(k) => {
                check_matrix("candidates", candidates, dim)?;
                let k = k.min(self.seed_count());
                let per_seed: Vec<Prepared<'_>> = self
                    .seeds
                    .chunks_exact(dim)
                    .map(|s| Prepared {
                        query: s.into(),
                        similarity: self.similarity,
                    })
                    .collect();
                // One buffer of seed-count scores, reused for every candidate:
                // memory stays O(seeds) however many candidates stream past.
                let mut scores = vec![0f32; per_seed.len()];
                let cosine = self.similarity == Similarity::Cosine;
                for (i, row) in candidates.chunks_exact(dim).enumerate() {
                    let Some(key) = key(i) else { continue };
                    let norm = if cosine { dot(row, row).sqrt() } else { 1.0 };
                    for (s, p) in scores.iter_mut().zip(&per_seed) {
                        *s = p.score_with_norm(row, norm);
                    }
                    top.push(key, mean_of_top_k(&mut scores, k));
                }
                Ok(())
            }
        }
    }
}

/// Mean of the `k` largest values; NaN if any value is NaN, so the row is dropped.
fn mean_of_top_k(scores: &mut [f32], k: usize) -> f32 {
    if scores.iter().any(|s| s.is_nan()) {
        return f32::NAN;
    }
    if k < scores.len() {
        scores.select_nth_unstable_by(k - 1, |a, b| b.partial_cmp(a).unwrap_or(Ordering::Equal));
    }
    scores[..k].iter().sum::<f32>() / k as f32
}

/// Top-`n` candidates by lookalike score, best first; `exclude` skips rows
/// (typically the seeds themselves and unsubscribed contacts).
pub fn rank_lookalikes(
    seed: &SeedProfile,
    candidates: &[f32],
    dim: usize,
    n: usize,
    exclude: impl Fn(usize) -> bool,
) -> Result<Vec<Neighbour>, NeighbourError> {
    let mut top = TopN::new(n);
    seed.scan_into(candidates, dim, &mut top, |i| (!exclude(i)).then_some(i))?;
    Ok(top.into_neighbours())
}
