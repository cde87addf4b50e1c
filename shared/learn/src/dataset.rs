//! A labelled feature matrix with event times, and the crate's error type.
//!
//! Rows are dense `f32` vectors in the order of `feature_names`; the crate
//! never learns what a feature means. Every row carries the event time it
//! was computed at, because propensity models are validated on *later*
//! rows than they were trained on (a random split leaks the future).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Everything that can go wrong in `liveseg-learn`. Messages name the row,
/// feature, file or version involved, because they end up in CLI output.
#[derive(Debug, thiserror::Error)]
pub enum LearnError {
    #[error("row {row}: expected {expected} features, got {got}")]
    WrongWidth {
        row: usize,
        expected: usize,
        got: usize,
    },
    #[error("row {row}: feature `{feature}` is not finite ({value})")]
    NonFinite {
        row: usize,
        feature: String,
        value: f32,
    },
    #[error("{what}: no rows")]
    Empty { what: String },
    #[error("{what}: needs both classes, has {positives} positives in {rows} rows")]
    OneClass {
        what: String,
        positives: usize,
        rows: usize,
    },
    #[error("invalid input: {0}")]
    Invalid(String),
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {reason}", path.display())]
    Artifact { path: PathBuf, reason: String },
    #[error("target `{target}` has no version `{version}`; known: [{}]", known.join(", "))]
    UnknownVersion {
        target: String,
        version: String,
        known: Vec<String>,
    },
    #[error("target `{target}`: no previously active version to roll back to")]
    NoPreviousVersion { target: String },
}

impl LearnError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LearnError::Io {
            path: path.into(),
            source,
        }
    }
}

/// A feature matrix (row-major, `len() x dim()`), labels and event times.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Dataset {
    pub feature_names: Vec<String>,
    /// Row-major `n x d`.
    pub x: Vec<f32>,
    /// 0.0 or 1.0.
    pub y: Vec<f32>,
    /// Event time of each row, ms since the Unix epoch.
    pub t: Vec<i64>,
}

/// The time range a part of a split covers (inclusive), ms since the epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub start_ms: i64,
    pub end_ms: i64,
}

/// A split into train, calibration and validation parts, oldest first.
#[derive(Clone, Debug)]
pub struct TimeSplit {
    pub train: Dataset,
    pub calibration: Dataset,
    pub validation: Dataset,
    pub train_window: Window,
    pub calibration_window: Window,
    pub validation_window: Window,
}

impl Dataset {
    pub fn new(feature_names: Vec<String>) -> Self {
        Dataset {
            feature_names,
            ..Dataset::default()
        }
    }

    /// Appends one row. Rejects rows of the wrong width or with a NaN or
    /// infinite value, naming the row and feature: a bad value caught here
    /// is far cheaper than a NaN model found after training.
    pub fn push(&mut self, row: &[f32], label: bool, t: i64) -> Result<(), LearnError> {
        let index = self.len();
        if row.len() != self.dim() {
            return Err(LearnError::WrongWidth {
                row: index,
                expected: self.dim(),
                got: row.len(),
            });
        }
        if let Some(j) = row.iter().position(|v| !v.is_finite()) {
            return Err(LearnError::NonFinite {
                row: index,
                feature: self.feature_names[j].clone(),
                value: row[j],
            });
        }
        self.x.extend_from_slice(row);
        self.y.push(if label { 1.0 } else { 0.0 });
        self.t.push(t);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.y.len()
    }

    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    pub fn dim(&self) -> usize {
        self.feature_names.len()
    }

    pub fn row(&self, i: usize) -> &[f32] {
        let d = self.dim();
        &self.x[i * d..(i + 1) * d]
    }

    pub fn positives(&self) -> usize {
        self.y.iter().filter(|&&y| y > 0.5).count()
    }

    /// The rows at `idx`, in that order.
    pub fn select(&self, idx: &[usize]) -> Dataset {
        let mut out = Dataset::new(self.feature_names.clone());
        out.x.reserve(idx.len() * self.dim());
        for &i in idx {
            out.x.extend_from_slice(self.row(i));
            out.y.push(self.y[i]);
            out.t.push(self.t[i]);
        }
        out
    }

    /// Checks the invariants `push` keeps, for datasets built or
    /// deserialised field by field: consistent lengths, finite features,
    /// 0/1 labels.
    pub fn validate(&self) -> Result<(), LearnError> {
        let (n, d) = (self.len(), self.dim());
        if self.x.len() != n * d || self.t.len() != n {
            return Err(LearnError::Invalid(format!(
                "dataset has {} labels, {} times and {} values for {d} features",
                n,
                self.t.len(),
                self.x.len()
            )));
        }
        for i in 0..n {
            if let Some(j) = self.row(i).iter().position(|v| !v.is_finite()) {
                return Err(LearnError::NonFinite {
                    row: i,
                    feature: self.feature_names[j].clone(),
                    value: self.row(i)[j],
                });
            }
            if self.y[i] != 0.0 && self.y[i] != 1.0 {
                return Err(LearnError::Invalid(format!(
                    "row {i}: label {} is not 0 or 1",
                    self.y[i]
                )));
            }
        }
        Ok(())
    }

    /// Errors unless the dataset has rows of both classes; `what` names the
    /// dataset in the message ("training fold", ...).
    pub fn require_both_classes(&self, what: &str) -> Result<(), LearnError> {
        if self.is_empty() {
            return Err(LearnError::Empty { what: what.into() });
        }
        let positives = self.positives();
        if positives == 0 || positives == self.len() {
            return Err(LearnError::OneClass {
                what: what.into(),
                positives,
                rows: self.len(),
            });
        }
        Ok(())
    }

    /// The time range of the rows (0..0 when empty).
    pub fn window(&self) -> Window {
        match (self.t.iter().min(), self.t.iter().max()) {
            (Some(&start_ms), Some(&end_ms)) => Window { start_ms, end_ms },
            _ => Window::default(),
        }
    }

    /// Time-based split: sort by t; the oldest `train` fraction trains, the
    /// next `calibration` fraction fits the calibrator, the newest rest
    /// validates. Never shuffles across time: every train row is at or
    /// before every calibration row, which is at or before every validation
    /// row (rows with equal t may straddle a boundary). Errors when a part
    /// would be empty or lack one of the classes.
    pub fn split_by_time(&self, train: f64, calibration: f64) -> Result<TimeSplit, LearnError> {
        self.split_by_time_with_gap(train, calibration, 0)
    }

    /// [`split_by_time`](Self::split_by_time), then drops the training rows
    /// whose label window (`t`, `t + label_window`] reaches the start of the
    /// calibration fold: their outcomes happened inside it, so the model
    /// would be fitted on the period it is then judged on. (Calibration rows
    /// are kept: dropping a 30-day window there would leave a one-month
    /// calibration fold almost empty, and the calibrator has two parameters.)
    pub fn split_by_time_with_gap(
        &self,
        train: f64,
        calibration: f64,
        label_window: i64,
    ) -> Result<TimeSplit, LearnError> {
        let valid = |f: f64| f.is_finite() && f > 0.0 && f < 1.0;
        if !valid(train) || !valid(calibration) || train + calibration >= 1.0 {
            return Err(LearnError::Invalid(format!(
                "split fractions train={train} calibration={calibration}: each must be in (0, 1) and leave some rows to validate"
            )));
        }
        let n = self.len();
        let mut order: Vec<usize> = (0..n).collect();
        // Stable, so rows with equal times keep their insertion order and
        // the split is deterministic.
        order.sort_by_key(|&i| self.t[i]);
        let n_train = ((n as f64) * train).round() as usize;
        let n_cal = ((n as f64) * calibration).round() as usize;
        let n_cal_end = (n_train + n_cal).min(n);
        // Each fold keeps the rows whose label closed before the next fold starts.
        let closed_before = |idx: &[usize], next: Option<&usize>| -> Vec<usize> {
            let start = next.map_or(i64::MAX, |&j| self.t[j]);
            idx.iter()
                .copied()
                .filter(|&i| {
                    self.t[i].saturating_add(label_window.max(0)) < start || label_window <= 0
                })
                .collect()
        };
        let train_idx = closed_before(&order[..n_train], order.get(n_train));
        let parts = [
            ("training fold", &train_idx[..]),
            ("calibration fold", &order[n_train..n_cal_end]),
            ("validation fold", &order[n_cal_end..]),
        ];
        let mut out = Vec::with_capacity(3);
        for (what, idx) in parts {
            let part = self.select(idx);
            part.require_both_classes(what)?;
            out.push(part);
        }
        let validation = out.pop().unwrap_or_default();
        let calibration = out.pop().unwrap_or_default();
        let train = out.pop().unwrap_or_default();
        Ok(TimeSplit {
            train_window: train.window(),
            calibration_window: calibration.window(),
            validation_window: validation.window(),
            train,
            calibration,
            validation,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_rejects_bad_rows_naming_row_and_feature() {
        let mut d = Dataset::new(vec!["a".into(), "b".into()]);
        d.push(&[1.0, 2.0], true, 0).unwrap();
        let e = d.push(&[1.0], false, 1).unwrap_err().to_string();
        assert!(e.contains("row 1") && e.contains("expected 2"), "{e}");
        let e = d.push(&[1.0, f32::NAN], false, 1).unwrap_err().to_string();
        assert!(e.contains("row 1") && e.contains("`b`"), "{e}");
        assert_eq!(d.len(), 1);
    }
}
