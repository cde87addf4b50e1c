//! Tenants are isolated: the same account and contact ids in two tenants
//! never mix, one tenant's key cannot read or change the other's data, and
//! bad or missing keys get nothing.

use anyhow::Result;
use liveseg_proto::pb;
use liveseg_tests::{Node, all_members, json_msg};
use serde_json::json;

fn open(id: &str, user: &str, account: &str) -> pb::SegmentMessage {
    json_msg(
        &json!({"type":"track","messageId":id,"userId":user,"event":"Meeting Booked","timestamp":"2026-10-01T00:00:00Z","context":{"groupId":account}}),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenant_never_reads_or_changes_another() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let node = Node::start(dir.path(), &["--clock", "manual:2026-10-02T00:00:00Z"]).await?;
    let mut admin = node.admin_with(&node.admin_key).await?;
    let beta = admin
        .create_tenant(pb::CreateTenantRequest {
            name: "beta".into(),
        })
        .await?
        .into_inner();
    assert_eq!(beta.tenant, "beta");
    // A tenant key cannot create tenants.
    let mut as_tenant = node.admin().await?;
    let denied = as_tenant
        .create_tenant(pb::CreateTenantRequest {
            name: "gamma".into(),
        })
        .await;
    assert_eq!(
        denied.map(|_| ()).unwrap_err().code(),
        tonic::Code::PermissionDenied
    );

    // Same message id, contact and account in both tenants: independent.
    let mut a = node.ingest().await?;
    let ra = a
        .ingest(pb::IngestRequest {
            messages: vec![open("m1", "ann", "acme")],
        })
        .await?
        .into_inner();
    let mut b = node.ingest_with(&beta.api_key).await?;
    let rb = b
        .ingest(pb::IngestRequest {
            messages: vec![open("m1", "ann", "acme"), open("m2", "bob", "initech")],
        })
        .await?
        .into_inner();
    assert_eq!((ra.accepted, rb.accepted, rb.duplicates), (1, 2, 0));
    node.settle().await?;

    let mut ma = node.membership().await?;
    let mut mb = node.membership_with(&beta.api_key).await?;
    // bob exists only in beta.
    let miss = ma
        .get_contact_segments(pb::GetContactSegmentsRequest {
            contact_id: "bob".into(),
        })
        .await;
    assert_eq!(miss.map(|_| ()).unwrap_err().code(), tonic::Code::NotFound);
    let acc = ma
        .get_account(pb::GetAccountRequest {
            account_id: "initech".into(),
        })
        .await;
    assert_eq!(acc.map(|_| ()).unwrap_err().code(), tonic::Code::NotFound);
    let bob = mb
        .get_contact_segments(pb::GetContactSegmentsRequest {
            contact_id: "bob".into(),
        })
        .await?
        .into_inner();
    assert_eq!(bob.account_id, "initech");
    // acme in the default tenant has only ann's one event, beta's acme is its own.
    let acme_a = ma
        .get_account(pb::GetAccountRequest {
            account_id: "acme".into(),
        })
        .await?
        .into_inner();
    assert_eq!(
        acme_a
            .contacts
            .iter()
            .map(|c| c.contact_id.as_str())
            .collect::<Vec<_>>(),
        vec!["ann"]
    );
    let members_a = all_members(&node, "engaged_non_target_contacts").await?;
    assert_eq!(
        members_a,
        vec![("contact".to_string(), "ann".to_string(), "acme".to_string())]
    );
    // Changing beta's definitions leaves the default tenant alone.
    let mut sb = pb::segment_service_client::SegmentServiceClient::with_interceptor(
        tonic::transport::Channel::from_shared(node.url())?
            .connect()
            .await?,
        liveseg_tests::Auth(beta.api_key.clone()),
    );
    sb.delete_segment(pb::DeleteSegmentRequest {
        key: "sunset_candidates".into(),
    })
    .await?;
    let mut sa = node.segments().await?;
    let keys: Vec<String> = sa
        .list_segments(pb::ListSegmentsRequest {})
        .await?
        .into_inner()
        .segments
        .into_iter()
        .map(|s| s.key)
        .collect();
    assert!(keys.contains(&"sunset_candidates".to_string()));

    // Unknown, empty and admin keys get no tenant data.
    for key in ["lsk_not_a_key", "", node.admin_key.as_str()] {
        let mut m = node.membership_with(key).await?;
        let r = m
            .get_contact_segments(pb::GetContactSegmentsRequest {
                contact_id: "ann".into(),
            })
            .await;
        let code = r.map(|_| ()).unwrap_err().code();
        assert!(
            matches!(
                code,
                tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
            ),
            "{key}: {code:?}"
        );
        let mut i = node.ingest_with(key).await?;
        let r = i
            .ingest(pb::IngestRequest {
                messages: vec![open("m9", "eve", "acme")],
            })
            .await;
        assert!(r.is_err());
    }
    let head = node.settle().await?.log_head;
    assert_eq!(head, 3, "rejected requests wrote nothing");
    Ok(())
}
