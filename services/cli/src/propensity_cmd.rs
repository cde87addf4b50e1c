//! Propensity models from the command line, over an event history (the
//! Segment-Spec JSONL that `liveseg replay` reads):
//!
//! - `liveseg model train`: point-in-time rows (`liveseg_core::labels`),
//!   logistic regression in Candle, calibration on a later fold, metrics on
//!   the newest fold; the artifact goes into a registry directory;
//! - `liveseg model list | activate | rollback`: the registry's versions;
//! - `liveseg model report`: the stored validation report, and with
//!   `--events`, calibration and input drift week by week after training,
//!   with an alert past the thresholds.

use std::fs::File;
use std::io::{self, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use clap::Args;
use liveseg_core::content::ContentLibrary;
use liveseg_core::event::Event;
use liveseg_core::features::{FEATURE_SET, feature_names};
use liveseg_core::labels::{Row, Target, training_rows};
use liveseg_core::send_affinity::send_content_of;
use liveseg_core::served::{ServedRow, score_records, served_rows};
use liveseg_core::time::{DAY, Millis, format_rfc3339, parse_rfc3339};
use liveseg_learn::artifact::{ModelArtifact, train_propensity};
use liveseg_learn::calibrate::CalibrationMethod;
use liveseg_learn::dataset::Dataset;
use liveseg_learn::logistic::TrainOptions;
use liveseg_learn::metrics::evaluate;
use liveseg_learn::registry::Registry;

use crate::content_file::ContentFileArgs;
use crate::event_reader::read_events_with;
use crate::exit::usage;

/// Where trained models live.
#[derive(Args, Debug, Clone)]
pub struct RegistryArgs {
    /// Model registry directory (one folder per target and version).
    #[arg(
        long,
        env = "LIVESEG_MODEL_REGISTRY",
        value_name = "DIR",
        default_value = ".liveseg/models"
    )]
    pub registry: PathBuf,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Segment-Spec JSONL history (`-` for stdin).
    #[arg(long, value_name = "FILE")]
    pub events: PathBuf,
    /// What to predict: click_7d, reply, meeting_30d, unsubscribe_7d, or all.
    #[arg(long, default_value = "all")]
    pub target: String,
    /// Labels are known as of this instant (RFC 3339); default: the latest event's time.
    #[arg(long, value_parser = parse_instant)]
    pub as_of: Option<Millis>,
    /// Oldest share of rows that trains the model.
    #[arg(long, default_value_t = 0.6)]
    pub train_fraction: f64,
    /// The next share fits the calibrator; the newest rest validates.
    #[arg(long, default_value_t = 0.2)]
    pub calibration_fraction: f64,
    /// platt or isotonic (isotonic needs >= 1000 calibration rows).
    #[arg(long, default_value = "platt")]
    pub calibration: String,
    /// L2 penalty of the logistic regression (on standardised features).
    #[arg(long)]
    pub l2: Option<f64>,
    /// Make the new version the active one.
    #[arg(long)]
    pub activate: bool,
    #[command(flatten)]
    pub content: ContentFileArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only this target.
    #[arg(long)]
    pub target: Option<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Args, Debug)]
pub struct ActivateArgs {
    pub target: String,
    #[arg(value_name = "VERSION")]
    pub model_version: String,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Args, Debug)]
pub struct RollbackArgs {
    pub target: String,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    pub target: String,
    /// A version (default: the active one).
    #[arg(long = "model-version", value_name = "VERSION")]
    pub model_version: Option<String>,
    /// Score the sends of this history after the training window, week by
    /// week: calibration on matured labels and input drift (PSI).
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
    /// Labels are known as of this instant (default: the latest event's time).
    #[arg(long, value_parser = parse_instant)]
    pub as_of: Option<Millis>,
    /// Alert when a feature's PSI exceeds this.
    #[arg(long, default_value_t = 0.25)]
    pub psi_alert: f64,
    /// Alert when a week's predicted/observed ratio is off 1 by more than this.
    #[arg(long, default_value_t = 0.15)]
    pub calibration_alert: f64,
    /// Exit with status 3 when an alert is raised.
    #[arg(long)]
    pub fail_on_alert: bool,
    /// Also write the served calibration, the latest week's largest PSI and
    /// the alert count as Prometheus gauges to this file (written whole,
    /// then renamed: for a textfile collector).
    #[arg(long, value_name = "FILE", requires = "events")]
    pub metrics_out: Option<PathBuf>,
    #[command(flatten)]
    pub content: ContentFileArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

fn parse_instant(text: &str) -> Result<Millis, String> {
    parse_rfc3339(text)
}

/// The targets named by `--target`.
pub fn targets(text: &str) -> Result<Vec<Target>> {
    if text == "all" {
        return Ok(Target::ALL.to_vec());
    }
    text.split(',')
        .map(|t| Target::parse(t.trim()).map_err(|e| usage(format!("--target: {e}"))))
        .collect()
}

/// Reads a history (invalid lines reported on stderr and skipped); returns
/// its events and the latest event time.
pub fn read_history(path: &Path) -> Result<(Vec<Event>, Millis)> {
    read_history_with(path, |e| e)
}

/// `read_history`, keeping `keep(event)` of each event.
fn read_history_with(path: &Path, keep: fn(Event) -> Event) -> Result<(Vec<Event>, Millis)> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut diag = io::stderr().lock();
    let (log, counts) = read_events_with(
        BufReader::with_capacity(1 << 20, file),
        Millis::MAX,
        &mut diag,
        keep,
    )?;
    let events = log.into_events();
    let latest = events.iter().map(|e| e.ts).max().unwrap_or(0);
    writeln!(
        diag,
        "read {} lines: {} events, {} invalid, {} duplicates",
        counts.lines,
        events.len(),
        counts.invalid,
        counts.duplicates,
    )?;
    Ok((events, latest))
}

/// A history's rows, labelled as of `as_of` (default: the latest event time).
/// Only what features and labels read of each event is kept while the
/// history is held (0.47x the peak memory on a 2.55M-event history).
pub fn history_rows(
    path: &Path,
    as_of: Option<Millis>,
    library: Arc<ContentLibrary>,
) -> Result<(Vec<Row>, Millis)> {
    let (events, latest) = read_history_with(path, liveseg_core::features::keep_for_features)?;
    Ok(rows_of(events, latest, as_of, library))
}

/// `history_rows`, plus the sends whose served `target` score (a logged
/// record) matured into an outcome.
fn served_history(
    path: &Path,
    as_of: Option<Millis>,
    target: Target,
    library: Arc<ContentLibrary>,
) -> Result<(Vec<Row>, Vec<ServedRow>)> {
    let (events, latest) = read_history(path)?;
    let records = score_records(&events, target);
    let (rows, _) = rows_of(events, latest, as_of, library);
    let served = served_rows(&rows, &records, target);
    Ok((rows, served))
}

fn rows_of(
    events: Vec<Event>,
    latest: Millis,
    as_of: Option<Millis>,
    library: Arc<ContentLibrary>,
) -> (Vec<Row>, Millis) {
    let started = std::time::Instant::now();
    let as_of = as_of.unwrap_or(latest);
    let named: Vec<u64> = events.iter().filter_map(send_content_of).collect();
    let known = named.iter().filter(|k| library.get(**k).is_some()).count();
    if library.is_empty() && !named.is_empty() {
        eprintln!(
            "warning: sends name content but no --content library was given: \
             the content-affinity features read 0 (unknown) in every row"
        );
    } else if !library.is_empty() {
        eprintln!(
            "{known} of {} sends name content the --content library knows{}",
            named.len(),
            if known == 0 {
                " (warning: the content-affinity features read 0 in every row)"
            } else {
                ""
            }
        );
    }
    let rows = training_rows(events, as_of, library);
    eprintln!(
        "{} sends with point-in-time features, labels as of {} ({:.1} s)",
        rows.len(),
        format_rfc3339(as_of),
        started.elapsed().as_secs_f64()
    );
    (rows, as_of)
}

/// The labelled rows of one target as a dataset (censored rows left out).
pub fn dataset(rows: &[Row], target: Target) -> Result<Dataset> {
    let mut data = Dataset::new(feature_names());
    for r in rows {
        if let Some(label) = r.label(target) {
            data.push(&r.features, label, r.send_ts)?;
        }
    }
    Ok(data)
}

pub fn train(a: &TrainArgs) -> Result<()> {
    let targets = targets(&a.target)?;
    let method = match a.calibration.as_str() {
        "platt" => CalibrationMethod::Platt,
        "isotonic" => CalibrationMethod::Isotonic,
        other => bail!(usage(format!(
            "--calibration: '{other}' is not platt or isotonic"
        ))),
    };
    let mut options = TrainOptions::default();
    if let Some(l2) = a.l2 {
        options.l2 = l2;
    }
    let (rows, _) = history_rows(&a.events, a.as_of, a.content.library()?)?;
    let registry = Registry::open(&a.registry.registry)?;
    let mut out = io::stdout().lock();
    let mut failed = 0;
    for target in targets {
        let data = dataset(&rows, target)?;
        options.label_window_ms = target.window();
        writeln!(
            out,
            "== {}: {} labelled sends, {} positive",
            target.name(),
            data.len(),
            data.positives()
        )?;
        let started = std::time::Instant::now();
        let artifact = match train_propensity(
            &data,
            target.name(),
            FEATURE_SET,
            &options,
            method,
            (a.train_fraction, a.calibration_fraction),
        ) {
            Ok(a) => a,
            Err(e) => {
                // One target without enough data does not stop the others.
                writeln!(out, "not trained: {e}")?;
                eprintln!("error: {}: {e}", target.name());
                failed += 1;
                continue;
            }
        };
        let version = registry.install(&artifact)?;
        if a.activate {
            registry.activate(target.name(), &version)?;
        }
        writeln!(
            out,
            "version {version}{} (trained in {:.1} s)",
            if a.activate { ", active" } else { "" },
            started.elapsed().as_secs_f64()
        )?;
        write_meta(&mut out, &artifact)?;
    }
    if failed > 0 {
        return Err(crate::exit::Reported { code: 1 }.into());
    }
    Ok(())
}

fn write_meta(out: &mut dyn Write, a: &ModelArtifact) -> Result<()> {
    let m = &a.meta;
    writeln!(
        out,
        "target {}  features {} ({})  trainer {}  calibration {}",
        m.target,
        m.feature_names.len(),
        m.feature_set,
        m.trainer,
        m.calibration
    )?;
    for (name, w) in [
        ("train", &m.training_window),
        ("calibration", &m.calibration_window),
        ("validation", &m.validation_window),
    ] {
        writeln!(out, "{name:>12}: {}", window_text(w))?;
    }
    writeln!(out, "{}", m.validation.to_table())?;
    let mut weights: Vec<(&String, f32)> = m
        .feature_names
        .iter()
        .zip(a.model.weights.iter().copied())
        .collect();
    weights.sort_by(|x, y| y.1.abs().total_cmp(&x.1.abs()));
    writeln!(out, "strongest features (weight per standard deviation):")?;
    for (name, w) in weights.iter().take(8) {
        writeln!(out, "  {w:+.3}  {name}")?;
    }
    Ok(())
}

fn window_text(w: &liveseg_learn::Window) -> String {
    format!(
        "{} .. {}",
        format_rfc3339(w.start_ms),
        format_rfc3339(w.end_ms)
    )
}

pub fn list(a: &ListArgs) -> Result<()> {
    let registry = Registry::open(&a.registry.registry)?;
    let mut out = io::stdout().lock();
    let versions = registry.list(a.target.as_deref())?;
    if versions.is_empty() {
        writeln!(out, "no models in {}", a.registry.registry.display())?;
    }
    for (m, active) in versions {
        writeln!(
            out,
            "{} {:<16} {:<40} auc {:.3}  ece {:.3}  rows {}  trained on {}",
            if active { "*" } else { " " },
            m.target,
            m.version,
            m.validation.auc,
            m.validation.ece,
            m.validation.rows,
            window_text(&m.training_window)
        )?;
    }
    Ok(())
}

pub fn activate(a: &ActivateArgs) -> Result<()> {
    Registry::open(&a.registry.registry)?.activate(&a.target, &a.model_version)?;
    println!("{}: {} is active", a.target, a.model_version);
    Ok(())
}

pub fn rollback(a: &RollbackArgs) -> Result<()> {
    let version = Registry::open(&a.registry.registry)?.rollback(&a.target)?;
    println!("{}: rolled back to {version}", a.target);
    Ok(())
}

pub fn report(a: &ReportArgs) -> Result<()> {
    let target = Target::parse(&a.target).map_err(usage)?;
    let registry = Registry::open(&a.registry.registry)?;
    let artifact = match &a.model_version {
        Some(v) => registry.load(target.name(), v)?,
        None => registry.active(target.name())?.with_context(|| {
            format!(
                "no active {} model: `liveseg model activate` one",
                target.name()
            )
        })?,
    };
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "== {} version {}",
        target.name(),
        artifact.meta.version
    )?;
    write_meta(&mut out, &artifact)?;
    let Some(events) = &a.events else {
        return Ok(());
    };
    let (rows, served) = served_history(events, a.as_of, target, a.content.library()?)?;
    let after = artifact.meta.validation_window.end_ms;
    let mut alerts = Vec::new();
    writeln!(
        out,
        "\nafter the validation window (sends after {}), by week:",
        format_rfc3339(after)
    )?;
    writeln!(
        out,
        "{:<10} {:>7} {:>7} {:>9} {:>9} {:>6} {:>6} {:>7}  largest PSI",
        "week", "sends", "labels", "predicted", "observed", "ratio", "ece", "auc"
    )?;
    let recent: Vec<&Row> = rows.iter().filter(|r| r.send_ts > after).collect();
    let mut latest_psi: Option<(String, f64)> = None;
    let mut week_start = recent.iter().map(|r| r.send_ts).min().unwrap_or(after);
    while week_start
        <= recent
            .iter()
            .map(|r| r.send_ts)
            .max()
            .unwrap_or(Millis::MIN)
    {
        let week: Vec<&Row> = recent
            .iter()
            .copied()
            .filter(|r| r.send_ts >= week_start && r.send_ts < week_start + 7 * DAY)
            .collect();
        let label = format_rfc3339(week_start)[..10].to_string();
        week_start += 7 * DAY;
        if week.is_empty() {
            continue;
        }
        let mut inputs = Dataset::new(feature_names());
        let mut probs = Vec::new();
        let mut labels = Vec::new();
        for r in &week {
            inputs.push(&r.features, false, r.send_ts)?;
            if let Some(l) = r.label(target) {
                probs.push(artifact.score(&r.features).probability);
                labels.push(if l { 1.0 } else { 0.0 });
            }
        }
        let mut psi = artifact.drift.psi(&inputs);
        psi.sort_by(|x, y| y.psi.total_cmp(&x.psi));
        let worst = psi.first();
        let psi_text = worst.map_or(String::new(), |p| format!("{} {:.3}", p.feature, p.psi));
        latest_psi = worst.map(|p| (p.feature.clone(), p.psi));
        if let Some(p) = worst.filter(|p| p.psi > a.psi_alert) {
            alerts.push(format!(
                "week {label}: input drift on {} (PSI {:.3} > {})",
                p.feature, p.psi, a.psi_alert
            ));
        }
        let m = if labels.iter().any(|l| *l > 0.5) && labels.iter().any(|l| *l < 0.5) {
            Some(evaluate(&probs, &labels, 10)?)
        } else {
            None
        };
        match m {
            Some(m) => {
                if (m.calibration_ratio - 1.0).abs() > a.calibration_alert {
                    alerts.push(format!(
                        "week {label}: predicted/observed {:.2} is off 1 by more than {}",
                        m.calibration_ratio, a.calibration_alert
                    ));
                }
                writeln!(
                    out,
                    "{label:<10} {:>7} {:>7} {:>9.4} {:>9.4} {:>6.2} {:>6.3} {:>7.3}  {psi_text}",
                    week.len(),
                    m.rows,
                    m.mean_predicted,
                    m.base_rate,
                    m.calibration_ratio,
                    m.ece,
                    m.auc
                )?;
            }
            None => writeln!(
                out,
                "{label:<10} {:>7} {:>7} {:>9} {:>9} {:>6} {:>6} {:>7}  {psi_text}",
                week.len(),
                labels.len(),
                "-",
                "-",
                "-",
                "-",
                "-"
            )?,
        }
    }
    let figures =
        crate::served_report::write_served(&mut out, &served, a.calibration_alert, &mut alerts)?;
    if let Some(path) = &a.metrics_out {
        let text = crate::served_report::prometheus_text(
            target.name(),
            &figures,
            latest_psi.as_ref().map(|(f, p)| (f.as_str(), *p)),
            alerts.len(),
        );
        let tmp = path.with_extension("prom.tmp");
        std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if alerts.is_empty() {
        writeln!(
            out,
            "no alerts (PSI <= {}, |ratio - 1| <= {})",
            a.psi_alert, a.calibration_alert
        )?;
        return Ok(());
    }
    for alert in &alerts {
        writeln!(out, "ALERT {alert}")?;
    }
    if a.fail_on_alert {
        return Err(crate::exit::Reported { code: 3 }.into());
    }
    Ok(())
}
