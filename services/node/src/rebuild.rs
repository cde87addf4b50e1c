//! Rebuilding a tenant's state when what shapes it changes, and the
//! memberships that follow:
//! - **new segment definitions** (or a checkpoint built for other ones):
//!   state is a function of the log and the definitions, so the tenant's log
//!   is replayed into a fresh engine (`rebuild_tenant`);
//! - **new content** in the tenant's library: interest profiles do not
//!   depend on the library (`liveseg_core::interest`), so every account's
//!   current state is judged again under the new library, with no replay
//!   (`rejudge_tenant`): the cost follows the tenant's state, not its log.
//!
//! Either way the new images are checkpointed and the difference in
//! membership is emitted as enter/exit records. Both run in-band in the
//! dispatcher, so no event is applied meanwhile.

use crate::dispatch::{Dispatcher, decode};
use crate::error::{NodeError, Result};
use crate::host::{Checkpoint, CheckpointRef};
use crate::tenant::TenantState;
use liveseg_core::engine::account_memberships;
use liveseg_core::{Account, Cause, Change, ChangeKind, Engine, Entity, Membership, SegmentSet};
use liveseg_store::{AccountCheckpoint, CommitBatch, Seq};
use liveseg_telemetry::names;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The tenant's account images: the final images of its resident actors
/// (which are stopped) and the checkpoints of its passivated accounts.
struct Images(Vec<(String, Vec<u8>)>);

async fn gather(d: &Dispatcher, tenant: &TenantState) -> Result<Images> {
    let mut images: Vec<(String, Vec<u8>)> = d
        .stop_tenant_actors(&tenant.id)
        .await?
        .into_iter()
        .map(|(key, _, bytes)| (key.1, bytes))
        .collect();
    let seen: std::collections::HashSet<String> = images.iter().map(|i| i.0.clone()).collect();
    let store = d.store.clone();
    let index = tokio::task::spawn_blocking(move || store.checkpoint_index())
        .await
        .map_err(|e| NodeError::Internal(e.to_string()))??;
    for (t, account, _) in index
        .iter()
        .filter(|(t, a, _)| t.as_str() == &*tenant.id && !seen.contains(a))
    {
        if let Some((_, bytes)) = d.store.load_checkpoint(t, account)? {
            images.push((account.clone(), bytes));
        }
    }
    Ok(Images(images))
}

impl Images {
    /// Memberships under `set`, from the images it shaped.
    fn memberships(&self, set: &SegmentSet) -> BTreeSet<Membership> {
        let mut out = BTreeSet::new();
        for (_, bytes) in &self.0 {
            collect(set, bytes, &mut out);
        }
        out
    }
}

/// Rebuilds the tenant's state under `set` (new definitions, or images of
/// another shape) by replaying its log.
pub async fn rebuild_tenant(
    d: &Dispatcher,
    tenant: &Arc<TenantState>,
    set: SegmentSet,
) -> Result<usize> {
    let images = gather(d, tenant).await?;
    replay(d, tenant, set, images).await
}

/// Installs a set that differs from the tenant's only in its content
/// library: each account's state is judged again under it. Falls back to a
/// replay when the set has another shape or an image cannot be read.
pub async fn rejudge_tenant(
    d: &Dispatcher,
    tenant: &Arc<TenantState>,
    set: SegmentSet,
) -> Result<usize> {
    let old_set = tenant.set();
    let images = gather(d, tenant).await?;
    let fingerprint = set.fingerprint();
    let decoded: Option<Vec<(String, Seq, Account)>> = (old_set.fingerprint() == fingerprint)
        .then(|| {
            images
                .0
                .iter()
                .map(|(id, bytes)| {
                    let image = Checkpoint::decode(bytes).ok()?;
                    (image.fingerprint == fingerprint)
                        .then(|| (id.clone(), image.applied_seq, image.account.restore()))
                })
                .collect()
        })
        .flatten();
    let Some(decoded) = decoded else {
        tracing::info!("content changed the shape of the tenant's state; replaying its log");
        return replay(d, tenant, set, images).await;
    };
    drop(images);
    let mut old = BTreeSet::new();
    let mut scratch = Vec::new();
    for (_, _, account) in &decoded {
        account_memberships(&old_set, account, &mut scratch);
        old.extend(scratch.drain(..));
    }
    let now = d.clock.now();
    let accounts = tokio::task::spawn_blocking(move || {
        let mut scratch = Vec::new();
        let accounts: BTreeMap<String, (Seq, Account)> = decoded
            .into_iter()
            .map(|(id, seq, mut account)| {
                account.rejudge_all(&set, &mut scratch);
                account.advance_to(&set, now, &mut scratch);
                scratch.clear();
                (id, (seq, account))
            })
            .collect();
        (set, accounts)
    })
    .await
    .map_err(|e| NodeError::Internal(e.to_string()))?;
    let (set, accounts) = accounts;
    let n = finish(d, tenant, set, accounts, old, now).await?;
    metrics::counter!(names::TENANT_REBUILDS_TOTAL, names::label::KIND => "rejudge").increment(1);
    tracing::info!(accounts = n, "tenant judged again for new content");
    Ok(n)
}

/// Replays the tenant's log up to the dispatcher's position under `set`.
async fn replay(
    d: &Dispatcher,
    tenant: &Arc<TenantState>,
    set: SegmentSet,
    images: Images,
) -> Result<usize> {
    let old = images.memberships(&tenant.set());
    drop(images);
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
    let accounts = engine
        .accounts
        .into_iter()
        .map(|(id, a)| (id, (upto, a)))
        .collect();
    let n = finish(d, tenant, set, accounts, old, now).await?;
    metrics::counter!(names::TENANT_REBUILDS_TOTAL, names::label::KIND => "replay").increment(1);
    tracing::info!(accounts = n, "tenant state rebuilt from its log");
    Ok(n)
}

/// Checkpoints the new state of every account (each at the log position
/// its state reflects), swaps the set, resets the membership index,
/// announces the differences from `old`, and brings the accounts back so
/// their timers run.
async fn finish(
    d: &Dispatcher,
    tenant: &Arc<TenantState>,
    set: SegmentSet,
    accounts: BTreeMap<String, (Seq, Account)>,
    old: BTreeSet<Membership>,
    now: liveseg_core::Millis,
) -> Result<usize> {
    let fingerprint = set.fingerprint();
    let mut checkpoints = Vec::new();
    let mut new = BTreeSet::new();
    let mut scratch = Vec::new();
    for (id, (seq, account)) in &accounts {
        account_memberships(&set, account, &mut scratch);
        new.extend(scratch.drain(..));
        let bytes = CheckpointRef {
            applied_seq: *seq,
            fingerprint,
            library: set.content.digest(),
            account,
        }
        .encode()
        .map_err(NodeError::Internal)?;
        checkpoints.push(AccountCheckpoint {
            tenant: tenant.id.to_string(),
            account: id.clone(),
            applied_seq: *seq,
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
    // Swap the set, reset the index, and announce the differences.
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
    // A query may have woken an account from its older stored checkpoint
    // while this ran (nothing else was dispatched to it meanwhile): such an
    // actor holds stale state under the old set, so it goes, unsaved.
    for (key, _, _) in d.stop_tenant_actors(&tenant.id).await? {
        tracing::info!(account = %liveseg_telemetry::redact_id(&key.1), "account woken during a rebuild; reloaded");
    }
    // Bring the accounts back so their timers run.
    for id in accounts.keys() {
        d.registry.get(tenant, id, false)?;
    }
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
