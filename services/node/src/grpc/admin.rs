//! AdminService: the manual clock, checkpoints, stats and tenant creation.

use super::key_of;
use crate::dispatch::Command;
use crate::error::NodeError;
use crate::server::NodeInner;
use liveseg_core::time::{format_rfc3339, parse_rfc3339};
use liveseg_proto::pb;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tonic::{Request, Response, Status};

pub struct AdminApi(pub Arc<NodeInner>);

impl AdminApi {
    fn any_key<T>(&self, req: &Request<T>) -> Result<String, Status> {
        let key = key_of(req).ok_or(NodeError::Unauthenticated)?;
        Ok(self.0.auth.resolve(&key)?)
    }

    fn reading(&self) -> pb::ClockReading {
        pb::ClockReading {
            now: format_rfc3339(self.0.clock.now()),
            manual: self.0.clock.is_manual(),
        }
    }
}

#[tonic::async_trait]
impl pb::admin_service_server::AdminService for AdminApi {
    async fn get_clock(
        &self,
        req: Request<pb::GetClockRequest>,
    ) -> Result<Response<pb::ClockReading>, Status> {
        self.any_key(&req)?;
        Ok(Response::new(self.reading()))
    }

    async fn advance_clock(
        &self,
        req: Request<pb::AdvanceClockRequest>,
    ) -> Result<Response<pb::ClockReading>, Status> {
        self.any_key(&req)?;
        let to = parse_rfc3339(&req.get_ref().to)
            .map_err(|e| Status::invalid_argument(format!("to: {e}")))?;
        self.0
            .clock
            .advance_to(to)
            .map_err(Status::failed_precondition)?;
        Ok(Response::new(self.reading()))
    }

    async fn checkpoint(
        &self,
        req: Request<pb::CheckpointRequest>,
    ) -> Result<Response<pb::CheckpointResponse>, Status> {
        self.any_key(&req)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.0
            .dispatch
            .send(Command::Checkpoint(tx))
            .await
            .map_err(|_| NodeError::ShuttingDown)?;
        let n = rx.await.map_err(|_| NodeError::ShuttingDown)??;
        Ok(Response::new(pb::CheckpointResponse { accounts: n as u32 }))
    }

    async fn stats(
        &self,
        req: Request<pb::StatsRequest>,
    ) -> Result<Response<pb::NodeStats>, Status> {
        self.any_key(&req)?;
        let head = liveseg_store::EventLog::head(self.0.store.as_ref()).map_err(NodeError::from)?;
        let p = &self.0.progress;
        Ok(Response::new(pb::NodeStats {
            events_applied: p.applied.load(Ordering::Acquire),
            resident_accounts: self.0.registry.len() as u64,
            resident_contacts: self
                .0
                .tenants
                .all()
                .iter()
                .map(|t| t.directory.read().map_or(0, |d| d.len()) as u64)
                .sum(),
            log_head: head,
            membership_changes: 0,
            applied_seq: p.dispatched.load(Ordering::Acquire),
        }))
    }

    async fn create_tenant(
        &self,
        req: Request<pb::CreateTenantRequest>,
    ) -> Result<Response<pb::CreateTenantResponse>, Status> {
        let key = key_of(&req).ok_or(NodeError::Unauthenticated)?;
        self.0.auth.require_admin(&key)?;
        let name = req.into_inner().name;
        let now = self.0.clock.now();
        let (tenant, api_key) = crate::auth::create_tenant(self.0.store.as_ref(), &name, now)?;
        crate::server::load_tenant(&self.0.store, &self.0.tenants, &tenant)?;
        Ok(Response::new(pb::CreateTenantResponse { tenant, api_key }))
    }
}
