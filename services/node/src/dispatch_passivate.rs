//! The dispatcher's idle passivation and the stop of a tenant's actors
//! (before a rebuild): in-band commands, like checkpoints.

use super::Dispatcher;
use crate::error::{NodeError, Result};
use crate::registry::AccountKey;
use liveseg_core::Millis;
use liveseg_store::{AccountCheckpoint, CommitBatch, Seq};

impl Dispatcher {
    /// Stops accounts idle since `cutoff` after writing their final image.
    pub(super) async fn passivate(&mut self, cutoff: Millis) -> Result<usize> {
        let idle = self.registry.idle(cutoff);
        if idle.is_empty() {
            return Ok(0);
        }
        // The outbox must be able to write before any actor stops: its
        // changes are published before the images that include them.
        self.registry
            .outbox()
            .flush()
            .await
            .map_err(NodeError::from)?;
        let mut checkpoints = Vec::new();
        let mut stopped = Vec::new();
        for (key, actor) in idle {
            if let Ok(Ok((seq, bytes, due))) = actor.passivate().await {
                checkpoints.push(AccountCheckpoint {
                    tenant: key.0.to_string(),
                    account: key.1.clone(),
                    applied_seq: seq,
                    state: Some(bytes),
                });
                stopped.push((key, due));
            }
        }
        let n = stopped.len();
        if n > 0 {
            self.registry
                .outbox()
                .flush()
                .await
                .map_err(|e| NodeError::Internal(format!("change log: {}", e.message)))?;
            let batch = CommitBatch {
                checkpoints,
                directory: vec![],
                changes: vec![],
                watermark: None,
            };
            let store = self.store.clone();
            tokio::task::spawn_blocking(move || store.commit(&batch))
                .await
                .map_err(|e| NodeError::Internal(e.to_string()))?
                .map_err(|e| NodeError::Internal(format!("passivation commit: {e}")))?;
            let mut sleepers = self.sleepers.lock().unwrap_or_else(|p| p.into_inner());
            for (key, due) in stopped {
                self.registry.remove(&key);
                if let Some(due) = due {
                    sleepers.insert((due, key));
                }
            }
        }
        Ok(n)
    }

    /// Stops every resident actor of a tenant, returning their final images.
    pub(crate) async fn stop_tenant_actors(
        &self,
        tenant: &str,
    ) -> Result<Vec<(AccountKey, Seq, Vec<u8>)>> {
        let mut images = Vec::new();
        for (key, actor) in self.registry.resident(Some(tenant)) {
            let image: std::result::Result<_, _> = actor.passivate().await;
            match image {
                Ok(Ok((seq, bytes, _))) => images.push((key.clone(), seq, bytes)),
                Ok(Err(e)) => return Err(NodeError::Internal(e)),
                Err(_) => {}
            }
            self.registry.remove(&key);
        }
        Ok(images)
    }
}
