//! Time splits and PSI drift.

use liveseg_learn::drift::DriftLevel;
use liveseg_learn::{Dataset, DriftReference, LearnError, psi_of_scores};
use rand::{Rng, SeedableRng};

/// Rows with a continuous, a discrete and a binary feature; `shift` moves
/// the continuous one and flips more binaries on. Times are shuffled.
fn rows(n: usize, shift: f32, seed: u64) -> Dataset {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut data = Dataset::new(vec!["amount".into(), "visits".into(), "opted_in".into()]);
    for _ in 0..n {
        let amount = rng.random_range(0.0..10.0f32) + shift;
        let visits = rng.random_range(0..4) as f32;
        let opted = if rng.random::<f32>() < 0.3 + shift / 10.0 {
            1.0
        } else {
            0.0
        };
        let y = rng.random::<f32>() < 0.2;
        data.push(&[amount, visits, opted], y, rng.random_range(0..1_000_000))
            .expect("valid row");
    }
    data
}

#[test]
fn time_split_keeps_time_order_and_fractions() {
    let data = rows(10_000, 0.0, 1);
    let s = data.split_by_time(0.6, 0.2).unwrap();
    assert_eq!(
        (s.train.len(), s.calibration.len(), s.validation.len()),
        (6000, 2000, 2000)
    );
    let max = |d: &Dataset| *d.t.iter().max().unwrap();
    let min = |d: &Dataset| *d.t.iter().min().unwrap();
    assert!(max(&s.train) <= min(&s.calibration));
    assert!(max(&s.calibration) <= min(&s.validation));
    assert!(max(&s.train) <= min(&s.validation));
    assert_eq!(s.train_window.end_ms, max(&s.train));
    assert_eq!(s.validation_window.start_ms, min(&s.validation));
    // Nothing lost or duplicated.
    let mut all: Vec<i64> = [&s.train, &s.calibration, &s.validation]
        .iter()
        .flat_map(|d| d.t.clone())
        .collect();
    let mut orig = data.t.clone();
    all.sort();
    orig.sort();
    assert_eq!(all, orig);
}

#[test]
fn time_split_errors_on_bad_fractions_and_one_class_parts() {
    let data = rows(100, 0.0, 2);
    assert!(matches!(
        data.split_by_time(0.9, 0.2),
        Err(LearnError::Invalid(_))
    ));
    assert!(matches!(
        data.split_by_time(0.0, 0.2),
        Err(LearnError::Invalid(_))
    ));
    // Positives only in the oldest rows: later folds lack them.
    let mut skewed = Dataset::new(vec!["x".into()]);
    for i in 0..100 {
        skewed.push(&[i as f32], i < 30, i).unwrap();
    }
    let e = skewed.split_by_time(0.5, 0.2).unwrap_err().to_string();
    assert!(
        e.contains("calibration fold") && e.contains("0 positives"),
        "{e}"
    );
    let e = Dataset::new(vec!["x".into()])
        .split_by_time(0.5, 0.2)
        .unwrap_err()
        .to_string();
    assert!(e.contains("training fold"), "{e}");
}

#[test]
fn psi_is_near_zero_on_the_same_distribution_and_large_on_a_shift() {
    let train = rows(50_000, 0.0, 3);
    let reference = DriftReference::fit(&train, 10);
    // A discrete feature keeps one bin per value, not ten.
    assert!(
        reference.features[1].edges.len() <= 4,
        "{:?}",
        reference.features[1].edges
    );

    let same = reference.psi(&rows(20_000, 0.0, 4));
    assert_eq!(same.len(), 3);
    for f in &same {
        assert!(f.psi < 0.01 && f.level == DriftLevel::Stable, "{f:?}");
    }
    let shifted = reference.psi(&rows(20_000, 3.0, 5));
    // Largest first: the continuous feature moved most.
    assert_eq!(shifted[0].feature, "amount");
    assert!(
        shifted[0].psi > 0.25 && shifted[0].level == DriftLevel::Significant,
        "{shifted:?}"
    );
    let visits = shifted.iter().find(|f| f.feature == "visits").unwrap();
    assert!(visits.psi < 0.01, "{visits:?}");
}

#[test]
fn psi_of_scores_and_levels() {
    let a: Vec<f32> = (0..10_000).map(|i| (i % 1000) as f32 / 1000.0).collect();
    let b: Vec<f32> = a.iter().map(|x| x * x).collect();
    assert!(psi_of_scores(&a, &a).abs() < 1e-12);
    assert!(psi_of_scores(&a, &b) > 0.25);
    assert_eq!(DriftLevel::of(0.05), DriftLevel::Stable);
    assert_eq!(DriftLevel::of(0.1), DriftLevel::Moderate);
    assert_eq!(DriftLevel::of(0.25), DriftLevel::Significant);
}

#[test]
fn a_label_window_keeps_each_fold_clear_of_the_next() {
    let mut data = Dataset::new(vec!["x".into()]);
    for i in 0..1000i64 {
        data.push(&[i as f32], i % 3 == 0, i * 10).unwrap();
    }
    let plain = data.split_by_time(0.6, 0.2).unwrap();
    let gapped = data.split_by_time_with_gap(0.6, 0.2, 55).unwrap();
    let cal_start = plain.calibration_window.start_ms;
    let val_start = plain.validation_window.start_ms;
    assert!(gapped.train.t.iter().all(|t| t + 55 < cal_start));
    assert!(gapped.calibration.t.iter().any(|t| t + 55 >= val_start));
    assert_eq!(gapped.calibration.len(), plain.calibration.len());
    // Rows 595-599 (t 5950-5990) close at or after 6000 and are dropped.
    assert_eq!(plain.train.len() - gapped.train.len(), 5);
    assert_eq!(gapped.validation.len(), plain.validation.len());
}
