//! Propensity models end to end over real processes: `liveseg generate`
//! writes a workload, `liveseg model train` fits calibrated models into a
//! registry, versions are listed, activated and rolled back, the report
//! reads, and `liveseg model serve --registry` scores over real gRPC with
//! per-row errors, exports drift on /metrics, and gives the same scores as
//! scoring in process. Clustering and lookalikes run on the same workload.

use anyhow::{Context, Result, bail};
use liveseg_proto::pb;
use liveseg_proto::pb::propensity_service_client::PropensityServiceClient;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn liveseg(args: &[&str]) -> Result<Output> {
    Command::new(liveseg_tests::liveseg_bin())
        .args(args)
        .output()
        .with_context(|| format!("running liveseg {args:?}"))
}

/// Runs a command that must succeed; returns its stdout.
fn ok(args: &[&str]) -> Result<String> {
    let out = liveseg(args)?;
    if !out.status.success() {
        bail!(
            "liveseg {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// A generated workload and a registry with an active click_7d model.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn events(&self) -> String {
        self.dir.path().join("events.jsonl").display().to_string()
    }
    fn registry(&self) -> String {
        self.dir.path().join("models").display().to_string()
    }

    fn new() -> Result<Fixture> {
        let f = Fixture {
            dir: tempfile::tempdir()?,
        };
        ok(&[
            "generate",
            "--accounts",
            "120",
            "--days",
            "150",
            "--seed",
            "11",
            "-O",
            &f.events(),
        ])?;
        Ok(f)
    }

    fn train(&self, extra: &[&str]) -> Result<String> {
        let (events, reg) = (self.events(), self.registry());
        let mut args = vec!["model", "train", "--events", &events, "--registry", &reg];
        args.extend_from_slice(extra);
        ok(&args)
    }
}

/// The first number after `label` in `text`.
fn figure(text: &str, label: &str) -> f64 {
    text.split(label)
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(f64::NAN)
}

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
    Ok(())
}

struct ModelProc {
    child: Child,
    url: String,
}

impl Drop for ModelProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn serve(registry: &str, dir: &Path) -> Result<ModelProc> {
    let addr_file = dir.join("model.addr");
    let child = Command::new(liveseg_tests::liveseg_bin())
        .args([
            "model",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--registry",
            registry,
            "--addr-file",
        ])
        .arg(&addr_file)
        .arg("--model-dir")
        .arg(repo().join("models/all-MiniLM-L6-v2"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("model.log"))?)
        .spawn()?;
    let mut proc = ModelProc {
        child,
        url: String::new(),
    };
    let addr = liveseg_tests::poll(Duration::from_secs(30), "the address file", || {
        let a = std::fs::read_to_string(&addr_file).ok();
        async move { a.filter(|a| !a.is_empty()) }
    })
    .await?;
    proc.url = format!("http://{addr}");
    Ok(proc)
}

fn row(id: &str, features: Vec<f32>) -> pb::FeatureRow {
    pb::FeatureRow {
        id: id.into(),
        features,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_service_scores_refuses_bad_rows_and_watches_drift() -> Result<()> {
    let f = Fixture::new()?;
    f.train(&["--target", "click_7d,unsubscribe_7d", "--activate"])?;
    let p = serve(&f.registry(), f.dir.path()).await?;
    let mut c = PropensityServiceClient::connect(p.url.clone()).await?;

    let mut nan = vec![0.0f32; 48];
    nan[5] = f32::NAN;
    let reply = c
        .score(pb::ScoreRequest {
            target: "click_7d".into(),
            feature_set: "contact-v1".into(),
            rows: vec![
                row("a", vec![1.0; 48]),
                row("b", vec![0.0; 3]),
                row("c", nan),
            ],
            top_contributions: 3,
            ..Default::default()
        })
        .await?
        .into_inner();
    let [a, b, c_row] = &reply.scores[..] else {
        bail!("three scores: {reply:?}")
    };
    assert!(
        a.error.is_empty() && a.probability > 0.0 && a.probability < 1.0,
        "{a:?}"
    );
    assert_eq!(a.top.len(), 3);
    assert!(
        a.top
            .windows(2)
            .all(|w| w[0].contribution.abs() >= w[1].contribution.abs())
    );
    assert!(
        b.error.starts_with("rows[1].features: 3 values"),
        "{}",
        b.error
    );
    assert!(
        c_row.error.starts_with("rows[2].features[5] (opens_90d)"),
        "{}",
        c_row.error
    );

    let wrong_set = c
        .score(pb::ScoreRequest {
            target: "click_7d".into(),
            feature_set: "contact-v0".into(),
            rows: vec![row("a", vec![1.0; 48])],
            ..Default::default()
        })
        .await
        .expect_err("another feature layout is refused");
    assert_eq!(wrong_set.code(), tonic::Code::FailedPrecondition);
    let no_model = c
        .score(pb::ScoreRequest {
            target: "meeting_30d".into(),
            rows: vec![row("a", vec![1.0; 48])],
            ..Default::default()
        })
        .await
        .expect_err("no active meeting model");
    assert!(
        no_model.message().contains("no active model"),
        "{no_model:?}"
    );

    let listed = c
        .list_models(pb::ListModelsRequest::default())
        .await?
        .into_inner();
    assert_eq!(listed.models.len(), 2);
    assert!(
        listed
            .models
            .iter()
            .all(|m| m.active && m.auc > 0.0 && m.feature_set == "contact-v1")
    );
    let missing = c
        .activate_model(pb::ActivateModelRequest {
            target: "click_7d".into(),
            version: "click_7d-nope".into(),
        })
        .await
        .expect_err("unknown version");
    assert_eq!(missing.code(), tonic::Code::NotFound);

    // A thousand identical rows are nothing like the training window: the
    // drift gauge and alert appear on /metrics.
    c.score(pb::ScoreRequest {
        target: "click_7d".into(),
        rows: (0..1000)
            .map(|i| row(&i.to_string(), vec![7.0; 48]))
            .collect(),
        ..Default::default()
    })
    .await?;
    let metrics = http_get(&p.url, "/metrics").await?;
    assert!(
        metrics.contains("liveseg_propensity_feature_psi{target=\"click_7d\""),
        "{metrics}"
    );
    let alert = metrics
        .lines()
        .find(|l| l.starts_with("liveseg_propensity_drift_alert{target=\"click_7d\""))
        .context("the drift alert gauge")?;
    assert!(alert.ends_with(" 1"), "{alert}");

    // Scores through the service equal scores in process, contact by contact.
    let remote = ok(&[
        "model",
        "score",
        "--events",
        &f.events(),
        "--registry",
        &f.registry(),
        "--model-server",
        &p.url,
    ])?;
    let local = ok(&[
        "model",
        "score",
        "--events",
        &f.events(),
        "--registry",
        &f.registry(),
    ])?;
    assert!(remote.lines().count() > 100);
    assert_eq!(remote, local);
    let first: serde_json::Value = serde_json::from_str(remote.lines().next().context("a line")?)?;
    assert!(
        first["scores"]["click_7d"]["probability"].is_number(),
        "{first}"
    );
    assert!(
        first["send_hour"]["hour"].as_u64().is_some_and(|h| h < 24),
        "{first}"
    );
    assert!(first["fatigue"]["level"].is_string(), "{first}");
    Ok(())
}

/// A plain HTTP/1.1 GET (the model service serves /metrics on its gRPC port).
async fn http_get(url: &str, path: &str) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = url.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(host).await?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut body = String::new();
    s.read_to_string(&mut body).await?;
    Ok(body)
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
    let seed: std::collections::HashSet<String> = members
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["segment"] == "engaged_target_contacts")
        .filter_map(|m| m["id"].as_str().map(str::to_string))
        .collect();
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

const SCORE_SEGMENT: &str = r#"
- key: likely_clickers
  name: Likely clickers
  entity: contact
  condition: {score: {target: click_7d, at_least: 0.1}}
- key: top_decile_clickers
  name: Top decile clickers
  entity: contact
  condition: {score: {target: click_7d, top_percent: 10}}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scores_ingested_as_records_feed_segments_explain_and_replay() -> Result<()> {
    let f = Fixture::new()?;
    f.train(&["--target", "click_7d", "--activate"])?;
    let defs = f.dir.path().join("defs.yaml");
    std::fs::write(&defs, SCORE_SEGMENT)?;
    let defs = defs.display().to_string();
    let data = f.dir.path().join("node");
    let node = liveseg_tests::Node::start(&data, &[]).await?;
    let url = node.url();
    let key = node.api_key.clone();
    let remote = |args: &[&str]| -> Result<String> {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--server", &url, "--api-key", &key]);
        ok(&all)
    };
    remote(&["segments", "apply", "--file", &defs])?;
    remote(&["ingest", &f.events()])?;
    let records = f.dir.path().join("scores.jsonl").display().to_string();
    let scored = remote(&[
        "model",
        "score",
        "--events",
        &f.events(),
        "--registry",
        &f.registry(),
        "--records",
        &records,
        "--ingest",
    ])?;
    node.settle().await?;

    // Members are exactly the contacts scored at 0.1 or more.
    let mut want = std::collections::BTreeSet::new();
    for line in scored.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        if v["scores"]["click_7d"]["probability"]
            .as_f64()
            .is_some_and(|p| p >= f64::from(0.1f32))
        {
            want.insert(v["contact"].as_str().unwrap_or_default().to_string());
        }
    }
    assert!(want.len() > 5, "{} likely clickers", want.len());
    let got: std::collections::BTreeSet<String> =
        liveseg_tests::all_members(&node, "likely_clickers")
            .await?
            .into_iter()
            .map(|(_, id, _)| id)
            .collect();
    assert_eq!(got, want);

    // The top decile: the percentile the scorer stamped is at least 90.
    let mut top: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    for line in scored.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        if v["scores"]["click_7d"]["percentile"]
            .as_f64()
            .is_some_and(|p| p > f64::from(90.0f32))
        {
            top.insert(v["contact"].as_str().unwrap_or_default().to_string());
        }
    }
    let top_members: std::collections::BTreeSet<String> =
        liveseg_tests::all_members(&node, "top_decile_clickers")
            .await?
            .into_iter()
            .map(|(_, id, _)| id)
            .collect();
    assert_eq!(top_members, top);
    let n = scored.lines().count();
    assert!(
        top.len() * 100 <= n * 11 && top.len() * 100 >= n * 9,
        "{} of {n}",
        top.len()
    );

    // Explain shows the score, the model version and its contributions.
    let someone = want.iter().next().context("a member")?;
    let why = remote(&["explain", someone, "likely_clickers"])?;
    assert!(
        why.contains("P(click_7d) >= 0.1") && why.contains("model click_7d-"),
        "{why}"
    );
    assert!(why.contains("largest contributions"), "{why}");

    // The records are in the log: a replay of events + records gives the same members.
    let history = f.dir.path().join("with_scores.jsonl");
    let mut text = std::fs::read_to_string(f.events())?;
    text.push_str(&std::fs::read_to_string(&records)?);
    std::fs::write(&history, text)?;
    let replayed = ok(&[
        "replay",
        "--events",
        &history.display().to_string(),
        "--segments",
        &defs,
        "--at",
        "2026-12-01T00:00:00Z",
    ])?;
    let from_replay: std::collections::BTreeSet<String> = replayed
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["segment"] == "likely_clickers")
        .filter_map(|m| m["id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(from_replay, want);
    // Sending the same scores again changes nothing: their messageIds repeat.
    let again = liveseg(&[
        "ingest",
        &records,
        "--server",
        &url,
        "--api-key",
        &key,
        "-o",
        "json",
    ])?;
    let summary: serde_json::Value = serde_json::from_slice(&again.stdout)?;
    assert_eq!(summary["accepted"], 0, "{summary}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_keeps_scores_live_through_the_model_service() -> Result<()> {
    let f = Fixture::new()?;
    f.train(&["--target", "click_7d", "--activate"])?;
    let model = serve(&f.registry(), f.dir.path()).await?;
    let defs = f.dir.path().join("defs.yaml");
    std::fs::write(&defs, SCORE_SEGMENT)?;
    let defs = defs.display().to_string();
    let data = f.dir.path().join("node");
    // The node's clock stands at the end of the history, where the model
    // was trained, so contacts score as they would have then.
    let scoring = [
        "--score-every",
        "1s",
        "--scoring-server",
        model.url.as_str(),
        "--clock",
        "manual:2026-11-01T00:00:00Z",
    ];
    let mut node = liveseg_tests::Node::start(&data, &scoring).await?;
    let (url, key) = (node.url(), node.api_key.clone());
    let remote = |args: &[&str]| -> Result<String> {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--server", &url, "--api-key", &key]);
        ok(&all)
    };
    remote(&["segments", "apply", "--file", &defs])?;
    remote(&["ingest", &f.events()])?;
    node.settle().await?;
    // Scores made while the history streamed in are stamped at the clock's
    // instant; once the clock moves, every contact is scored again on its
    // whole history (one score per contact and instant).
    node.admin()
        .await?
        .advance_clock(pb::AdvanceClockRequest {
            to: "2026-11-01T00:00:01Z".into(),
        })
        .await?;

    // The scorer asks the actors for features, the model service scores
    // them, and the scores come back as logged records: members appear.
    let members = liveseg_tests::poll(Duration::from_secs(90), "likely clickers", || {
        let node = &node;
        async move {
            let m = liveseg_tests::all_members(node, "likely_clickers")
                .await
                .ok()?;
            (m.len() > 5).then_some(m)
        }
    })
    .await
    .with_context(|| node.log_tail())?;
    let someone = &members[0].1;
    let why = remote(&["explain", someone, "likely_clickers"])?;
    assert!(
        why.contains("model click_7d-") && why.contains("largest contributions"),
        "{why}"
    );
    node.terminate().await?;

    // The scores are in the log: an export replays to the members a
    // restarted node (without the scorer) serves.
    let exported = f.dir.path().join("exported.jsonl").display().to_string();
    ok(&[
        "export",
        "--data-dir",
        &data.display().to_string(),
        "-O",
        &exported,
    ])?;
    let log = std::fs::read_to_string(&exported)?;
    let scores = log
        .lines()
        .filter(|l| l.contains("\"Propensity Scored\""))
        .count();
    assert!(scores >= members.len(), "{scores} score records");
    let replayed = ok(&[
        "replay",
        "--events",
        &exported,
        "--segments",
        &defs,
        "--at",
        "2030-01-01T00:00:00Z",
    ])?;
    let from_replay: std::collections::BTreeSet<String> = replayed
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["segment"] == "likely_clickers")
        .filter_map(|m| m["id"].as_str().map(str::to_string))
        .collect();
    let node = liveseg_tests::Node::start(&data, &[]).await?;
    node.settle().await?;
    let restarted: std::collections::BTreeSet<String> =
        liveseg_tests::all_members(&node, "likely_clickers")
            .await?
            .into_iter()
            .map(|(_, id, _)| id)
            .collect();
    assert_eq!(restarted, from_replay);
    assert!(restarted.len() >= members.len());
    Ok(())
}
