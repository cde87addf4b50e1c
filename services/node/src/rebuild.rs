//! Rebuilding a tenant's state after its segment definitions change (or a
//! checkpoint was built for other definitions): state is a function of the
//! log and the definitions, so the tenant's log is replayed into a fresh
//! engine, the new images are checkpointed at the dispatcher's position, and
//! the difference in membership is emitted as enter/exit records.
//!
//! Runs in-band in the dispatcher, so no event is applied meanwhile.

use crate::dispatch::{Dispatcher, decode};
use crate::error::{NodeError, Result};
use crate::host::Checkpoint;
use crate::tenant::TenantState;
use liveseg_core::engine::account_memberships;
use liveseg_core::{Account, Cause, Change, ChangeKind, Engine, Entity, Membership, SegmentSet};
use liveseg_store::{AccountCheckpoint, CommitBatch};
use std::collections::BTreeSet;
use std::sync::Arc;

pub async fn rebuild_tenant(
    d: &Dispatcher,
    tenant: &Arc<TenantState>,
    set: SegmentSet,
) -> Result<usize> {
    let old_set = tenant.set();
    // 1. Current memberships under the old definitions.
    let images = d.stop_tenant_actors(&tenant.id).await?;
    let mut old = BTreeSet::new();
    let mut seen = std::collections::HashSet::new();
    for (key, _, bytes) in &images {
        seen.insert(key.1.clone());
        collect(&old_set, bytes, &mut old);
    }
    let store = d.store.clone();
    let index = tokio::task::spawn_blocking(move || store.checkpoint_index())
        .await
        .map_err(|e| NodeError::Internal(e.to_string()))??;
    for (t, account, _) in index
        .iter()
        .filter(|(t, a, _)| t.as_str() == &*tenant.id && !seen.contains(a))
    {
        if let Some((_, bytes)) = d.store.load_checkpoint(t, account)? {
            collect(&old_set, &bytes, &mut old);
        }
    }
    // 2. Replay the tenant's log up to the dispatcher's position.
    let upto = d.dispatched();
    let now = d.clock.now();
    let log = d.log.clone();
    let tenant_id = tenant.id.to_string();
    let set2 = set.clone();
    let engine = tokio::task::spawn_blocking(move || -> Result<Engine> {
        let mut engine = Engine::new(set2);
        let mut scratch = Vec::new();
        let mut after = 0;
        'read: loop {
            let entries = log.read_after(after, 8192)?;
            if entries.is_empty() {
                break;
            }
            for e in entries {
                if e.seq > upto {
                    break 'read;
                }
                after = e.seq;
                if e.tenant == tenant_id
                    && let Ok(ev) = decode(&e.payload)
                {
                    engine.apply(&ev, now, &mut scratch);
                    scratch.clear();
                }
            }
        }
        engine.advance_all(now, &mut scratch);
        Ok(engine)
    })
    .await
    .map_err(|e| NodeError::Internal(e.to_string()))??;
    // 3. Checkpoint every rebuilt account at the dispatcher's position.
    let fingerprint = set.fingerprint();
    let mut checkpoints = Vec::new();
    for (id, account) in &engine.accounts {
        let image = Checkpoint {
            applied_seq: upto,
            fingerprint,
            account: account.clone(),
        };
        let bytes = image.encode().map_err(NodeError::Internal)?;
        checkpoints.push(AccountCheckpoint {
            tenant: tenant.id.to_string(),
            account: id.clone(),
            applied_seq: upto,
            state: Some(bytes),
        });
    }
    let n = checkpoints.len();
    let store = d.store.clone();
    let batch = CommitBatch {
        checkpoints,
        directory: vec![],
        changes: vec![],
        watermark: None,
    };
    tokio::task::spawn_blocking(move || store.commit(&batch))
        .await
        .map_err(|e| NodeError::Internal(e.to_string()))??;
    // 4. Swap the definitions, reset the index, and announce the differences.
    let new: BTreeSet<Membership> = engine.memberships().into_iter().collect();
    *tenant.set.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(set);
    {
        let mut index = tenant.index.write().unwrap_or_else(|p| p.into_inner());
        index.clear();
        for m in &new {
            index.insert((
                m.segment.clone(),
                m.account.clone(),
                entity(m.entity),
                m.id.clone(),
            ));
        }
    }
    let mut changes = Vec::new();
    for (m, kind) in old
        .difference(&new)
        .map(|m| (m, ChangeKind::Exit))
        .chain(new.difference(&old).map(|m| (m, ChangeKind::Enter)))
    {
        changes.push(Change {
            instant: now,
            segment: m.segment.clone(),
            entity: entity(m.entity),
            id: m.id.clone(),
            account: m.account.clone(),
            kind,
            cause: Cause::Redefined,
            seq: 0,
        });
    }
    if !changes.is_empty() {
        d.registry.outbox().send(tenant.id.clone(), changes);
    }
    // 5. Bring the accounts back so their timers run.
    for id in engine.accounts.keys() {
        d.registry.get(tenant, id, false)?;
    }
    tracing::info!(
        accounts = n,
        "tenant state rebuilt for new segment definitions"
    );
    Ok(n)
}

fn entity(name: &str) -> Entity {
    if name == "account" {
        Entity::Account
    } else {
        Entity::Contact
    }
}

fn collect(set: &SegmentSet, bytes: &[u8], out: &mut BTreeSet<Membership>) {
    if let Ok(image) = Checkpoint::decode(bytes) {
        // Images shaped by other definitions cannot be read bit by bit.
        if image.fingerprint == set.fingerprint() {
            let account: Account = image.account;
            let mut v = Vec::new();
            account_memberships(set, &account, &mut v);
            out.extend(v);
        }
    }
}
