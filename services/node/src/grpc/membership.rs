//! MembershipService: live membership, explanations and the resumable
//! change stream. Queries never create accounts.

use super::{Scope, tenant_of};
use crate::actors::AccountRef;
use crate::error::NodeError;
use crate::host::{Answer, Query};
use crate::registry::Loaded;
use crate::runtime::{Health, Runtime};
use crate::server::NodeInner;
use crate::tenant::{FeedItem, TenantState};
use base64::Engine as _;
use liveseg_core::time::format_rfc3339;
use liveseg_core::{Change, ChangeKind, Entity, Explained};
use liveseg_proto::pb;
use std::pin::Pin;
use std::sync::Arc;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

pub struct MembershipApi(pub Arc<NodeInner>);

const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

impl MembershipApi {
    /// Asks an account; a passivated-meanwhile actor is reloaded once. The
    /// answer is given only if the runtime still serves (lease valid).
    async fn ask(
        &self,
        rt: &Runtime,
        tenant: &TenantState,
        account: &str,
        q: Query,
    ) -> Result<Answer, Status> {
        ask(rt, tenant, account, q).await
    }

    fn contact_account(&self, tenant: &TenantState, contact: &str) -> Result<String, Status> {
        tenant
            .account_of(contact)
            .ok_or_else(|| Status::not_found(format!("contact '{contact}' not found")))
    }
}

/// Asks an account's actor a question (loading it if passivated); retries
/// once when the actor was stopping.
pub(crate) async fn ask(
    rt: &Runtime,
    tenant: &TenantState,
    account: &str,
    q: Query,
) -> Result<Answer, Status> {
    {
        for _ in 0..2 {
            let actor: AccountRef = match rt.registry.get(tenant, account, false)? {
                Loaded::Actor(a) => a,
                Loaded::Unknown => {
                    return Err(Status::not_found(format!("account '{account}' not found")));
                }
            };
            if let Ok(a) = actor.ask(q.clone()).await {
                rt.check()?;
                return Ok(a);
            }
        }
        Err(NodeError::Overloaded("the account was reloading; retry".into()).into())
    }
}

/// Questions in flight per `ask_each` call.
const ASK_CONCURRENCY: usize = 64;

/// Asks each of `accounts` `q` (loading passivated ones, as `ask` does),
/// a bounded number at a time; answers in no particular order. An account
/// the directory names but the store has not written yet (its first event
/// still in flight) has nothing to say and is skipped.
pub(crate) async fn ask_each(
    rt: &Runtime,
    tenant: &TenantState,
    accounts: Vec<String>,
    q: Query,
) -> Result<Vec<Answer>, Status> {
    use futures::StreamExt;
    let answers: Vec<Result<Answer, Status>> = futures::stream::iter(accounts)
        .map(|account| {
            let q = q.clone();
            async move { ask(rt, tenant, &account, q).await }
        })
        .buffer_unordered(ASK_CONCURRENCY)
        .collect()
        .await;
    answers
        .into_iter()
        .filter(|a| !matches!(a, Err(s) if s.code() == tonic::Code::NotFound))
        .collect()
}

#[tonic::async_trait]
impl pb::membership_service_server::MembershipService for MembershipApi {
    async fn get_contact_segments(
        &self,
        req: Request<pb::GetContactSegmentsRequest>,
    ) -> Result<Response<pb::ContactSegments>, Status> {
        let Scope { rt, tenant } = tenant_of(&self.0, &req)?;
        let id = req.into_inner().contact_id;
        let account = self.contact_account(&tenant, &id)?;
        match self
            .ask(&rt, &tenant, &account, Query::ContactSegments(id.clone()))
            .await?
        {
            Answer::Segments(Some(segments)) => Ok(Response::new(pb::ContactSegments {
                contact_id: id,
                account_id: account,
                segments,
            })),
            _ => Err(Status::not_found(format!("contact '{id}' not found"))),
        }
    }

    async fn get_account(
        &self,
        req: Request<pb::GetAccountRequest>,
    ) -> Result<Response<pb::AccountMembership>, Status> {
        let Scope { rt, tenant } = tenant_of(&self.0, &req)?;
        let id = req.into_inner().account_id;
        match self.ask(&rt, &tenant, &id, Query::Account).await? {
            Answer::Account(view) => Ok(Response::new(pb::AccountMembership {
                account_id: id.clone(),
                segments: view.segments,
                contacts: view
                    .contacts
                    .into_iter()
                    .map(|(c, segments)| pb::ContactSegments {
                        contact_id: c,
                        account_id: id.clone(),
                        segments,
                    })
                    .collect(),
            })),
            _ => Err(Status::internal("unexpected answer")),
        }
    }

    async fn list_members(
        &self,
        req: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        let Scope { rt, tenant } = tenant_of(&self.0, &req)?;
        let r = req.into_inner();
        if tenant.set().index_of(&r.segment).is_none() {
            return Err(Status::not_found(format!(
                "segment '{}' not found",
                r.segment
            )));
        }
        let size = match r.page_size as usize {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        let after = decode_token(&r.page_token)?;
        let index = tenant.index.read().unwrap_or_else(|p| p.into_inner());
        let start = match &after {
            Some((a, e, i)) => {
                std::ops::Bound::Excluded((r.segment.clone(), a.clone(), *e, i.clone()))
            }
            None => std::ops::Bound::Included((
                r.segment.clone(),
                String::new(),
                Entity::Contact,
                String::new(),
            )),
        };
        let mut page = index
            .range((start, std::ops::Bound::Unbounded))
            .take_while(|k| k.0 == r.segment);
        let keys: Vec<_> = page.by_ref().take(size).collect();
        // The token names the last member returned; the next page starts after it.
        let next = match (page.next(), keys.last()) {
            (Some(_), Some(last)) => encode_token(&last.1, last.2, &last.3),
            _ => String::new(),
        };
        let members = keys
            .into_iter()
            .map(|k| pb::Member {
                entity: k.2.as_str().into(),
                id: k.3.clone(),
                account_id: k.1.clone(),
            })
            .collect();
        rt.check()?;
        Ok(Response::new(pb::ListMembersResponse {
            members,
            next_page_token: next,
        }))
    }

    async fn explain(
        &self,
        req: Request<pb::ExplainRequest>,
    ) -> Result<Response<pb::Explanation>, Status> {
        let Scope { rt, tenant } = tenant_of(&self.0, &req)?;
        let r = req.into_inner();
        let ent = if r.entity.is_empty() || r.entity == "contact" {
            Entity::Contact
        } else if r.entity == "account" {
            Entity::Account
        } else {
            return Err(Status::invalid_argument(
                "entity: must be \"contact\" or \"account\"",
            ));
        };
        let account = match ent {
            Entity::Contact => self.contact_account(&tenant, &r.id)?,
            Entity::Account => r.id.clone(),
        };
        let set = tenant.set();
        let keys: Vec<String> = if r.segment.is_empty() {
            set.of_entity(ent)
                .map(|i| set.segments[i].def.key.clone())
                .collect()
        } else {
            match set.index_of(&r.segment) {
                Some(i) if set.segments[i].def.entity == ent => vec![r.segment.clone()],
                Some(_) => {
                    return Err(Status::invalid_argument(format!(
                        "segment: '{}' is not a {} segment",
                        r.segment,
                        ent.as_str()
                    )));
                }
                None => {
                    return Err(Status::not_found(format!(
                        "segment '{}' not found",
                        r.segment
                    )));
                }
            }
        };
        let now = self.0.clock.now();
        let mut out = pb::Explanation {
            entity: ent.as_str().into(),
            id: r.id.clone(),
            account_id: account.clone(),
            segments: vec![],
            send_timing: None,
        };
        for key in keys {
            let contact = (ent == Entity::Contact).then(|| r.id.clone());
            let q = Query::Explain {
                segment: key.clone(),
                contact,
            };
            if let Answer::Explained(Some(ex)) = self.ask(&rt, &tenant, &account, q).await? {
                out.segments.push(explained_to_pb(&key, now, ex));
            }
        }
        if out.segments.is_empty() {
            return Err(Status::not_found(format!(
                "{} '{}' not found",
                ent.as_str(),
                r.id
            )));
        }
        if ent == Entity::Contact {
            out.send_timing =
                super::insight::explain_timing(&rt, &tenant, &self.0.clock, &r.id).await;
        }
        Ok(Response::new(out))
    }

    type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::MembershipChange, Status>> + Send>>;

    async fn watch(
        &self,
        req: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let Scope { rt, tenant } = tenant_of(&self.0, &req)?;
        let r = req.into_inner();
        if !r.segment.is_empty() && tenant.set().index_of(&r.segment).is_none() {
            return Err(Status::not_found(format!(
                "segment '{}' not found",
                r.segment
            )));
        }
        // Subscribe before reading the durable log so nothing falls in between.
        let mut live = tenant.feed.subscribe();
        // The stream ends with UNAVAILABLE when the runtime stops serving
        // (its shard moved): the client resumes from its last cursor on any node.
        let mut health = rt.health();
        let shard = rt.shard;
        let store = rt.state.clone();
        let tenant_id = tenant.id.to_string();
        let mut cursor = if r.tail_only && r.after_cursor == 0 {
            liveseg_store::StateStore::change_head(store.as_ref(), &tenant_id)
                .map_err(NodeError::from)?
        } else {
            r.after_cursor
        };
        let filter = r.segment;
        let stream = async_stream::try_stream! {
            loop {
                // Catch up from the durable change log.
                loop {
                    let s = store.clone();
                    let t = tenant_id.clone();
                    let page = tokio::task::spawn_blocking(move || liveseg_store::StateStore::changes_after(s.as_ref(), &t, cursor, 1024))
                        .await
                        .map_err(|e| Status::internal(e.to_string()))?
                        .map_err(NodeError::from)?;
                    if page.is_empty() {
                        break;
                    }
                    for (c, bytes) in page {
                        cursor = c;
                        if let Ok(change) = serde_json::from_slice::<Change>(&bytes)
                            && (filter.is_empty() || change.segment == filter) {
                                yield change_to_pb(c, &change);
                            }
                    }
                }
                // Then live, until we lag behind the feed (back to the log).
                loop {
                    let next = tokio::select! {
                        item = live.recv() => Some(item),
                        _ = health.wait_for(|h| *h != Health::Serving) => None,
                    };
                    let Some(next) = next else {
                        Err::<(), Status>(NodeError::Moved(shard).into())?;
                        return;
                    };
                    match next {
                        Ok(item) => {
                            let item: Arc<FeedItem> = item;
                            if item.cursor <= cursor {
                                continue;
                            }
                            cursor = item.cursor;
                            if filter.is_empty() || item.change.segment == filter {
                                yield change_to_pb(item.cursor, &item.change);
                            }
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                            Err::<(), Status>(NodeError::Moved(shard).into())?;
                        }
                    }
                }
            }
        };
        Ok(Response::new(Box::pin(stream)))
    }
}

fn entity(name: &str) -> Entity {
    if name == "account" {
        Entity::Account
    } else {
        Entity::Contact
    }
}

fn encode_token(account: &str, e: Entity, id: &str) -> String {
    let raw = serde_json::json!([1, account, e.as_str(), id]).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_token(token: &str) -> Result<Option<(String, Entity, String)>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || Status::invalid_argument("page_token: not a token from this API");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let v: (u8, String, String, String) = serde_json::from_slice(&raw).map_err(|_| bad())?;
    if v.0 != 1 {
        return Err(bad());
    }
    Ok(Some((v.1, entity(&v.2), v.3)))
}

pub fn change_to_pb(cursor: u64, c: &Change) -> pb::MembershipChange {
    pb::MembershipChange {
        cursor,
        segment: c.segment.clone(),
        entity: c.entity.as_str().into(),
        id: c.id.clone(),
        account_id: c.account.clone(),
        kind: match c.kind {
            ChangeKind::Enter => pb::ChangeKind::Enter as i32,
            ChangeKind::Exit => pb::ChangeKind::Exit as i32,
        },
        instant: format_rfc3339(c.instant),
        cause: c.cause.describe(),
    }
}

fn explained_to_pb(key: &str, now: i64, ex: Explained) -> pb::SegmentExplanation {
    fn node(n: liveseg_core::eval::ExplainNode) -> pb::ConditionExplanation {
        pb::ConditionExplanation {
            path: n.path,
            description: n.description,
            holds: n.holds,
            observed: n.observed,
            evidence: n.evidence,
            children: n.children.into_iter().map(node).collect(),
        }
    }
    pb::SegmentExplanation {
        segment: key.into(),
        member: ex.member,
        at: format_rfc3339(now),
        next_change: ex.next_change.map(format_rfc3339).unwrap_or_default(),
        condition: Some(node(ex.condition)),
        suppressed: ex.suppressed,
    }
}
