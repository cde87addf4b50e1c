//! A trained propensity model as one versioned unit: weights, calibrator,
//! drift reference and the metadata needed to trust it (windows, counts,
//! validation report), and its on-disk form.
//!
//! On disk a model is a directory with `model.safetensors` (the tensors
//! `weights`, `bias`, `mean`, `scale`, f32, and for a Platt calibrator
//! `platt` = [a, b], f64) and `model.json` (metadata, calibrator, drift
//! reference). Tensors go to safetensors so other tools (Python, the model
//! service) read them without our JSON schema, and because they round-trip
//! bit for bit: serde_json's default float parser can be off by one ulp, so
//! Platt's f64 parameters are read from the tensor (the JSON copy is for
//! people), and a loaded model scores exactly as the one that was saved.

use std::collections::HashMap;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::calibrate::{CalibrationMethod, Calibrator};
use crate::dataset::{Dataset, LearnError, Window};
use crate::drift::DriftReference;
use crate::logistic::{LogisticModel, TrainOptions};
use crate::metrics::{Report, evaluate};

pub const TENSORS_FILE: &str = "model.safetensors";
pub const META_FILE: &str = "model.json";
/// Bumped when `model.json`'s layout changes incompatibly.
const FORMAT: u32 = 1;
/// Bins of the validation report and of the drift reference.
const BINS: usize = 10;
const PLATT_TENSOR: &str = "platt";

/// Rows (and positives) in each part of the split.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub train: usize,
    pub train_positives: usize,
    pub calibration: usize,
    pub calibration_positives: usize,
    pub validation: usize,
    pub validation_positives: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    /// `<target>-<UTC yyyymmddThhmmssmmm>-<8 hex of a content hash>`:
    /// sorts by training time within a target, unique per content.
    pub version: String,
    pub target: String,
    pub feature_names: Vec<String>,
    /// Opaque id of the feature code that built the rows (e.g.
    /// "contact-v2"): live scoring must use the same.
    pub feature_set: String,
    pub trainer: String,
    pub options: serde_json::Value,
    pub training_window: Window,
    pub calibration_window: Window,
    pub validation_window: Window,
    pub rows: Counts,
    /// What calibrator was fitted and why (records fallbacks).
    pub calibration: String,
    /// Calibrated probabilities on the validation fold.
    pub validation: Report,
    pub created_at_ms: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ModelArtifact {
    pub meta: ModelMeta,
    pub model: LogisticModel,
    pub calibrator: Calibrator,
    pub drift: DriftReference,
}

/// One scored row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    pub logit: f32,
    /// Calibrated.
    pub probability: f32,
    /// Per feature, in `feature_names` order; sums to `logit - bias`.
    pub contributions: Vec<f32>,
}

/// The JSON half of the on-disk form.
#[derive(Serialize, Deserialize)]
struct MetaFile {
    format: u32,
    meta: ModelMeta,
    calibrator: Calibrator,
    drift: DriftReference,
}

/// Splits `data` by time, fits the logistic model on the oldest rows,
/// calibrates on the next, evaluates calibrated probabilities on the
/// newest and keeps the training window's feature bins for drift.
pub fn train_propensity(
    data: &Dataset,
    target: &str,
    feature_set: &str,
    opts: &TrainOptions,
    method: CalibrationMethod,
    split: (f64, f64),
) -> Result<ModelArtifact, LearnError> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    train_propensity_at(data, target, feature_set, opts, method, split, now_ms)
}

/// [`train_propensity`] with the creation time given (tests, replays).
pub fn train_propensity_at(
    data: &Dataset,
    target: &str,
    feature_set: &str,
    opts: &TrainOptions,
    method: CalibrationMethod,
    split: (f64, f64),
    created_at_ms: i64,
) -> Result<ModelArtifact, LearnError> {
    crate::registry::check_name("target", target)?;
    data.validate()?;
    let parts = data.split_by_time_with_gap(split.0, split.1, opts.label_window_ms)?;
    let (model, stats) = LogisticModel::fit(&parts.train, opts)?;
    let cal_logits = model.logits(&parts.calibration)?;
    let fitted = Calibrator::fit(method, &cal_logits, &parts.calibration.y)?;
    let val_p = fitted
        .calibrator
        .probabilities(&model.logits(&parts.validation)?);
    let validation = evaluate(&val_p, &parts.validation.y, BINS)?;
    let drift = DriftReference::fit(&parts.train, BINS);
    let options = serde_json::json!({
        "train": opts,
        "split": { "train": split.0, "calibration": split.1 },
        "calibration_method": method,
    });
    let meta = ModelMeta {
        version: version_of(target, &model, feature_set, created_at_ms),
        target: target.to_string(),
        feature_names: data.feature_names.clone(),
        feature_set: feature_set.to_string(),
        trainer: format!(
            "liveseg-learn {} logistic-l2 (candle, newton: {} iterations, {})",
            env!("CARGO_PKG_VERSION"),
            stats.iterations,
            if stats.converged {
                "converged"
            } else {
                "iteration limit reached"
            }
        ),
        options,
        training_window: parts.train_window,
        calibration_window: parts.calibration_window,
        validation_window: parts.validation_window,
        rows: Counts {
            train: parts.train.len(),
            train_positives: parts.train.positives(),
            calibration: parts.calibration.len(),
            calibration_positives: parts.calibration.positives(),
            validation: parts.validation.len(),
            validation_positives: parts.validation.positives(),
        },
        calibration: fitted.description,
        validation,
        created_at_ms,
    };
    Ok(ModelArtifact {
        meta,
        model,
        calibrator: fitted.calibrator,
        drift,
    })
}

fn version_of(
    target: &str,
    model: &LogisticModel,
    feature_set: &str,
    created_at_ms: i64,
) -> String {
    let mut h = Sha256::new();
    for v in model
        .weights
        .iter()
        .chain([&model.bias])
        .chain(&model.mean)
        .chain(&model.scale)
    {
        h.update(v.to_le_bytes());
    }
    h.update(feature_set.as_bytes());
    h.update(created_at_ms.to_le_bytes());
    let hash: String = h.finalize()[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let stamp = chrono::DateTime::from_timestamp_millis(created_at_ms)
        .map(|t| t.format("%Y%m%dT%H%M%S%3f").to_string())
        .unwrap_or_else(|| format!("{created_at_ms:015}"));
    format!("{target}-{stamp}-{hash}")
}

impl ModelArtifact {
    /// Writes `model.safetensors` and `model.json` into `dir` (created if
    /// missing). Each file is written under a temporary name and renamed,
    /// so a reader never sees a half-written file.
    pub fn save(&self, dir: &Path) -> Result<(), LearnError> {
        std::fs::create_dir_all(dir).map_err(|e| LearnError::io(dir, e))?;
        let d = self.model.dim();
        let dev = Device::Cpu;
        let mut tensors = HashMap::new();
        tensors.insert("weights", Tensor::from_slice(&self.model.weights, d, &dev)?);
        tensors.insert("bias", Tensor::from_slice(&[self.model.bias], 1, &dev)?);
        tensors.insert("mean", Tensor::from_slice(&self.model.mean, d, &dev)?);
        tensors.insert("scale", Tensor::from_slice(&self.model.scale, d, &dev)?);
        if let Calibrator::Platt { a, b } = self.calibrator {
            tensors.insert(PLATT_TENSOR, Tensor::from_slice(&[a, b], 2, &dev)?);
        }
        let tmp = dir.join(format!("{TENSORS_FILE}.tmp"));
        candle_core::safetensors::save(&tensors, &tmp).map_err(|e| LearnError::Artifact {
            path: tmp.clone(),
            reason: e.to_string(),
        })?;
        let path = dir.join(TENSORS_FILE);
        std::fs::rename(&tmp, &path).map_err(|e| LearnError::io(&path, e))?;

        let json = serde_json::to_vec_pretty(&MetaFile {
            format: FORMAT,
            meta: self.meta.clone(),
            calibrator: self.calibrator.clone(),
            drift: self.drift.clone(),
        })
        .map_err(|e| LearnError::Artifact {
            path: dir.join(META_FILE),
            reason: e.to_string(),
        })?;
        write_atomic(&dir.join(META_FILE), &json)
    }

    /// Reads a directory written by `save`, checking that every tensor and
    /// the drift reference match the feature list.
    pub fn load(dir: &Path) -> Result<Self, LearnError> {
        let MetaFile {
            format,
            meta,
            mut calibrator,
            drift,
        } = read_meta_file(&dir.join(META_FILE))?;
        let bad = |path: &Path, reason: String| LearnError::Artifact {
            path: path.to_path_buf(),
            reason,
        };
        if format != FORMAT {
            return Err(bad(
                &dir.join(META_FILE),
                format!("format {format}, this build reads format {FORMAT}"),
            ));
        }
        let d = meta.feature_names.len();
        if drift.feature_names != meta.feature_names || drift.features.len() != d {
            return Err(bad(
                &dir.join(META_FILE),
                "drift reference features differ from the model's".into(),
            ));
        }
        let path = dir.join(TENSORS_FILE);
        let mut tensors = candle_core::safetensors::load(&path, &Device::Cpu)
            .map_err(|e| bad(&path, e.to_string()))?;
        let mut take = |name: &str, len: usize| -> Result<Vec<f32>, LearnError> {
            let t = tensors
                .remove(name)
                .ok_or_else(|| bad(&path, format!("missing tensor `{name}`")))?;
            if t.dtype() != DType::F32 || t.dims() != [len] {
                return Err(bad(
                    &path,
                    format!(
                        "tensor `{name}` is {:?} {:?}, expected F32 [{len}] for {d} features",
                        t.dtype(),
                        t.dims()
                    ),
                ));
            }
            let v = t.to_vec1::<f32>()?;
            if v.iter().any(|x| !x.is_finite()) {
                return Err(bad(&path, format!("tensor `{name}` has non-finite values")));
            }
            Ok(v)
        };
        let model = LogisticModel {
            weights: take("weights", d)?,
            bias: take("bias", 1)?[0],
            mean: take("mean", d)?,
            scale: take("scale", d)?,
        };
        if let Calibrator::Platt { a, b } = &mut calibrator {
            let t = tensors
                .remove(PLATT_TENSOR)
                .ok_or_else(|| bad(&path, format!("missing tensor `{PLATT_TENSOR}`")))?;
            match t.to_vec1::<f64>().ok().as_deref() {
                Some(&[pa, pb]) if pa.is_finite() && pb.is_finite() => (*a, *b) = (pa, pb),
                _ => {
                    return Err(bad(
                        &path,
                        format!("tensor `{PLATT_TENSOR}` must be 2 finite F64 values"),
                    ));
                }
            }
        }
        Ok(ModelArtifact {
            meta,
            model,
            calibrator,
            drift,
        })
    }

    /// Scores one row of `meta.feature_names.len()` values (the caller's
    /// feature code guarantees the width; `score_checked` verifies it).
    pub fn score(&self, row: &[f32]) -> Scored {
        let logit = self.model.logit(row);
        Scored {
            logit,
            probability: self.calibrator.probability(logit),
            contributions: self.model.contributions(row),
        }
    }

    pub fn score_checked(&self, row: &[f32]) -> Result<Scored, LearnError> {
        if row.len() != self.model.dim() {
            return Err(LearnError::WrongWidth {
                row: 0,
                expected: self.model.dim(),
                got: row.len(),
            });
        }
        Ok(self.score(row))
    }

    /// Calibrated probabilities of every row of `data`.
    pub fn probabilities(&self, data: &Dataset) -> Result<Vec<f32>, LearnError> {
        Ok(self.calibrator.probabilities(&self.model.logits(data)?))
    }
}

/// Reads only the metadata file (listing a registry needs no tensors).
pub(crate) fn read_meta(dir: &Path) -> Result<ModelMeta, LearnError> {
    read_meta_file(&dir.join(META_FILE)).map(|m| m.meta)
}

fn read_meta_file(path: &Path) -> Result<MetaFile, LearnError> {
    let bytes = std::fs::read(path).map_err(|e| LearnError::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| LearnError::Artifact {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Writes `bytes` to a temporary sibling and renames it over `path`.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), LearnError> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| LearnError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| LearnError::io(path, e))
}
