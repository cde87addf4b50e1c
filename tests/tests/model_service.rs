//! The model service as a real process (`liveseg model serve`) over real
//! gRPC: health, info, embeddings equal to the float64 golden reference,
//! per-text refusals that spare valid neighbours, overload answered with
//! RESOURCE_EXHAUSTED while every admitted request is answered correctly,
//! and `liveseg embed` on stdin/stdout. Needs the model files
//! (`scripts/fetch-model.sh`, run by `scripts/test.sh`).

use anyhow::{Context, Result};
use liveseg_proto::pb;
use liveseg_proto::pb::model_service_client::ModelServiceClient;
use liveseg_tests::model_proc::{ModelProc, model_dir};
use serde::Deserialize;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use tonic::transport::Channel;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[derive(Deserialize)]
struct Golden {
    name: String,
    text: String,
    embedding: Vec<f64>,
}

fn golden() -> Result<Vec<Golden>> {
    let text = std::fs::read_to_string(repo().join("services/model/fixtures/golden.json"))?;
    Ok(serde_json::from_str(&text)?)
}

fn cosine(a: &[f32], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * y).sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|y| y.powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

async fn start(extra: &[&str]) -> Result<ModelProc> {
    ModelProc::start(&model_dir(), extra).await
}

async fn client(p: &ModelProc) -> Result<ModelServiceClient<Channel>> {
    Ok(ModelServiceClient::connect(p.url.clone()).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_reference_embeddings_and_refuses_bad_texts_one_by_one() -> Result<()> {
    let p = start(&[]).await?;
    let mut c = client(&p).await?;
    let info = c.info(pb::InfoRequest {}).await?.into_inner();
    assert_eq!(info.dimensions, 384);
    assert_eq!(info.max_tokens, 256);
    assert!(info.model.contains("all-MiniLM-L6-v2"), "{info:?}");
    assert!(
        info.model_id
            .starts_with(&format!("{} f32 sha256:", info.model)),
        "{info:?}"
    );

    let g = golden()?;
    let mut texts: Vec<String> = g.iter().map(|x| x.text.clone()).collect();
    // A text over the byte limit among valid ones.
    texts.insert(3, "x".repeat(100_001));
    let reply = c
        .embed(pb::EmbedRequest {
            texts: texts.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(reply.embeddings.len(), texts.len());
    assert_eq!(reply.model_id, info.model_id, "each answer names its model");
    let refused = &reply.embeddings[3];
    assert!(refused.values.is_empty());
    assert!(
        refused.error.contains("texts[3]") && refused.error.contains("100001 bytes"),
        "{}",
        refused.error
    );
    let answered: Vec<&pb::Embedding> = reply
        .embeddings
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3)
        .map(|(_, e)| e)
        .collect();
    for (x, e) in g.iter().zip(answered) {
        assert!(e.error.is_empty(), "{}: {}", x.name, e.error);
        let cos = cosine(&e.values, &x.embedding);
        assert!(cos >= 0.99999, "{}: cosine {cos}", x.name);
    }
    assert!(
        reply.embeddings.iter().any(|e| e.truncated),
        "long texts are flagged"
    );

    let none = c.embed(pb::EmbedRequest { texts: vec![] }).await;
    let status = none.expect_err("an empty request is refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().starts_with("texts:"),
        "{}",
        status.message()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_refused_with_resource_exhausted_and_admitted_work_is_answered() -> Result<()> {
    // Room for about two requests of eight full-length texts.
    let p = start(&["--max-queued-tokens", "4096"]).await?;
    let g = golden()?;
    let long: Vec<String> = g
        .iter()
        .filter(|x| x.text.len() > 2000)
        .map(|x| x.text.clone())
        .cycle()
        .take(8)
        .collect();
    let reference = client(&p)
        .await?
        .embed(pb::EmbedRequest {
            texts: long.clone(),
        })
        .await?
        .into_inner();
    let mut calls = Vec::new();
    for _ in 0..24 {
        let mut c = client(&p).await?;
        let texts = long.clone();
        calls.push(tokio::spawn(async move {
            c.embed(pb::EmbedRequest { texts }).await
        }));
    }
    let (mut ok, mut exhausted) = (0, 0);
    for call in calls {
        match call.await? {
            Ok(r) => {
                ok += 1;
                assert_eq!(r.into_inner().embeddings, reference.embeddings);
            }
            Err(s) if s.code() == tonic::Code::ResourceExhausted => {
                assert!(s.message().contains("overloaded"), "{}", s.message());
                exhausted += 1;
            }
            Err(s) => anyhow::bail!("unexpected status {s:?}"),
        }
    }
    assert!(ok >= 1, "some requests are admitted");
    assert!(
        exhausted >= 1,
        "overload is refused, not queued without bound"
    );
    // The process exports what happened on /metrics, on the same port.
    let addr = p.url.trim_start_matches("http://");
    let metrics = liveseg_tests::http_get(addr, "/metrics").await?;
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    for name in [
        "liveseg_model_rejected_total",
        "liveseg_model_forward_seconds",
        "liveseg_model_batch_tokens",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embed_command_reads_lines_and_writes_vectors_locally_and_remotely() -> Result<()> {
    let p = start(&[]).await?;
    let input = "Quarterly pricing update\n\nWebinar: pipeline analytics for RevOps\n";
    let run = |extra: Vec<String>| -> Result<Vec<Vec<f32>>> {
        let mut child = Command::new(liveseg_tests::liveseg_bin())
            .arg("embed")
            .arg("--model-dir")
            .arg(model_dir())
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        use std::io::Write;
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(input.as_bytes())?;
        let out = child.wait_with_output()?;
        anyhow::ensure!(
            out.status.success(),
            "liveseg embed failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)?
            .lines()
            .map(|l| Ok(serde_json::from_str(l)?))
            .collect()
    };
    let local = run(vec![])?;
    let remote = run(vec!["--model-server".into(), p.url.clone()])?;
    assert_eq!(
        local.len(),
        3,
        "one vector per input line, the empty one included"
    );
    assert!(local.iter().all(|v| v.len() == 384));
    assert_eq!(local, remote);
    Ok(())
}
