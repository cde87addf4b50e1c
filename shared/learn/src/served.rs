//! Scores as they were served, judged against the outcomes that followed:
//! the figures of calibration tracking per model version. `liveseg model
//! report` prints them from an exported log and a node exports them live on
//! `/metrics` from its own log; both compute them here, so they agree.

use crate::dataset::LearnError;
use crate::metrics::evaluate;

/// Equal-mass bins of the ECE.
pub const ECE_BINS: usize = 10;

/// Served probabilities against their outcomes.
#[derive(Debug, Clone, PartialEq)]
pub struct ServedFigures {
    pub sends: usize,
    /// Mean served probability.
    pub predicted: f64,
    /// Observed outcome rate.
    pub observed: f64,
    /// Only when both outcomes occur (AUC is undefined otherwise).
    pub ece: Option<f64>,
    pub auc: Option<f64>,
}

impl ServedFigures {
    /// Predicted over observed: 1 for a calibrated model; infinite when
    /// nothing was observed.
    pub fn ratio(&self) -> f64 {
        if self.observed > 0.0 {
            self.predicted / self.observed
        } else {
            f64::INFINITY
        }
    }

    /// Whether the ratio is off 1 by more than `tolerance`: the
    /// calibration alert.
    pub fn off_by_more_than(&self, tolerance: f64) -> bool {
        let r = self.ratio();
        !r.is_finite() || (r - 1.0).abs() > tolerance
    }
}

/// The figures of `probabilities` served to sends with these `outcomes`.
pub fn served_figures(
    probabilities: &[f32],
    outcomes: &[bool],
) -> Result<ServedFigures, LearnError> {
    if probabilities.len() != outcomes.len() {
        return Err(LearnError::Invalid(format!(
            "served figures: {} probabilities but {} outcomes",
            probabilities.len(),
            outcomes.len()
        )));
    }
    if probabilities.is_empty() {
        return Err(LearnError::Empty {
            what: "served scores".into(),
        });
    }
    let labels: Vec<f32> = outcomes.iter().map(|o| f32::from(u8::from(*o))).collect();
    let n = probabilities.len() as f64;
    let predicted = probabilities.iter().map(|p| f64::from(*p)).sum::<f64>() / n;
    let positives = outcomes.iter().filter(|o| **o).count();
    let observed = positives as f64 / n;
    let (ece, auc) = if positives > 0 && positives < outcomes.len() {
        let m = evaluate(probabilities, &labels, ECE_BINS)?;
        (Some(m.ece), Some(m.auc))
    } else {
        (None, None)
    };
    Ok(ServedFigures {
        sends: probabilities.len(),
        predicted,
        observed,
        ece,
        auc,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_calibrated_version_is_within_tolerance_and_an_inflated_one_is_not() {
        // 50 sends at 0.2, every fifth clicked: each equal-mass bin of 5
        // (ties go by index) holds one click, so predicted = observed.
        let p = vec![0.2f32; 50];
        let o: Vec<bool> = (0..50).map(|i| i % 5 == 0).collect();
        let f = served_figures(&p, &o).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(f.sends, 50);
        assert!((f.predicted - 0.2).abs() < 1e-6 && (f.observed - 0.2).abs() < 1e-12);
        assert!((f.ratio() - 1.0).abs() < 1e-6);
        assert!(!f.off_by_more_than(0.25));
        assert!(f.ece.is_some_and(|e| e < 1e-6), "{f:?}");
        // The same outcomes served 0.5: predicted 2.5x the observed rate.
        let f = served_figures(&[0.5; 50], &o).unwrap_or_else(|e| panic!("{e}"));
        assert!((f.ratio() - 2.5).abs() < 1e-6);
        assert!(f.off_by_more_than(0.25));
        assert!(f.ece.is_some_and(|e| (e - 0.3).abs() < 1e-6), "{f:?}");
    }

    #[test]
    fn one_outcome_only_has_no_ece_or_auc_and_nothing_observed_alerts() {
        let f = served_figures(&[0.1, 0.3], &[false, false]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((f.ece, f.auc), (None, None));
        assert!(f.ratio().is_infinite() && f.off_by_more_than(10.0));
        assert!(served_figures(&[], &[]).is_err());
        assert!(served_figures(&[0.1], &[]).is_err());
    }
}
