//! Training a full artifact, saving and loading it, and the registry.

use std::path::Path;

use liveseg_learn::artifact::{META_FILE, TENSORS_FILE, train_propensity_at};
use liveseg_learn::{
    CalibrationMethod, Dataset, LearnError, ModelArtifact, Registry, TrainOptions,
};
use rand::{Rng, SeedableRng};

fn data(seed: u64) -> Dataset {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut data = Dataset::new(vec![
        "clicks_30d".into(),
        "days_since_send".into(),
        "seniority".into(),
    ]);
    for i in 0..3_000 {
        let row = [
            rng.random_range(0..10) as f32,
            rng.random_range(0.0..90.0f32),
            rng.random_range(0..4) as f32,
        ];
        let z = -2.0 + 0.4 * row[0] as f64 - 0.02 * row[1] as f64;
        let y = rng.random::<f64>() < 1.0 / (1.0 + (-z).exp());
        data.push(&row, y, 1_700_000_000_000 + i * 60_000)
            .expect("valid row");
    }
    data
}

fn train(seed: u64, created_at_ms: i64) -> ModelArtifact {
    train_propensity_at(
        &data(seed),
        "click-7d",
        "contact-v1",
        &TrainOptions::default(),
        CalibrationMethod::Platt,
        (0.6, 0.2),
        created_at_ms,
    )
    .expect("train")
}

#[test]
fn train_propensity_fills_the_metadata() {
    let a = train(1, 1_735_689_600_123);
    assert_eq!(
        a.meta.version.len(),
        "click-7d-20250101T000000123-".len() + 8,
        "{}",
        a.meta.version
    );
    assert!(
        a.meta.version.starts_with("click-7d-20250101T000000123-"),
        "{}",
        a.meta.version
    );
    assert_eq!(
        a.meta.rows.train + a.meta.rows.calibration + a.meta.rows.validation,
        3000
    );
    assert!(a.meta.training_window.end_ms <= a.meta.validation_window.start_ms);
    assert!(a.meta.validation.auc > 0.7, "{}", a.meta.validation.auc);
    assert!(a.meta.calibration.starts_with("platt"));
    assert_eq!(a.drift.feature_names, a.meta.feature_names);
    assert!(a.meta.trainer.contains("converged"), "{}", a.meta.trainer);
}

#[test]
fn save_and_load_give_identical_scores() {
    let a = train(2, 1_735_689_600_000);
    let dir = tempfile::tempdir().unwrap();
    a.save(dir.path()).unwrap();
    let b = ModelArtifact::load(dir.path()).unwrap();
    assert_eq!(a.model, b.model);
    assert_eq!(a.calibrator, b.calibrator);
    assert_eq!(a.drift.feature_names, b.drift.feature_names);
    assert_eq!(a.drift.features.len(), b.drift.features.len());
    assert_eq!(a.drift.features[1].edges, b.drift.features[1].edges);
    assert_eq!(
        (&a.meta.version, &a.meta.rows),
        (&b.meta.version, &b.meta.rows)
    );
    // JSON floats come back within an ulp (serde_json's default parser).
    assert!((a.meta.validation.auc - b.meta.validation.auc).abs() < 1e-12);
    let d = data(3);
    for i in 0..100 {
        assert_eq!(a.score(d.row(i)), b.score(d.row(i)));
    }
    let s = b.score(d.row(0));
    let sum: f32 = s.contributions.iter().sum();
    assert!((sum - (s.logit - b.model.bias)).abs() < 1e-4);
    assert!(b.score_checked(&[1.0]).is_err());
}

#[test]
fn load_names_the_file_when_shapes_do_not_match() {
    let a = train(2, 1_735_689_600_000);
    let dir = tempfile::tempdir().unwrap();
    a.save(dir.path()).unwrap();
    // Claim a fourth feature in the metadata: the tensors no longer fit.
    let path = dir.path().join(META_FILE);
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    for part in ["meta", "drift"] {
        let names = json[part]["feature_names"].as_array_mut().unwrap();
        names.push("extra".into());
    }
    let bins = json["drift"]["features"][0].clone();
    json["drift"]["features"].as_array_mut().unwrap().push(bins);
    std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
    let e = ModelArtifact::load(dir.path()).unwrap_err().to_string();
    assert!(
        e.contains(TENSORS_FILE) && e.contains("weights") && e.contains("[4]"),
        "{e}"
    );

    std::fs::write(&path, b"{").unwrap();
    let e = ModelArtifact::load(dir.path()).unwrap_err().to_string();
    assert!(e.contains(META_FILE), "{e}");
    let e = ModelArtifact::load(&dir.path().join("missing"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing"), "{e}");
}

fn active_version(r: &Registry, target: &str) -> Option<String> {
    r.active(target).expect("active").map(|a| a.meta.version)
}

#[test]
fn registry_install_list_activate_rollback() {
    let root = tempfile::tempdir().unwrap();
    let r = Registry::open(root.path().join("models")).unwrap();
    let (a, b) = (train(1, 1_735_689_600_000), train(2, 1_735_776_000_000));
    let va = r.install(&a).unwrap();
    let vb = r.install(&b).unwrap();
    assert!(va < vb, "versions sort by time: {va} {vb}");
    assert!(r.install(&a).is_err(), "a version is written once");
    assert_eq!(r.targets().unwrap(), vec!["click-7d".to_string()]);

    // Installing does not activate.
    assert_eq!(active_version(&r, "click-7d"), None);
    let listed = r.list(None).unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|(m, on)| (m.version.clone(), *on))
            .collect::<Vec<_>>(),
        vec![(va.clone(), false), (vb.clone(), false)]
    );

    r.activate("click-7d", &va).unwrap();
    r.activate("click-7d", &vb).unwrap();
    assert_eq!(active_version(&r, "click-7d"), Some(vb.clone()));
    let listed = r.list(Some("click-7d")).unwrap();
    assert!(listed.iter().any(|(m, on)| m.version == vb && *on));

    assert_eq!(r.rollback("click-7d").unwrap(), va);
    assert_eq!(active_version(&r, "click-7d"), Some(va.clone()));
    let e = r.rollback("click-7d").unwrap_err();
    assert!(matches!(e, LearnError::NoPreviousVersion { .. }), "{e}");
    assert_eq!(r.state("click-7d").unwrap().history.len(), 3);

    let e = r
        .activate("click-7d", "click-7d-nope")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("click-7d-nope") && e.contains(&va) && e.contains(&vb),
        "{e}"
    );
    assert!(r.activate("../etc", &va).is_err());
    assert_eq!(active_version(&r, "reply"), None);
    assert!(r.list(Some("reply")).unwrap().is_empty());

    // A fresh handle on the same root sees the same state.
    let again = Registry::open(root.path().join("models")).unwrap();
    assert_eq!(
        again.active("click-7d").unwrap().unwrap(),
        again.load("click-7d", &va).unwrap()
    );
    assert_no_temporaries(&root.path().join("models/click-7d"));
}

fn assert_no_temporaries(dir: &Path) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        assert!(!name.contains("tmp"), "left behind: {name}");
    }
}
