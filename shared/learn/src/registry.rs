//! Versioned models on disk, per target, with an explicit active version.
//!
//! Layout: `root/<target>/<version>/{model.safetensors,model.json}` and
//! `root/<target>/active.json` (the active version, the stack of versions
//! it replaced, and a log of every change). Installing never activates:
//! a new model is looked at (`liveseg model report`) before it serves.
//! A version directory is written under a temporary name and renamed into
//! place, and `active.json` is replaced by rename, so a reader (the
//! scoring service) sees either the old or the new state, never a partial
//! one. Concurrent writers to the same target are not coordinated: one
//! trainer per target is the deployment's job.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::artifact::{ModelArtifact, ModelMeta, read_meta, write_atomic};
use crate::dataset::LearnError;

const ACTIVE_FILE: &str = "active.json";

#[derive(Debug)]
pub struct Registry {
    root: PathBuf,
}

/// One change of the active version, for audits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activation {
    pub version: String,
    /// "activate" or "rollback".
    pub action: String,
    pub at_ms: i64,
}

/// Contents of `active.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveState {
    pub active: Option<String>,
    /// Versions replaced by `activate`, most recent last; `rollback` pops.
    pub previous: Vec<String>,
    pub history: Vec<Activation>,
}

/// Target and version names become directory names: keep them to a safe
/// alphabet so no name escapes the registry or clashes with its files.
pub(crate) fn check_name(what: &str, name: &str) -> Result<(), LearnError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(LearnError::Invalid(format!(
            "{what} `{name}`: use 1-128 of [A-Za-z0-9._-], not starting with '.'"
        )))
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Registry {
    /// Opens (creating if needed) a registry rooted at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, LearnError> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(|e| LearnError::io(&root, e))?;
        Ok(Registry { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn target_dir(&self, target: &str) -> Result<PathBuf, LearnError> {
        check_name("target", target)?;
        Ok(self.root.join(target))
    }

    /// Stores the artifact as a new version of its target and returns the
    /// version. Does not activate it. Installing a version twice is an
    /// error (versions are immutable once written).
    pub fn install(&self, a: &ModelArtifact) -> Result<String, LearnError> {
        let version = a.meta.version.clone();
        check_name("version", &version)?;
        let dir = self.target_dir(&a.meta.target)?;
        let final_dir = dir.join(&version);
        if final_dir.exists() {
            return Err(LearnError::Invalid(format!(
                "target `{}` already has version `{version}`",
                a.meta.target
            )));
        }
        let tmp = dir.join(format!(".tmp-{version}-{}", std::process::id()));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| LearnError::io(&tmp, e))?;
        }
        a.save(&tmp)?;
        std::fs::rename(&tmp, &final_dir).map_err(|e| LearnError::io(&final_dir, e))?;
        Ok(version)
    }

    /// Targets with at least one version, sorted.
    pub fn targets(&self) -> Result<Vec<String>, LearnError> {
        let mut out = subdirs(&self.root)?;
        out.sort();
        Ok(out)
    }

    /// Versions of `target`, oldest first (versions sort by time).
    pub fn versions(&self, target: &str) -> Result<Vec<String>, LearnError> {
        let dir = self.target_dir(target)?;
        if !dir.exists() {
            return Ok(Vec::new());
        }
        let mut out = subdirs(&dir)?;
        out.sort();
        Ok(out)
    }

    /// Metadata of every version of `target` (or of all targets) and
    /// whether it is the active one.
    pub fn list(&self, target: Option<&str>) -> Result<Vec<(ModelMeta, bool)>, LearnError> {
        let targets = match target {
            Some(t) => vec![t.to_string()],
            None => self.targets()?,
        };
        let mut out = Vec::new();
        for t in targets {
            let active = self.state(&t)?.active;
            for v in self.versions(&t)? {
                let meta = read_meta(&self.root.join(&t).join(&v))?;
                let is_active = active.as_deref() == Some(v.as_str());
                out.push((meta, is_active));
            }
        }
        Ok(out)
    }

    /// The activation state of `target` (empty when never activated).
    pub fn state(&self, target: &str) -> Result<ActiveState, LearnError> {
        let path = self.target_dir(target)?.join(ACTIVE_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| LearnError::Artifact {
                path: path.clone(),
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ActiveState::default()),
            Err(e) => Err(LearnError::io(&path, e)),
        }
    }

    fn write_state(&self, target: &str, state: &ActiveState) -> Result<(), LearnError> {
        let path = self.target_dir(target)?.join(ACTIVE_FILE);
        let bytes = serde_json::to_vec_pretty(state).map_err(|e| LearnError::Artifact {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_atomic(&path, &bytes)
    }

    /// Makes `version` the one `active` returns. Activating the active
    /// version is a no-op.
    pub fn activate(&self, target: &str, version: &str) -> Result<(), LearnError> {
        let known = self.versions(target)?;
        if !known.iter().any(|v| v == version) {
            return Err(LearnError::UnknownVersion {
                target: target.into(),
                version: version.into(),
                known,
            });
        }
        let mut state = self.state(target)?;
        if state.active.as_deref() == Some(version) {
            return Ok(());
        }
        if let Some(old) = state.active.replace(version.to_string()) {
            state.previous.push(old);
        }
        state.history.push(Activation {
            version: version.into(),
            action: "activate".into(),
            at_ms: now_ms(),
        });
        self.write_state(target, &state)
    }

    /// Re-activates the version that the current one replaced and returns
    /// it; repeated rollbacks walk further back.
    pub fn rollback(&self, target: &str) -> Result<String, LearnError> {
        let mut state = self.state(target)?;
        let Some(previous) = state.previous.pop() else {
            return Err(LearnError::NoPreviousVersion {
                target: target.into(),
            });
        };
        state.active = Some(previous.clone());
        state.history.push(Activation {
            version: previous.clone(),
            action: "rollback".into(),
            at_ms: now_ms(),
        });
        self.write_state(target, &state)?;
        Ok(previous)
    }

    /// The active model of `target`, loaded; `None` when none is active.
    pub fn active(&self, target: &str) -> Result<Option<ModelArtifact>, LearnError> {
        match self.state(target)?.active {
            Some(v) => ModelArtifact::load(&self.target_dir(target)?.join(v)).map(Some),
            None => Ok(None),
        }
    }

    /// Loads one version.
    pub fn load(&self, target: &str, version: &str) -> Result<ModelArtifact, LearnError> {
        check_name("version", version)?;
        let dir = self.target_dir(target)?.join(version);
        if !dir.is_dir() {
            return Err(LearnError::UnknownVersion {
                target: target.into(),
                version: version.into(),
                known: self.versions(target)?,
            });
        }
        ModelArtifact::load(&dir)
    }
}

/// Names of the non-hidden subdirectories of `dir` (skips temporaries).
fn subdirs(dir: &Path) -> Result<Vec<String>, LearnError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| LearnError::io(dir, e))? {
        let entry = entry.map_err(|e| LearnError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && entry.path().is_dir() {
            out.push(name);
        }
    }
    Ok(out)
}
