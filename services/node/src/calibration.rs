//! Live calibration of the scores this node served: per tenant, target and
//! model version, the served probabilities matched to the outcomes that
//! matured since, exported on `/metrics` with an alert per version.
//!
//! Every `every`, for each runtime on the node, a blocking task reads the
//! runtime's log up to what it has dispatched (a tenant lives on one shard,
//! so one log holds all of a tenant's events) and computes, with the same
//! code as `liveseg model report` over an exported log
//! (`liveseg_core::served` and `liveseg_learn::served`), the figures of each
//! version: sends, mean predicted, observed rate, ECE and AUC. Labels are
//! taken as of the node's clock, so an outcome counts once its window has
//! closed. The pass is O(log) in time and in memory for one runtime's
//! events at a time; BENCHMARKS.md gives its cost, and an incremental
//! tracker inside the account actors is where it would go next.

use crate::dispatch::decode;
use crate::runtime::Runtime;
use crate::server::NodeInner;
use liveseg_core::Millis;
use liveseg_core::event::Event;
use liveseg_core::labels::{Target, outcome_rows};
use liveseg_core::served::{score_records, served_rows};
use liveseg_learn::served::{ServedFigures, served_figures};
use liveseg_store::EventLog;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{Mutex, Weak};
use std::time::Duration;

/// Log entries read per page.
const PAGE: usize = 10_000;

#[derive(Clone, Debug)]
pub struct CalibrationConfig {
    /// How often the figures are recomputed.
    pub every: Duration,
    /// Alert when a version's predicted/observed ratio is off 1 by more
    /// than this.
    pub alert: f64,
}

/// One version's figures for one target.
#[derive(Clone, Debug, PartialEq)]
pub struct VersionCalibration {
    pub target: Target,
    pub version: String,
    pub figures: ServedFigures,
}

/// A tenant's figures and the instant their labels were taken at.
#[derive(Clone, Debug, PartialEq)]
pub struct TenantCalibration {
    pub as_of: Millis,
    pub versions: Vec<VersionCalibration>,
}

/// The latest figures of every tenant on this node.
#[derive(Default)]
pub struct ServedCalibration {
    alert: f64,
    tenants: Mutex<BTreeMap<String, TenantCalibration>>,
}

/// The figures of one tenant's events, labels as of `as_of`: per target
/// and version, in that order.
pub fn calibrate(events: Vec<Event>, as_of: Millis) -> Vec<VersionCalibration> {
    let records: Vec<_> = Target::ALL
        .iter()
        .map(|t| (*t, score_records(&events, *t)))
        .filter(|(_, r)| !r.is_empty())
        .collect();
    if records.is_empty() {
        return Vec::new();
    }
    let rows = outcome_rows(events, as_of);
    let mut out = Vec::new();
    for (target, records) in records {
        let mut by_version: BTreeMap<String, (Vec<f32>, Vec<bool>)> = BTreeMap::new();
        for s in served_rows(&rows, &records, target) {
            let v = by_version.entry(s.version).or_default();
            v.0.push(s.probability);
            v.1.push(s.outcome);
        }
        for (version, (probabilities, outcomes)) in by_version {
            // Never empty: each version holds at least the row that made it.
            if let Ok(figures) = served_figures(&probabilities, &outcomes) {
                out.push(VersionCalibration {
                    target,
                    version,
                    figures,
                });
            }
        }
    }
    out
}

/// The events of `log` up to `upto`, per tenant (undecodable entries are
/// logged and skipped: they were validated at ingest).
fn read_tenants(
    log: &dyn EventLog,
    upto: u64,
) -> crate::error::Result<HashMap<String, Vec<Event>>> {
    let mut tenants: HashMap<String, Vec<Event>> = HashMap::new();
    let mut after = 0;
    while after < upto {
        let page = log.read_after(after, PAGE)?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for entry in page.into_iter().filter(|e| e.seq <= upto) {
            match decode(&entry.payload) {
                Ok(event) => tenants.entry(entry.tenant).or_default().push(event),
                Err(e) => {
                    tracing::warn!(seq = entry.seq, error = %e, "calibration skipped an entry")
                }
            }
        }
    }
    Ok(tenants)
}

impl ServedCalibration {
    /// Empty until the first pass; `None`: calibration is off.
    pub fn new(config: Option<&CalibrationConfig>) -> Self {
        ServedCalibration {
            alert: config.map_or(f64::INFINITY, |c| c.alert),
            tenants: Mutex::default(),
        }
    }

    /// One tenant's latest figures.
    pub fn tenant(&self, tenant: &str) -> Option<TenantCalibration> {
        self.lock().get(tenant).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, TenantCalibration>> {
        self.tenants.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Recomputes the figures of every tenant of `rt` as of `as_of`.
    async fn refresh(&self, rt: &Runtime, as_of: Millis) -> crate::error::Result<usize> {
        let log = rt.log.clone();
        let upto = rt.dispatched();
        let computed = tokio::task::spawn_blocking(move || {
            read_tenants(log.as_ref(), upto).map(|tenants| {
                tenants
                    .into_iter()
                    .map(|(tenant, events)| (tenant, calibrate(events, as_of)))
                    .collect::<Vec<_>>()
            })
        })
        .await
        .map_err(|e| crate::error::NodeError::Internal(format!("calibration task: {e}")))??;
        let n = computed.len();
        let mut tenants = self.lock();
        for (tenant, versions) in computed {
            tenants.insert(tenant, TenantCalibration { as_of, versions });
        }
        Ok(n)
    }

    /// The figures in the Prometheus text format, for the tenants `owned`
    /// says are served here (a moved shard's tenants drop out).
    pub fn render(&self, owned: &dyn Fn(&str) -> bool) -> String {
        let tenants = self.lock();
        let owned: Vec<(&String, &TenantCalibration)> =
            tenants.iter().filter(|(t, _)| owned(t)).collect();
        let mut text = String::new();
        let mut gauge =
            |name: &str, help: &str, value: &dyn Fn(&VersionCalibration) -> Option<f64>| {
                let _ = write!(text, "# HELP {name} {help}\n# TYPE {name} gauge\n");
                for (tenant, c) in &owned {
                    for v in &c.versions {
                        if let Some(x) = value(v) {
                            let _ = writeln!(
                                text,
                                "{name}{{tenant=\"{}\",target=\"{}\",version=\"{}\"}} {x}",
                                escape(tenant),
                                v.target.name(),
                                escape(&v.version)
                            );
                        }
                    }
                }
            };
        let alert = self.alert;
        gauge(
            "liveseg_served_sends",
            "Sends with a served score and a matured outcome.",
            &|v| Some(v.figures.sends as f64),
        );
        gauge(
            "liveseg_served_predicted",
            "Mean served probability over those sends.",
            &|v| Some(v.figures.predicted),
        );
        gauge(
            "liveseg_served_observed",
            "Observed outcome rate over those sends.",
            &|v| Some(v.figures.observed),
        );
        gauge(
            "liveseg_served_ece",
            "Expected calibration error (10 equal-mass bins) of the served scores.",
            &|v| v.figures.ece,
        );
        gauge("liveseg_served_auc", "AUC of the served scores.", &|v| {
            v.figures.auc
        });
        gauge(
            "liveseg_served_calibration_alert",
            "1 when predicted/observed is off 1 by more than the alert threshold.",
            &|v| Some(f64::from(u8::from(v.figures.off_by_more_than(alert)))),
        );
        let _ = write!(
            text,
            "# HELP liveseg_served_labels_as_of_seconds The instant the served figures' labels were taken at.\n\
             # TYPE liveseg_served_labels_as_of_seconds gauge\n"
        );
        for (tenant, c) in &owned {
            let _ = writeln!(
                text,
                "liveseg_served_labels_as_of_seconds{{tenant=\"{}\"}} {}",
                escape(tenant),
                c.as_of as f64 / 1000.0
            );
        }
        text
    }
}

/// A label value in the Prometheus text format.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Recomputes every `config.every` (the first pass one period after start,
/// not while the node is still loading).
pub fn spawn(inner: Weak<NodeInner>, config: CalibrationConfig) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(config.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(inner) = inner.upgrade() else { return };
            let started = std::time::Instant::now();
            let as_of = inner.clock.now();
            for rt in inner.runtimes() {
                if let Err(e) = inner.calibration.refresh(&rt, as_of).await {
                    tracing::warn!(shard = ?rt.shard, error = %e, "served calibration failed");
                }
            }
            metrics::histogram!("liveseg_served_calibration_seconds")
                .record(started.elapsed().as_secs_f64());
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use liveseg_core::event::{Limits, parse_message};
    use liveseg_core::time::DAY;
    use serde_json::{Value, json};

    const T0: Millis = 1_767_225_600_000; // 2026-01-01

    fn track(id: &str, event: &str, day: i64, props: Value) -> Event {
        let ts = liveseg_core::time::format_rfc3339(T0 + day * DAY);
        let v = json!({"type":"track","event":event,"messageId":id,"userId":"u1",
            "timestamp":ts,"context":{"groupId":"acme"},"properties":props});
        parse_message(&v, Millis::MAX / 2, &Limits::default()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn score(id: &str, day: i64, version: &str, p: f64) -> Event {
        let props = json!({"target":"click_7d","probability":p,"version":version});
        track(id, "Propensity Scored", day, props)
    }

    fn send(id: &str, day: i64, email: &str) -> Event {
        track(id, "Email Delivered", day, json!({"email_id": email}))
    }

    fn click(id: &str, day: i64, email: &str) -> Event {
        track(id, "Email Link Clicked", day, json!({"email_id": email}))
    }

    fn history() -> Vec<Event> {
        vec![
            score("s0", 1, "v0", 0.1),
            send("d1", 2, "e1"),
            click("c1", 3, "e1"),
            send("d2", 10, "e2"),
            score("s1", 11, "v1", 0.3),
            send("d3", 12, "e3"),
            click("c3", 13, "e3"),
            // Its window is still open at day 22: not counted yet.
            send("d4", 20, "e4"),
        ]
    }

    #[test]
    fn each_version_is_judged_on_the_sends_it_was_served_to() {
        let got = calibrate(history(), T0 + 22 * DAY);
        let summary: Vec<_> = got
            .iter()
            .map(|v| (v.version.as_str(), v.figures.sends, v.figures.observed))
            .collect();
        assert_eq!(summary, [("v0", 2, 0.5), ("v1", 1, 1.0)]);
        assert!((got[0].figures.predicted - 0.1).abs() < 1e-6);
        assert!(got[0].figures.ece.is_some() && got[1].figures.ece.is_none());
        // Later, e4's window has closed: v1 holds two sends, one clicked.
        let later = calibrate(history(), T0 + 40 * DAY);
        assert_eq!(
            (later[1].figures.sends, later[1].figures.observed),
            (2, 0.5)
        );
        // No scores: nothing to judge.
        assert!(calibrate(vec![send("d1", 2, "e1")], T0 + 40 * DAY).is_empty());
    }

    #[test]
    fn metrics_carry_the_owned_tenants_figures_and_alerts() {
        let config = CalibrationConfig {
            every: Duration::from_secs(60),
            alert: 0.15,
        };
        let c = ServedCalibration::new(Some(&config));
        let as_of = T0 + 22 * DAY;
        for tenant in ["acme-co", "moved-away"] {
            let versions = calibrate(history(), as_of);
            c.lock()
                .insert(tenant.into(), TenantCalibration { as_of, versions });
        }
        let text = c.render(&|t| t == "acme-co");
        assert!(!text.contains("moved-away"), "{text}");
        let line = |name: &str, version: &str| {
            let head =
                format!("{name}{{tenant=\"acme-co\",target=\"click_7d\",version=\"{version}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(head.as_str()))
                .and_then(|v| v.parse::<f64>().ok())
        };
        assert_eq!(line("liveseg_served_sends", "v0"), Some(2.0));
        assert_eq!(line("liveseg_served_observed", "v1"), Some(1.0));
        // v0 predicted 0.1 against 0.5 observed; v1 0.3 against 1.0.
        assert_eq!(line("liveseg_served_calibration_alert", "v0"), Some(1.0));
        assert_eq!(line("liveseg_served_ece", "v1"), None);
        assert!(text.contains("# TYPE liveseg_served_ece gauge"));
        let as_of_line = format!(
            "liveseg_served_labels_as_of_seconds{{tenant=\"acme-co\"}} {}",
            as_of / 1000
        );
        assert!(text.contains(&as_of_line), "{text}");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape("x\ny"), "x\\ny");
    }
}
