//! The live scorer between full rounds: a contact's new events rescore its
//! account within about a second, and only its account; and a refresh the
//! model service failed (gone, or hung past `--score-timeout`) is retried
//! once the service is back, instead of waiting for the next full round.

use anyhow::{Context, Result};
use liveseg_proto::pb;
use liveseg_tests::Node;
use liveseg_tests::models::{
    Fixture, ModelProc, on_node, scored_instant, scoring_node, serve_models, serve_models_on,
};
use std::time::Duration;

const FULL_ROWS: &str = r#"liveseg_scorer_rows_total{kind="full"}"#;
const REFRESH_ROWS: &str = r#"liveseg_scorer_rows_total{kind="refresh"}"#;
const REFRESHES: &str = "liveseg_scorer_refreshes_total";
const FAILURES: &str = r#"liveseg_scorer_failures_total{stage="pass"}"#;
const ROUNDS: &str = "liveseg_scorer_rounds_total";
/// The clock when the burst of clicks arrives.
const BURST_AT: &str = "2026-11-01T00:00:05Z";

fn figure(metrics: &str, name: &str) -> f64 {
    liveseg_tests::metric_value(metrics, name)
}

/// The distinct contacts `account` holds in a Segment-Spec history.
fn contacts_of(events: &str, account: &str) -> Result<usize> {
    let mut ids = std::collections::HashSet::new();
    for line in std::fs::read_to_string(events)?.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        // A group event's own groupId wins over its context's.
        let group = v["groupId"].as_str().or(v["context"]["groupId"].as_str());
        if let (Some(user), Some(account_id)) = (v["userId"].as_str(), group)
            && account_id == account
        {
            ids.insert(user.to_string());
        }
    }
    Ok(ids.len())
}

/// The node's /metrics page once `ready` holds for it.
async fn metrics_when(node: &Node, what: &str, ready: impl Fn(&str) -> bool) -> Result<String> {
    liveseg_tests::poll(Duration::from_secs(60), what, || {
        let addr = node.addr.clone();
        let ready = &ready;
        async move {
            let m = liveseg_tests::http_get(&addr, "/metrics").await.ok()?;
            ready(&m).then_some(m)
        }
    })
    .await
    .with_context(|| node.log_tail())
}

/// The node's /metrics page once two more refresh passes have ended: any
/// account touched before the call has been rescored by then.
async fn after_two_refreshes(node: &Node) -> Result<String> {
    let m = liveseg_tests::http_get(&node.addr, "/metrics").await?;
    let refreshes = figure(&m, REFRESHES);
    metrics_when(node, "two more refreshes", |m| {
        figure(m, REFRESHES) >= refreshes + 2.0
    })
    .await
}

/// A trained click model, its model service, and a node scoring the
/// history through it; `before` is the node's /metrics once ready.
struct Refreshing {
    f: Fixture,
    model: ModelProc,
    node: Node,
    before: String,
}

/// The node's only full round is the tenant's first ranking
/// (`--score-every 1h`, which comes as soon as the tenant has contacts),
/// so only refreshes rescore anyone after it; ready once the accounts the
/// history touched are refreshed.
async fn refreshing_node(extra: &[&str]) -> Result<Refreshing> {
    let f = Fixture::new()?;
    f.train(&["--target", "click_7d", "--activate"])?;
    let model = serve_models(&f.registry(), f.dir.path()).await?;
    let (node, _) = scoring_node(&f, &model.url, "1h", extra).await?;
    let ranked = metrics_when(&node, "the tenant's first ranking", |m| {
        figure(m, FULL_ROWS) > 0.0
    });
    ranked.await?;
    let before = after_two_refreshes(&node).await?;
    Ok(Refreshing {
        f,
        model,
        node,
        before,
    })
}

/// Asserts no full round ran (or started) since `before` was read.
fn no_full_round_since(before: &str, now: &str) {
    for name in [FULL_ROWS, ROUNDS] {
        assert_eq!(
            figure(now, name),
            figure(before, name),
            "{name}: no full round ran"
        );
    }
}

/// (contact, account) of the first `likely_clickers` member, and of the
/// first member of another account.
async fn members_of_two_accounts(node: &Node) -> Result<[(String, String); 2]> {
    let all = liveseg_tests::all_members(node, "likely_clickers").await?;
    let (_, busy, busy_account) = all.first().context("a member")?.clone();
    let (_, quiet, quiet_account) = all
        .iter()
        .find(|(_, _, a)| *a != busy_account)
        .context("a member of another account")?
        .clone();
    Ok([(busy, busy_account), (quiet, quiet_account)])
}

/// The instant of `contact`'s click score, from explain.
fn scored_at(node: &Node, contact: &str) -> Result<String> {
    let why = on_node(node, &["explain", contact, "likely_clickers"])?;
    scored_instant(&why)
        .map(str::to_string)
        .with_context(|| format!("no score in: {why}"))
}

/// Moves the node's clock to `at`, then ingests six clicked sends of the
/// day before for `contact` of `account`: enough to move its click score.
async fn click_burst(
    f: &Fixture,
    node: &Node,
    (contact, account): &(String, String),
    at: &str,
) -> Result<()> {
    node.admin()
        .await?
        .advance_clock(pb::AdvanceClockRequest { to: at.into() })
        .await?;
    let mut lines = String::new();
    for i in 0..6 {
        for (event, minute) in [
            ("Email Delivered", 10),
            ("Email Opened", 20),
            ("Email Link Clicked", 30),
        ] {
            lines.push_str(&format!(
                "{{\"type\":\"track\",\"messageId\":\"refresh-{i}-{minute}\",\"timestamp\":\"2026-10-31T1{i}:{minute}:00Z\",\"userId\":\"{contact}\",\"event\":\"{event}\",\"properties\":{{\"email_id\":\"em_refresh_{i}\"}},\"context\":{{\"groupId\":\"{account}\"}}}}\n"
            ));
        }
    }
    let burst = f.dir.path().join("burst.jsonl");
    std::fs::write(&burst, lines)?;
    let ingested = on_node(node, &["ingest", &burst.display().to_string()])?;
    let accepted = ingested
        .lines()
        .find_map(|l| l.trim().strip_prefix("accepted"))
        .map(str::trim);
    anyhow::ensure!(accepted == Some("18"), "every line accepted: {ingested}");
    node.settle().await?;
    Ok(())
}

/// Waits until `contact`'s click score is stamped `BURST_AT`.
async fn rescored(node: &Node, contact: &str, deadline: Duration) -> Result<()> {
    let why = liveseg_tests::poll(deadline, "a refreshed score", || async move {
        let why = on_node(node, &["explain", contact, "likely_clickers"]).ok()?;
        scored_instant(&why)?
            .starts_with(BURST_AT.trim_end_matches('Z'))
            .then_some(why)
    })
    .await
    .with_context(|| node.log_tail())?;
    anyhow::ensure!(why.contains("P(click_7d)"), "{why}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contacts_new_events_rescore_it_before_the_next_full_round() -> Result<()> {
    // (Bound, so the model service lives to the end.)
    let Refreshing {
        f,
        model: _model,
        node,
        before,
    } = refreshing_node(&[]).await?;
    let refresh_rows = figure(&before, REFRESH_ROWS);
    let [busy, quiet] = members_of_two_accounts(&node).await?;
    let quiet_scored = scored_at(&node, &quiet.0)?;

    click_burst(&f, &node, &busy, BURST_AT).await?;
    rescored(&node, &busy.0, Duration::from_secs(30)).await?;
    // Once any further refresh would have run: the refreshes asked the
    // model service about the busy account's contacts only, and once; no
    // full round ran; and the other account's contact kept its score.
    let m = after_two_refreshes(&node).await?;
    let sent = figure(&m, REFRESH_ROWS) - refresh_rows;
    let in_account = contacts_of(&f.events(), &busy.1)?;
    assert!(
        sent >= 1.0 && sent <= in_account as f64,
        "the refreshes sent {sent} rows; {} holds {in_account} contacts",
        busy.1
    );
    no_full_round_since(&before, &m);
    assert_eq!(scored_at(&node, &quiet.0)?, quiet_scored);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_the_model_service_failed_is_retried_once_it_is_back() -> Result<()> {
    let Refreshing {
        f,
        model,
        node,
        before,
    } = refreshing_node(&[]).await?;
    let listen = model.url.trim_start_matches("http://").to_string();
    let [busy, _] = members_of_two_accounts(&node).await?;

    // The model service is gone when the burst's refresh asks it.
    drop(model);
    click_burst(&f, &node, &busy, BURST_AT).await?;
    let failures = figure(&before, FAILURES);
    metrics_when(&node, "a failed refresh", |m| {
        figure(m, FAILURES) > failures
    })
    .await?;
    // Back where it was: the next refresh scores the account it failed on,
    // with no full round for an hour.
    let _model = serve_models_on(&f.registry(), f.dir.path(), &listen).await?;
    rescored(&node, &busy.0, Duration::from_secs(60)).await?;
    let m = liveseg_tests::http_get(&node.addr, "/metrics").await?;
    no_full_round_since(&before, &m);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_model_service_fails_the_pass_and_its_accounts_are_retried() -> Result<()> {
    let Refreshing {
        f,
        model,
        node,
        before,
    } = refreshing_node(&["--score-timeout", "2s"]).await?;
    let [busy, _] = members_of_two_accounts(&node).await?;

    // The model service is stopped when the burst's refresh asks it: the
    // call times out instead of holding the scorer until SIGCONT.
    model.signal("-STOP")?;
    click_burst(&f, &node, &busy, BURST_AT).await?;
    // (The first ranking may have timed out too on a busy machine.)
    let failures = figure(&before, FAILURES);
    let failed = metrics_when(&node, "a timed-out refresh", |m| {
        figure(m, FAILURES) > failures
    })
    .await;
    model.signal("-CONT")?;
    failed?;
    rescored(&node, &busy.0, Duration::from_secs(60)).await?;
    let m = liveseg_tests::http_get(&node.addr, "/metrics").await?;
    no_full_round_since(&before, &m);
    Ok(())
}
