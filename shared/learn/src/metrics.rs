//! Quality of predicted probabilities on a held-out fold.
//!
//! Ranking (ROC-AUC, PR-AUC, lift) says whether the model orders contacts
//! well; log loss, Brier, ECE and the calibration ratio say whether its
//! probabilities can be read as rates (sum of p over a segment is the
//! expected number of clicks), which is what campaign forecasts use.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::dataset::LearnError;

/// One equal-mass bin of the reliability table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReliabilityBin {
    /// Smallest and largest predicted probability in the bin.
    pub lo: f64,
    pub hi: f64,
    pub rows: usize,
    pub mean_predicted: f64,
    pub observed: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub rows: usize,
    pub positives: usize,
    pub base_rate: f64,
    pub mean_predicted: f64,
    /// ROC-AUC, ties counted as half.
    pub auc: f64,
    /// Average precision (area under the precision-recall step curve).
    pub pr_auc: f64,
    pub log_loss: f64,
    /// Log loss divided by the entropy of the base rate (He et al. 2014):
    /// below 1 means better than always predicting the base rate.
    pub normalized_entropy: f64,
    pub brier: f64,
    /// `1 - brier / (base_rate * (1 - base_rate))`.
    pub brier_skill: f64,
    /// Expected calibration error over equal-mass bins.
    pub ece: f64,
    /// `sum p / sum y`: 1 when the predicted count matches the observed.
    pub calibration_ratio: f64,
    pub reliability: Vec<ReliabilityBin>,
    /// Rate of each decile (highest scores first) over the base rate.
    pub lift_by_decile: Vec<f64>,
}

/// Probabilities are clipped to this distance from 0 and 1 in the log loss,
/// so one confident miss gives a large but finite loss (as sklearn does).
const LOG_LOSS_EPS: f64 = 1e-15;

/// Evaluates `probabilities` against 0/1 `labels`, with `bins` equal-mass
/// bins for ECE and the reliability table. Needs both classes (AUC is
/// undefined otherwise).
pub fn evaluate(probabilities: &[f32], labels: &[f32], bins: usize) -> Result<Report, LearnError> {
    let n = probabilities.len();
    if labels.len() != n {
        return Err(LearnError::Invalid(format!(
            "evaluate: {n} probabilities but {} labels",
            labels.len()
        )));
    }
    if n == 0 {
        return Err(LearnError::Empty {
            what: "evaluation set".into(),
        });
    }
    if bins == 0 {
        return Err(LearnError::Invalid("evaluate: bins must be > 0".into()));
    }
    if let Some(i) = probabilities
        .iter()
        .position(|p| !(p.is_finite() && (0.0..=1.0).contains(p)))
    {
        return Err(LearnError::Invalid(format!(
            "evaluate: probability of row {i} is {}, not in [0, 1]",
            probabilities[i]
        )));
    }
    if let Some(i) = labels.iter().position(|&y| y != 0.0 && y != 1.0) {
        return Err(LearnError::Invalid(format!(
            "evaluate: label of row {i} is {}, not 0 or 1",
            labels[i]
        )));
    }
    let positives = labels.iter().filter(|&&y| y == 1.0).count();
    if positives == 0 || positives == n {
        return Err(LearnError::OneClass {
            what: "evaluation set".into(),
            positives,
            rows: n,
        });
    }
    let p: Vec<f64> = probabilities.iter().map(|&p| p as f64).collect();
    let y: Vec<f64> = labels.iter().map(|&y| y as f64).collect();
    let nf = n as f64;
    let base_rate = positives as f64 / nf;
    let sum_p: f64 = p.iter().sum();

    let mut log_loss = 0.0;
    let mut brier = 0.0;
    for (&p, &y) in p.iter().zip(&y) {
        let q = p.clamp(LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS);
        log_loss -= y * q.ln() + (1.0 - y) * (1.0 - q).ln();
        brier += (p - y).powi(2);
    }
    log_loss /= nf;
    brier /= nf;
    let entropy = -(base_rate * base_rate.ln() + (1.0 - base_rate) * (1.0 - base_rate).ln());

    // Ascending by probability; ties broken by index for determinism.
    let mut asc: Vec<usize> = (0..n).collect();
    asc.sort_by(|&i, &j| p[i].total_cmp(&p[j]).then(i.cmp(&j)));

    let reliability = reliability_bins(&asc, &p, &y, bins);
    let ece = reliability
        .iter()
        .map(|b| b.rows as f64 / nf * (b.mean_predicted - b.observed).abs())
        .sum();

    let desc: Vec<usize> = asc.iter().rev().copied().collect();
    let lift_by_decile = (0..10)
        .filter_map(|d| {
            let chunk = &desc[d * n / 10..(d + 1) * n / 10];
            (!chunk.is_empty())
                .then(|| chunk.iter().map(|&i| y[i]).sum::<f64>() / chunk.len() as f64 / base_rate)
        })
        .collect();

    Ok(Report {
        rows: n,
        positives,
        base_rate,
        mean_predicted: sum_p / nf,
        auc: auc(&asc, &p, &y, positives),
        pr_auc: average_precision(&desc, &p, &y, positives),
        log_loss,
        normalized_entropy: log_loss / entropy,
        brier,
        brier_skill: 1.0 - brier / (base_rate * (1.0 - base_rate)),
        ece,
        calibration_ratio: sum_p / positives as f64,
        reliability,
        lift_by_decile,
    })
}

/// Mann-Whitney: the mean rank of the positives, ties given their average
/// rank, so a constant score scores exactly 0.5.
fn auc(asc: &[usize], p: &[f64], y: &[f64], positives: usize) -> f64 {
    let n = asc.len();
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && p[asc[j + 1]] == p[asc[i]] {
            j += 1;
        }
        // Ranks i+1..=j+1 share their average.
        let avg = (i + j + 2) as f64 / 2.0;
        rank_sum += avg * asc[i..=j].iter().map(|&k| y[k]).sum::<f64>();
        i = j + 1;
    }
    let (pos, neg) = (positives as f64, (n - positives) as f64);
    (rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg)
}

/// Average precision: the sum over distinct thresholds (highest first) of
/// precision times the recall gained, tied scores forming one threshold.
fn average_precision(desc: &[usize], p: &[f64], y: &[f64], positives: usize) -> f64 {
    let n = desc.len();
    let (mut tp, mut ap) = (0.0, 0.0);
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && p[desc[j + 1]] == p[desc[i]] {
            j += 1;
        }
        let gained: f64 = desc[i..=j].iter().map(|&k| y[k]).sum();
        tp += gained;
        ap += gained / positives as f64 * (tp / (j + 1) as f64);
        i = j + 1;
    }
    ap
}

fn reliability_bins(asc: &[usize], p: &[f64], y: &[f64], bins: usize) -> Vec<ReliabilityBin> {
    let n = asc.len();
    (0..bins.min(n))
        .map(|b| {
            let chunk = &asc[b * n / bins.min(n)..(b + 1) * n / bins.min(n)];
            let rows = chunk.len();
            let mean = |v: &[f64]| chunk.iter().map(|&i| v[i]).sum::<f64>() / rows as f64;
            ReliabilityBin {
                lo: p[chunk[0]],
                hi: p[chunk[rows - 1]],
                rows,
                mean_predicted: mean(p),
                observed: mean(y),
            }
        })
        .collect()
}

impl Report {
    /// A plain-text report for `liveseg model report`: headline metrics,
    /// the reliability table and lift by decile.
    pub fn to_table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "rows {}  positives {}  base rate {:.4}  mean predicted {:.4}",
            self.rows, self.positives, self.base_rate, self.mean_predicted
        );
        let _ = writeln!(
            s,
            "AUC {:.4}  PR-AUC {:.4}  log loss {:.4}  NE {:.4}",
            self.auc, self.pr_auc, self.log_loss, self.normalized_entropy
        );
        let _ = writeln!(
            s,
            "Brier {:.4}  Brier skill {:.4}  ECE {:.4}  calibration ratio (sum p / sum y) {:.3}",
            self.brier, self.brier_skill, self.ece, self.calibration_ratio
        );
        let _ = writeln!(s, "\nreliability (equal-mass bins)");
        let _ = writeln!(
            s,
            "{:>9} {:>9} {:>8} {:>10} {:>10}",
            "p from", "p to", "rows", "predicted", "observed"
        );
        for b in &self.reliability {
            let _ = writeln!(
                s,
                "{:>9.4} {:>9.4} {:>8} {:>10.4} {:>10.4}",
                b.lo, b.hi, b.rows, b.mean_predicted, b.observed
            );
        }
        let _ = writeln!(s, "\nlift by decile (highest scores first)");
        for (d, lift) in self.lift_by_decile.iter().enumerate() {
            let _ = writeln!(s, "{:>4}  {:>6.2}x", d + 1, lift);
        }
        s
    }
}
