//! Training behaviour on synthetic data with known generating weights, and
//! rejection of bad input.

use liveseg_learn::{Dataset, LearnError, LogisticModel, TrainOptions, evaluate};
use rand::{Rng, SeedableRng};

/// Rows with independent features of different scales and offsets and
/// labels drawn from `sigmoid(bias + sum w_j * x_j)`; also returns the true
/// logits.
fn synthetic(n: usize, weights: &[f64], bias: f64, seed: u64) -> (Dataset, Vec<f64>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut data = Dataset::new((0..weights.len()).map(|j| format!("x{j}")).collect());
    let mut truth = Vec::with_capacity(n);
    for i in 0..n {
        let row: Vec<f32> = (0..weights.len())
            .map(|j| (rng.random_range(-1.0..1.0) * (j + 1) as f64 + 5.0 * j as f64) as f32)
            .collect();
        let z = bias
            + weights
                .iter()
                .zip(&row)
                .enumerate()
                .map(|(j, (w, &x))| w * (x as f64 - 5.0 * j as f64) / (j + 1) as f64)
                .sum::<f64>();
        truth.push(z);
        let y = rng.random::<f64>() < 1.0 / (1.0 + (-z).exp());
        data.push(&row, y, i as i64).expect("valid row");
    }
    (data, truth)
}

#[test]
fn recovers_sign_and_order_of_generating_weights_and_true_models_auc() {
    // Effect per unit of the standardised-before-scaling feature.
    let true_w = [2.0, -1.0, 0.5, 0.0, -0.25];
    let (data, _) = synthetic(40_000, &true_w, -1.0, 1);
    let model = LogisticModel::train(&data, &TrainOptions::default()).unwrap();
    // Effect per raw unit: weights / scale, which undoes the features'
    // different scales; multiply by the generator's (j + 1) to compare.
    let effect: Vec<f64> = (0..true_w.len())
        .map(|j| model.weights[j] as f64 / model.scale[j] as f64 * (j + 1) as f64)
        .collect();
    for (j, (&e, &w)) in effect.iter().zip(&true_w).enumerate() {
        if w != 0.0 {
            assert_eq!(e.signum(), f64::signum(w), "feature {j}: {effect:?}");
            assert!(
                (e - w).abs() < 0.15 * w.abs().max(0.3),
                "feature {j}: {e} vs {w}"
            );
        } else {
            assert!(e.abs() < 0.1, "null feature {j}: {e}");
        }
    }
    let by_size = |v: &[f64]| {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by(|&a, &b| v[b].abs().total_cmp(&v[a].abs()));
        idx
    };
    assert_eq!(by_size(&effect), by_size(&true_w));

    // On fresh rows, ranking is as good as the generating model's.
    let (fresh, fresh_truth) = synthetic(20_000, &true_w, -1.0, 2);
    let sig = |z: f64| (1.0 / (1.0 + (-z).exp())) as f32;
    let ours: Vec<f32> = model
        .logits(&fresh)
        .unwrap()
        .into_iter()
        .map(|z| sig(z as f64))
        .collect();
    let best: Vec<f32> = fresh_truth.iter().map(|&z| sig(z)).collect();
    let ours = evaluate(&ours, &fresh.y, 10).unwrap();
    let best = evaluate(&best, &fresh.y, 10).unwrap();
    assert!(
        ours.auc > best.auc - 0.005,
        "AUC {} vs true model's {}",
        ours.auc,
        best.auc
    );
    assert!(ours.ece < 0.02, "uncalibrated ECE {}", ours.ece);
}

#[test]
fn contributions_sum_to_logit_minus_bias() {
    let (data, _) = synthetic(2_000, &[1.0, -2.0, 0.3], 0.2, 3);
    let model = LogisticModel::train(&data, &TrainOptions::default()).unwrap();
    for i in 0..50 {
        let row = data.row(i);
        let sum: f32 = model.contributions(row).iter().sum();
        assert!((sum - (model.logit(row) - model.bias)).abs() < 1e-4);
    }
    // Batch and single-row scores agree exactly.
    let batch = model.logits(&data).unwrap();
    assert_eq!(batch[7], model.logit(data.row(7)));
}

#[test]
fn constant_feature_gets_scale_one_and_no_weight() {
    let mut data = Dataset::new(vec!["signal".into(), "constant".into()]);
    for i in 0..400 {
        let x = (i % 20) as f32;
        data.push(&[x, 3.0], (i * 7919) % 20 < i % 20, i as i64)
            .unwrap();
    }
    let model = LogisticModel::train(&data, &TrainOptions::default()).unwrap();
    assert_eq!(model.scale[1], 1.0);
    assert_eq!(model.weights[1], 0.0);
    assert!(model.weights[0] > 0.0);
}

#[test]
fn one_class_and_bad_rows_are_rejected_naming_the_problem() {
    let mut data = Dataset::new(vec!["a".into(), "b".into()]);
    for i in 0..10 {
        data.push(&[i as f32, 1.0], false, i).unwrap();
    }
    let e = LogisticModel::train(&data, &TrainOptions::default()).unwrap_err();
    assert!(
        matches!(
            e,
            LearnError::OneClass {
                positives: 0,
                rows: 10,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("training set"), "{e}");

    let e = data
        .push(&[1.0, f32::INFINITY], true, 10)
        .unwrap_err()
        .to_string();
    assert!(e.contains("row 10") && e.contains("`b`"), "{e}");
    let e = data
        .push(&[1.0, 2.0, 3.0], true, 10)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("row 10") && e.contains("expected 2") && e.contains("got 3"),
        "{e}"
    );

    // A dataset assembled field by field is validated before training.
    let mut raw = data.clone();
    raw.x[5] = f32::NAN;
    raw.y[0] = 1.0;
    let e = LogisticModel::train(&raw, &TrainOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("row 2") && e.contains("`b`"), "{e}");

    let bad = TrainOptions {
        l2: -1.0,
        ..TrainOptions::default()
    };
    let e = LogisticModel::train(&data, &bad).unwrap_err().to_string();
    assert!(e.contains("l2"), "{e}");

    let model = LogisticModel::train(&raw_ok(), &TrainOptions::default()).unwrap();
    let e = model
        .logits(&Dataset::new(vec!["only".into()]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("expected 2") && e.contains("got 1"), "{e}");
}

fn raw_ok() -> Dataset {
    let mut data = Dataset::new(vec!["a".into(), "b".into()]);
    for i in 0..20 {
        data.push(&[i as f32, (i % 3) as f32], i % 2 == 0, i)
            .expect("valid row");
    }
    data
}

#[test]
fn separable_data_with_small_penalty_still_trains_to_finite_weights() {
    let mut data = Dataset::new(vec!["x".into()]);
    for i in 0..200 {
        data.push(&[i as f32], i >= 100, i).unwrap();
    }
    let opts = TrainOptions {
        l2: 1e-6,
        ..TrainOptions::default()
    };
    let model = LogisticModel::train(&data, &opts).unwrap();
    assert!(model.weights[0].is_finite() && model.weights[0] > 1.0);
    assert!(model.logit(&[150.0]) > 0.0 && model.logit(&[50.0]) < 0.0);
}
