//! Propensity models end to end over real processes: `liveseg generate`
//! writes a workload, `liveseg model train` fits calibrated models into a
//! registry, versions are listed, activated and rolled back, the report
//! reads; a node's exported log trains; clusters and lookalikes run on the
//! same workload. Scoring is in `live_scores.rs`.

use anyhow::{Context, Result};
use liveseg_tests::models::{Fixture, figure, liveseg, ok, replayed_members};

fn versions(listing: &str) -> Vec<(bool, String)> {
    listing
        .lines()
        .filter_map(|l| {
            let active = l.starts_with('*');
            let v = l[1..].split_whitespace().nth(1)?.to_string();
            Some((active, v))
        })
        .collect()
}

#[test]
fn train_list_activate_rollback_and_report() -> Result<()> {
    let f = Fixture::new()?;
    let trained = f.train(&["--target", "click_7d", "--activate"])?;
    // Generated contacts click by persona and recency: the model must find it,
    // and the Platt-calibrated probabilities must match observed rates.
    let (auc, ece) = (figure(&trained, "AUC"), figure(&trained, "ECE"));
    assert!(auc > 0.7, "AUC {auc}\n{trained}");
    assert!(ece < 0.05, "ECE {ece}\n{trained}");
    assert!(
        trained.contains("reliability") && trained.contains("lift by decile"),
        "{trained}"
    );

    f.train(&["--target", "click_7d", "--calibration", "isotonic"])?;
    let list = ok(&["model", "list", "--registry", &f.registry()])?;
    let vs = versions(&list);
    assert_eq!(vs.len(), 2, "{list}");
    let first = vs
        .iter()
        .find(|v| v.0)
        .map(|v| v.1.clone())
        .context("an active version")?;
    let second = vs
        .iter()
        .find(|v| !v.0)
        .map(|v| v.1.clone())
        .context("an inactive version")?;

    ok(&[
        "model",
        "activate",
        "click_7d",
        &second,
        "--registry",
        &f.registry(),
    ])?;
    let now = versions(&ok(&["model", "list", "--registry", &f.registry()])?);
    assert!(now.contains(&(true, second.clone())) && now.contains(&(false, first.clone())));
    let back = ok(&["model", "rollback", "click_7d", "--registry", &f.registry()])?;
    assert!(back.contains(&first), "{back}");
    let again = liveseg(&["model", "rollback", "click_7d", "--registry", &f.registry()])?;
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("no previously active version"));

    let unknown = liveseg(&[
        "model",
        "activate",
        "click_7d",
        "nope",
        "--registry",
        &f.registry(),
    ])?;
    let why = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        !unknown.status.success() && why.contains(&first),
        "lists the known versions: {why}"
    );
    let bad = liveseg(&[
        "model",
        "train",
        "--events",
        &f.events(),
        "--target",
        "opens",
        "--registry",
        &f.registry(),
    ])?;
    assert_eq!(bad.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--target: unknown target 'opens'"));

    // A model trained with labels as of an earlier instant, reported on the weeks after it.
    f.train(&[
        "--target",
        "click_7d",
        "--as-of",
        "2026-09-15T00:00:00Z",
        "--activate",
    ])?;
    let report = ok(&[
        "model",
        "report",
        "click_7d",
        "--registry",
        &f.registry(),
        "--events",
        &f.events(),
    ])?;
    assert!(report.contains("by week:"), "{report}");
    let weeks = report.lines().filter(|l| l.starts_with("2026-")).count();
    assert!(weeks >= 3, "{report}");
    assert!(report.contains("no served scores"), "{report}");

    // Scores served at an instant (as a node logs them), then the sends
    // after it: the report matches each served score to its outcome.
    let log = f.served_log("2026-09-15T00:00:00Z")?;
    let (report, version, prom) = f.served_report(&log, &[])?;
    let version = version.as_str();
    let all: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with(version) && l.split_whitespace().nth(1) == Some("all"))
        .collect();
    assert_eq!(all.len(), 1, "one served version: {report}");
    let sends: usize = all[0]
        .split_whitespace()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .context("sends")?;
    assert!(sends > 100, "{report}");
    // The same figures as gauges for a textfile collector.
    let sends_gauge =
        format!("liveseg_served_sends{{target=\"click_7d\",version=\"{version}\"}} {sends}");
    assert!(prom.contains(&sends_gauge), "{prom}");
    assert!(prom.contains("# TYPE liveseg_served_ece gauge"), "{prom}");
    assert!(
        prom.contains("liveseg_report_alerts{target=\"click_7d\"} "),
        "{prom}"
    );
    Ok(())
}

#[test]
fn clusters_are_described_and_lookalikes_exclude_the_seed() -> Result<()> {
    let f = Fixture::new()?;
    let assignments = f.dir.path().join("clusters.jsonl");
    let out = ok(&[
        "model",
        "cluster",
        "--events",
        &f.events(),
        "--k",
        "4",
        "--assignments",
        &assignments.display().to_string(),
    ])?;
    let clusters: Vec<&str> = out.lines().filter(|l| l.starts_with("cluster ")).collect();
    assert_eq!(clusters.len(), 4, "{out}");
    assert!(
        out.contains(" high (") || out.contains(" low ("),
        "descriptions name features: {out}"
    );
    let assigned = std::fs::read_to_string(&assignments)?;
    let sizes: usize = clusters
        .iter()
        .filter_map(|l| l.split_whitespace().nth(2)?.parse::<usize>().ok())
        .sum();
    assert_eq!(assigned.lines().count(), sizes);

    let members = ok(&[
        "replay",
        "--events",
        &f.events(),
        "--at",
        "2026-11-01T00:00:00Z",
    ])?;
    let seed = replayed_members(&members, "engaged_target_contacts");
    assert!(!seed.is_empty());
    let found = ok(&[
        "model",
        "lookalike",
        "--events",
        &f.events(),
        "--seed-segment",
        "engaged_target_contacts",
        "-n",
        "10",
    ])?;
    let ids: Vec<serde_json::Value> = found
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(ids.len(), 10);
    for l in &ids {
        let id = l["contact"].as_str().context("contact")?;
        assert!(!seed.contains(id), "{id} is a seed member");
    }
    let sims: Vec<f64> = ids
        .iter()
        .filter_map(|l| l["similarity"].as_f64())
        .collect();
    assert!(sims.windows(2).all(|w| w[0] >= w[1]), "{sims:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nodes_log_exports_to_a_history_that_trains() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let events = dir.path().join("events.jsonl").display().to_string();
    ok(&[
        "generate",
        "--accounts",
        "40",
        "--days",
        "90",
        "--seed",
        "2",
        "-O",
        &events,
    ])?;
    let data = dir.path().join("node");
    let mut node = liveseg_tests::Node::start(&data, &[]).await?;
    ok(&[
        "ingest",
        &events,
        "--server",
        &node.url(),
        "--api-key",
        &node.api_key,
    ])?;
    node.terminate().await?;

    let exported = dir.path().join("exported.jsonl").display().to_string();
    let data_dir = data.display().to_string();
    ok(&["export", "--data-dir", &data_dir, "-O", &exported])?;
    let ids = |path: &str| -> Result<std::collections::BTreeSet<String>> {
        std::fs::read_to_string(path)?
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l)?;
                Ok(v["messageId"].as_str().unwrap_or_default().to_string())
            })
            .collect()
    };
    let (sent, logged) = (ids(&events)?, ids(&exported)?);
    assert_eq!(sent.len(), logged.len());
    assert!(sent == logged, "every accepted event is exported once");

    // The export is a history like any other: it trains.
    let registry = dir.path().join("models").display().to_string();
    let trained = ok(&[
        "model",
        "train",
        "--events",
        &exported,
        "--target",
        "click_7d",
        "--registry",
        &registry,
    ])?;
    assert!(figure(&trained, "AUC") > 0.6, "{trained}");
    // A tenant with nothing in the log exports nothing.
    let none = liveseg(&["export", "--data-dir", &data_dir, "--tenant", "nobody"])?;
    assert!(none.status.success() && none.stdout.is_empty());
    Ok(())
}

#[test]
fn a_target_without_matured_labels_is_reported_and_the_others_train() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let events = dir.path().join("events.jsonl").display().to_string();
    // 20 days of history: no send's 30-day meeting window has closed.
    ok(&[
        "generate",
        "--accounts",
        "40",
        "--days",
        "20",
        "--seed",
        "4",
        "-O",
        &events,
    ])?;
    let registry = dir.path().join("models").display().to_string();
    let out = liveseg(&[
        "model",
        "train",
        "--events",
        &events,
        "--registry",
        &registry,
    ])?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("meeting_30d"),
        "{stdout}"
    );
    let listed = ok(&["model", "list", "--registry", &registry])?;
    assert!(
        listed.contains("click_7d") && !listed.contains("meeting_30d"),
        "{listed}"
    );
    Ok(())
}
