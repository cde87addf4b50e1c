//! Bad input gets a per-item error naming the field and the reason; the
//! valid rest of the batch is accepted; nothing bad is written; no crash.

use anyhow::Result;
use liveseg_proto::pb;
use liveseg_tests::{Node, json_msg};
use serde_json::json;

fn raw(text: &str) -> pb::SegmentMessage {
    pb::SegmentMessage {
        payload: Some(pb::segment_message::Payload::Json(text.into())),
    }
}

fn good(id: &str) -> serde_json::Value {
    json!({"type":"track","messageId":id,"userId":"u1","event":"Email Opened","timestamp":"2026-10-01T00:00:00Z","properties":{"email_id":"e1"},"context":{"groupId":"acme"}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_item_is_named_and_valid_neighbours_are_accepted() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let node = Node::start(dir.path(), &["--clock", "manual:2026-10-02T00:00:00Z"]).await?;
    let mut ingest = node.ingest().await?;
    let mut no_id = good("x");
    no_id.as_object_mut().map(|o| o.remove("messageId"));
    let mut no_user = good("a2");
    no_user.as_object_mut().map(|o| o.remove("userId"));
    let cases: Vec<(pb::SegmentMessage, &str)> = vec![
        (json_msg(&good("ok1")), ""),
        (raw("{not json"), ""),
        (json_msg(&no_id), "messageId"),
        (json_msg(&no_user), "userId"),
        (
            json_msg(
                &json!({"type":"track","messageId":"b1","userId":"u1","event":"x","timestamp":"yesterday"}),
            ),
            "timestamp",
        ),
        (
            json_msg(
                &json!({"type":"track","messageId":"b2","userId":"u1","event":"x","timestamp":"2026-10-02T00:06:00Z"}),
            ),
            "timestamp",
        ),
        (
            json_msg(
                &json!({"type":"track","messageId":"b3","userId":["u1"],"event":"x","timestamp":"2026-10-01T00:00:00Z"}),
            ),
            "userId",
        ),
        (
            json_msg(
                &json!({"type":"track","messageId":"b4","userId":"u1","event":"x","timestamp":"2026-10-01T00:00:00Z","properties":{"note":"y".repeat(10_000)}}),
            ),
            "properties.note",
        ),
        (
            json_msg(
                &json!({"type":"group","messageId":"b5","userId":"u1","groupId":"acme","timestamp":"2026-10-01T00:00:00Z","traits":{"tier":"gold"}}),
            ),
            "traits.tier",
        ),
        (pb::SegmentMessage { payload: None }, ""),
        (json_msg(&good("ok2")), ""),
    ];
    let r = ingest
        .ingest(pb::IngestRequest {
            messages: cases.iter().map(|c| c.0.clone()).collect(),
        })
        .await?
        .into_inner();
    assert_eq!((r.accepted, r.invalid), (2, 9));
    for (res, (_, field)) in r.results.iter().zip(&cases) {
        if res.status == pb::ItemStatus::Invalid as i32 {
            assert_eq!(res.field, *field, "item {}: {}", res.index, res.reason);
            assert!(!res.reason.is_empty());
        } else {
            assert!(res.sequence > 0);
        }
    }
    // A batch past the limit: the first 500 are taken, the rest are refused per item.
    let big: Vec<pb::SegmentMessage> = (0..501)
        .map(|i| json_msg(&good(&format!("big{i}"))))
        .collect();
    let r = ingest
        .ingest(pb::IngestRequest { messages: big })
        .await?
        .into_inner();
    assert_eq!((r.accepted, r.invalid), (500, 1));
    assert!(r.results[500].reason.contains("more than 500"));
    // Retried ids are duplicates, not new events.
    let r = ingest
        .ingest(pb::IngestRequest {
            messages: vec![json_msg(&good("ok1"))],
        })
        .await?
        .into_inner();
    assert_eq!(r.duplicates, 1);
    assert_eq!(node.settle().await?.log_head, 502);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_http_api_takes_the_write_key_as_basic_user() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let node = Node::start(dir.path(), &["--clock", "manual:2026-10-02T00:00:00Z"]).await?;
    let body = json!({"batch": [good("h1"), {"type":"track","messageId":"h2","event":"x","timestamp":"2026-10-01T00:00:00Z"}]}).to_string();
    let basic = format!("Basic {}", base64(&format!("{}:", node.api_key)));
    let (status, text) = http_post(&node.addr, "/v1/batch", &basic, &body).await?;
    assert_eq!(status, 200, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text)?;
    assert_eq!(
        (v["accepted"].as_u64(), v["invalid"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(v["errors"][0]["field"], "userId");
    let one = json!({"messageId":"h3","userId":"u2","event":"Meeting Booked","timestamp":"2026-10-01T00:00:00Z"}).to_string();
    let (status, _) = http_post(&node.addr, "/v1/track", &basic, &one).await?;
    assert_eq!(status, 200);
    let (status, _) = http_post(&node.addr, "/v1/track", "Basic Ym9ndXM6", &one).await?;
    assert_eq!(status, 401);
    let (status, _) = http_post(&node.addr, "/v1/batch", &basic, "{oops").await?;
    assert_eq!(status, 400);
    assert_eq!(node.settle().await?.log_head, 2);
    Ok(())
}

fn base64(s: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A minimal HTTP/1.1 POST over a real socket.
async fn http_post(addr: &str, path: &str, auth: &str, body: &str) -> Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).await?;
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    Ok((status, body))
}
