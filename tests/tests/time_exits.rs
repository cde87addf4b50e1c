//! Time-driven exits happen at exactly their instant, on a manual clock
//! moved by the AdvanceClock RPC, and are streamed with that instant.

use anyhow::Result;
use liveseg_proto::pb;
use liveseg_tests::{Node, json_msg, poll};
use serde_json::json;
use std::time::Duration;
use tokio_stream::StreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engaged_contact_exits_exactly_30_days_after_its_last_engagement() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let node = Node::start(dir.path(), &["--clock", "manual:2026-10-02T00:00:00Z"]).await?;
    let mut ingest = node.ingest().await?;
    let msgs = [
        json!({"type":"group","messageId":"g1","userId":"ann","groupId":"acme","timestamp":"2026-10-01T00:00:00Z","traits":{"target":true}}),
        json!({"type":"track","messageId":"o1","userId":"ann","event":"Email Opened","timestamp":"2026-10-01T12:00:00.250Z","properties":{"email_id":"e1"},"context":{"groupId":"acme"}}),
    ];
    let r = ingest
        .ingest(pb::IngestRequest {
            messages: msgs.iter().map(json_msg).collect(),
        })
        .await?
        .into_inner();
    assert_eq!(r.accepted, 2);
    node.settle().await?;
    let mut m = node.membership().await?;
    let segs = |m: pb::ContactSegments| m.segments;
    let now = segs(
        m.get_contact_segments(pb::GetContactSegmentsRequest {
            contact_id: "ann".into(),
        })
        .await?
        .into_inner(),
    );
    assert!(
        now.contains(&"engaged_target_contacts".to_string()),
        "{now:?}"
    );

    let mut watch = m
        .watch(pb::WatchRequest {
            segment: "engaged_target_contacts".into(),
            after_cursor: 0,
            tail_only: false,
        })
        .await?
        .into_inner();
    let enter = tokio::time::timeout(Duration::from_secs(30), watch.next()).await?;
    let enter = enter.ok_or_else(|| anyhow::anyhow!("stream ended"))??;
    assert_eq!(
        (enter.kind, enter.instant.as_str()),
        (pb::ChangeKind::Enter as i32, "2026-10-02T00:00:00.000Z")
    );

    let mut admin = node.admin().await?;
    // One millisecond before the window closes: still a member.
    admin
        .advance_clock(pb::AdvanceClockRequest {
            to: "2026-10-31T12:00:00.249Z".into(),
        })
        .await?;
    let ex = m
        .explain(pb::ExplainRequest {
            entity: "contact".into(),
            id: "ann".into(),
            segment: "engaged_target_contacts".into(),
        })
        .await?
        .into_inner();
    assert!(ex.segments[0].member);
    assert_eq!(ex.segments[0].next_change, "2026-10-31T12:00:00.250Z");
    // Exactly at last engagement + 30d: out.
    admin
        .advance_clock(pb::AdvanceClockRequest {
            to: "2026-10-31T12:00:00.250Z".into(),
        })
        .await?;
    let exit = tokio::time::timeout(Duration::from_secs(30), watch.next()).await?;
    let exit = exit.ok_or_else(|| anyhow::anyhow!("stream ended"))??;
    assert_eq!(exit.kind, pb::ChangeKind::Exit as i32);
    assert_eq!(exit.instant, "2026-10-31T12:00:00.250Z");
    assert_eq!(exit.cause, "time");
    assert!(exit.cursor > enter.cursor);
    let left = poll(Duration::from_secs(30), "exit visible in queries", || {
        let mut m = m.clone();
        async move {
            let s = m
                .get_contact_segments(pb::GetContactSegmentsRequest {
                    contact_id: "ann".into(),
                })
                .await
                .ok()?
                .into_inner();
            (!s.segments.contains(&"engaged_target_contacts".to_string())).then_some(s)
        }
    })
    .await?;
    assert!(left.segments.is_empty(), "{:?}", left.segments);
    // Resuming after the enter's cursor replays exactly the exit.
    let mut resumed = m
        .watch(pb::WatchRequest {
            segment: "engaged_target_contacts".into(),
            after_cursor: enter.cursor,
            tail_only: false,
        })
        .await?
        .into_inner();
    let again = tokio::time::timeout(Duration::from_secs(30), resumed.next()).await?;
    let again = again.ok_or_else(|| anyhow::anyhow!("stream ended"))??;
    assert_eq!((again.cursor, again.kind), (exit.cursor, exit.kind));
    Ok(())
}
