//! Propensity scoring in the model service: the models of a registry
//! directory (`liveseg model train` installs them) scored over gRPC in
//! batches, with per-row errors, the top feature contributions of each
//! score, and input drift watched on what is actually scored.
//!
//! The active version of a target is read from the registry on every call
//! (one small file), so `liveseg model activate` / `rollback` take effect
//! on the next request without a restart; loaded versions are cached.
//!
//! Drift: the last `DRIFT_WINDOW` rows scored by each version are kept, and
//! every `DRIFT_EVERY` rows the PSI of each feature against the training
//! window's bins is exported as `liveseg_propensity_feature_psi` with
//! `liveseg_propensity_drift_alert` set to 1 when any exceeds the alert
//! threshold.

use liveseg_learn::{Dataset, ModelArtifact, ModelMeta, Registry};
use liveseg_proto::pb;
use liveseg_proto::pb::propensity_service_server::{PropensityService, PropensityServiceServer};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tonic::{Request, Response, Status};

/// Rows in one Score call.
pub const MAX_ROWS: usize = 10_000;
/// Contributions returned per row at most.
pub const MAX_TOP: u32 = 16;
/// Recent rows per version that drift is computed over.
const DRIFT_WINDOW: usize = 5_000;
/// Rows scored between two drift computations.
const DRIFT_EVERY: usize = 1_000;

#[derive(Debug, Clone)]
pub struct PropensityConfig {
    pub registry: PathBuf,
    /// A feature's PSI above this raises the drift alert.
    pub psi_alert: f64,
}

struct DriftWatch {
    rows: VecDeque<Vec<f32>>,
    since_check: usize,
}

pub struct Propensity {
    registry: Registry,
    psi_alert: f64,
    loaded: Mutex<HashMap<(String, String), Arc<ModelArtifact>>>,
    drift: Mutex<HashMap<(String, String), DriftWatch>>,
}

fn status(e: liveseg_learn::LearnError) -> Status {
    use liveseg_learn::LearnError as E;
    match e {
        E::UnknownVersion { .. } => Status::not_found(e.to_string()),
        E::NoPreviousVersion { .. } => Status::failed_precondition(e.to_string()),
        E::Invalid(_) => Status::invalid_argument(e.to_string()),
        other => Status::internal(other.to_string()),
    }
}

impl Propensity {
    pub fn open(config: &PropensityConfig) -> Result<Propensity, liveseg_learn::LearnError> {
        Ok(Propensity {
            registry: Registry::open(&config.registry)?,
            psi_alert: config.psi_alert,
            loaded: Mutex::new(HashMap::new()),
            drift: Mutex::new(HashMap::new()),
        })
    }

    pub fn server(self: Arc<Self>) -> PropensityServiceServer<PropensityGrpc> {
        PropensityServiceServer::new(PropensityGrpc(self))
    }

    /// The model a request names: its version, else the active one.
    fn model(&self, target: &str, version: &str) -> Result<Arc<ModelArtifact>, Status> {
        let version = if version.is_empty() {
            self.registry
                .state(target)
                .map_err(status)?
                .active
                .ok_or_else(|| {
                    Status::failed_precondition(format!(
                        "target `{target}` has no active model: `liveseg model activate {target} VERSION`"
                    ))
                })?
        } else {
            version.to_string()
        };
        let key = (target.to_string(), version.clone());
        if let Some(m) = self.lock_loaded().get(&key) {
            return Ok(Arc::clone(m));
        }
        let artifact = Arc::new(self.registry.load(target, &version).map_err(status)?);
        self.lock_loaded().insert(key, Arc::clone(&artifact));
        Ok(artifact)
    }

    fn lock_loaded(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(String, String), Arc<ModelArtifact>>> {
        // A poisoned cache only means another request panicked mid-insert;
        // the map itself is still consistent.
        self.loaded.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Scores a request: per-row errors for rows that do not fit.
    pub fn score(&self, req: pb::ScoreRequest) -> Result<pb::ScoreResponse, Status> {
        if req.rows.is_empty() || req.rows.len() > MAX_ROWS {
            return Err(Status::invalid_argument(format!(
                "rows: {} rows; send 1-{MAX_ROWS}",
                req.rows.len()
            )));
        }
        if req.top_contributions > MAX_TOP {
            return Err(Status::invalid_argument(format!(
                "top_contributions: {} is more than {MAX_TOP}",
                req.top_contributions
            )));
        }
        let model = self.model(&req.target, &req.version)?;
        let meta = &model.meta;
        if !req.feature_set.is_empty() && req.feature_set != meta.feature_set {
            return Err(Status::failed_precondition(format!(
                "feature_set: rows are `{}` but {} reads `{}`",
                req.feature_set, meta.version, meta.feature_set
            )));
        }
        let mut accepted = Vec::new();
        let scores = req
            .rows
            .into_iter()
            .enumerate()
            .map(|(i, row)| match check_row(meta, i, &row.features) {
                Err(error) => pb::PropensityScore {
                    id: row.id,
                    error,
                    ..Default::default()
                },
                Ok(()) => {
                    let s = model.score(&row.features);
                    let top = top_contributions(
                        meta,
                        &row.features,
                        &s.contributions,
                        req.top_contributions,
                    );
                    accepted.push(row.features);
                    pb::PropensityScore {
                        id: row.id,
                        probability: s.probability,
                        logit: s.logit,
                        top,
                        error: String::new(),
                    }
                }
            })
            .collect();
        metrics::counter!("liveseg_propensity_rows_scored_total", "target" => meta.target.clone())
            .increment(accepted.len() as u64);
        self.watch_drift(&model, accepted);
        Ok(pb::ScoreResponse {
            target: meta.target.clone(),
            version: meta.version.clone(),
            scores,
        })
    }

    fn watch_drift(&self, model: &ModelArtifact, rows: Vec<Vec<f32>>) {
        let key = (model.meta.target.clone(), model.meta.version.clone());
        let mut all = self.drift.lock().unwrap_or_else(|p| p.into_inner());
        let w = all.entry(key).or_insert_with(|| DriftWatch {
            rows: VecDeque::new(),
            since_check: 0,
        });
        w.since_check += rows.len();
        for r in rows {
            if w.rows.len() == DRIFT_WINDOW {
                w.rows.pop_front();
            }
            w.rows.push_back(r);
        }
        if w.since_check < DRIFT_EVERY {
            return;
        }
        w.since_check = 0;
        let mut data = Dataset::new(model.meta.feature_names.clone());
        for r in &w.rows {
            // Rows were checked before scoring; a failure here is impossible.
            let _ = data.push(r, false, 0);
        }
        let labels = |f: &str| {
            [
                ("target", model.meta.target.clone()),
                ("version", model.meta.version.clone()),
                ("feature", f.to_string()),
            ]
        };
        let mut worst = 0.0f64;
        for p in model.drift.psi(&data) {
            worst = worst.max(p.psi);
            metrics::gauge!("liveseg_propensity_feature_psi", &labels(&p.feature)).set(p.psi);
        }
        let alert = worst > self.psi_alert;
        if alert {
            tracing::warn!(target_name = %model.meta.target, version = %model.meta.version, psi = worst, threshold = self.psi_alert, "input drift: a feature's PSI is past the alert threshold");
        }
        metrics::gauge!("liveseg_propensity_drift_alert", "target" => model.meta.target.clone(), "version" => model.meta.version.clone())
            .set(if alert { 1.0 } else { 0.0 });
    }

    pub fn list(&self, target: &str) -> Result<Vec<pb::ModelVersion>, Status> {
        let target = (!target.is_empty()).then_some(target);
        Ok(self
            .registry
            .list(target)
            .map_err(status)?
            .into_iter()
            .map(|(m, active)| version_of(&m, active))
            .collect())
    }

    fn describe(&self, target: &str, version: &str) -> Result<pb::ModelVersion, Status> {
        self.list(target)?
            .into_iter()
            .find(|v| v.version == version)
            .ok_or_else(|| {
                Status::not_found(format!("target `{target}` has no version `{version}`"))
            })
    }
}

/// Why row `i` cannot be scored by `meta`'s model, naming the field.
fn check_row(meta: &ModelMeta, i: usize, features: &[f32]) -> Result<(), String> {
    let want = meta.feature_names.len();
    if features.len() != want {
        return Err(format!(
            "rows[{i}].features: {} values; {} reads {want} ({})",
            features.len(),
            meta.version,
            meta.feature_set
        ));
    }
    match features.iter().position(|v| !v.is_finite()) {
        Some(j) => Err(format!(
            "rows[{i}].features[{j}] ({}): not a finite number",
            meta.feature_names[j]
        )),
        None => Ok(()),
    }
}

fn top_contributions(
    meta: &ModelMeta,
    features: &[f32],
    contributions: &[f32],
    n: u32,
) -> Vec<pb::FeatureContribution> {
    let mut order: Vec<usize> = (0..contributions.len()).collect();
    order.sort_by(|a, b| contributions[*b].abs().total_cmp(&contributions[*a].abs()));
    order
        .into_iter()
        .take(n as usize)
        .map(|j| pb::FeatureContribution {
            feature: meta.feature_names[j].clone(),
            value: features[j],
            contribution: contributions[j],
        })
        .collect()
}

fn version_of(m: &ModelMeta, active: bool) -> pb::ModelVersion {
    pb::ModelVersion {
        target: m.target.clone(),
        version: m.version.clone(),
        active,
        feature_set: m.feature_set.clone(),
        auc: m.validation.auc,
        pr_auc: m.validation.pr_auc,
        brier: m.validation.brier,
        ece: m.validation.ece,
        validation_rows: m.validation.rows as u64,
        trained_from: rfc3339(m.training_window.start_ms),
        trained_to: rfc3339(m.training_window.end_ms),
    }
}

/// RFC 3339 UTC, to the second (the training windows in ListModels).
fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || format!("@{ms}ms"),
        |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )
}

pub struct PropensityGrpc(Arc<Propensity>);

#[tonic::async_trait]
impl PropensityService for PropensityGrpc {
    async fn score(
        &self,
        req: Request<pb::ScoreRequest>,
    ) -> Result<Response<pb::ScoreResponse>, Status> {
        let this = Arc::clone(&self.0);
        let req = req.into_inner();
        // Large batches are CPU work: keep them off the async workers.
        tokio::task::spawn_blocking(move || this.score(req))
            .await
            .map_err(|e| Status::internal(format!("scoring task: {e}")))?
            .map(Response::new)
    }

    async fn list_models(
        &self,
        req: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        Ok(Response::new(pb::ListModelsResponse {
            models: self.0.list(&req.into_inner().target)?,
        }))
    }

    async fn activate_model(
        &self,
        req: Request<pb::ActivateModelRequest>,
    ) -> Result<Response<pb::ModelVersion>, Status> {
        let r = req.into_inner();
        self.0
            .registry
            .activate(&r.target, &r.version)
            .map_err(status)?;
        Ok(Response::new(self.0.describe(&r.target, &r.version)?))
    }

    async fn rollback_model(
        &self,
        req: Request<pb::RollbackModelRequest>,
    ) -> Result<Response<pb::ModelVersion>, Status> {
        let r = req.into_inner();
        let version = self.0.registry.rollback(&r.target).map_err(status)?;
        Ok(Response::new(self.0.describe(&r.target, &version)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_767_225_600_000), "2026-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400_000 + 3_661_000), "2000-02-29T01:01:01Z");
    }
}
