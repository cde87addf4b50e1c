//! The v1 API end to end: segment definitions (apply, validate, delete,
//! rebuild of live state), explain, paging, contact moves, graceful
//! shutdown and restart, idle passivation, reflection and metrics.

use anyhow::Result;
use liveseg_proto::pb;
use liveseg_tests::{Node, all_members, http_get, json_msg, poll};
use serde_json::json;
use std::time::Duration;

fn track(id: &str, user: &str, account: &str, event: &str, ts: &str) -> pb::SegmentMessage {
    json_msg(
        &json!({"type":"track","messageId":id,"userId":user,"event":event,"timestamp":ts,"context":{"groupId":account},"properties":{"email_id":id}}),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definitions_change_live_state_and_explain_says_why() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let node = Node::start(dir.path(), &["--clock", "manual:2026-10-10T00:00:00Z"]).await?;
    let mut ingest = node.ingest().await?;
    let msgs: Vec<pb::SegmentMessage> = (0..30)
        .map(|i| {
            track(
                &format!("m{i}"),
                &format!("u{i:02}"),
                &format!("acct{}", i % 3),
                "Webinar Registered",
                "2026-10-09T00:00:00Z",
            )
        })
        .collect();
    ingest.ingest(pb::IngestRequest { messages: msgs }).await?;
    node.settle().await?;
    let mut seg = node.segments().await?;
    // Invalid definitions are refused with the path and reason.
    let bad = "key: webinar\nname: W\nentity: contact\ncondition: {events: {event: {kind: custom}, within: 7 days}}";
    let v = seg
        .validate_segment(pb::ValidateSegmentRequest {
            definition: bad.into(),
        })
        .await?
        .into_inner();
    assert!(!v.valid);
    assert!(v.errors[0].path.contains("within"), "{:?}", v.errors);
    let err = seg
        .apply_segment(pb::ApplySegmentRequest {
            definition: bad.into(),
        })
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    // A new segment is computed from the existing history at once.
    let good = "key: webinar\nname: Webinar sign-ups\nentity: contact\ncondition:\n  events: {event: {kind: custom, name: Webinar Registered}, within: 7d}\n";
    let s = seg
        .apply_segment(pb::ApplySegmentRequest {
            definition: good.into(),
        })
        .await?
        .into_inner();
    assert_eq!((s.key.as_str(), s.revision), ("webinar", 1));
    let members = poll(Duration::from_secs(30), "webinar members", || {
        let n = &node;
        async move {
            all_members(n, "webinar")
                .await
                .ok()
                .filter(|m| m.len() == 30)
        }
    })
    .await?;
    // Paging walked 50-item pages in (account, id) order with no repeats.
    let mut sorted = members.clone();
    sorted.sort_by(|a, b| (&a.2, &a.1).cmp(&(&b.2, &b.1)));
    sorted.dedup();
    assert_eq!(sorted, members);
    let mut m = node.membership().await?;
    let ex = m
        .explain(pb::ExplainRequest {
            entity: "contact".into(),
            id: "u05".into(),
            segment: "webinar".into(),
        })
        .await?
        .into_inner();
    let e = &ex.segments[0];
    assert!(e.member);
    assert_eq!(e.next_change, "2026-10-16T00:00:00.000Z");
    let c = e
        .condition
        .as_ref()
        .map(|c| (c.observed.clone(), c.evidence.clone()));
    assert_eq!(
        c,
        Some((
            "1 events".to_string(),
            vec!["2026-10-09T00:00:00.000Z".to_string()]
        ))
    );
    // Deleting it removes it; a segment others name cannot be deleted.
    let uses = "key: webinar_targets\nname: W T\nentity: contact\ncondition: {all: [{in_segment: webinar}, {account_trait: {name: target, op: eq, value: true}}]}";
    seg.apply_segment(pb::ApplySegmentRequest {
        definition: uses.into(),
    })
    .await?;
    let blocked = seg
        .delete_segment(pb::DeleteSegmentRequest {
            key: "webinar".into(),
        })
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(blocked.code(), tonic::Code::FailedPrecondition);
    seg.delete_segment(pb::DeleteSegmentRequest {
        key: "webinar_targets".into(),
    })
    .await?;
    assert!(
        seg.delete_segment(pb::DeleteSegmentRequest {
            key: "webinar".into()
        })
        .await?
        .into_inner()
        .deleted
    );
    let gone = m
        .list_members(pb::ListMembersRequest {
            segment: "webinar".into(),
            page_size: 10,
            page_token: String::new(),
        })
        .await;
    assert_eq!(gone.map(|_| ()).unwrap_err().code(), tonic::Code::NotFound);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moves_shutdown_restart_and_passivation_keep_state() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let flags = [
        "--clock",
        "manual:2026-10-10T00:00:00Z",
        "--passivate-after",
        "1s",
    ];
    let mut node = Node::start(dir.path(), &flags).await?;
    let mut ingest = node.ingest().await?;
    let group = |id: &str, user: &str, account: &str, target: bool| {
        json_msg(
            &json!({"type":"group","messageId":id,"userId":user,"groupId":account,"timestamp":"2026-10-01T00:00:00Z","traits":{"target":target}}),
        )
    };
    ingest
        .ingest(pb::IngestRequest {
            messages: vec![
                group("g1", "ann", "acme", true),
                track("o1", "ann", "acme", "Email Opened", "2026-10-05T00:00:00Z"),
                // ann changes jobs: her engagement goes with her.
                group("g2", "ann", "globex", false),
            ],
        })
        .await?;
    node.settle().await?;
    let mut m = node.membership().await?;
    let ann = m
        .get_contact_segments(pb::GetContactSegmentsRequest {
            contact_id: "ann".into(),
        })
        .await?
        .into_inner();
    assert_eq!(
        (ann.account_id.as_str(), ann.segments.clone()),
        ("globex", vec!["engaged_non_target_contacts".to_string()])
    );
    let acme = m
        .get_account(pb::GetAccountRequest {
            account_id: "acme".into(),
        })
        .await?
        .into_inner();
    assert!(acme.contacts.is_empty());

    // Idle accounts are passivated (the manual clock never moves, so wall time is not it).
    let mut admin = node.admin().await?;
    admin
        .advance_clock(pb::AdvanceClockRequest {
            to: "2026-10-10T00:00:10Z".into(),
        })
        .await?;
    poll(Duration::from_secs(30), "passivation", || {
        let mut a = admin.clone();
        async move {
            (a.stats(pb::StatsRequest {})
                .await
                .ok()?
                .into_inner()
                .resident_accounts
                == 0)
                .then_some(())
        }
    })
    .await?;
    // ...and reloaded on demand.
    let again = m
        .get_contact_segments(pb::GetContactSegmentsRequest {
            contact_id: "ann".into(),
        })
        .await?
        .into_inner();
    assert_eq!(again.segments, ann.segments);

    // SIGTERM drains, checkpoints and exits 0; restart replays nothing.
    let status = node.terminate().await?;
    assert!(status.success(), "{status}: {}", node.log_tail());
    let node = Node::start(dir.path(), &flags).await?;
    let log = std::fs::read_to_string(&node.log)?;
    let last = log
        .lines()
        .rev()
        .find(|l| l.contains("replayed="))
        .unwrap_or_default()
        .to_string();
    assert!(last.contains("replayed=0"), "{last}");
    let mut m = node.membership().await?;
    let after = m
        .get_contact_segments(pb::GetContactSegmentsRequest {
            contact_id: "ann".into(),
        })
        .await?
        .into_inner();
    assert_eq!(after.segments, ann.segments);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_and_metrics_are_served() -> Result<()> {
    use tokio_stream::StreamExt;
    let dir = tempfile::tempdir()?;
    let node = Node::start(dir.path(), &[]).await?;
    let channel = tonic::transport::Channel::from_shared(node.url())?
        .connect()
        .await?;
    let mut refl =
        tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(channel);
    let req = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            ),
        ),
    };
    let mut stream = refl
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await?
        .into_inner();
    let first = stream
        .next()
        .await
        .ok_or_else(|| anyhow::anyhow!("no reflection answer"))??;
    let text = format!("{first:?}");
    for svc in [
        "liveseg.v1.IngestService",
        "liveseg.v1.MembershipService",
        "grpc.health.v1.Health",
    ] {
        assert!(text.contains(svc), "{svc} missing in {text}");
    }
    let mut ingest = node.ingest().await?;
    ingest
        .ingest(pb::IngestRequest {
            messages: vec![track(
                "x1",
                "u",
                "a",
                "Meeting Booked",
                "2026-10-01T00:00:00Z",
            )],
        })
        .await?;
    let body = http_get(&node.addr, "/metrics").await?;
    assert!(body.contains("liveseg_ingest_events_total"), "{body}");
    Ok(())
}
