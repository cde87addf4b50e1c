//! Turning logits into probabilities that match observed rates.
//!
//! An L2-penalised model's raw sigmoid is shrunk towards the base rate, and
//! a model trained on older rows is off by however much the base rate moved
//! since. Both are fixed by a 1-D map fitted on a *later* fold than the
//! training rows (the calibration fold of [`crate::dataset::TimeSplit`]):
//! Platt scaling (two parameters) by default, isotonic regression (a
//! monotone step function) only with plenty of rows, because it overfits
//! small folds.

use serde::{Deserialize, Serialize};

use crate::dataset::LearnError;

/// Isotonic regression needs at least this many calibration rows (sklearn's
/// guidance: it "tends to overfit" well below a thousand samples).
pub const MIN_ISOTONIC_ROWS: usize = 1000;

/// A map from logit to probability; non-decreasing in the logit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Calibrator {
    /// `sigmoid(logit)`.
    Identity,
    /// `sigmoid(a * logit + b)`.
    Platt { a: f64, b: f64 },
    /// Linear interpolation between points with strictly increasing
    /// `logits` and non-decreasing `probabilities`; constant outside.
    Isotonic {
        logits: Vec<f32>,
        probabilities: Vec<f32>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CalibrationMethod {
    Platt,
    Isotonic,
}

/// A fitted calibrator and a sentence saying what was fitted and why (it
/// records a fallback from isotonic to Platt in the model's metadata).
#[derive(Clone, Debug)]
pub struct FittedCalibrator {
    pub calibrator: Calibrator,
    pub description: String,
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

fn check(logits: &[f32], labels: &[f32]) -> Result<(usize, usize), LearnError> {
    if logits.len() != labels.len() {
        return Err(LearnError::Invalid(format!(
            "calibration: {} logits but {} labels",
            logits.len(),
            labels.len()
        )));
    }
    if let Some(i) = logits.iter().position(|z| !z.is_finite()) {
        return Err(LearnError::Invalid(format!(
            "calibration: logit of row {i} is not finite ({})",
            logits[i]
        )));
    }
    if let Some(i) = labels.iter().position(|&y| y != 0.0 && y != 1.0) {
        return Err(LearnError::Invalid(format!(
            "calibration: label of row {i} is {}, not 0 or 1",
            labels[i]
        )));
    }
    let positives = labels.iter().filter(|&&y| y == 1.0).count();
    if logits.is_empty() {
        return Err(LearnError::Empty {
            what: "calibration fold".into(),
        });
    }
    if positives == 0 || positives == labels.len() {
        return Err(LearnError::OneClass {
            what: "calibration fold".into(),
            positives,
            rows: labels.len(),
        });
    }
    Ok((positives, labels.len() - positives))
}

impl Calibrator {
    /// Fits by `method`, falling back from isotonic to Platt (and saying so
    /// in the description) when the fold has fewer than
    /// [`MIN_ISOTONIC_ROWS`] rows.
    pub fn fit(
        method: CalibrationMethod,
        logits: &[f32],
        labels: &[f32],
    ) -> Result<FittedCalibrator, LearnError> {
        let rows = logits.len();
        let (calibrator, description) = match method {
            CalibrationMethod::Platt => (
                Self::fit_platt(logits, labels)?,
                format!("platt on {rows} calibration rows"),
            ),
            CalibrationMethod::Isotonic if rows >= MIN_ISOTONIC_ROWS => (
                Self::fit_isotonic(logits, labels)?,
                format!("isotonic on {rows} calibration rows"),
            ),
            CalibrationMethod::Isotonic => (
                Self::fit_platt(logits, labels)?,
                format!(
                    "platt on {rows} calibration rows (isotonic was asked for but needs at least {MIN_ISOTONIC_ROWS} rows; it overfits smaller folds)"
                ),
            ),
        };
        Ok(FittedCalibrator {
            calibrator,
            description,
        })
    }

    /// Platt scaling: a 1-D logistic regression of the label on the logit,
    /// fitted by Newton's method in f64 (Lin, Lin and Weng's 2007 variant),
    /// with Platt's smoothed targets `(N+ + 1)/(N+ + 2)` and `1/(N- + 2)`
    /// so that a fold with few positives does not produce 0/1 extremes.
    pub fn fit_platt(logits: &[f32], labels: &[f32]) -> Result<Self, LearnError> {
        let (pos, neg) = check(logits, labels)?;
        let hi = (pos as f64 + 1.0) / (pos as f64 + 2.0);
        let lo = 1.0 / (neg as f64 + 2.0);
        let targets: Vec<f64> = labels
            .iter()
            .map(|&y| if y == 1.0 { hi } else { lo })
            .collect();
        let f: Vec<f64> = logits.iter().map(|&z| z as f64).collect();
        let objective = |a: f64, b: f64| -> f64 {
            f.iter()
                .zip(&targets)
                .map(|(&f, &t)| {
                    let z = a * f + b;
                    // log(1 + e^z) - t z, stable for large |z|.
                    z.max(0.0) + (-z.abs()).exp().ln_1p() - t * z
                })
                .sum()
        };
        let (mut a, mut b) = (0.0, ((pos as f64 + 1.0) / (neg as f64 + 1.0)).ln());
        let mut current = objective(a, b);
        for _ in 0..100 {
            let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (0.0, 0.0, 1e-12, 0.0, 1e-12);
            for (&f, &t) in f.iter().zip(&targets) {
                let p = sigmoid(a * f + b);
                let w = p * (1.0 - p);
                ga += (p - t) * f;
                gb += p - t;
                haa += w * f * f;
                hab += w * f;
                hbb += w;
            }
            if ga.abs() < 1e-10 && gb.abs() < 1e-10 {
                break;
            }
            let det = haa * hbb - hab * hab;
            let da = (hbb * ga - hab * gb) / det;
            let db = (haa * gb - hab * ga) / det;
            let mut step = 1.0;
            let mut improved = false;
            while step > 1e-10 {
                let (na, nb) = (a - step * da, b - step * db);
                let next = objective(na, nb);
                if next < current + 1e-4 * step * -(ga * da + gb * db) {
                    (a, b, current) = (na, nb, next);
                    improved = true;
                    break;
                }
                step *= 0.5;
            }
            if !improved {
                break;
            }
        }
        Ok(Calibrator::Platt { a, b })
    }

    /// Isotonic regression by pool-adjacent-violators on the logit-sorted
    /// labels, kept as the corner points of the fitted step function so
    /// that `probability` interpolates linearly between them.
    pub fn fit_isotonic(logits: &[f32], labels: &[f32]) -> Result<Self, LearnError> {
        check(logits, labels)?;
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&i, &j| logits[i].total_cmp(&logits[j]));
        // Pool equal logits first: one (x, sum of labels, rows) per value.
        let mut xs: Vec<(f32, f64, f64)> = Vec::new();
        for i in order {
            match xs.last_mut() {
                Some(last) if last.0 == logits[i] => {
                    last.1 += labels[i] as f64;
                    last.2 += 1.0;
                }
                _ => xs.push((logits[i], labels[i] as f64, 1.0)),
            }
        }
        // Blocks of consecutive values: (first, last index into xs, sum, rows).
        let mut blocks: Vec<(usize, usize, f64, f64)> = Vec::new();
        for (i, &(_, s, w)) in xs.iter().enumerate() {
            let mut block = (i, i, s, w);
            // Merge while the previous block's mean is not below this one's.
            while let Some(&prev) = blocks.last() {
                if prev.2 / prev.3 >= block.2 / block.3 {
                    block = (prev.0, block.1, prev.2 + block.2, prev.3 + block.3);
                    blocks.pop();
                } else {
                    break;
                }
            }
            blocks.push(block);
        }
        let (mut lx, mut py) = (Vec::new(), Vec::new());
        for (first, last, s, w) in blocks {
            let p = (s / w) as f32;
            lx.push(xs[first].0);
            py.push(p);
            if last != first {
                lx.push(xs[last].0);
                py.push(p);
            }
        }
        Ok(Calibrator::Isotonic {
            logits: lx,
            probabilities: py,
        })
    }

    pub fn probability(&self, logit: f32) -> f32 {
        match self {
            Calibrator::Identity => sigmoid(logit as f64) as f32,
            Calibrator::Platt { a, b } => sigmoid(a * logit as f64 + b) as f32,
            Calibrator::Isotonic {
                logits,
                probabilities,
            } => {
                let k = logits.partition_point(|&x| x <= logit);
                if k == 0 {
                    probabilities.first().copied().unwrap_or(0.5)
                } else if k == logits.len() {
                    probabilities.last().copied().unwrap_or(0.5)
                } else {
                    let (x0, x1) = (logits[k - 1] as f64, logits[k] as f64);
                    let (p0, p1) = (probabilities[k - 1] as f64, probabilities[k] as f64);
                    (p0 + (p1 - p0) * (logit as f64 - x0) / (x1 - x0)) as f32
                }
            }
        }
    }

    pub fn probabilities(&self, logits: &[f32]) -> Vec<f32> {
        logits.iter().map(|&z| self.probability(z)).collect()
    }

    /// A short name for reports: "identity", "platt" or "isotonic".
    pub fn name(&self) -> &'static str {
        match self {
            Calibrator::Identity => "identity",
            Calibrator::Platt { .. } => "platt",
            Calibrator::Isotonic { .. } => "isotonic",
        }
    }
}
