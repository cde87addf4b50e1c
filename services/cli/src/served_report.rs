//! The "served" half of `liveseg model report --events`: the scores a node
//! actually served (its logged `Propensity Scored` records, in an exported
//! log) matched to the outcomes of the sends that followed them, per model
//! version and week (`liveseg_core::served`). The other half re-scores the
//! history with one artifact; this one judges what was in production.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::Result;
use liveseg_core::served::ServedRow;
use liveseg_core::time::{DAY, Millis, format_rfc3339};
use liveseg_learn::served::{ServedFigures, served_figures};

/// The figures of one version's served scores, over all its weeks.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionFigures {
    pub version: String,
    pub figures: ServedFigures,
}

/// One line: sends, mean predicted, observed rate, ratio, ECE and AUC
/// (the last two only when both outcomes occur).
fn line(label: &str, version: &str, rows: &[&ServedRow]) -> Result<(String, VersionFigures)> {
    let probs: Vec<f32> = rows.iter().map(|r| r.probability).collect();
    let outcomes: Vec<bool> = rows.iter().map(|r| r.outcome).collect();
    let f = served_figures(&probs, &outcomes)?;
    let show = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
    Ok((
        format!(
            "{version:<38} {label:<10} {:>7} {:>9.4} {:>9.4} {:>6.2} {:>6} {:>7}",
            f.sends,
            f.predicted,
            f.observed,
            f.ratio(),
            show(f.ece),
            show(f.auc)
        ),
        VersionFigures {
            version: version.to_string(),
            figures: f,
        },
    ))
}

/// Writes the section; pushes an alert per version whose predicted/observed
/// ratio is off 1 by more than `calibration_alert`. Returns each version's
/// figures.
pub fn write_served(
    out: &mut dyn Write,
    served: &[ServedRow],
    calibration_alert: f64,
    alerts: &mut Vec<String>,
) -> Result<Vec<VersionFigures>> {
    if served.is_empty() {
        writeln!(
            out,
            "\nno served scores with matured outcomes in the history (a node's exported log \
             carries its scores as `Propensity Scored` records)"
        )?;
        return Ok(Vec::new());
    }
    writeln!(
        out,
        "\nserved scores (logged records) matched to matured outcomes, by model version and week:"
    )?;
    writeln!(
        out,
        "{:<38} {:<10} {:>7} {:>9} {:>9} {:>6} {:>6} {:>7}",
        "version", "week", "sends", "predicted", "observed", "ratio", "ece", "auc"
    )?;
    let mut by_version: BTreeMap<&str, Vec<&ServedRow>> = BTreeMap::new();
    for r in served {
        by_version.entry(r.version.as_str()).or_default().push(r);
    }
    let mut figures = Vec::new();
    for (version, rows) in &by_version {
        let mut weeks: BTreeMap<Millis, Vec<&ServedRow>> = BTreeMap::new();
        let first = rows.iter().map(|r| r.send_ts).min().unwrap_or(0);
        for r in rows {
            weeks
                .entry(first + (r.send_ts - first) / (7 * DAY) * (7 * DAY))
                .or_default()
                .push(r);
        }
        for (start, week) in &weeks {
            let label = format_rfc3339(*start)[..10].to_string();
            writeln!(out, "{}", line(&label, version, week)?.0)?;
        }
        let (all, f) = line("all", version, rows)?;
        writeln!(out, "{all}")?;
        if f.figures.off_by_more_than(calibration_alert) {
            alerts.push(format!(
                "served {version}: predicted/observed {:.2} is off 1 by more than {calibration_alert}",
                f.figures.ratio()
            ));
        }
        figures.push(f);
    }
    Ok(figures)
}

/// The report's figures in the Prometheus text format, for a textfile
/// collector (node_exporter `--collector.textfile.directory`): a node
/// never sees outcomes mature into labels, so calibration is exported from
/// the report run over its log.
pub fn prometheus_text(
    target: &str,
    served: &[VersionFigures],
    worst_psi: Option<(&str, f64)>,
    alerts: usize,
) -> String {
    let mut text = String::new();
    let mut gauge = |name: &str, help: &str, rows: Vec<(String, f64)>| {
        text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
        for (labels, v) in rows {
            text.push_str(&format!("{name}{{{labels}}} {v}\n"));
        }
    };
    let per = |f: &dyn Fn(&VersionFigures) -> Option<f64>| -> Vec<(String, f64)> {
        served
            .iter()
            .filter_map(|v| {
                Some((
                    format!("target=\"{target}\",version=\"{}\"", v.version),
                    f(v)?,
                ))
            })
            .collect()
    };
    gauge(
        "liveseg_served_sends",
        "Sends with a served score and a matured outcome.",
        per(&|v| Some(v.figures.sends as f64)),
    );
    gauge(
        "liveseg_served_predicted",
        "Mean served probability over those sends.",
        per(&|v| Some(v.figures.predicted)),
    );
    gauge(
        "liveseg_served_observed",
        "Observed outcome rate over those sends.",
        per(&|v| Some(v.figures.observed)),
    );
    gauge(
        "liveseg_served_ece",
        "Expected calibration error (10 bins) of the served scores.",
        per(&|v| v.figures.ece),
    );
    gauge(
        "liveseg_served_auc",
        "AUC of the served scores.",
        per(&|v| v.figures.auc),
    );
    gauge(
        "liveseg_report_input_psi_max",
        "Largest feature PSI of the latest week against the training window.",
        worst_psi
            .map(|(feature, psi)| (format!("target=\"{target}\",feature=\"{feature}\""), psi))
            .into_iter()
            .collect(),
    );
    gauge(
        "liveseg_report_alerts",
        "Alerts the report raised (drift and calibration).",
        vec![(format!("target=\"{target}\""), alerts as f64)],
    );
    text
}
