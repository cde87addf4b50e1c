//! Content matching end to end over a real node with the real model loaded
//! in-process (`--model-dir`): content registered with per-item errors,
//! interest profiles built from clicks and page views (by content id and by
//! page URL), an affinity segment with its explanation, matching for a
//! contact and for a text, content registered after the clicks that name
//! it, a restart that rebuilds the library from the store without the
//! model, and `liveseg replay --content` agreeing with the node.
//! Needs the model files (`scripts/fetch-model.sh`, run by `scripts/test.sh`).

use anyhow::{Context, Result};
use liveseg_proto::pb;
use liveseg_tests::model_proc::model_dir;
use liveseg_tests::{Node, all_members, json_msg, liveseg_bin, poll};
use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;

fn item(id: &str, text: &str, url: &str) -> pb::ContentItem {
    pb::ContentItem {
        id: id.into(),
        text: text.into(),
        url: url.into(),
        metadata: HashMap::from([("kind".to_string(), "blog".to_string())]),
    }
}

const WAREHOUSE: &str = "A buyer's guide to cloud data warehouse pricing: how storage and compute are billed, and how to keep query costs down as your analytics team grows.";
const HIRING: &str = "Webinar: hiring great engineers. How to write job descriptions, run structured interviews and close candidates in a tight market.";
const SECURITY: &str = "Our SOC 2 Type II report and security checklist: encryption at rest, access reviews, audit logging and incident response.";
const LAKEHOUSE: &str = "Benchmark: analytical query speed and cost per terabyte scanned across five data warehouse engines.";
const TOPIC: &str = "data warehouse cost and query performance";

/// The history: u1 clicks the warehouse guide twice (by content id), u3
/// views its page (by URL, with a query string), u2 clicks the hiring
/// webinar, u4 clicks content that is registered only later.
fn events() -> Vec<serde_json::Value> {
    let click = |id: &str, user: &str, content: &str, ts: &str| {
        json!({"type":"track","messageId":id,"userId":user,"event":"Email Link Clicked",
               "context":{"groupId":"acme"},"timestamp":ts,
               "properties":{"email_id":format!("e-{id}"),"content_id":content}})
    };
    vec![
        click("c1", "u1", "warehouse-guide", "2026-10-01T10:00:00Z"),
        click("c2", "u1", "warehouse-guide", "2026-10-02T10:00:00Z"),
        click("c3", "u2", "hiring-webinar", "2026-10-03T10:00:00Z"),
        json!({"type":"page","messageId":"p1","userId":"u3","name":"Guide","context":{"groupId":"acme"},
               "timestamp":"2026-10-04T10:00:00Z",
               "properties":{"url":"https://acme.example/blog/warehouse-guide/?utm_source=mail"}}),
        click("c4", "u4", "lakehouse-benchmark", "2026-10-05T10:00:00Z"),
    ]
}

fn affinity_segment() -> String {
    format!(
        "key: warehouse_fans\nname: Warehouse fans\nentity: contact\ncondition:\n  affinity: {{topic: \"{TOPIC}\", at_least: 0.4}}\n"
    )
}

async fn register(node: &Node, items: Vec<pb::ContentItem>) -> Result<Vec<pb::ContentResult>> {
    let c = node.content().await?;
    // The model loads in the background: UNAVAILABLE until ready.
    poll(Duration::from_secs(120), "content registered", || {
        let (mut c, items) = (c.clone(), items.clone());
        async move {
            match c
                .register_content(pb::RegisterContentRequest { items })
                .await
            {
                Ok(r) => Some(Ok(r.into_inner().results)),
                Err(s) if s.code() == tonic::Code::Unavailable => None,
                Err(s) => Some(Err(anyhow::anyhow!("register: {s:?}"))),
            }
        }
    })
    .await?
}

async fn members(node: &Node, segment: &str) -> Result<Vec<String>> {
    let mut ids: Vec<String> = all_members(node, segment)
        .await?
        .into_iter()
        .map(|(_, id, _)| id)
        .collect();
    ids.sort();
    Ok(ids)
}

async fn wait_members(node: &Node, segment: &str, want: &[&str]) -> Result<()> {
    poll(Duration::from_secs(60), "affinity members", || async {
        members(node, segment).await.ok().filter(|m| m == want)
    })
    .await
    .map(|_| ())
    .with_context(|| format!("members of {segment}: {want:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_affinity_and_matching_over_a_real_node_and_model() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let model = model_dir();
    let model_flag = model.to_string_lossy().to_string();
    let clock = ["--clock", "manual:2026-10-10T00:00:00Z"];
    let node = Node::start(
        dir.path(),
        &[clock[0], clock[1], "--model-dir", &model_flag],
    )
    .await?;

    // Registration: per-item errors, valid neighbours registered.
    let results = register(
        &node,
        vec![
            item("warehouse-guide", WAREHOUSE, "/blog/warehouse-guide"),
            item("topic:mine", "reserved prefix", ""),
            item("hiring-webinar", HIRING, ""),
            item("empty", "   ", ""),
            item("security-checklist", SECURITY, "/trust"),
        ],
    )
    .await?;
    let errors: Vec<&str> = results.iter().map(|r| r.error.as_str()).collect();
    assert!(
        errors[0].is_empty() && errors[2].is_empty() && errors[4].is_empty(),
        "{errors:?}"
    );
    assert!(errors[1].starts_with("items[1].id:"), "{errors:?}");
    assert!(errors[3].starts_with("items[3].text:"), "{errors:?}");
    assert!(
        results[0].tokens > 20 && !results[0].truncated,
        "{:?}",
        results[0]
    );

    let mut ingest = node.ingest().await?;
    let msgs = events().iter().map(json_msg).collect();
    let r = ingest
        .ingest(pb::IngestRequest { messages: msgs })
        .await?
        .into_inner();
    assert!(
        r.results
            .iter()
            .all(|x| x.status == pb::ItemStatus::Accepted as i32),
        "{:?}",
        r.results
    );
    node.settle().await?;

    // An affinity to unregistered content is refused, naming the path.
    let mut seg = node.segments().await?;
    let bad =
        "key: x\nname: X\nentity: contact\ncondition: {affinity: {content: nope, at_least: 0.5}}";
    let err = seg
        .apply_segment(pb::ApplySegmentRequest {
            definition: bad.into(),
        })
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("affinity") && err.message().contains("nope"),
        "{}",
        err.message()
    );

    // The topic segment: u1 (clicks) and u3 (page view by URL) are in, u2 is not.
    seg.apply_segment(pb::ApplySegmentRequest {
        definition: affinity_segment(),
    })
    .await?;
    wait_members(&node, "warehouse_fans", &["u1", "u3"]).await?;

    let mut m = node.membership().await?;
    let ex = m
        .explain(pb::ExplainRequest {
            entity: "contact".into(),
            id: "u1".into(),
            segment: "warehouse_fans".into(),
        })
        .await?
        .into_inner();
    let cond = ex.segments[0].condition.clone().context("condition")?;
    assert!(ex.segments[0].member && cond.holds);
    assert!(cond.description.contains(TOPIC), "{}", cond.description);
    assert!(
        cond.observed.starts_with("affinity 0."),
        "{}",
        cond.observed
    );
    assert!(
        cond.evidence[0].starts_with("content warehouse-guide: 100% of interest"),
        "{:?}",
        cond.evidence
    );
    let ex2 = m
        .explain(pb::ExplainRequest {
            entity: "contact".into(),
            id: "u2".into(),
            segment: "warehouse_fans".into(),
        })
        .await?
        .into_inner();
    assert!(!ex2.segments[0].member);

    // Matching for a contact ranks by its profile; for a text by the text.
    let mut c = node.content().await?;
    let r = c
        .match_content(pb::MatchContentRequest {
            contact_id: "u2".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(r.matches[0].id, "hiring-webinar", "{r:?}");
    assert_eq!(r.profile, vec!["hiring-webinar (100%)".to_string()]);
    let r = c
        .match_content(pb::MatchContentRequest {
            text: "SOC 2 audit and compliance".into(),
            candidates: vec![
                "warehouse-guide".into(),
                "security-checklist".into(),
                "ghost".into(),
            ],
            ..Default::default()
        })
        .await?
        .into_inner();
    let ranked: Vec<&str> = r.matches.iter().map(|x| x.id.as_str()).collect();
    assert_eq!(ranked, vec!["security-checklist", "warehouse-guide"]);
    assert_eq!(r.unknown, vec!["ghost".to_string()]);
    let both = c
        .match_content(pb::MatchContentRequest {
            contact_id: "u1".into(),
            text: "x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(both.code(), tonic::Code::InvalidArgument);

    // Content registered after u4 clicked it counts from then on, without
    // a replay of the tenant's log: its accounts are judged again.
    let rebuilds = |kind: &str| {
        let addr = node.addr.clone();
        let name = format!("liveseg_tenant_rebuilds_total{{kind=\"{kind}\"}}");
        async move {
            let m = liveseg_tests::http_get(&addr, "/metrics").await?;
            anyhow::Ok(liveseg_tests::metric_value(&m, &name))
        }
    };
    let (replays, rejudges) = (rebuilds("replay").await?, rebuilds("rejudge").await?);
    register(&node, vec![item("lakehouse-benchmark", LAKEHOUSE, "")]).await?;
    wait_members(&node, "warehouse_fans", &["u1", "u3", "u4"]).await?;
    assert_eq!(rebuilds("replay").await?, replays, "no replay of the log");
    assert_eq!(rebuilds("rejudge").await?, rejudges + 1.0);
    let listed = c
        .list_content(pb::ListContentRequest {
            with_vectors: true,
            ..Default::default()
        })
        .await?
        .into_inner();
    let ids: Vec<&str> = listed
        .items
        .iter()
        .filter_map(|r| r.item.as_ref())
        .map(|i| i.id.as_str())
        .collect();
    assert_eq!(
        ids,
        vec![
            "hiring-webinar",
            "lakehouse-benchmark",
            "security-checklist",
            "warehouse-guide"
        ]
    );
    assert!(listed.items.iter().all(|r| r.vector.len() == 384));
    assert!(listed.next_page_token.is_empty());
    // Pages of 3: the same items in the same order, then no token.
    let mut paged = Vec::new();
    let mut token = String::new();
    for _ in 0..3 {
        let page = c
            .list_content(pb::ListContentRequest {
                page_size: 3,
                page_token: token.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        assert!(page.items.len() <= 3);
        paged.extend(page.items.into_iter().filter_map(|r| r.item).map(|i| i.id));
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert!(token.is_empty());
    assert_eq!(paged, ids);
    let bad = c
        .list_content(pb::ListContentRequest {
            page_token: "not a token!".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(bad.message().starts_with("page_token"), "{}", bad.message());

    // The same history offline gives the same members.
    let work = tempfile::tempdir()?;
    let events_file = work.path().join("events.jsonl");
    std::fs::write(
        &events_file,
        events()
            .iter()
            .map(|e| format!("{e}\n"))
            .collect::<String>(),
    )?;
    let content_file = work.path().join("content.jsonl");
    let lines: Vec<String> = [
        ("warehouse-guide", WAREHOUSE, "/blog/warehouse-guide"),
        ("hiring-webinar", HIRING, ""),
        ("security-checklist", SECURITY, "/trust"),
        ("lakehouse-benchmark", LAKEHOUSE, ""),
    ]
    .iter()
    .map(|(id, text, url)| format!("{}\n", json!({"id": id, "text": text, "url": url})))
    .collect();
    std::fs::write(&content_file, lines.concat())?;
    let seg_file = work.path().join("segments.yaml");
    std::fs::write(&seg_file, affinity_segment())?;
    let out = std::process::Command::new(liveseg_bin())
        .args(["replay", "--at", "2026-10-10T00:00:00Z", "--events"])
        .arg(&events_file)
        .arg("--segments")
        .arg(&seg_file)
        .arg("--content")
        .arg(&content_file)
        .arg("--model-dir")
        .arg(&model)
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut offline: Vec<String> = String::from_utf8(out.stdout)?
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["segment"] == "warehouse_fans")
        .filter_map(|v| v["id"].as_str().map(str::to_string))
        .collect();
    offline.sort();
    assert_eq!(offline, vec!["u1", "u3", "u4"]);

    // Another tenant sees none of it: no content, no contact, nothing to rank.
    let beta = node
        .admin_with(&node.admin_key)
        .await?
        .create_tenant(pb::CreateTenantRequest {
            name: "beta".into(),
        })
        .await?
        .into_inner();
    let mut cb = node.content_with(&beta.api_key).await?;
    let listed = cb
        .list_content(pb::ListContentRequest::default())
        .await?
        .into_inner();
    assert!(listed.items.is_empty());
    let err = cb
        .match_content(pb::MatchContentRequest {
            contact_id: "u1".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    let r = cb
        .match_content(pb::MatchContentRequest {
            text: TOPIC.into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(r.matches.is_empty(), "{r:?}");

    // A restart without the model rebuilds the library from the store.
    let mut node = node;
    node.terminate().await?;
    let node = Node::start(dir.path(), &clock).await?;
    wait_members(&node, "warehouse_fans", &["u1", "u3", "u4"]).await?;
    let mut c = node.content().await?;
    let r = c
        .match_content(pb::MatchContentRequest {
            contact_id: "u4".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(r.matches[0].id, "lakehouse-benchmark", "{r:?}");
    // Without a model, registration says how to configure one.
    let err = c
        .register_content(pb::RegisterContentRequest {
            items: vec![item("z", "text", "")],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(err.message().contains("--model-dir"), "{}", err.message());
    Ok(())
}
