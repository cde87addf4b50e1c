//! Metrics on small cases computable by hand.

use liveseg_learn::{LearnError, evaluate};

fn close(a: f64, b: f64) -> bool {
    // Inputs are f32, so exact decimals are off by ~1e-8.
    (a - b).abs() < 1e-6
}

#[test]
fn perfect_ranking_scores_one() {
    let r = evaluate(&[0.1, 0.2, 0.8, 0.9], &[0.0, 0.0, 1.0, 1.0], 2).unwrap();
    assert!(close(r.auc, 1.0) && close(r.pr_auc, 1.0), "{r:?}");
}

#[test]
fn all_tied_scores_give_half_auc_and_base_rate_precision() {
    let r = evaluate(&[0.5; 4], &[0.0, 1.0, 0.0, 1.0], 2).unwrap();
    assert!(close(r.auc, 0.5), "{}", r.auc);
    assert!(close(r.pr_auc, 0.5), "{}", r.pr_auc);
}

#[test]
fn auc_and_average_precision_of_a_partial_ranking() {
    // Pairs (pos, neg): 0.35 beats 0.1 but not 0.4, 0.8 beats both: 3/4.
    // AP: thresholds 0.8 (P=1, R=.5), 0.4 (no gain), 0.35 (P=2/3, R=1):
    // 0.5 * 1 + 0.5 * 2/3.
    let r = evaluate(&[0.1, 0.4, 0.35, 0.8], &[0.0, 0.0, 1.0, 1.0], 2).unwrap();
    assert!(close(r.auc, 0.75), "{}", r.auc);
    assert!(close(r.pr_auc, 0.5 + 1.0 / 3.0), "{}", r.pr_auc);
}

#[test]
fn ties_between_classes_count_half() {
    // One tie between a positive and a negative, one clean pair each way:
    // pos {0.5, 0.9}, neg {0.5, 0.1}: pairs 0.5/0.5 = .5, 0.5/0.1 = 1,
    // 0.9/0.5 = 1, 0.9/0.1 = 1 -> 3.5 / 4.
    let r = evaluate(&[0.5, 0.9, 0.5, 0.1], &[1.0, 1.0, 0.0, 0.0], 2).unwrap();
    assert!(close(r.auc, 0.875), "{}", r.auc);
}

#[test]
fn ece_brier_calibration_ratio_and_log_loss() {
    let p = [0.2, 0.2, 0.8, 0.8];
    let y = [0.0, 1.0, 1.0, 1.0];
    let r = evaluate(&p, &y, 2).unwrap();
    // Bins {0.2, 0.2} observed 0.5, {0.8, 0.8} observed 1.0.
    assert!(close(r.ece, 0.5 * 0.3 + 0.5 * 0.2), "{}", r.ece);
    assert_eq!(r.reliability.len(), 2);
    assert!(close(r.reliability[0].observed, 0.5) && r.reliability[0].rows == 2);
    assert!(
        close(r.brier, (0.04 + 0.64 + 0.04 + 0.04) / 4.0),
        "{}",
        r.brier
    );
    assert!(close(r.calibration_ratio, 2.0 / 3.0));
    assert!(close(r.base_rate, 0.75) && close(r.mean_predicted, 0.5));
    let ll = -(0.8f64.ln() + 0.2f64.ln() + 2.0 * 0.8f64.ln()) / 4.0;
    assert!((r.log_loss - ll).abs() < 1e-6, "{} vs {ll}", r.log_loss);
    let h = -(0.75f64 * 0.75f64.ln() + 0.25 * 0.25f64.ln());
    assert!((r.normalized_entropy - ll / h).abs() < 1e-6);
    assert!((r.brier_skill - (1.0 - r.brier / (0.75 * 0.25))).abs() < 1e-12);
}

#[test]
fn lift_of_the_top_decile() {
    // 20 rows, the two highest scores are the only positives: the top
    // decile's rate is 1 against a base rate of 0.1.
    let p: Vec<f32> = (0..20).map(|i| i as f32 / 20.0).collect();
    let y: Vec<f32> = (0..20).map(|i| if i >= 18 { 1.0 } else { 0.0 }).collect();
    let r = evaluate(&p, &y, 10).unwrap();
    assert_eq!(r.lift_by_decile.len(), 10);
    assert!(close(r.lift_by_decile[0], 10.0));
    assert!(r.lift_by_decile[1..].iter().all(|&l| l == 0.0));
    let table = r.to_table();
    assert!(
        table.contains("AUC 1.0000") && table.contains("10.00x"),
        "{table}"
    );
}

#[test]
fn bad_inputs_are_rejected() {
    let e = evaluate(&[0.5, 1.5], &[0.0, 1.0], 2)
        .unwrap_err()
        .to_string();
    assert!(e.contains("row 1") && e.contains("1.5"), "{e}");
    let e = evaluate(&[0.5], &[0.0, 1.0], 2).unwrap_err().to_string();
    assert!(e.contains("1 probabilities but 2 labels"), "{e}");
    let e = evaluate(&[0.5, 0.2], &[1.0, 1.0], 2).unwrap_err();
    assert!(
        matches!(
            e,
            LearnError::OneClass {
                positives: 2,
                rows: 2,
                ..
            }
        ),
        "{e}"
    );
    let e = evaluate(&[0.5, 0.2], &[1.0, 0.5], 2)
        .unwrap_err()
        .to_string();
    assert!(e.contains("row 1") && e.contains("not 0 or 1"), "{e}");
}
