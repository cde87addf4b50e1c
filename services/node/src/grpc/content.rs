//! ContentService: register content (embedded once, stored with its
//! vector), list it, and rank it for a contact or a text. Also
//! `compile_for_tenant`, which every definition change goes through, since
//! affinity conditions resolve against the tenant's content.
//!
//! Registering content changes what affinity conditions see, not what
//! profiles keep (they keep every engagement key, registered or not), so
//! the tenant's accounts are judged again under the new library, in-band
//! (the runtime applies no event meanwhile, for a time that follows the
//! tenant's state, not its log), and the memberships that change are
//! emitted as usual. The tenant's first content switches profiles on,
//! which replays its log once.

use super::{Scope, tenant_of};
use crate::content::{self, ContentRecord, RecordKind};
use crate::dispatch::Command;
use crate::error::NodeError;
use crate::host::{Answer, Query};
use crate::runtime::Runtime;
use crate::server::NodeInner;
use crate::tenant::TenantState;
use base64::Engine as _;
use liveseg_core::SegmentSet;
use liveseg_core::content::ContentLibrary;
use liveseg_core::content::affinity_topics;
use liveseg_core::definition::SegmentDefinition;
use liveseg_core::time::format_rfc3339;
use liveseg_proto::pb;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct ContentApi(pub Arc<NodeInner>);

/// Items in one RegisterContent call.
pub const MAX_ITEMS: usize = 256;
/// Texts per model call when content is embedded again.
const REEMBED_CHUNK: usize = 64;
/// Default and largest number of matches returned.
const DEFAULT_LIMIT: usize = 10;
const MAX_LIMIT: usize = 1000;

/// Compiles `defs` against the tenant's stored content, first embedding
/// (and storing) every topic text not embedded before.
pub async fn compile_for_tenant(
    node: &NodeInner,
    tenant: &str,
    defs: &[SegmentDefinition],
) -> Result<SegmentSet, Status> {
    let lib = content::library(node.catalog.as_ref(), tenant)?;
    compile_with_library(node, tenant, defs, lib).await
}

/// Compiles `defs` against `lib`, first embedding (and storing) every
/// topic text it lacks.
async fn compile_with_library(
    node: &NodeInner,
    tenant: &str,
    defs: &[SegmentDefinition],
    mut lib: ContentLibrary,
) -> Result<SegmentSet, Status> {
    let missing: Vec<String> = affinity_topics(defs)
        .into_iter()
        .filter(|t| lib.topic(t).is_none())
        .collect();
    if !missing.is_empty() {
        let embedded = node.models.embed(&missing).await?;
        content::adopt_model(&mut lib, &embedded.model)?;
        let now = node.clock.now();
        let mut stored = Vec::new();
        for (text, v) in missing.iter().zip(embedded.vectors) {
            let v =
                v.map_err(|e| Status::invalid_argument(format!("affinity topic {text:?}: {e}")))?;
            lib.insert_topic(text, &v.values)
                .map_err(|e| NodeError::Internal(format!("topic vector: {e}")))?;
            let record = ContentRecord {
                id: content::topic_id(text),
                kind: RecordKind::Topic,
                text: text.clone(),
                url: String::new(),
                metadata: BTreeMap::new(),
                model: embedded.model.clone(),
                registered_ms: now,
                vector: ContentRecord::encode_vector(&v.values),
            };
            stored.push(record.stored()?);
        }
        node.catalog
            .put_contents(tenant, &stored)
            .map_err(NodeError::from)?;
    }
    SegmentSet::compile_with(defs, Arc::new(lib)).map_err(|e| super::segments::invalid(&e))
}

/// The tenant's content library, with a placeholder vector for every topic
/// text of `defs` not embedded yet: for checking definitions without
/// writing anything (a topic is embedded when its definition is applied).
pub fn library_for_checks(
    node: &NodeInner,
    tenant: &str,
    defs: &[SegmentDefinition],
) -> Result<ContentLibrary, NodeError> {
    let mut lib = content::library(node.catalog.as_ref(), tenant)?;
    let dims = lib.contents().next().map_or(384, |i| i.vector.len());
    let mut unit = vec![0.0; dims];
    unit[0] = 1.0;
    for t in affinity_topics(defs) {
        if lib.topic(&t).is_none() {
            lib.insert_topic(&t, &unit)
                .map_err(|e| NodeError::Internal(format!("placeholder: {e}")))?;
        }
    }
    Ok(lib)
}

/// The tenant's stored definitions.
pub fn stored_definitions(
    node: &NodeInner,
    tenant: &str,
) -> Result<Vec<SegmentDefinition>, NodeError> {
    node.catalog
        .segments(tenant)?
        .into_iter()
        .map(|(key, json, _)| {
            serde_json::from_str(&json)
                .map_err(|e| NodeError::Internal(format!("stored definition {key}: {e}")))
        })
        .collect()
}

/// Installs `set`, whose content library is new, for the tenant: its
/// accounts are judged again under it (or its log replayed, when the set
/// also changes the shape of state), then the membership differences are
/// announced.
async fn install_content(
    rt: &Runtime,
    tenant: &Arc<TenantState>,
    set: SegmentSet,
) -> Result<(), Status> {
    rt.ask(|reply| Command::Rejudge {
        tenant: tenant.clone(),
        set: Box::new(set),
        reply,
    })
    .await?;
    Ok(())
}

/// Installs `set` for the tenant by rebuilding its state from the log
/// in-band in the dispatcher (no event is applied meanwhile), then
/// announcing the membership differences.
pub async fn install(
    rt: &Runtime,
    tenant: &Arc<TenantState>,
    set: SegmentSet,
) -> Result<(), Status> {
    rt.ask(|reply| Command::Redefine {
        tenant: tenant.clone(),
        set: Box::new(set),
        reply,
    })
    .await?;
    Ok(())
}

impl ContentApi {
    async fn contact_interest(
        &self,
        rt: &Runtime,
        tenant: &TenantState,
        contact: &str,
    ) -> Result<liveseg_core::content::Interest, Status> {
        let account = tenant
            .account_of(contact)
            .ok_or_else(|| Status::not_found(format!("contact '{contact}' not found")))?;
        match super::membership::ask(rt, tenant, &account, Query::Interest(contact.to_string()))
            .await?
        {
            Answer::Interest(Some(i)) => Ok(i),
            _ => Err(Status::not_found(format!("contact '{contact}' not found"))),
        }
    }
}

/// Most bytes of items in one ListContent page (under the 4 MiB default
/// client limit, with room for the envelope).
const PAGE_BYTES: usize = 3 << 20;

/// A stored record as ListContent returns it.
fn to_wire(r: ContentRecord, with_vector: bool) -> Result<pb::ContentRecord, NodeError> {
    let vector = if with_vector {
        r.vector().map_err(NodeError::Internal)?
    } else {
        Vec::new()
    };
    Ok(pb::ContentRecord {
        item: Some(pb::ContentItem {
            id: r.id,
            text: r.text,
            url: r.url,
            metadata: r.metadata.into_iter().collect(),
        }),
        model: r.model,
        registered_at: format_rfc3339(r.registered_ms),
        vector,
    })
}

/// The leading records whose encoded size stays within `budget` bytes;
/// always at least one, so a page is never empty while records remain.
fn cut_page(records: Vec<pb::ContentRecord>, budget: usize) -> Vec<pb::ContentRecord> {
    let mut bytes = 0usize;
    let mut out = Vec::new();
    for r in records {
        let len = prost::Message::encoded_len(&r);
        if !out.is_empty() && bytes + len > budget {
            break;
        }
        bytes += len;
        out.push(r);
    }
    out
}

fn page_size(asked: u32) -> usize {
    match asked {
        0 => 100,
        n => (n as usize).min(1000),
    }
}

#[tonic::async_trait]
impl pb::content_service_server::ContentService for ContentApi {
    #[tracing::instrument(skip_all, fields(tenant, items))]
    async fn register_content(
        &self,
        req: Request<pb::RegisterContentRequest>,
    ) -> Result<Response<pb::RegisterContentResponse>, Status> {
        let Scope { rt, tenant } = tenant_of(&self.0, &req)?;
        let items = req.into_inner().items;
        tracing::Span::current().record("items", items.len());
        if items.is_empty() || items.len() > MAX_ITEMS {
            return Err(Status::invalid_argument(format!(
                "items: {} given; must be 1..={MAX_ITEMS}",
                items.len()
            )));
        }
        let mut results: Vec<pb::ContentResult> = items
            .iter()
            .map(|i| pb::ContentResult {
                id: i.id.clone(),
                ..Default::default()
            })
            .collect();
        let mut valid = Vec::new();
        for (n, item) in items.iter().enumerate() {
            let at = format!("items[{n}]");
            let metadata: BTreeMap<String, String> = item.metadata.clone().into_iter().collect();
            let checked = content::check_item(&at, &item.id, &item.text, &item.url, &metadata)
                .and_then(|()| match items[..n].iter().position(|p| p.id == item.id) {
                    Some(first) => Err(format!("{at}.id: repeats items[{first}].id")),
                    None => Ok(()),
                });
            match checked {
                Ok(()) => valid.push((n, metadata)),
                Err(e) => results[n].error = e,
            }
        }
        let texts: Vec<String> = valid.iter().map(|(n, _)| items[*n].text.clone()).collect();
        if texts.is_empty() {
            return Ok(Response::new(pb::RegisterContentResponse { results }));
        }
        let embedded = self.0.models.embed(&texts).await?;
        let now = self.0.clock.now();
        let mut records = Vec::new();
        // Definitions and content change the tenant's set under one lock.
        let _guard = rt.lock_definitions().await?;
        // Each vector must fit the library (same model and dimensions, not
        // degenerate) before anything is stored.
        let mut lib = content::library(self.0.catalog.as_ref(), &tenant.id)?;
        content::adopt_model(&mut lib, &embedded.model)?;
        for ((n, metadata), v) in valid.into_iter().zip(embedded.vectors) {
            let item = &items[n];
            let v = v.and_then(|v| {
                lib.insert_content(&item.id, Some(item.url.as_str()), &v.values)
                    .map(|()| v)
                    .map_err(|e| format!("its embedding was refused: {e}"))
            });
            match v {
                Ok(v) => {
                    results[n].tokens = v.tokens;
                    results[n].truncated = v.truncated;
                    let record = ContentRecord {
                        id: item.id.clone(),
                        kind: RecordKind::Content,
                        text: item.text.clone(),
                        url: item.url.clone(),
                        metadata,
                        model: embedded.model.clone(),
                        registered_ms: now,
                        vector: ContentRecord::encode_vector(&v.values),
                    };
                    records.push(record.stored()?);
                }
                Err(e) => results[n].error = format!("items[{n}].text: {e}"),
            }
        }
        if records.is_empty() {
            return Ok(Response::new(pb::RegisterContentResponse { results }));
        }
        // Compile first: a set that would not compile stores nothing.
        let defs = stored_definitions(&self.0, &tenant.id)?;
        let set = compile_with_library(&self.0, &tenant.id, &defs, lib).await?;
        self.0
            .catalog
            .put_contents(&tenant.id, &records)
            .map_err(NodeError::from)?;
        install_content(&rt, &tenant, set).await?;
        Ok(Response::new(pb::RegisterContentResponse { results }))
    }

    async fn list_content(
        &self,
        req: Request<pb::ListContentRequest>,
    ) -> Result<Response<pb::ListContentResponse>, Status> {
        let Scope { tenant, .. } = tenant_of(&self.0, &req)?;
        let r = req.into_inner();
        let (with_vectors, size) = (r.with_vectors, page_size(r.page_size));
        // The token is the last id of the previous page.
        let after = match r.page_token.as_str() {
            "" => None,
            t => Some(
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(t)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| {
                        Status::invalid_argument("page_token: not a token this API issued")
                    })?,
            ),
        };
        let mut records: Vec<_> = content::records(self.0.catalog.as_ref(), &tenant.id)?
            .into_iter()
            .filter(|r| r.kind == RecordKind::Content)
            .filter(|r| after.as_deref().is_none_or(|a| r.id.as_str() > a))
            .collect();
        records.sort_by(|a, b| a.id.cmp(&b.id));
        let remaining = records.len();
        let wire: Vec<pb::ContentRecord> = records
            .into_iter()
            .take(size)
            .map(|r| to_wire(r, with_vectors))
            .collect::<Result<_, NodeError>>()?;
        let items = cut_page(wire, PAGE_BYTES);
        let next_page_token = match items.last() {
            Some(last) if items.len() < remaining => {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(last.item.as_ref().map_or("", |i| i.id.as_str()))
            }
            _ => String::new(),
        };
        Ok(Response::new(pb::ListContentResponse {
            items,
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(tenant, records))]
    async fn reembed_content(
        &self,
        req: Request<pb::ReembedContentRequest>,
    ) -> Result<Response<pb::ReembedContentResponse>, Status> {
        let Scope { rt, tenant } = tenant_of(&self.0, &req)?;
        tracing::Span::current().record("tenant", tenant.id.as_ref());
        // Nothing else changes the tenant's content or definitions meanwhile.
        let _guard = rt.lock_definitions().await?;
        let mut records = content::records(self.0.catalog.as_ref(), &tenant.id)?;
        let previous: BTreeSet<String> = records.iter().map(|r| r.model.clone()).collect();
        let mut model: Option<String> = None;
        // One model call per chunk: the in-process queue admits a bounded
        // number of tokens, and the model service takes 256 texts a call.
        for chunk in records.chunks_mut(REEMBED_CHUNK) {
            let texts: Vec<String> = chunk.iter().map(|r| r.text.clone()).collect();
            let embedded = self.0.models.embed(&texts).await?;
            if model.as_ref().is_some_and(|m| *m != embedded.model) {
                return Err(Status::unavailable(
                    "the model changed while the content was embedded again; retry",
                ));
            }
            for (r, v) in chunk.iter_mut().zip(embedded.vectors) {
                // The text was embedded before: a model that refuses it now
                // differs from the old one in what it accepts.
                let v = v.map_err(|e| {
                    Status::failed_precondition(format!(
                        "stored content {} cannot be embedded by {}: {e}; nothing was changed",
                        r.id, embedded.model
                    ))
                })?;
                r.vector = ContentRecord::encode_vector(&v.values);
                r.model = embedded.model.clone();
            }
            model = Some(embedded.model);
        }
        tracing::Span::current().record("records", records.len());
        let Some(model) = model else {
            return Ok(Response::new(pb::ReembedContentResponse::default()));
        };
        let lib = content::library_of(&records)?;
        let defs = stored_definitions(&self.0, &tenant.id)?;
        let set = compile_with_library(&self.0, &tenant.id, &defs, lib).await?;
        let stored = records
            .iter()
            .map(ContentRecord::stored)
            .collect::<Result<Vec<_>, _>>()?;
        self.0
            .catalog
            .put_contents(&tenant.id, &stored)
            .map_err(NodeError::from)?;
        install_content(&rt, &tenant, set).await?;
        Ok(Response::new(pb::ReembedContentResponse {
            records: records.len() as u32,
            model,
            previous_models: previous.into_iter().collect(),
        }))
    }

    async fn match_content(
        &self,
        req: Request<pb::MatchContentRequest>,
    ) -> Result<Response<pb::MatchContentResponse>, Status> {
        let Scope { rt, tenant } = tenant_of(&self.0, &req)?;
        let r = req.into_inner();
        let limit = match r.limit as usize {
            0 => DEFAULT_LIMIT,
            n => n.min(MAX_LIMIT),
        };
        let lib = tenant.set().content.clone();
        let (query, profile) = match (r.contact_id.is_empty(), r.text.is_empty()) {
            (false, true) => {
                let interest = self.contact_interest(&rt, &tenant, &r.contact_id).await?;
                let profile = interest
                    .contributions(&lib, &[])
                    .into_iter()
                    .map(|(id, share, _)| format!("{id} ({:.0}%)", share * 100.0))
                    .collect();
                (interest.vector(&lib), profile)
            }
            (true, false) => {
                let embedded = self.0.models.embed(std::slice::from_ref(&r.text)).await?;
                content::check_model(&lib, &embedded.model)?;
                let v = embedded
                    .vectors
                    .into_iter()
                    .next()
                    .ok_or_else(|| NodeError::Internal("no embedding".into()))?
                    .map_err(|e| Status::invalid_argument(format!("text: {e}")))?;
                (Some(v.values), Vec::new())
            }
            _ => {
                return Err(Status::invalid_argument(
                    "contact_id, text: set exactly one of them",
                ));
            }
        };
        let Some(query) = query else {
            // No engagement with registered content yet: nothing to rank by.
            return Ok(Response::new(pb::MatchContentResponse {
                matches: vec![],
                unknown: vec![],
                profile,
            }));
        };
        let (ranked, unknown) = lib.rank(&query, &r.candidates);
        Ok(Response::new(pb::MatchContentResponse {
            matches: ranked
                .into_iter()
                .take(limit)
                .map(|(id, score)| pb::ContentMatch { id, score })
                .collect(),
            unknown: unknown.into_iter().map(str::to_string).collect(),
            profile,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, dims: usize) -> pb::ContentRecord {
        pb::ContentRecord {
            item: Some(pb::ContentItem {
                id: id.into(),
                text: "t".into(),
                ..Default::default()
            }),
            vector: vec![0.5; dims],
            ..Default::default()
        }
    }

    #[test]
    fn a_page_stops_before_the_byte_budget_but_never_empty() {
        // 384-dim vectors are ~1.5 KiB each: a 3 MiB page holds ~2,000 of
        // them, so page_size 1000 fits and a budget of 4 records cuts.
        let one = prost::Message::encoded_len(&record("a", 384));
        let records: Vec<_> = (0..10).map(|i| record(&format!("c{i}"), 384)).collect();
        let page = cut_page(records.clone(), 4 * one + one / 2);
        assert_eq!(page.len(), 4);
        let total: usize = page.iter().map(prost::Message::encoded_len).sum();
        assert!(total <= 4 * one + one / 2);
        // One record over the budget still makes a page of one.
        assert_eq!(cut_page(records.clone(), 1).len(), 1);
        assert_eq!(cut_page(records.clone(), PAGE_BYTES).len(), 10);
        // A full page of long texts with vectors is cut under 3 MiB, which
        // fits gRPC's default 4 MiB message limit.
        let long = |i: usize| {
            let mut r = record(&format!("c{i:04}"), 384);
            if let Some(item) = r.item.as_mut() {
                item.text = "x".repeat(8 << 10);
            }
            r
        };
        let sent = cut_page((0..1000).map(long).collect(), PAGE_BYTES);
        let bytes: usize = sent.iter().map(prost::Message::encoded_len).sum();
        assert!(
            sent.len() < 1000 && bytes <= PAGE_BYTES,
            "{} {bytes}",
            sent.len()
        );
        assert!(bytes + prost::Message::encoded_len(&long(0)) > PAGE_BYTES);
    }
}
