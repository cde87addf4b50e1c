//! Platt scaling and isotonic regression.

use liveseg_learn::calibrate::MIN_ISOTONIC_ROWS;
use liveseg_learn::{CalibrationMethod, Calibrator, evaluate};
use rand::{Rng, SeedableRng};

/// True logits `z` and labels drawn from `sigmoid(z)`.
fn draws(n: usize, seed: u64) -> (Vec<f64>, Vec<f32>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let z: Vec<f64> = (0..n).map(|_| rng.random_range(-4.0..2.0)).collect();
    let y = z
        .iter()
        .map(|&z| {
            if rng.random::<f64>() < 1.0 / (1.0 + (-z).exp()) {
                1.0
            } else {
                0.0
            }
        })
        .collect();
    (z, y)
}

#[test]
fn platt_fixes_mis_scaled_logits() {
    // An over-confident, shifted score: 3z + 1.
    let skew = |z: &[f64]| -> Vec<f32> { z.iter().map(|&z| (3.0 * z + 1.0) as f32).collect() };
    let (z, y) = draws(5_000, 1);
    let platt = Calibrator::fit_platt(&skew(&z), &y).unwrap();
    let Calibrator::Platt { a, b } = platt else {
        panic!("{platt:?}")
    };
    assert!(
        (a - 1.0 / 3.0).abs() < 0.05 && (b + 1.0 / 3.0).abs() < 0.15,
        "a {a} b {b}"
    );

    let (z, y) = draws(5_000, 2);
    let logits = skew(&z);
    let raw = evaluate(&Calibrator::Identity.probabilities(&logits), &y, 10).unwrap();
    let fixed = evaluate(&platt.probabilities(&logits), &y, 10).unwrap();
    assert!(
        fixed.ece < raw.ece / 3.0,
        "ECE {} -> {}",
        raw.ece,
        fixed.ece
    );
    assert!(fixed.ece < 0.03, "{}", fixed.ece);
    // A monotone map keeps the ranking.
    assert!((fixed.auc - raw.auc).abs() < 1e-9);
}

#[test]
fn isotonic_pools_violators_and_interpolates() {
    let iso = Calibrator::fit_isotonic(&[1.0, 2.0, 3.0, 4.0], &[0.0, 1.0, 0.0, 1.0]).unwrap();
    assert_eq!(
        iso,
        Calibrator::Isotonic {
            logits: vec![1.0, 2.0, 3.0, 4.0],
            probabilities: vec![0.0, 0.5, 0.5, 1.0]
        }
    );
    assert_eq!(iso.probability(0.0), 0.0);
    assert_eq!(iso.probability(1.5), 0.25);
    assert_eq!(iso.probability(2.5), 0.5);
    assert_eq!(iso.probability(9.0), 1.0);
}

#[test]
fn isotonic_is_monotone_and_calibrated() {
    let (z, y) = draws(20_000, 3);
    let logits: Vec<f32> = z.iter().map(|&z| (0.5 * z - 2.0) as f32).collect();
    let iso = Calibrator::fit_isotonic(&logits, &y).unwrap();
    let mut last = 0.0f32;
    for k in -1000..=1000 {
        let p = iso.probability(k as f32 / 100.0);
        assert!(
            (0.0..=1.0).contains(&p) && p >= last,
            "at {k}: {p} < {last}"
        );
        last = p;
    }
    let (z, y) = draws(20_000, 4);
    let logits: Vec<f32> = z.iter().map(|&z| (0.5 * z - 2.0) as f32).collect();
    let r = evaluate(&iso.probabilities(&logits), &y, 10).unwrap();
    assert!(r.ece < 0.02, "{}", r.ece);
}

#[test]
fn isotonic_falls_back_to_platt_on_small_folds() {
    let (z, y) = draws(MIN_ISOTONIC_ROWS - 1, 5);
    let logits: Vec<f32> = z.iter().map(|&z| z as f32).collect();
    let fitted = Calibrator::fit(CalibrationMethod::Isotonic, &logits, &y).unwrap();
    assert_eq!(fitted.calibrator.name(), "platt");
    assert!(
        fitted.description.contains("isotonic") && fitted.description.contains("1000"),
        "{}",
        fitted.description
    );

    let (z, y) = draws(MIN_ISOTONIC_ROWS, 6);
    let logits: Vec<f32> = z.iter().map(|&z| z as f32).collect();
    let fitted = Calibrator::fit(CalibrationMethod::Isotonic, &logits, &y).unwrap();
    assert_eq!(fitted.calibrator.name(), "isotonic");
}

#[test]
fn calibration_needs_both_classes_and_finite_logits() {
    let e = Calibrator::fit_platt(&[0.1, 0.2], &[0.0, 0.0])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("calibration fold") && e.contains("0 positives"),
        "{e}"
    );
    let e = Calibrator::fit_isotonic(&[0.1, f32::NAN], &[0.0, 1.0])
        .unwrap_err()
        .to_string();
    assert!(e.contains("row 1"), "{e}");
}
