//! Live calibration of the scores this node served: per target and model
//! version, the served probabilities matched to the outcomes that matured
//! since, exported on `/metrics` with an alert per version.
//!
//! Every `every` (the first pass sooner), for each runtime on the node, a
//! blocking task reads the runtime's log up to what it has dispatched (a
//! tenant lives on one shard, so one log holds all of a tenant's events),
//! keeping only the events that bear on a served score or its outcome, and
//! matches each send of a tenant to the score current just before it and to
//! its label, with the same code as `liveseg model report` over an exported
//! log (`liveseg_core::served`, `labels::outcome_rows`). The sends of every
//! tenant on the node are pooled per target and version, and
//! `liveseg_learn::served` gives their figures: sends, mean predicted,
//! observed rate, ECE and AUC. Labels are taken as of the node's clock, so
//! an outcome counts once its window has closed.
//!
//! Pooled because metric labels never carry tenant ids (`names`): per
//! tenant, `liveseg model report` over the tenant's export gives the same
//! figures. Versions come from logged records any client may send, so only
//! the `MAX_VERSIONS` with the most sends per target are exported.
//!
//! A pass is O(log) in time, and holds the kept events of one runtime at a
//! time; BENCHMARKS.md gives its cost. An incremental tracker inside the
//! account actors is where it would go for logs of tens of millions.

use crate::dispatch::decode;
use crate::runtime::Runtime;
use crate::server::NodeInner;
use liveseg_core::Millis;
use liveseg_core::event::{Event, EventKind};
use liveseg_core::labels::{Target, outcome_rows};
use liveseg_core::served::{score_records, served_rows};
use liveseg_learn::served::{ServedFigures, served_figures};
use liveseg_store::EventLog;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, Weak};
use std::time::Duration;

/// Log entries read per page.
const PAGE: usize = 10_000;
/// Versions exported per target (those with the most sends).
pub const MAX_VERSIONS: usize = 10;
/// The first pass runs this soon after start at the latest, not one whole
/// period later.
const FIRST_PASS_AFTER: Duration = Duration::from_secs(60);

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

/// The served probabilities and outcomes of each (target, version).
pub type Pool = BTreeMap<(Target, String), (Vec<f32>, Vec<bool>)>;

/// The figures of the last pass and the instant its labels were taken at.
#[derive(Clone, Debug, PartialEq)]
pub struct Latest {
    pub as_of: Millis,
    pub versions: Vec<VersionCalibration>,
}

/// The latest figures of this node.
#[derive(Default)]
pub struct ServedCalibration {
    alert: f64,
    latest: Mutex<Option<Latest>>,
}

/// Whether an event can change which score a send was served or the
/// send's outcome; the others are skipped when the log is read.
pub fn bears_on_outcomes(e: &Event) -> bool {
    e.kind.suppresses()
        || matches!(
            e.kind,
            EventKind::Send { .. }
                | EventKind::Click { .. }
                | EventKind::Reply { .. }
                | EventKind::Meeting
                | EventKind::Unsubscribe
                | EventKind::Complaint { .. }
                | EventKind::Scored(_)
        )
}

/// A kept event without what no label or served score reads (properties,
/// traits, names): a pass holds hundreds of thousands of them.
pub fn slim(mut e: Event) -> Event {
    e.properties = Default::default();
    e.traits = Default::default();
    e.name = None;
    e.anonymous_id = None;
    e
}

/// Adds one tenant's served sends to `pool`, labels as of `as_of`.
pub fn add_tenant(pool: &mut Pool, events: Vec<Event>, as_of: Millis) {
    let records: Vec<_> = Target::ALL
        .iter()
        .map(|t| (*t, score_records(&events, *t)))
        .filter(|(_, r)| !r.is_empty())
        .collect();
    if records.is_empty() {
        return;
    }
    let rows = outcome_rows(events, as_of);
    for (target, records) in records {
        for s in served_rows(&rows, &records, target) {
            let v = pool.entry((target, s.version)).or_default();
            v.0.push(s.probability);
            v.1.push(s.outcome);
        }
    }
}

/// The figures of each (target, version) of `pool`: per target, the
/// `MAX_VERSIONS` with the most sends, in version order.
pub fn figures(pool: Pool) -> Vec<VersionCalibration> {
    let all: Vec<VersionCalibration> = pool
        .into_iter()
        // Never empty: each entry holds at least the send that made it.
        .filter_map(|((target, version), (p, o))| {
            let figures = served_figures(&p, &o).ok()?;
            Some(VersionCalibration {
                target,
                version,
                figures,
            })
        })
        .collect();
    let mut kept = Vec::new();
    for target in Target::ALL {
        let mut of: Vec<VersionCalibration> =
            all.iter().filter(|v| v.target == target).cloned().collect();
        of.sort_by_key(|v| std::cmp::Reverse(v.figures.sends));
        of.truncate(MAX_VERSIONS);
        of.sort_by(|a, b| a.version.cmp(&b.version));
        kept.extend(of);
    }
    kept
}

/// The kept events of `log` up to `upto`, per tenant in tenant order
/// (undecodable entries are logged and skipped: they were validated at
/// ingest).
fn read_tenants(
    log: &dyn EventLog,
    upto: u64,
) -> crate::error::Result<BTreeMap<String, Vec<Event>>> {
    let mut tenants: BTreeMap<String, Vec<Event>> = BTreeMap::new();
    let mut after = 0;
    while after < upto {
        let page = log.read_after(after, PAGE)?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for entry in page.into_iter().filter(|e| e.seq <= upto) {
            match decode(&entry.payload) {
                Ok(event) if bears_on_outcomes(&event) => {
                    tenants.entry(entry.tenant).or_default().push(slim(event))
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(seq = entry.seq, error = %e, "calibration skipped an entry")
                }
            }
        }
    }
    Ok(tenants)
}

/// One runtime's served sends, labels as of `as_of`.
async fn runtime_pool(rt: &Runtime, as_of: Millis) -> crate::error::Result<Pool> {
    let log = rt.log.clone();
    let upto = rt.dispatched();
    tokio::task::spawn_blocking(move || {
        let mut pool = Pool::new();
        for (_, events) in read_tenants(log.as_ref(), upto)? {
            add_tenant(&mut pool, events, as_of);
        }
        Ok(pool)
    })
    .await
    .map_err(|e| crate::error::NodeError::Internal(format!("calibration task: {e}")))?
}

impl ServedCalibration {
    /// Empty until the first pass; `None`: calibration is off.
    pub fn new(config: Option<&CalibrationConfig>) -> Self {
        ServedCalibration {
            alert: config.map_or(f64::INFINITY, |c| c.alert),
            latest: Mutex::default(),
        }
    }

    /// The last pass's figures.
    pub fn latest(&self) -> Option<Latest> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Latest>> {
        self.latest.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One pass over every runtime of the node; a runtime whose log cannot
    /// be read fails the pass, leaving the last figures in place.
    async fn refresh(
        &self,
        runtimes: &[std::sync::Arc<Runtime>],
        as_of: Millis,
    ) -> crate::error::Result<()> {
        let mut pool = Pool::new();
        for rt in runtimes {
            for (key, (p, o)) in runtime_pool(rt, as_of).await? {
                let v = pool.entry(key).or_default();
                v.0.extend(p);
                v.1.extend(o);
            }
        }
        *self.lock() = Some(Latest {
            as_of,
            versions: figures(pool),
        });
        Ok(())
    }

    /// The figures in the Prometheus text format.
    pub fn render(&self) -> String {
        let Some(latest) = self.latest() else {
            return String::new();
        };
        let mut text = String::new();
        let mut gauge =
            |name: &str, help: &str, value: &dyn Fn(&VersionCalibration) -> Option<f64>| {
                let _ = write!(text, "# HELP {name} {help}\n# TYPE {name} gauge\n");
                for v in &latest.versions {
                    if let Some(x) = value(v) {
                        let _ = writeln!(
                            text,
                            "{name}{{target=\"{}\",version=\"{}\"}} {x}",
                            v.target.name(),
                            escape(&v.version)
                        );
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
             # TYPE liveseg_served_labels_as_of_seconds gauge\n\
             liveseg_served_labels_as_of_seconds {}\n",
            latest.as_of as f64 / 1000.0
        );
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

/// Recomputes every `config.every`; the first pass after at most
/// `FIRST_PASS_AFTER` (not while the node is still starting).
pub fn spawn(inner: Weak<NodeInner>, config: CalibrationConfig) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        tokio::time::sleep(config.every.min(FIRST_PASS_AFTER)).await;
        let mut tick = tokio::time::interval(config.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(inner) = inner.upgrade() else { return };
            let started = std::time::Instant::now();
            let as_of = inner.clock.now();
            if let Err(e) = inner.calibration.refresh(&inner.runtimes(), as_of).await {
                tracing::warn!(error = %e, "served calibration failed; the last figures stay");
            }
            metrics::histogram!(liveseg_telemetry::names::SERVED_CALIBRATION_SECONDS)
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

    /// `history` as a node logs it among events that bear on no outcome.
    fn with_noise() -> Vec<Event> {
        let mut events = Vec::new();
        for (i, e) in history().into_iter().enumerate() {
            let day = (e.ts - T0) / DAY;
            events.push(track(
                &format!("o{i}"),
                "Email Opened",
                day,
                json!({"email_id": "e1"}),
            ));
            events.push(track(
                &format!("w{i}"),
                "Webinar Registered",
                day,
                json!({}),
            ));
            events.push(e);
        }
        events
    }

    fn calibrate(events: Vec<Event>, as_of: Millis) -> Vec<VersionCalibration> {
        let mut pool = Pool::new();
        add_tenant(&mut pool, events, as_of);
        figures(pool)
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
    fn the_events_skipped_when_reading_change_no_figure() {
        let all = with_noise();
        let kept: Vec<Event> = all
            .iter()
            .filter(|e| bears_on_outcomes(e))
            .map(|e| slim(e.clone()))
            .collect();
        assert_eq!(kept.len(), history().len());
        for day in [22, 40] {
            assert_eq!(
                calibrate(all.clone(), T0 + day * DAY),
                calibrate(kept.clone(), T0 + day * DAY)
            );
        }
    }

    #[test]
    fn tenants_pool_per_version_and_only_the_busiest_versions_are_kept() {
        let mut pool = Pool::new();
        add_tenant(&mut pool, history(), T0 + 40 * DAY);
        add_tenant(&mut pool, history(), T0 + 40 * DAY);
        let got = figures(pool);
        assert_eq!(got[0].figures.sends, 4, "both tenants' v0 sends");
        let mut many = Pool::new();
        for v in 0..MAX_VERSIONS + 3 {
            let sends = v + 1;
            many.insert(
                (Target::Click7d, format!("v{v:02}")),
                (vec![0.1; sends], vec![false; sends]),
            );
        }
        let kept: Vec<String> = figures(many).into_iter().map(|v| v.version).collect();
        assert_eq!(kept.len(), MAX_VERSIONS);
        assert_eq!(
            kept.first().map(String::as_str),
            Some("v03"),
            "the 3 smallest dropped"
        );
    }

    #[test]
    fn metrics_carry_the_figures_and_alerts() {
        let config = CalibrationConfig {
            every: Duration::from_secs(60),
            alert: 0.15,
        };
        let c = ServedCalibration::new(Some(&config));
        assert_eq!(c.render(), "", "nothing before the first pass");
        let as_of = T0 + 22 * DAY;
        *c.lock() = Some(Latest {
            as_of,
            versions: calibrate(history(), as_of),
        });
        let text = c.render();
        let line = |name: &str, version: &str| {
            let head = format!("{name}{{target=\"click_7d\",version=\"{version}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(head.as_str()))
                .and_then(|v| v.parse::<f64>().ok())
        };
        assert_eq!(line("liveseg_served_sends", "v0"), Some(2.0));
        assert_eq!(line("liveseg_served_observed", "v1"), Some(1.0));
        // v0 predicted 0.1 against 0.5 observed; v1 0.3 against 1.0.
        assert_eq!(line("liveseg_served_calibration_alert", "v0"), Some(1.0));
        assert_eq!(line("liveseg_served_ece", "v1"), None);
        assert_eq!(text.matches("# TYPE liveseg_served_ece gauge").count(), 1);
        assert!(!text.contains("tenant="), "{text}");
        let as_of_line = format!("liveseg_served_labels_as_of_seconds {}", as_of / 1000);
        assert!(text.contains(&as_of_line), "{text}");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape("x\ny"), "x\\ny");
    }
}
