//! Population stability (PSI) of features and scores against the training
//! window.
//!
//! Bins are fixed once, at the training window's quantiles, and stored in
//! the model artifact; live data is binned with the same edges, so a shift
//! shows up as mass moving between bins. Thresholds are the usual rule of
//! thumb: < 0.1 stable, < 0.25 moderate, otherwise significant.

use serde::{Deserialize, Serialize};

use crate::dataset::Dataset;

/// Empty bins are floored at this proportion, so PSI stays finite when a
/// bin has no rows on one side (it is then large, as it should be).
const EPS: f64 = 1e-4;

/// Quantile edges are estimated from at most this many rows (evenly
/// strided): exact enough for deciles, and bounded in time on huge sets.
const MAX_EDGE_ROWS: usize = 200_000;

/// Bins of one variable: value `v` falls in bin `edges.partition_point(|e|
/// e < v)`, so there are `edges.len() + 1` bins.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bins {
    /// Strictly increasing cut points (deduplicated, so a discrete feature
    /// gets one bin per value rather than empty duplicate bins).
    pub edges: Vec<f32>,
    /// Share of the reference rows in each bin; sums to 1.
    pub proportions: Vec<f64>,
}

impl Bins {
    /// Edges at the `bins`-quantiles of `values` and their proportions.
    pub fn fit(values: &[f32], bins: usize) -> Self {
        let stride = values.len().div_ceil(MAX_EDGE_ROWS).max(1);
        let edges = Self::edges_of(values.iter().step_by(stride).copied().collect(), bins);
        let proportions = Self::proportions_with(&edges, values);
        Bins { edges, proportions }
    }

    /// Cut points at the `bins`-quantiles of `sample`: the values a full
    /// sort would put at those positions, found by successive selections
    /// (sorting 40 samples of 200k values was most of the drift bins' cost).
    fn edges_of(mut sample: Vec<f32>, bins: usize) -> Vec<f32> {
        let len = sample.len();
        let mut edges = Vec::with_capacity(bins);
        let mut lo = 0;
        for pos in (1..bins.max(1))
            .map(|q| q * len / bins)
            .filter(|p| *p < len)
        {
            // Everything left of `lo` is <= what the earlier selections found.
            let (_, v, _) = sample[lo..].select_nth_unstable_by(pos - lo, f32::total_cmp);
            edges.push(*v);
            lo = pos;
        }
        edges.dedup();
        edges
    }

    fn proportions_with(edges: &[f32], values: &[f32]) -> Vec<f64> {
        let mut counts = vec![0usize; edges.len() + 1];
        for &v in values {
            counts[edges.partition_point(|&e| e < v)] += 1;
        }
        let n = values.len().max(1) as f64;
        counts.into_iter().map(|c| c as f64 / n).collect()
    }

    /// PSI of `values` against the reference proportions:
    /// `sum (a - e) * ln(a / e)`, both floored at `EPS`.
    pub fn psi(&self, values: &[f32]) -> f64 {
        let actual = Self::proportions_with(&self.edges, values);
        actual
            .iter()
            .zip(&self.proportions)
            .map(|(&a, &e)| {
                let (a, e) = (a.max(EPS), e.max(EPS));
                (a - e) * (a / e).ln()
            })
            .sum()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DriftLevel {
    /// PSI < 0.1.
    Stable,
    /// 0.1 <= PSI < 0.25.
    Moderate,
    /// PSI >= 0.25: retrain, or find out what changed upstream.
    Significant,
}

impl DriftLevel {
    pub fn of(psi: f64) -> Self {
        if psi < 0.1 {
            DriftLevel::Stable
        } else if psi < 0.25 {
            DriftLevel::Moderate
        } else {
            DriftLevel::Significant
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeaturePsi {
    pub feature: String,
    pub psi: f64,
    pub level: DriftLevel,
}

/// Per-feature bins of the training window, kept with the model.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DriftReference {
    pub feature_names: Vec<String>,
    /// One entry per feature, in `feature_names` order.
    pub features: Vec<Bins>,
}

impl DriftReference {
    /// The same bins as `Bins::fit` on each column, in two row-major passes
    /// (edges from the sampled rows, then every row's counts): extracting
    /// 40 strided columns of a 1M-row matrix cost a third of training.
    pub fn fit(train: &Dataset, bins: usize) -> Self {
        let (n, d) = (train.len(), train.dim());
        let stride = n.div_ceil(MAX_EDGE_ROWS).max(1);
        let mut samples = vec![Vec::with_capacity(n / stride + 1); d];
        for i in (0..n).step_by(stride) {
            for (s, v) in samples.iter_mut().zip(train.row(i)) {
                s.push(*v);
            }
        }
        let edges: Vec<Vec<f32>> = samples
            .into_iter()
            .map(|s| Bins::edges_of(s, bins))
            .collect();
        let mut counts: Vec<Vec<usize>> = edges.iter().map(|e| vec![0; e.len() + 1]).collect();
        for i in 0..n {
            for ((c, e), v) in counts.iter_mut().zip(&edges).zip(train.row(i)) {
                // `partition_point` over a handful of sorted edges, as a
                // branch-free count (a binary search here is latency-bound).
                c[e.iter().map(|x| usize::from(x < v)).sum::<usize>()] += 1;
            }
        }
        let total = n.max(1) as f64;
        let features = edges
            .into_iter()
            .zip(counts)
            .map(|(edges, c)| Bins {
                edges,
                proportions: c.into_iter().map(|c| c as f64 / total).collect(),
            })
            .collect();
        DriftReference {
            feature_names: train.feature_names.clone(),
            features,
        }
    }

    /// PSI of each feature of `data` (matched by position; `data` must have
    /// the reference's features, which the artifact checks), largest first.
    pub fn psi(&self, data: &Dataset) -> Vec<FeaturePsi> {
        let mut out: Vec<FeaturePsi> = self
            .features
            .iter()
            .enumerate()
            .take(data.dim())
            .map(|(j, bins)| {
                let psi = bins.psi(&column(data, j));
                FeaturePsi {
                    feature: self.feature_names[j].clone(),
                    psi,
                    level: DriftLevel::of(psi),
                }
            })
            .collect();
        out.sort_by(|a, b| b.psi.total_cmp(&a.psi));
        out
    }
}

/// PSI of a score distribution (logits or probabilities) against a
/// reference one, with decile edges of the reference.
pub fn psi_of_scores(reference_scores: &[f32], current_scores: &[f32]) -> f64 {
    Bins::fit(reference_scores, 10).psi(current_scores)
}

fn column(data: &Dataset, j: usize) -> Vec<f32> {
    (0..data.len()).map(|i| data.row(i)[j]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discrete_feature_gets_one_bin_per_value() {
        let values: Vec<f32> = (0..100).map(|i| if i < 70 { 0.0 } else { 1.0 }).collect();
        let bins = Bins::fit(&values, 10);
        assert_eq!(bins.edges, vec![0.0, 1.0]);
        assert_eq!(bins.proportions, vec![0.7, 0.3, 0.0]);
        assert!(bins.psi(&values).abs() < 1e-12);
    }

    #[test]
    fn the_reference_equals_binning_each_column_even_when_sampled() {
        // More rows than MAX_EDGE_ROWS, so the edges come from a sample.
        let n = MAX_EDGE_ROWS + 50_001;
        let names = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let mut data = Dataset::new(names);
        let mut x = 12_345u64;
        for i in 0..n {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let u = (x >> 40) as f32 / (1u64 << 24) as f32;
            let row = [u * 100.0, (i % 7) as f32, (u * u).ln_1p()];
            if let Err(e) = data.push(&row, i % 3 == 0, i as i64) {
                panic!("{e}");
            }
        }
        let reference = DriftReference::fit(&data, 10);
        for (j, bins) in reference.features.iter().enumerate() {
            assert_eq!(*bins, Bins::fit(&column(&data, j), 10), "feature {j}");
        }
    }
}
