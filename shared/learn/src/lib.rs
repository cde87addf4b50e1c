//! liveseg's learning library: everything numeric about propensity models
//! that does not know about events or actors. Rows come in as plain feature
//! matrices (built by `liveseg_core::features`, the one feature code shared
//! by training and live scoring); models, calibrators and metrics go out.
//!
//! - `dataset`: a feature matrix with labels and event times; time splits.
//! - `logistic`: L2 logistic regression trained with Candle; scoring with
//!   per-feature contributions.
//! - `calibrate`: Platt scaling and isotonic regression on a later fold.
//! - `metrics`: AUC, PR-AUC, log loss, Brier, ECE with a reliability table,
//!   calibration ratio, lift by decile.
//! - `drift`: PSI per feature against the training window.
//! - `served`: served scores against matured outcomes (calibration per
//!   model version).
//! - `artifact` and `registry`: versioned models on disk (safetensors + JSON
//!   metadata); list, activate, roll back.
//! - `kmeans`: spherical and plain k-means with readable cluster descriptions.
//! - `neighbours`: exact top-N similarity search for lookalikes.

pub mod artifact;
pub mod calibrate;
pub mod dataset;
pub mod drift;
pub mod kmeans;
pub mod logistic;
pub mod metrics;
pub mod neighbours;
pub mod registry;
pub mod served;

pub use artifact::{ModelArtifact, ModelMeta, Scored, train_propensity};
pub use calibrate::{CalibrationMethod, Calibrator};
pub use dataset::{Dataset, LearnError, TimeSplit, Window};
pub use drift::{DriftReference, FeaturePsi, psi_of_scores};
pub use logistic::{LogisticModel, TrainOptions};
pub use metrics::{Report, evaluate};
pub use registry::Registry;
pub use served::{ServedFigures, served_figures};
