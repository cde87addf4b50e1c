//! k-means for segment discovery: plain (Euclidean) and spherical (cosine).
//!
//! [`fit`] standardises each feature (z-score, optional), seeds with
//! k-means++, runs Lloyd iterations and keeps the best of several restarts by
//! inertia. It is deterministic for a seed (own splitmix64 PRNG, sequential
//! loops, ties to the lower index), so segments built from clusters do not
//! reshuffle when a job reruns. The standardisation is part of the fitted
//! [`Clustering`] so new rows are assigned in the same space. Clusters are
//! relabelled largest first, which makes labels stable and readable.
//!
//! Spherical k-means compares directions only: rows and centroids are L2
//! normalised and the distance is `1 - cos`. A row that is all zeros (after
//! standardisation) has no direction: it is left out of seeding, centroids
//! and inertia, assigned to cluster 0 (the largest), and listed in
//! `Clustering::zero_rows` so callers can report it.
//!
//! [`describe`] turns clusters into text a marketer can read. For quality,
//! [`silhouette_sample`] gives the mean silhouette (−1..1, higher is better
//! separated) on a deterministic sample; `inertia` is comparable across k for
//! an elbow plot when the data and options are otherwise the same.
//!
//! Cost is n·k·d per iteration, single-threaded; for 1M × 384 with large k
//! the note (model-service §9) suggests mini-batches, which this does not do.

use crate::neighbours::{dot, sq_dist};
use serde::{Deserialize, Serialize};

/// Errors name the parameter at fault and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KMeansError {
    #[error("k must be at least 1")]
    ZeroK,
    #[error("k = {k} exceeds the {rows} usable rows")]
    KTooLarge { k: usize, rows: usize },
    #[error("dim must be at least 1")]
    ZeroDim,
    #[error("x is ragged: {len} values is not a multiple of dim = {dim}")]
    Ragged { len: usize, dim: usize },
    #[error("x has a non-finite value at row {row}, column {column}")]
    NonFinite { row: usize, column: usize },
    #[error("row has a non-finite value at column {column}")]
    NonFiniteInRow { column: usize },
    #[error("row has {len} values but the clustering has dim = {dim}")]
    RowLength { len: usize, dim: usize },
    #[error("restarts must be at least 1")]
    ZeroRestarts,
    #[error("tolerance must be finite and >= 0, got {0}")]
    BadTolerance(f64),
    #[error("feature_names has {names} names but dim = {dim}")]
    FeatureNames { names: usize, dim: usize },
    #[error("silhouette needs at least 2 non-empty clusters among the sampled rows")]
    SilhouetteUndefined,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Metric {
    /// Squared Euclidean distance to the centroid.
    #[default]
    Euclidean,
    /// Spherical k-means: `1 - cos` between unit vectors.
    Cosine,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KMeansOptions {
    pub k: usize,
    pub metric: Metric,
    /// Lloyd updates per restart at most.
    pub max_iterations: usize,
    /// Stop when the summed squared centroid shift falls to `tolerance` ×
    /// the mean feature variance (scikit-learn's rule, so it is scale-free).
    pub tolerance: f64,
    pub seed: u64,
    /// Independent k-means++ starts; the lowest inertia wins.
    pub restarts: usize,
    /// z-score each feature first, so a feature in the thousands (days)
    /// does not drown one in the units (clicks).
    pub standardize: bool,
}

impl Default for KMeansOptions {
    fn default() -> Self {
        Self {
            k: 8,
            metric: Metric::Euclidean,
            max_iterations: 100,
            tolerance: 1e-4,
            seed: 0,
            restarts: 4,
            standardize: true,
        }
    }
}

/// A fitted model. `centroids` live in the standardised space (unit length
/// under cosine); `mean` and `scale` map raw rows into it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Clustering {
    pub metric: Metric,
    pub dim: usize,
    /// k × dim, row-major; cluster 0 is the largest.
    pub centroids: Vec<f32>,
    pub assignments: Vec<usize>,
    pub sizes: Vec<usize>,
    /// Sum of distances to the assigned centroid (squared Euclidean, or
    /// `1 - cos`) over all rows except `zero_rows`.
    pub inertia: f64,
    /// Lloyd updates run by the winning restart.
    pub iterations: usize,
    pub mean: Vec<f32>,
    /// Per-feature divisor; 1 for constant features and when not standardising.
    pub scale: Vec<f32>,
    /// Cosine only: rows with no direction, assigned to cluster 0.
    pub zero_rows: Vec<usize>,
}

impl Clustering {
    pub fn k(&self) -> usize {
        self.sizes.len()
    }

    /// The nearest centroid to a raw (unstandardised) row.
    pub fn assign(&self, row: &[f32]) -> Result<usize, KMeansError> {
        if row.len() != self.dim {
            return Err(KMeansError::RowLength {
                len: row.len(),
                dim: self.dim,
            });
        }
        if let Some(column) = row.iter().position(|v| !v.is_finite()) {
            return Err(KMeansError::NonFiniteInRow { column });
        }
        let mut z = self.standardise(row);
        if !normalise_if_cosine(self.metric, &mut z) {
            return Ok(0);
        }
        Ok(nearest(self.metric, &z, &self.centroids, self.dim).0)
    }

    /// `assign` for every row of a raw matrix.
    pub fn assign_rows(&self, x: &[f32]) -> Result<Vec<usize>, KMeansError> {
        check_matrix(x, self.dim)?;
        x.chunks_exact(self.dim)
            .enumerate()
            .map(|(i, row)| {
                self.assign(row).map_err(|e| match e {
                    KMeansError::NonFiniteInRow { column } => {
                        KMeansError::NonFinite { row: i, column }
                    }
                    other => other,
                })
            })
            .collect()
    }

    fn standardise(&self, row: &[f32]) -> Vec<f32> {
        row.iter()
            .zip(self.mean.iter().zip(&self.scale))
            .map(|(v, (m, s))| (v - m) / s)
            .collect()
    }
}

/// splitmix64: tiny, fast and good enough to pick seeds; no dependency.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) from the top 53 bits.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: usize) -> usize {
        // Float scaling: the bias is negligible for any n we cluster.
        ((self.next_f64() * n as f64) as usize).min(n.saturating_sub(1))
    }
}

fn check_matrix(x: &[f32], dim: usize) -> Result<usize, KMeansError> {
    if dim == 0 {
        return Err(KMeansError::ZeroDim);
    }
    if !x.len().is_multiple_of(dim) {
        return Err(KMeansError::Ragged { len: x.len(), dim });
    }
    Ok(x.len() / dim)
}

/// Normalises in place under cosine; false if the row has no direction.
fn normalise_if_cosine(metric: Metric, row: &mut [f32]) -> bool {
    if metric == Metric::Euclidean {
        return true;
    }
    let norm = dot(row, row).sqrt();
    if norm == 0.0 {
        return false;
    }
    row.iter_mut().for_each(|v| *v /= norm);
    true
}

fn distance(metric: Metric, a: &[f32], b: &[f32]) -> f64 {
    match metric {
        Metric::Euclidean => f64::from(sq_dist(a, b)),
        // Clamped: rounding can push a cosine a hair above 1.
        Metric::Cosine => (1.0 - f64::from(dot(a, b))).max(0.0),
    }
}

/// (cluster, distance) of the nearest centroid; ties go to the lower index.
fn nearest(metric: Metric, row: &[f32], centroids: &[f32], dim: usize) -> (usize, f64) {
    let mut best = (0, f64::INFINITY);
    for (c, centroid) in centroids.chunks_exact(dim).enumerate() {
        let d = distance(metric, row, centroid);
        if d < best.1 {
            best = (c, d);
        }
    }
    best
}

/// The data as the algorithm sees it: standardised, normalised under cosine.
struct Prepared {
    data: Vec<f32>,
    dim: usize,
    /// Rows that take part in seeding and centroid means (all but zero rows).
    usable: Vec<bool>,
    mean: Vec<f32>,
    scale: Vec<f32>,
    /// Absolute stopping threshold for the centroid shift.
    tol: f64,
}

fn prepare(x: &[f32], dim: usize, opts: &KMeansOptions) -> Result<Prepared, KMeansError> {
    let n = check_matrix(x, dim)?;
    if let Some(pos) = x.iter().position(|v| !v.is_finite()) {
        return Err(KMeansError::NonFinite {
            row: pos / dim,
            column: pos % dim,
        });
    }
    let (mut mean, mut scale) = (vec![0f32; dim], vec![1f32; dim]);
    let (raw_mean, raw_var) = column_moments(x, dim);
    if opts.standardize {
        for j in 0..dim {
            mean[j] = raw_mean[j] as f32;
            let sd = raw_var[j].sqrt() as f32;
            // Constant features keep scale 1: they become 0 and drop out.
            scale[j] = if sd > f32::EPSILON { sd } else { 1.0 };
        }
    }
    let mut data: Vec<f32> = x
        .chunks_exact(dim)
        .flat_map(|row| {
            row.iter()
                .zip(mean.iter().zip(&scale))
                .map(|(v, (m, s))| (v - m) / s)
        })
        .collect();
    let usable: Vec<bool> = data
        .chunks_exact_mut(dim)
        .map(|row| normalise_if_cosine(opts.metric, row))
        .collect();
    let (_, var) = column_moments(&data, dim);
    let tol = opts.tolerance * var.iter().sum::<f64>() / dim as f64;
    debug_assert_eq!(usable.len(), n);
    Ok(Prepared {
        data,
        dim,
        usable,
        mean,
        scale,
        tol,
    })
}

/// Per-column mean and population variance, in f64 (two passes, stable).
pub(crate) fn column_moments(x: &[f32], dim: usize) -> (Vec<f64>, Vec<f64>) {
    let n = (x.len() / dim).max(1) as f64;
    let mut mean = vec![0f64; dim];
    for row in x.chunks_exact(dim) {
        for (m, v) in mean.iter_mut().zip(row) {
            *m += f64::from(*v);
        }
    }
    mean.iter_mut().for_each(|m| *m /= n);
    let mut var = vec![0f64; dim];
    for row in x.chunks_exact(dim) {
        for ((s, v), m) in var.iter_mut().zip(row).zip(&mean) {
            *s += (f64::from(*v) - m).powi(2);
        }
    }
    var.iter_mut().for_each(|s| *s /= n);
    (mean, var)
}

/// Clusters the rows of `x` (n × `dim`, row-major, raw units).
pub fn fit(x: &[f32], dim: usize, opts: &KMeansOptions) -> Result<Clustering, KMeansError> {
    if opts.k == 0 {
        return Err(KMeansError::ZeroK);
    }
    if opts.restarts == 0 {
        return Err(KMeansError::ZeroRestarts);
    }
    if !(opts.tolerance.is_finite() && opts.tolerance >= 0.0) {
        return Err(KMeansError::BadTolerance(opts.tolerance));
    }
    let p = prepare(x, dim, opts)?;
    let usable_rows = p.usable.iter().filter(|u| **u).count();
    if opts.k > usable_rows {
        return Err(KMeansError::KTooLarge {
            k: opts.k,
            rows: usable_rows,
        });
    }
    let mut rng = SplitMix64(opts.seed);
    let mut best: Option<Run> = None;
    for _ in 0..opts.restarts {
        let centroids = seed_plus_plus(&p, opts.k, opts.metric, &mut rng);
        let run = lloyd(&p, centroids, opts);
        // Strictly better only, so ties keep the earliest restart.
        if best.as_ref().is_none_or(|b| run.inertia < b.inertia) {
            best = Some(run);
        }
    }
    let Some(run) = best else {
        return Err(KMeansError::ZeroRestarts);
    };
    Ok(relabel_by_size(run, p, opts.metric))
}

struct Run {
    centroids: Vec<f32>,
    assignments: Vec<usize>,
    inertia: f64,
    iterations: usize,
}

/// k-means++: each next centre is drawn with probability proportional to
/// its distance from the nearest centre chosen so far.
fn seed_plus_plus(p: &Prepared, k: usize, metric: Metric, rng: &mut SplitMix64) -> Vec<f32> {
    let dim = p.dim;
    let rows: Vec<usize> = (0..p.usable.len()).filter(|&i| p.usable[i]).collect();
    let row = |i: usize| &p.data[i * dim..(i + 1) * dim];
    let mut centroids = Vec::with_capacity(k * dim);
    let first = rows[rng.below(rows.len())];
    centroids.extend_from_slice(row(first));
    let mut d: Vec<f64> = rows
        .iter()
        .map(|&i| distance(metric, row(i), row(first)))
        .collect();
    for _ in 1..k {
        let total: f64 = d.iter().sum();
        let pick = if total > 0.0 {
            let mut target = rng.next_f64() * total;
            let mut chosen = rows.len() - 1;
            for (j, w) in d.iter().enumerate() {
                if target < *w {
                    chosen = j;
                    break;
                }
                target -= w;
            }
            chosen
        } else {
            // Fewer distinct points than k: duplicates are all that is left.
            rng.below(rows.len())
        };
        let c = row(rows[pick]);
        centroids.extend_from_slice(c);
        for (dj, &i) in d.iter_mut().zip(&rows) {
            *dj = dj.min(distance(metric, row(i), c));
        }
    }
    centroids
}

fn lloyd(p: &Prepared, mut centroids: Vec<f32>, opts: &KMeansOptions) -> Run {
    let (k, n) = (opts.k, p.usable.len());
    let mut assignments = vec![usize::MAX; n];
    let mut dist = vec![0f64; n];
    let mut iterations = 0;
    loop {
        let changed = assign_all(p, &centroids, opts.metric, &mut assignments, &mut dist);
        if !changed || iterations == opts.max_iterations {
            break;
        }
        let shift = update_centroids(p, &mut centroids, &assignments, &mut dist, k, opts.metric);
        iterations += 1;
        if shift <= p.tol {
            // Centroids moved since the last assignment: assign once more
            // so that every row sits with its nearest centroid.
            assign_all(p, &centroids, opts.metric, &mut assignments, &mut dist);
            break;
        }
    }
    let inertia = (0..n).filter(|&i| p.usable[i]).map(|i| dist[i]).sum();
    Run {
        centroids,
        assignments,
        inertia,
        iterations,
    }
}

/// Assigns every row; returns whether any assignment changed.
fn assign_all(
    p: &Prepared,
    centroids: &[f32],
    metric: Metric,
    assignments: &mut [usize],
    dist: &mut [f64],
) -> bool {
    let mut changed = false;
    for (i, row) in p.data.chunks_exact(p.dim).enumerate() {
        let (c, d) = if p.usable[i] {
            nearest(metric, row, centroids, p.dim)
        } else {
            (0, 0.0)
        };
        changed |= assignments[i] != c;
        assignments[i] = c;
        dist[i] = d;
    }
    changed
}

/// Moves centroids to their cluster means; returns the summed squared shift.
/// A cluster left empty (or, under cosine, whose mean has no direction) is
/// re-seeded at the row currently farthest from its centroid, which is the
/// row the model explains worst.
fn update_centroids(
    p: &Prepared,
    centroids: &mut [f32],
    assignments: &[usize],
    dist: &mut [f64],
    k: usize,
    metric: Metric,
) -> f64 {
    let dim = p.dim;
    let mut sums = vec![0f64; k * dim];
    let mut counts = vec![0usize; k];
    for (i, row) in p.data.chunks_exact(dim).enumerate() {
        if !p.usable[i] {
            continue;
        }
        let c = assignments[i];
        counts[c] += 1;
        for (s, v) in sums[c * dim..(c + 1) * dim].iter_mut().zip(row) {
            *s += f64::from(*v);
        }
    }
    let mut shift = 0.0;
    for c in 0..k {
        let mut new: Vec<f32> = sums[c * dim..(c + 1) * dim]
            .iter()
            .map(|s| (s / counts[c].max(1) as f64) as f32)
            .collect();
        if counts[c] == 0 || !normalise_if_cosine(metric, &mut new) {
            let far =
                (0..dist.len())
                    .filter(|&i| p.usable[i])
                    .fold(None::<usize>, |b, i| match b {
                        Some(b) if dist[b] >= dist[i] => Some(b),
                        _ => Some(i),
                    });
            if let Some(far) = far {
                new.copy_from_slice(&p.data[far * dim..(far + 1) * dim]);
                // Taken: the next empty cluster must pick another row.
                dist[far] = f64::NEG_INFINITY;
            }
        }
        shift += f64::from(sq_dist(&centroids[c * dim..(c + 1) * dim], &new));
        centroids[c * dim..(c + 1) * dim].copy_from_slice(&new);
    }
    shift
}

/// Renames clusters largest first (ties by old label) and packs the model.
fn relabel_by_size(run: Run, p: Prepared, metric: Metric) -> Clustering {
    let dim = p.dim;
    let k = run.centroids.len() / dim;
    // Zero rows sit in old cluster 0 only as a placeholder: not counted.
    let mut old_sizes = vec![0usize; k];
    for (&a, _) in run.assignments.iter().zip(&p.usable).filter(|(_, u)| **u) {
        old_sizes[a] += 1;
    }
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|&a, &b| old_sizes[b].cmp(&old_sizes[a]).then(a.cmp(&b)));
    let mut new_label = vec![0; k];
    for (new, &old) in order.iter().enumerate() {
        new_label[old] = new;
    }
    let centroids: Vec<f32> = order
        .iter()
        .flat_map(|&old| run.centroids[old * dim..(old + 1) * dim].iter().copied())
        .collect();
    // Zero rows go to the new cluster 0, matching what `assign` does.
    let assignments: Vec<usize> = run
        .assignments
        .iter()
        .zip(&p.usable)
        .map(|(&a, &u)| if u { new_label[a] } else { 0 })
        .collect();
    let mut sizes = vec![0usize; k];
    for &a in &assignments {
        sizes[a] += 1;
    }
    let zero_rows = (0..p.usable.len()).filter(|&i| !p.usable[i]).collect();
    Clustering {
        metric,
        dim,
        centroids,
        assignments,
        sizes,
        inertia: run.inertia,
        iterations: run.iterations,
        mean: p.mean,
        scale: p.scale,
        zero_rows,
    }
}

mod describe;
pub use describe::{ClusterDescription, Direction, FeatureContrast, describe, silhouette_sample};
