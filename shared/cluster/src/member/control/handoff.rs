//! Make-before-break for planned moves, the member's part (the protocol is
//! in `coordinator::handoff`, the leader's split of moves in
//! `crate::handoff`).
//!
//! - The leader writes a planned move as an intent first, and the move
//!   itself once the target is ready (or the intent timed out).
//! - The owner named by an intent freezes the shard (its host writes a
//!   final checkpoint, then nothing more, and keeps answering) and stamps
//!   `frozen`; when the intent goes away without the shard being assigned
//!   elsewhere, it thaws it.
//! - The target named by a frozen intent loads a standby, and stamps
//!   `ready` once the standby is loaded and nobody has written the shard
//!   since its load began.
//!
//! Intents are read before the assignment in each step, and the leader
//! writes a move before it drops its intent: so an owner that finds its
//! intent gone also finds the move, if there is one, and drains rather
//! than thaws (a thaw writes, which would spoil the target's standby).

use super::Loop;
use crate::coordinator::{Freeze, Handoffs, Stamp};
use crate::handoff;
use crate::member::DrainDone;
use crate::placement::Move;
use std::collections::BTreeSet;

/// An owner's freeze of one shard for the intent `id`.
pub(super) struct Freezing {
    id: u64,
    done: DrainDone,
    stamped: bool,
}

impl Loop {
    /// The intents now, or `None` if they could not be read (then nothing
    /// is frozen or thawed in this step).
    pub(super) fn read_handoffs(&self) -> Option<Handoffs> {
        match self.coordinator.handoffs() {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::warn!(error = %e, "reading handoff intents failed");
                None
            }
        }
    }

    /// Leader: writes the moves that may go now, and keeps or starts the
    /// intents of the others. `fresh` is the nodes heard within
    /// `suspect_after`, read this round (`None`: the read failed, and no
    /// move from an owner is written, since which may wait is unknown).
    pub(super) fn write_moves(
        &mut self,
        epoch: u64,
        moves: &[Move],
        fresh: Option<&[String]>,
    ) -> liveseg_store::Result<()> {
        let existing = self.coordinator.handoffs()?;
        if moves.is_empty() && existing.intents.is_empty() {
            return Ok(());
        }
        let answering: BTreeSet<String> = match fresh {
            Some(fresh) => fresh.iter().cloned().collect(),
            None if moves.iter().any(|m| m.from.is_some()) => return Ok(()),
            None => BTreeSet::new(),
        };
        let timeout = self.config.handoff_timeout().as_millis() as i64;
        let split = handoff::split(
            moves,
            &answering,
            &existing.intents,
            existing.now_ms,
            timeout,
        );
        let me = self.config.node_id.clone();
        if !split.assign.is_empty() {
            let changes: Vec<(u32, Option<String>)> = split
                .assign
                .iter()
                .map(|(s, to)| (*s, Some(to.clone())))
                .collect();
            match self.coordinator.write_assignment(&me, epoch, &changes)? {
                Some(v) => tracing::info!(version = v, moves = changes.len(), "assignment written"),
                // Deposed: the intents are the next leader's to write.
                None => return Ok(()),
            }
        }
        if split.intents.is_empty() && existing.intents.is_empty() {
            return Ok(());
        }
        let ttl = self.config.handoff_timeout().as_millis() as u64;
        if self
            .coordinator
            .write_handoffs(&me, epoch, &split.intents, ttl)?
            && !split.intents.is_empty()
        {
            tracing::debug!(intents = ?split.intents, "handoff intents");
        }
        Ok(())
    }

    /// Owner: freezes the shards intents move away from this node (asking
    /// again every step while the intent stands: a runtime restarted after
    /// a failure comes back unfrozen), stamps the freezes that finished,
    /// and thaws shards whose intent is gone while the table, read fresh
    /// (`fresh`), moves them to no other node.
    pub(super) fn freeze_for_handoffs(&mut self, handoffs: &Handoffs, fresh: bool) {
        let me = self.config.node_id.clone();
        // Named the owner of a shard it does not serve (not acquired yet,
        // say, when it began to leave, or draining): nothing to wait for.
        for (s, h) in &handoffs.intents {
            let serving = self.held.get(s).is_some_and(|h| h.draining.is_none());
            if h.from == me && h.owner == Freeze::Pending && !serving {
                let refused = Stamp::Frozen(false);
                if let Err(e) = self.coordinator.stamp_handoff(*s, h.id, &me, refused) {
                    tracing::warn!(shard = s, error = %e, "refusing a handoff failed");
                }
            }
        }
        let shards: Vec<u32> = self.held.keys().copied().collect();
        for s in shards {
            let intent = handoffs
                .intents
                .get(&s)
                .filter(|h| h.from == me)
                .map(|h| h.id);
            let moved = self.assignment.owners.get(&s).is_some_and(|n| *n != me);
            let still_mine = fresh && !moved;
            let Some(h) = self.held.get_mut(&s).filter(|h| h.draining.is_none()) else {
                continue;
            };
            match (&mut h.freeze, intent) {
                (None, Some(id)) => {
                    let done = DrainDone::new();
                    h.freeze = Some(Freezing {
                        id,
                        done: done.clone(),
                        stamped: false,
                    });
                    tracing::info!(shard = s, id, "freezing for a handoff");
                    self.host.freeze(s, done);
                    continue;
                }
                // Another intent (say another target): nothing was written
                // since the freeze, so it serves this intent as well.
                (Some(f), Some(id)) if f.id != id => {
                    f.id = id;
                    f.stamped = false;
                }
                (Some(f), Some(_)) if f.stamped && f.done.outcome() == Some(true) && !moved => {
                    self.host.freeze(s, DrainDone::new());
                }
                // Called off. (Gone because the move was written: the
                // drain follows, and a thaw would write.)
                (Some(_), None) if still_mine => {
                    h.freeze = None;
                    tracing::info!(shard = s, "handoff called off: thawing");
                    self.host.thaw(s);
                    continue;
                }
                _ => {}
            }
            let Some(f) = h.freeze.as_mut().filter(|f| !f.stamped) else {
                continue;
            };
            let Some(frozen) = f.done.outcome() else {
                continue;
            };
            match self
                .coordinator
                .stamp_handoff(s, f.id, &me, Stamp::Frozen(frozen))
            {
                Ok(_) => f.stamped = true,
                Err(e) => tracing::warn!(shard = s, error = %e, "stamping a freeze failed"),
            }
        }
    }

    /// Target: loads standbys of the shards frozen for it, and says when
    /// each is ready.
    pub(super) fn prepare_handoffs(&mut self, handoffs: &Handoffs) {
        if self.quarantined() {
            return;
        }
        let me = &self.config.node_id;
        for (shard, h) in &handoffs.intents {
            if h.to != *me || h.owner != Freeze::Frozen || h.ready || self.held.contains_key(shard)
            {
                continue;
            }
            self.host.prepare_handoff(*shard);
            if !self.host.standby_ready(*shard) {
                continue;
            }
            match self
                .coordinator
                .stamp_handoff(*shard, h.id, me, Stamp::Ready)
            {
                Ok(true) => tracing::info!(shard, id = h.id, "standby ready for a handoff"),
                Ok(false) => {}
                Err(e) => tracing::warn!(shard, error = %e, "stamping a ready standby failed"),
            }
        }
    }
}
