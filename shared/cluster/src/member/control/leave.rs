//! A graceful leave, step by step: the node hands its shards off while it
//! still answers, then leaves the live set.

use super::{Loop, ns};
use crate::coordinator::Coordinator;
use crate::journal::mono_ns;

impl Loop {
    /// Leaving, one step; true when done. The node stops leading, marks
    /// itself leaving and keeps heartbeating, renewing and answering: the
    /// leader places nothing more on it and hands its shards off like any
    /// planned move (each frozen here while its next owner loads it), and
    /// this node drains each one once the table moves it. It leaves the
    /// live set once it holds nothing, on the loop's own thread: a step
    /// already under way would otherwise heartbeat again after a removal
    /// made from outside. With nobody to hand off to (no other staying
    /// node; no leader for a leader TTL and three ticks), or past
    /// `leave_timeout` as a backstop, it leaves the live set and drains
    /// everything at once, so the leader moves what it drained without a
    /// handoff.
    pub(super) fn leave_step(&mut self) -> bool {
        let now = mono_ns();
        let started = *self.leave_started_ns.get_or_insert(now);
        if let Some(e) = self.leader_epoch.take() {
            let _ = self
                .leases
                .release_at(Coordinator::leader_prefix(), &self.config.node_id, e);
        }
        // Renewals first, as in `step`.
        self.expire_and_renew();
        let forced = now - started >= ns(self.config.leave_timeout())
            || self.left_live_set
            || self.nobody_to_take_over(now);
        if !self.left_live_set && !forced {
            let ttl = (self.config.dead_after * 3).as_millis() as u64;
            if let Err(e) = self.coordinator.mark_leaving(&self.config.node_id, ttl) {
                tracing::warn!(error = %e, "marking this node as leaving failed; retrying");
            }
            self.heartbeat();
        }
        let handoffs = self.read_handoffs();
        let fresh = self.refresh_assignment();
        if let Some(h) = &handoffs {
            self.freeze_for_handoffs(h, fresh);
        }
        self.drain_unassigned();
        if forced {
            if !self.left_live_set {
                self.leave_live_set();
            }
            let shards: Vec<u32> = self
                .held
                .iter()
                .filter(|(_, h)| h.draining.is_none())
                .map(|(s, _)| *s)
                .collect();
            for s in shards {
                self.start_drain(s);
            }
        }
        self.finish_drains();
        if self.held.is_empty() && !self.left_live_set {
            self.leave_live_set();
        }
        self.held.is_empty() && self.left_live_set
    }

    /// Whether a leave has nobody to hand off to: no other node is live
    /// and staying, or no leader has been seen for a leader TTL and a few
    /// ticks (a whole cluster stopping, the last node of one). Then there
    /// is nothing to wait for. Unknown (Redis away) counts as someone.
    fn nobody_to_take_over(&mut self, now: i64) -> bool {
        let me = &self.config.node_id;
        let dead_after = self.config.dead_after.as_millis() as u64;
        let staying = self.coordinator.live_nodes(dead_after).and_then(|live| {
            let others: Vec<String> = live.into_iter().filter(|n| n != me).collect();
            let leaving = self.coordinator.leaving(&others)?;
            Ok(others.len() > leaving.len())
        });
        if matches!(staying, Ok(false)) {
            return true;
        }
        match self.coordinator.leader() {
            Ok(None) => {
                let since = *self.leaderless_since_ns.get_or_insert(now);
                now - since >= ns(self.config.leader_ttl + self.config.tick * 3)
            }
            _ => {
                self.leaderless_since_ns = None;
                false
            }
        }
    }

    fn leave_live_set(&mut self) {
        match self.coordinator.leave(&self.config.node_id) {
            Ok(()) => self.left_live_set = true,
            Err(e) => tracing::warn!(error = %e, "leaving the live set failed; retrying"),
        }
    }
}
