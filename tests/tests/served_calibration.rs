//! A node tracks the calibration of the scores it served, live: matched to
//! the outcomes that matured as of its clock, per target and model version,
//! on its /metrics. The figures are those `liveseg model report` computes over the
//! same log with labels as of the same instant.

use anyhow::{Context, Result};
use liveseg_tests::models::{Fixture, ok};
use liveseg_tests::{Node, http_get, metric_value, poll};
use std::time::Duration;

/// Labels as of this instant on both sides: the node's manual clock and
/// the report's `--as-of`. Every click window of the history has closed.
const AS_OF: &str = "2026-12-01T00:00:00Z";
const AS_OF_SECONDS: f64 = 1_796_083_200.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_exports_the_calibration_of_the_scores_it_served() -> Result<()> {
    let f = Fixture::new()?;
    f.train(&[
        "--target",
        "click_7d",
        "--as-of",
        "2026-09-15T00:00:00Z",
        "--activate",
    ])?;
    // Scores served at an instant, as a node logs them, then the history's
    // sends after it: the log a scoring node would have.
    let log = f.served_log("2026-09-15T00:00:00Z")?;

    // What the offline report says about that log.
    let (report, version, offline) = f.served_report(&log, &["--as-of", AS_OF])?;
    let series = |labels: &str, name: &str| format!("{name}{{{labels}}}");
    let offline_labels = format!("target=\"click_7d\",version=\"{version}\"");
    let want_sends = metric_value(&offline, &series(&offline_labels, "liveseg_served_sends"));
    assert!(want_sends > 100.0, "{report}");

    let data = f.dir.path().join("node");
    let clock = format!("manual:{AS_OF}");
    let node = Node::start(&data, &["--clock", &clock, "--calibration-every", "1s"]).await?;
    ok(&[
        "ingest",
        &log,
        "--server",
        &node.url(),
        "--api-key",
        &node.api_key,
    ])?;
    // One tenant here: the node's figures, pooled over its tenants, are
    // that tenant's. Metric labels never carry tenant ids.
    let labels = offline_labels.clone();

    // A pass may run while the log is still arriving: wait for the one
    // that saw all of it.
    let live = poll(
        Duration::from_secs(60),
        "the served calibration on /metrics",
        || {
            let (addr, sends) = (node.addr.clone(), series(&labels, "liveseg_served_sends"));
            async move {
                let m = http_get(&addr, "/metrics").await.ok()?;
                (metric_value(&m, &sends) == want_sends).then_some(m)
            }
        },
    )
    .await
    .with_context(|| node.log_tail())?;
    for (name, tolerance) in [
        ("liveseg_served_predicted", 1e-9),
        ("liveseg_served_observed", 1e-9),
        ("liveseg_served_ece", 1e-6),
        ("liveseg_served_auc", 1e-6),
    ] {
        let (got, want) = (
            metric_value(&live, &series(&labels, name)),
            metric_value(&offline, &series(&offline_labels, name)),
        );
        assert!(want > 0.0, "{name} in the report: {offline}");
        assert!(
            (got - want).abs() <= tolerance,
            "{name}: node {got}, report {want}"
        );
    }
    // The alert follows the ratio and the node's threshold (0.15 by default).
    let ratio = metric_value(&live, &series(&labels, "liveseg_served_predicted"))
        / metric_value(&live, &series(&labels, "liveseg_served_observed"));
    let alert = metric_value(&live, &series(&labels, "liveseg_served_calibration_alert"));
    assert!(
        live.contains(&series(&labels, "liveseg_served_calibration_alert")),
        "{live}"
    );
    assert_eq!(alert == 1.0, (ratio - 1.0).abs() > 0.15, "ratio {ratio}");
    assert_eq!(
        metric_value(&live, "liveseg_served_labels_as_of_seconds"),
        AS_OF_SECONDS
    );
    assert!(!live.contains("tenant="), "no tenant label on /metrics");
    Ok(())
}
