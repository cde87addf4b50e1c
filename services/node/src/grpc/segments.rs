//! SegmentService: definitions as data. Every change recompiles the
//! tenant's whole set (so references and cycles are checked) and rebuilds
//! the tenant's state from the log in-band in the dispatcher.

use super::content::{compile_for_tenant, install, library_for_checks};
use super::{Scope, tenant_of};
use crate::error::NodeError;
use crate::server::NodeInner;
use crate::tenant::TenantState;
use liveseg_core::definition::{SegmentDefinition, ValidationError, parse_definitions};
use liveseg_core::presets::presets;
use liveseg_core::{SegmentSet, compile::SUPPRESSED_KEY};
use liveseg_proto::pb;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct SegmentsApi(pub Arc<NodeInner>);

pub(crate) fn invalid(errors: &[ValidationError]) -> Status {
    let text = errors
        .iter()
        .map(|e| {
            format!(
                "{}: {}",
                if e.path.is_empty() { "(root)" } else { &e.path },
                e.reason
            )
        })
        .collect::<Vec<_>>();
    Status::invalid_argument(format!("invalid segment definition: {}", text.join("; ")))
}

fn one_definition(text: &str) -> Result<SegmentDefinition, Status> {
    let mut defs = parse_definitions(text).map_err(|e| invalid(&e))?;
    if defs.len() != 1 {
        return Err(Status::invalid_argument(
            "definition: send exactly one segment definition per call",
        ));
    }
    Ok(defs.remove(0))
}

fn to_pb(def: &SegmentDefinition, revision: u64) -> pb::Segment {
    let json = serde_json::to_string(def).unwrap_or_default();
    let preset = presets().iter().any(|p| p == def);
    pb::Segment {
        key: def.key.clone(),
        name: def.name.clone(),
        entity: def.entity.as_str().into(),
        definition_json: json,
        revision,
        preset,
    }
}

impl SegmentsApi {
    fn stored(&self, tenant: &TenantState) -> Result<Vec<(SegmentDefinition, u64)>, NodeError> {
        let mut out = Vec::new();
        for (key, json, rev) in self.0.catalog.segments(&tenant.id)? {
            let def = serde_json::from_str(&json)
                .map_err(|e| NodeError::Internal(format!("stored definition {key}: {e}")))?;
            out.push((def, rev));
        }
        Ok(out)
    }

    /// Compiles `defs` against the tenant's content, embedding new topic texts.
    async fn compile(
        &self,
        tenant: &TenantState,
        defs: &[SegmentDefinition],
    ) -> Result<SegmentSet, Status> {
        compile_for_tenant(&self.0, &tenant.id, defs).await
    }
}

#[tonic::async_trait]
impl pb::segment_service_server::SegmentService for SegmentsApi {
    #[tracing::instrument(skip_all, fields(tenant))]
    async fn apply_segment(
        &self,
        req: Request<pb::ApplySegmentRequest>,
    ) -> Result<Response<pb::Segment>, Status> {
        let Scope { rt, tenant } = tenant_of(&self.0, &req)?;
        let def = one_definition(&req.get_ref().definition)?;
        let _guard = rt.lock_definitions().await?;
        let mut defs: Vec<SegmentDefinition> = self
            .stored(&tenant)?
            .into_iter()
            .map(|(d, _)| d)
            .filter(|d| d.key != def.key)
            .collect();
        defs.push(def.clone());
        // Check before storing anything: a definition that breaks the set is rejected whole.
        let set = self.compile(&tenant, &defs).await?;
        let json = serde_json::to_string(&def).map_err(|e| NodeError::Internal(e.to_string()))?;
        let revision = self
            .0
            .catalog
            .put_segment(&tenant.id, &def.key, &json)
            .map_err(NodeError::from)?;
        install(&rt, &tenant, set).await?;
        Ok(Response::new(to_pb(&def, revision)))
    }

    async fn get_segment(
        &self,
        req: Request<pb::GetSegmentRequest>,
    ) -> Result<Response<pb::Segment>, Status> {
        let Scope { tenant, .. } = tenant_of(&self.0, &req)?;
        let key = &req.get_ref().key;
        self.stored(&tenant)?
            .into_iter()
            .find(|(d, _)| &d.key == key)
            .map(|(d, r)| Response::new(to_pb(&d, r)))
            .ok_or_else(|| Status::not_found(format!("segment '{key}' not found")))
    }

    #[tracing::instrument(skip_all, fields(tenant))]
    async fn delete_segment(
        &self,
        req: Request<pb::DeleteSegmentRequest>,
    ) -> Result<Response<pb::DeleteSegmentResponse>, Status> {
        let Scope { rt, tenant } = tenant_of(&self.0, &req)?;
        let key = req.get_ref().key.clone();
        if key == SUPPRESSED_KEY {
            return Err(Status::failed_precondition(
                "key: the system segment cannot be deleted",
            ));
        }
        let _guard = rt.lock_definitions().await?;
        let all: Vec<SegmentDefinition> =
            self.stored(&tenant)?.into_iter().map(|(d, _)| d).collect();
        if !all.iter().any(|d| d.key == key) {
            return Ok(Response::new(pb::DeleteSegmentResponse { deleted: false }));
        }
        let rest: Vec<SegmentDefinition> = all.into_iter().filter(|d| d.key != key).collect();
        let set = self
            .compile(&tenant, &rest)
            .await
            .map_err(|e| match e.code() {
                // Only a definition problem means another segment needs this one.
                tonic::Code::InvalidArgument => Status::failed_precondition(format!(
                    "other segments still use '{key}': {}",
                    e.message()
                )),
                _ => e,
            })?;
        let deleted = self
            .0
            .catalog
            .delete_segment(&tenant.id, &key)
            .map_err(NodeError::from)?;
        install(&rt, &tenant, set).await?;
        Ok(Response::new(pb::DeleteSegmentResponse { deleted }))
    }

    async fn list_segments(
        &self,
        req: Request<pb::ListSegmentsRequest>,
    ) -> Result<Response<pb::ListSegmentsResponse>, Status> {
        let Scope { tenant, .. } = tenant_of(&self.0, &req)?;
        let segments = self
            .stored(&tenant)?
            .iter()
            .map(|(d, r)| to_pb(d, *r))
            .collect();
        Ok(Response::new(pb::ListSegmentsResponse { segments }))
    }

    async fn validate_segment(
        &self,
        req: Request<pb::ValidateSegmentRequest>,
    ) -> Result<Response<pb::ValidateSegmentResponse>, Status> {
        let Scope { tenant, .. } = tenant_of(&self.0, &req)?;
        let mut out = pb::ValidateSegmentResponse::default();
        let errors = match parse_definitions(&req.get_ref().definition) {
            Err(e) => e,
            Ok(defs) if defs.len() != 1 => vec![ValidationError::new(
                "",
                "send exactly one segment definition",
            )],
            Ok(mut defs) => {
                let def = defs.remove(0);
                let mut all: Vec<SegmentDefinition> = self
                    .stored(&tenant)?
                    .into_iter()
                    .map(|(d, _)| d)
                    .filter(|d| d.key != def.key)
                    .collect();
                all.push(def.clone());
                let lib = library_for_checks(&self.0, &tenant.id, &all)?;
                match SegmentSet::compile_with(&all, Arc::new(lib)) {
                    Ok(_) => {
                        out.normalized_json =
                            serde_json::to_string_pretty(&def).unwrap_or_default();
                        vec![]
                    }
                    Err(e) => e,
                }
            }
        };
        out.valid = errors.is_empty();
        out.errors = errors
            .into_iter()
            .map(|e| pb::ValidationError {
                path: e.path,
                reason: e.reason,
            })
            .collect();
        Ok(Response::new(out))
    }

    async fn list_presets(
        &self,
        _req: Request<pb::ListPresetsRequest>,
    ) -> Result<Response<pb::ListSegmentsResponse>, Status> {
        let segments = presets().iter().map(|d| to_pb(d, 0)).collect();
        Ok(Response::new(pb::ListSegmentsResponse { segments }))
    }
}
