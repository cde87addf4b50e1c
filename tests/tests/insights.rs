//! InsightService end to end over a real node: lookalikes, clusters and
//! send timing come from the live actors and agree with the offline
//! commands over the same history (`liveseg model lookalike | cluster |
//! score`); bad requests are refused naming the field; explain carries the
//! send timing and the fatigue from ingested unsubscribe scores.

use anyhow::{Context, Result};
use liveseg_proto::pb;
use liveseg_tests::models::{Fixture, member_ids, ok, on_node};
use std::collections::BTreeMap;

const AT: &str = "2026-11-01T00:00:00Z";
const SEED: &str = "engaged_target_contacts";

/// A score condition keeps contact features (what insights read).
const KEEP_FEATURES: &str = r#"
- key: unsubscribe_risk
  name: Unsubscribe risk
  entity: contact
  condition: {score: {target: unsubscribe_7d, top_percent: 10}}
"#;

fn code_and_message(r: Result<impl std::fmt::Debug, tonic::Status>) -> (tonic::Code, String) {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(s) => (s.code(), s.message().to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookalikes_clusters_and_send_timing_come_from_the_live_actors() -> Result<()> {
    let f = Fixture::new()?;
    f.train(&["--target", "unsubscribe_7d", "--activate"])?;
    let defs = f.dir.path().join("defs.yaml");
    std::fs::write(&defs, KEEP_FEATURES)?;
    let defs = defs.display().to_string();
    let data = f.dir.path().join("node");
    let clock = format!("manual:{AT}");
    let node = liveseg_tests::Node::start(&data, &["--clock", &clock]).await?;
    on_node(&node, &["ingest", &f.events()])?;
    node.settle().await?;
    let mut insight = node.insight().await?;

    // Without a score condition no features are kept: the call says so.
    let (code, msg) = code_and_message(
        insight
            .find_lookalikes(pb::FindLookalikesRequest {
                seed_segment: SEED.into(),
                ..Default::default()
            })
            .await,
    );
    assert_eq!(code, tonic::Code::FailedPrecondition, "{msg}");
    assert!(msg.contains("score"), "{msg}");

    // Applying one rebuilds the tenant with features.
    on_node(&node, &["segments", "apply", "--file", &defs])?;
    node.settle().await?;

    // Lookalikes: the offline command over the same history at the same
    // instant ranks the same contacts with the same similarities.
    let found = insight
        .find_lookalikes(pb::FindLookalikesRequest {
            seed_segment: SEED.into(),
            limit: 15,
            interest_weight: Some(0.0),
        })
        .await?
        .into_inner();
    let seed = member_ids(&node, SEED).await?;
    assert_eq!(found.seed_members as usize, seed.len());
    assert_eq!(found.lookalikes.len(), 15);
    let offline = ok(&[
        "model",
        "lookalike",
        "--events",
        &f.events(),
        "--segments",
        &defs,
        "--seed-segment",
        SEED,
        "-n",
        "15",
        "--at",
        AT,
    ])?;
    let offline: Vec<serde_json::Value> = offline
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(offline.len(), 15);
    for (live, off) in found.lookalikes.iter().zip(&offline) {
        assert!(
            !seed.contains(&live.contact_id),
            "{} is a seed",
            live.contact_id
        );
        let sim = off["similarity"].as_f64().context("similarity")?;
        assert!(
            (f64::from(live.score) - sim).abs() < 1e-4,
            "{} {} vs offline {off}",
            live.contact_id,
            live.score
        );
        assert_eq!(live.contact_id, off["contact"].as_str().unwrap_or_default());
        assert_eq!(live.account_id, off["account"].as_str().unwrap_or_default());
        assert!(!live.shared_features.is_empty(), "{live:?}");
    }

    // Bad requests name the field.
    let bad = [
        (SEED, 5000, None, tonic::Code::InvalidArgument, "limit"),
        (
            SEED,
            5,
            Some(1.5),
            tonic::Code::InvalidArgument,
            "interest_weight",
        ),
        ("nope", 5, None, tonic::Code::NotFound, "seed_segment"),
        (
            "dormant_high_fit_accounts",
            5,
            None,
            tonic::Code::InvalidArgument,
            "account segment",
        ),
    ];
    for (segment, limit, weight, want, text) in bad {
        let (code, msg) = code_and_message(
            insight
                .find_lookalikes(pb::FindLookalikesRequest {
                    seed_segment: segment.into(),
                    limit,
                    interest_weight: weight,
                })
                .await,
        );
        assert_eq!(code, want, "{msg}");
        assert!(msg.contains(text), "{msg}");
    }

    // Clusters: the same sizes and descriptions as `model cluster`.
    let live = insight
        .discover_clusters(pb::DiscoverClustersRequest {
            k: 4,
            seed: Some(7),
            examples: 3,
            ..Default::default()
        })
        .await?
        .into_inner();
    let offline = ok(&[
        "model",
        "cluster",
        "--events",
        &f.events(),
        "--k",
        "4",
        "--at",
        AT,
    ])?;
    let offline_sizes: Vec<(u64, String)> = offline
        .lines()
        .filter(|l| l.starts_with("cluster "))
        .filter_map(|l| {
            // `cluster 0    123 contacts ( 45.2%)  name`
            let size = l.split_whitespace().nth(2)?.parse().ok()?;
            let name = l.split_once("%)")?.1.trim().to_string();
            Some((size, name))
        })
        .collect();
    let live_sizes: Vec<(u64, String)> = live
        .clusters
        .iter()
        .map(|c| (c.size, c.name.clone()))
        .collect();
    assert_eq!(live_sizes, offline_sizes, "{offline}");
    // Each cluster comes with a rule; saved, it is a live segment whose
    // members are the contacts the rule matches.
    let ruled = live
        .clusters
        .iter()
        .find(|c| !c.rule_condition_json.is_empty())
        .context("a cluster with a rule")?;
    assert!(
        (0.0..=1.0).contains(&ruled.rule_precision) && ruled.rule_recall > 0.0,
        "{ruled:?}"
    );
    let n = ruled.cluster.to_string();
    let saved = on_node(
        &node,
        &[
            "insight",
            "clusters",
            "--k",
            "4",
            "--save",
            &n,
            "--key",
            "discovered",
        ],
    )?;
    assert!(saved.contains("RULE P/R"), "{saved}");
    node.settle().await?;
    let members = member_ids(&node, "discovered").await?;
    // The segment matches about as many contacts as the rule did on the
    // feature rows (window edges differ by an instant: a small tolerance).
    let matched = ruled.rule_recall * ruled.size as f64 / ruled.rule_precision;
    let diff = (members.len() as f64 - matched).abs();
    assert!(
        !members.is_empty() && diff <= (0.05 * matched).max(2.0),
        "{} members, the rule matched {matched:.0}",
        members.len()
    );
    let someone = members.iter().next().context("a member")?;
    let why = on_node(&node, &["explain", someone, "discovered"])?;
    assert!(
        why.contains("discovered") && why.contains("within"),
        "{why}"
    );
    assert_eq!(
        live.contacts,
        live.clusters.iter().map(|c| c.size).sum::<u64>()
    );
    assert!(live.clusters.iter().all(|c| c.example_contacts.len() == 3));
    let (code, msg) = code_and_message(
        insight
            .discover_clusters(pb::DiscoverClustersRequest {
                k: 1,
                ..Default::default()
            })
            .await,
    );
    assert_eq!(code, tonic::Code::InvalidArgument, "{msg}");
    assert!(msg.starts_with("k:"), "{msg}");

    // Send timing and fatigue: unsubscribe scores ingested as records.
    let scored = on_node(
        &node,
        &[
            "model",
            "score",
            "--events",
            &f.events(),
            "--registry",
            &f.registry(),
            "--at",
            AT,
            "--ingest",
        ],
    )?;
    node.settle().await?;
    let mut offline_hours = BTreeMap::new();
    for line in scored.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let contact = v["contact"].as_str().unwrap_or_default().to_string();
        offline_hours.insert(contact, v["send_hour"]["hour"].as_u64());
    }
    let ids: Vec<String> = seed.iter().take(20).cloned().collect();
    let mut asked = ids.clone();
    asked.push("nobody".into());
    let timings = insight
        .get_send_timing(pb::GetSendTimingRequest {
            contact_ids: asked.clone(),
        })
        .await?
        .into_inner()
        .timings;
    assert_eq!(timings.len(), asked.len());
    for (t, id) in timings.iter().zip(&ids) {
        assert!(t.error.is_empty(), "{t:?}");
        assert_eq!(&t.contact_id, id);
        assert_eq!(Some(u64::from(t.best_hour_utc)), offline_hours[id], "{t:?}");
        let fatigue = t.fatigue.as_ref().context("fatigue")?;
        assert!(["normal", "elevated", "high"].contains(&fatigue.level.as_str()));
        assert!(
            fatigue.model_version.starts_with("unsubscribe_7d-"),
            "{fatigue:?}"
        );
    }
    let last = timings.last().context("nobody")?;
    assert_eq!(last.error, "contact_ids[20]: contact 'nobody' not found");

    // Explain shows them too.
    let why = on_node(&node, &["explain", &ids[0]])?;
    assert!(
        why.contains("best send hour") && why.contains("fatigue "),
        "{why}"
    );

    // The tenant's baseline is reused for a minute of the node's clock,
    // then served stale once while one background task recomputes it.
    let others: Vec<&String> = offline_hours.keys().filter(|c| **c != ids[0]).collect();
    stale_baseline_is_served_then_refreshed(&node, &f, &ids[0], &others).await
}

/// The fatigue of `contact`, against the tenant's mean unsubscribe score.
async fn fatigue(node: &liveseg_tests::Node, contact: &str) -> Result<pb::Fatigue> {
    let t = node
        .insight()
        .await?
        .get_send_timing(pb::GetSendTimingRequest {
            contact_ids: vec![contact.to_string()],
        })
        .await?
        .into_inner()
        .timings
        .into_iter()
        .next()
        .context("one timing")?;
    t.fatigue.context("fatigue")
}

async fn fatigue_ratio(node: &liveseg_tests::Node, contact: &str) -> Result<f64> {
    Ok(fatigue(node, contact).await?.ratio_to_base_rate)
}

async fn stale_baseline_is_served_then_refreshed(
    node: &liveseg_tests::Node,
    f: &Fixture,
    contact: &str,
    others: &[&String],
) -> Result<()> {
    use std::time::Duration;
    // The baseline first cached had no scores yet (they were ingested after
    // the first call): one without scores is refreshed at once.
    let before = liveseg_tests::poll(
        Duration::from_secs(30),
        "a baseline with scores",
        || async { fatigue_ratio(node, contact).await.ok().filter(|r| *r > 0.0) },
    )
    .await?;
    let version = fatigue(node, contact).await?.model_version;
    let admin = node.admin().await?;
    let advance = |to: &'static str| {
        let mut admin = admin.clone();
        async move {
            admin
                .advance_clock(pb::AdvanceClockRequest { to: to.into() })
                .await
                .map(|_| ())
        }
    };
    // Every other contact is rescored at 0.99 a second later: the tenant's
    // mean rises, so the contact's ratio to it must fall once recomputed.
    advance("2026-11-01T00:00:01Z").await?;
    let scores: Vec<String> = others
        .iter()
        .map(|c| {
            serde_json::json!({
                "type": "track", "event": "Propensity Scored", "userId": c,
                "messageId": format!("score:unsubscribe_7d:{version}:{c}:rescored"),
                "timestamp": "2026-11-01T00:00:01Z",
                "properties": {"target": "unsubscribe_7d", "probability": 0.99,
                               "version": version, "top": []},
            })
            .to_string()
        })
        .collect();
    let file = f.dir.path().join("rescored.jsonl");
    std::fs::write(&file, scores.join("\n"))?;
    on_node(node, &["ingest", &file.display().to_string()])?;
    node.settle().await?;
    assert_eq!(
        fatigue_ratio(node, contact).await?,
        before,
        "within the minute: cached"
    );
    advance("2026-11-01T00:01:01Z").await?;
    assert_eq!(
        fatigue_ratio(node, contact).await?,
        before,
        "the first call after the minute gets the stale baseline"
    );
    let after = liveseg_tests::poll(Duration::from_secs(30), "baseline refreshed", || async {
        fatigue_ratio(node, contact)
            .await
            .ok()
            .filter(|r| *r != before)
    })
    .await?;
    assert!(after < before, "the mean rose: {before} -> {after}");
    Ok(())
}
