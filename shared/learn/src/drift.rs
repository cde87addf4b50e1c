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
        let mut sample: Vec<f32> = values.iter().step_by(stride).copied().collect();
        sample.sort_by(f32::total_cmp);
        let mut edges: Vec<f32> = (1..bins.max(1))
            .filter_map(|q| sample.get(q * sample.len() / bins))
            .copied()
            .collect();
        edges.dedup();
        let proportions = Self::proportions_with(&edges, values);
        Bins { edges, proportions }
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
    pub fn fit(train: &Dataset, bins: usize) -> Self {
        let features = (0..train.dim())
            .map(|j| Bins::fit(&column(train, j), bins))
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
}
