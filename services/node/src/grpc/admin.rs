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
        // Every runtime of this node (in cluster mode: the shards it serves).
        let mut n = 0;
        for rt in self.0.runtimes() {
            n += rt.ask(Command::Checkpoint).await?;
        }
        Ok(Response::new(pb::CheckpointResponse { accounts: n as u32 }))
    }

    async fn stats(
        &self,
        req: Request<pb::StatsRequest>,
    ) -> Result<Response<pb::NodeStats>, Status> {
        self.any_key(&req)?;
        // Sums over this node's runtimes (in cluster mode: its shards, whose
        // logs are numbered separately).
        let mut stats = pb::NodeStats::default();
        for rt in self.0.runtimes() {
            let log = rt.log.clone();
            stats.log_head += tokio::task::spawn_blocking(move || log.head())
                .await
                .map_err(|e| NodeError::Internal(e.to_string()))?
                .map_err(NodeError::from)?;
            stats.events_applied += rt.progress.applied.load(Ordering::Acquire);
            stats.applied_seq += rt.progress.dispatched.load(Ordering::Acquire);
            stats.resident_accounts += rt.registry.len() as u64;
            stats.resident_contacts += rt
                .tenants
                .all()
                .iter()
                .map(|t| t.directory.read().map_or(0, |d| d.len()) as u64)
                .sum::<u64>();
        }
        Ok(Response::new(stats))
    }

    async fn create_tenant(
        &self,
        req: Request<pb::CreateTenantRequest>,
    ) -> Result<Response<pb::CreateTenantResponse>, Status> {
        let key = key_of(&req).ok_or(NodeError::Unauthenticated)?;
        self.0.auth.require_admin(&key)?;
        let name = req.into_inner().name;
        let now = self.0.clock.now();
        // The runtime that serves the tenant loads it on first use.
        let (tenant, api_key) = crate::auth::create_tenant(self.0.catalog.as_ref(), &name, now)?;
        Ok(Response::new(pb::CreateTenantResponse { tenant, api_key }))
    }
}
