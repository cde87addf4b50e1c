//! A model change under stored content, end to end over a real node and the
//! real model (in-process first, then a model service process on other
//! files): every stored vector names the exact model that computed it
//! (name, precision and a digest of the model files); a node restarted on
//! other model files refuses to mix new vectors into the old ones (new
//! content, new topics and text matching all fail with a message naming
//! both models and `liveseg content reembed`), while what needs no model
//! (memberships, matching for a contact) keeps working; `liveseg content
//! reembed` embeds everything again with the new model, after which
//! registration works and memberships are the same.
//! Needs the model files (`scripts/fetch-model.sh`, run by `scripts/test.sh`).

use anyhow::{Context, Result};
use liveseg_proto::pb;
use liveseg_tests::model_proc::{ModelProc, model_dir};
use liveseg_tests::models::{member_ids, on_node};
use liveseg_tests::{Node, json_msg, poll};
use serde_json::json;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

const TOPIC: &str = "data warehouse cost and query performance";
const PREFIX: &str = "sentence-transformers/all-MiniLM-L6-v2 f32 sha256:";

/// The same model with one byte more in its config: same vectors, other
/// files, so another model id (as a re-exported or upgraded model has).
fn other_files(model: &Path, into: &Path) -> Result<()> {
    for f in ["model.safetensors", "tokenizer.json"] {
        std::os::unix::fs::symlink(model.join(f).canonicalize()?, into.join(f))?;
    }
    let mut config = std::fs::read(model.join("config.json"))?;
    config.push(b'\n');
    std::fs::write(into.join("config.json"), config)?;
    Ok(())
}

fn item(id: &str, text: &str) -> pb::ContentItem {
    pb::ContentItem {
        id: id.into(),
        text: text.into(),
        ..Default::default()
    }
}

async fn register(node: &Node, items: Vec<pb::ContentItem>) -> Result<(), tonic::Status> {
    let c = node
        .content()
        .await
        .map_err(|e| tonic::Status::internal(e.to_string()))?;
    // The model loads in the background: UNAVAILABLE until ready.
    poll(
        Duration::from_secs(120),
        "content registration answered",
        || {
            let (mut c, items) = (c.clone(), items.clone());
            async move {
                match c
                    .register_content(pb::RegisterContentRequest { items })
                    .await
                {
                    Err(s) if s.code() == tonic::Code::Unavailable => None,
                    r => Some(r.map(|_| ())),
                }
            }
        },
    )
    .await
    .map_err(|e| tonic::Status::internal(e.to_string()))?
}

async fn models_listed(node: &Node) -> Result<BTreeSet<String>> {
    let listed = node
        .content()
        .await?
        .list_content(pb::ListContentRequest::default())
        .await?
        .into_inner();
    Ok(listed.items.into_iter().map(|r| r.model).collect())
}

async fn fans(node: &Node, want: &[&str]) -> Result<()> {
    let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
    poll(Duration::from_secs(60), "affinity members", || async {
        member_ids(node, "warehouse_fans")
            .await
            .ok()
            .filter(|m| *m == want)
    })
    .await
    .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_change_is_refused_until_the_content_is_embedded_again() -> Result<()> {
    let data = tempfile::tempdir()?;
    let other = tempfile::tempdir()?;
    let model = model_dir();
    other_files(&model, other.path())?;
    let clock = ["--clock", "manual:2026-10-10T00:00:00Z"];
    let start = |flag: &str, value: String| {
        let (flag, data) = (flag.to_string(), data.path().to_path_buf());
        async move { Node::start(&data, &[clock[0], clock[1], &flag, &value]).await }
    };

    // First model, in-process: content, a topic segment, clicks.
    let mut node = start("--model-dir", model.to_string_lossy().to_string()).await?;
    register(
        &node,
        vec![
            item(
                "warehouse-guide",
                "A buyer's guide to cloud data warehouse pricing and query costs.",
            ),
            item(
                "hiring-webinar",
                "Webinar: hiring great engineers and running structured interviews.",
            ),
        ],
    )
    .await?;
    let first = models_listed(&node).await?;
    let first_id = first.iter().next().context("a model id")?.clone();
    assert!(
        first.len() == 1 && first_id.starts_with(PREFIX),
        "{first:?}"
    );
    node.segments()
        .await?
        .apply_segment(pb::ApplySegmentRequest {
            definition: format!(
                "key: warehouse_fans\nname: Warehouse fans\nentity: contact\ncondition:\n  affinity: {{topic: \"{TOPIC}\", at_least: 0.4}}\n"
            ),
        })
        .await?;
    let click = |id: &str, user: &str, content: &str| {
        json_msg(
            &json!({"type":"track","messageId":id,"userId":user,"event":"Email Link Clicked",
            "context":{"groupId":"acme"},"timestamp":"2026-10-01T10:00:00Z",
            "properties":{"email_id":format!("e-{id}"),"content_id":content}}),
        )
    };
    node.ingest()
        .await?
        .ingest(pb::IngestRequest {
            messages: vec![
                click("c1", "u1", "warehouse-guide"),
                click("c2", "u2", "hiring-webinar"),
            ],
        })
        .await?;
    node.settle().await?;
    fans(&node, &["u1"]).await?;
    node.terminate().await?;

    // Other model files, served by a model service process: nothing new
    // mixes into the old vectors.
    let service = ModelProc::start(other.path(), &[]).await?;
    let node = start("--model-server", service.url.clone()).await?;
    fans(&node, &["u1"]).await?;
    let err = register(&node, vec![item("security", "Our SOC 2 report.")])
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    let said = err.message().to_string();
    assert!(
        said.contains(&first_id) && said.contains("liveseg content reembed"),
        "{said}"
    );
    let mut c = node.content().await?;
    let err = c
        .match_content(pb::MatchContentRequest {
            text: TOPIC.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    let by_contact = c
        .match_content(pb::MatchContentRequest {
            contact_id: "u1".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(by_contact.matches[0].id, "warehouse-guide");
    let err = node
        .segments()
        .await?
        .apply_segment(pb::ApplySegmentRequest {
            definition: "key: hiring_fans\nname: H\nentity: contact\ncondition: {affinity: {topic: \"hiring engineers\", at_least: 0.4}}".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        tonic::Code::FailedPrecondition,
        "a new topic: {err:?}"
    );
    assert_eq!(models_listed(&node).await?, first, "nothing was stored");

    // Embedded again: every record (two items, one topic) under the new id.
    let out = on_node(&node, &["content", "reembed", "-o", "json"])?;
    let answer: serde_json::Value = serde_json::from_str(&out).context(out.clone())?;
    let answer = answer.get(0).unwrap_or(&answer);
    assert_eq!(answer["records"], 3, "{answer}");
    let second_id = answer["model"].as_str().unwrap_or_default().to_string();
    assert!(
        second_id.starts_with(PREFIX) && second_id != first_id,
        "{answer}"
    );
    assert!(
        said.contains(&second_id),
        "the refusal named the new model: {said}"
    );
    assert_eq!(answer["previous_models"], json!([first_id]), "{answer}");
    assert_eq!(
        models_listed(&node).await?,
        BTreeSet::from([second_id.clone()])
    );
    register(&node, vec![item("security", "Our SOC 2 report.")]).await?;
    assert_eq!(models_listed(&node).await?, BTreeSet::from([second_id]));
    fans(&node, &["u1"]).await?;
    let ranked = c
        .match_content(pb::MatchContentRequest {
            text: TOPIC.into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(ranked.matches[0].id, "warehouse-guide", "{ranked:?}");
    Ok(())
}
