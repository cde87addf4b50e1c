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
use liveseg_learn::metrics::evaluate;

/// One line: sends, mean predicted, observed rate, ratio, ECE and AUC
/// (the last two only when both outcomes occur).
fn line(label: &str, version: &str, rows: &[&ServedRow]) -> Result<(String, f64)> {
    let probs: Vec<f32> = rows.iter().map(|r| r.probability).collect();
    let labels: Vec<f32> = rows
        .iter()
        .map(|r| f32::from(u8::from(r.outcome)))
        .collect();
    let n = rows.len() as f64;
    let predicted = probs.iter().map(|p| f64::from(*p)).sum::<f64>() / n;
    let observed = labels.iter().map(|l| f64::from(*l)).sum::<f64>() / n;
    let ratio = if observed > 0.0 {
        predicted / observed
    } else {
        f64::INFINITY
    };
    let both = labels.iter().any(|l| *l > 0.5) && labels.iter().any(|l| *l < 0.5);
    let (ece, auc) = if both {
        let m = evaluate(&probs, &labels, 10)?;
        (format!("{:.3}", m.ece), format!("{:.3}", m.auc))
    } else {
        ("-".into(), "-".into())
    };
    Ok((
        format!(
            "{version:<38} {label:<10} {:>7} {predicted:>9.4} {observed:>9.4} {ratio:>6.2} {ece:>6} {auc:>7}",
            rows.len()
        ),
        ratio,
    ))
}

/// Writes the section; pushes an alert per version whose predicted/observed
/// ratio is off 1 by more than `calibration_alert`.
pub fn write_served(
    out: &mut dyn Write,
    served: &[ServedRow],
    calibration_alert: f64,
    alerts: &mut Vec<String>,
) -> Result<()> {
    if served.is_empty() {
        writeln!(
            out,
            "\nno served scores with matured outcomes in the history (a node's exported log \
             carries its scores as `Propensity Scored` records)"
        )?;
        return Ok(());
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
        let (all, ratio) = line("all", version, rows)?;
        writeln!(out, "{all}")?;
        if (ratio - 1.0).abs() > calibration_alert {
            alerts.push(format!(
                "served {version}: predicted/observed {ratio:.2} is off 1 by more than {calibration_alert}"
            ));
        }
    }
    Ok(())
}
