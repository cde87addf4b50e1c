//! Propensity scores end to end: `liveseg model serve --registry` scores
//! over real gRPC with per-row errors, exports drift on /metrics and gives
//! the same scores as scoring in process; scores ingested as derived records
//! feed segments, explain and replay; and a node keeps them live through
//! the model service (refreshes between rounds: `score_refresh.rs`).

use anyhow::{Context, Result, bail};
use liveseg_core::features::{FEATURE_COUNT, FEATURE_SET};
use liveseg_proto::pb;
use liveseg_proto::pb::propensity_service_client::PropensityServiceClient;
use liveseg_tests::models::{
    Fixture, SCORE_SEGMENT, liveseg, member_ids, ok, on_node, replayed_members, scoring_node,
    serve_models,
};
use std::time::Duration;

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
    let p = serve_models(&f.registry(), f.dir.path()).await?;
    let mut c = PropensityServiceClient::connect(p.url.clone()).await?;

    let mut nan = vec![0.0f32; FEATURE_COUNT];
    nan[5] = f32::NAN;
    let reply = c
        .score(pb::ScoreRequest {
            target: "click_7d".into(),
            feature_set: FEATURE_SET.into(),
            rows: vec![
                row("a", vec![1.0; FEATURE_COUNT]),
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
            rows: vec![row("a", vec![1.0; FEATURE_COUNT])],
            ..Default::default()
        })
        .await
        .expect_err("another feature layout is refused");
    assert_eq!(wrong_set.code(), tonic::Code::FailedPrecondition);
    let no_model = c
        .score(pb::ScoreRequest {
            target: "meeting_30d".into(),
            rows: vec![row("a", vec![1.0; FEATURE_COUNT])],
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
            .all(|m| m.active && m.auc > 0.0 && m.feature_set == FEATURE_SET)
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
            .map(|i| row(&i.to_string(), vec![7.0; FEATURE_COUNT]))
            .collect(),
        ..Default::default()
    })
    .await?;
    let metrics = liveseg_tests::http_get(p.url.trim_start_matches("http://"), "/metrics").await?;
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
    let (events, registry) = (f.events(), f.registry());
    let score = |extra: &[&str]| {
        let mut args = vec![
            "model",
            "score",
            "--events",
            &events,
            "--registry",
            &registry,
        ];
        args.extend_from_slice(extra);
        ok(&args)
    };
    let remote = score(&["--model-server", &p.url])?;
    let local = score(&[])?;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scores_ingested_as_records_feed_segments_explain_and_replay() -> Result<()> {
    let f = Fixture::new()?;
    f.train(&["--target", "click_7d", "--activate"])?;
    let defs = f.dir.path().join("defs.yaml");
    std::fs::write(&defs, SCORE_SEGMENT)?;
    let defs = defs.display().to_string();
    let data = f.dir.path().join("node");
    let node = liveseg_tests::Node::start(&data, &[]).await?;
    let (url, key) = (node.url(), node.api_key.clone());
    on_node(&node, &["segments", "apply", "--file", &defs])?;
    on_node(&node, &["ingest", &f.events()])?;
    let records = f.dir.path().join("scores.jsonl").display().to_string();
    let scored = on_node(
        &node,
        &[
            "model",
            "score",
            "--events",
            &f.events(),
            "--registry",
            &f.registry(),
            "--records",
            &records,
            "--ingest",
        ],
    )?;
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
    let got = member_ids(&node, "likely_clickers").await?;
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
    let top_members = member_ids(&node, "top_decile_clickers").await?;
    assert_eq!(top_members, top);
    let n = scored.lines().count();
    assert!(
        top.len() * 100 <= n * 11 && top.len() * 100 >= n * 9,
        "{} of {n}",
        top.len()
    );

    // Explain shows the score, the model version and its contributions.
    let someone = want.iter().next().context("a member")?;
    let why = on_node(&node, &["explain", someone, "likely_clickers"])?;
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
    let from_replay = replayed_members(&replayed, "likely_clickers");
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
    let model = serve_models(&f.registry(), f.dir.path()).await?;
    let (mut node, defs) = scoring_node(&f, &model.url, "1s", &[]).await?;
    let data = f.dir.path().join("node");

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
    let why = on_node(&node, &["explain", someone, "likely_clickers"])?;
    assert!(
        why.contains("model click_7d-") && why.contains("largest contributions"),
        "{why}"
    );
    // Ranks written between rounds were against the last full round, and
    // at most one score per contact is written per clock instant. A refresh
    // at a new instant can still write ranks against an older reference
    // that the full round at the same instant then cannot correct (seen:
    // 828 refresh records, then the restart rewrote 734). So: move the
    // clock, let two full rounds run, and repeat until an instant passes
    // with nothing written; every stored rank is then a full round's.
    let figure = |m: &str, name: &str| liveseg_tests::metric_value(m, name);
    let mut second = 1;
    loop {
        second += 1;
        anyhow::ensure!(second < 10, "scores never settled: {}", node.log_tail());
        let m = liveseg_tests::http_get(&node.addr, "/metrics").await?;
        let (rounds, records) = (
            figure(&m, "liveseg_scorer_rounds_total"),
            figure(&m, "liveseg_scorer_records_total"),
        );
        node.admin()
            .await?
            .advance_clock(pb::AdvanceClockRequest {
                to: format!("2026-11-01T00:00:{second:02}Z"),
            })
            .await?;
        let m = liveseg_tests::poll(Duration::from_secs(30), "two more full rounds", || {
            let addr = node.addr.clone();
            async move {
                let m = liveseg_tests::http_get(&addr, "/metrics").await.ok()?;
                (figure(&m, "liveseg_scorer_rounds_total") >= rounds + 2.0).then_some(m)
            }
        })
        .await?;
        if figure(&m, "liveseg_scorer_records_total") == records {
            break;
        }
    }
    node.settle().await?;
    node.terminate().await?;

    let restart_clock = format!("manual:2026-11-01T00:00:{:02}Z", second + 1);
    // Restarted, the scorer compares with the scores in the actors' state:
    // nothing moved, so nothing is rewritten, also once every account has
    // passivated and is read from its checkpoint instead of an actor.
    let restarted = [
        "--score-every",
        "1s",
        "--scoring-server",
        model.url.as_str(),
        "--clock",
        &restart_clock,
        "--passivate-after",
        "1s",
    ];
    let mut node = liveseg_tests::Node::start(&data, &restarted).await?;
    node.settle().await?;
    node.admin()
        .await?
        .advance_clock(pb::AdvanceClockRequest {
            to: format!("2026-11-01T00:00:{:02}Z", second + 3),
        })
        .await?;
    let metrics = liveseg_tests::poll(
        Duration::from_secs(60),
        "rounds over passive accounts",
        || {
            let addr = node.addr.clone();
            async move {
                let m = liveseg_tests::http_get(&addr, "/metrics").await.ok()?;
                let passive = liveseg_tests::metric_value(&m, "liveseg_scorer_passive_contacts");
                (passive > 0.0
                    && liveseg_tests::metric_value(&m, "liveseg_scorer_rounds_total") >= 3.0)
                    .then_some(m)
            }
        },
    )
    .await
    .with_context(|| node.log_tail())?;
    assert_eq!(
        liveseg_tests::metric_value(&metrics, "liveseg_scorer_records_total"),
        0.0,
        "no score moved, none rewritten: {}",
        node.log_tail()
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
    let from_replay = replayed_members(&replayed, "likely_clickers");
    let node = liveseg_tests::Node::start(&data, &[]).await?;
    node.settle().await?;
    let restarted = member_ids(&node, "likely_clickers").await?;
    assert_eq!(restarted, from_replay);
    assert!(restarted.len() >= members.len());
    Ok(())
}
