//! Standbys: loading a shard before its owner is found dead.
//!
//! A crash takeover waits for death detection and for the old lease to run
//! out (about a lease TTL after the crash), and only then loads the shard:
//! checkpoints, directories, stream tail and membership index, O(state),
//! seconds for a large shard on a busy machine. Loading needs no lease (it
//! only reads), so it can overlap that wait: once an owner has been silent
//! for `suspect_after`, the leader names where its shards would go if it
//! were dead (`placement::standby_moves`), and those nodes load them while
//! the lease runs out. The acquisition then finds the shard loaded and only
//! reads the stream written since.
//!
//! The names are advice and carry no safety: a node still acquires the
//! lease before it serves, and its host serves from a standby only if
//! nobody wrote the shard's state since the standby was loaded.

use super::{Loop, ns};
use crate::journal::mono_ns;
use crate::placement::{self, PlacementInput};

impl Loop {
    /// Whether this node's own heartbeats landed within `suspect_after`:
    /// a node that cannot reach Redis cannot tell who else is silent.
    pub(super) fn heard_recently(&self) -> bool {
        mono_ns() - self.last_heartbeat_ns <= ns(self.config.suspect_after())
    }

    /// Leader, every round: names standbys for the shards of live nodes
    /// silent for `suspect_after`. Best effort; the names expire after
    /// `dead_after` unless a round names them again, and a round with none
    /// to name clears those of the round before (a suspect that spoke
    /// again) or of the leader before. They outlive a few slow rounds, and
    /// a leader's death: the round that finds an owner dead reads them to
    /// give its shards to the nodes loading them, and its leader's steps
    /// can be far apart on a machine busy with those loads. (With names
    /// that expired after three 100 ms ticks, a mix run's dead round gave
    /// two shards to a node that had loaded neither, 2.8 s full loads,
    /// while their standbys loaded elsewhere: most likely names that had
    /// expired between two slow rounds.)
    pub(super) fn name_standbys(&mut self, epoch: u64, input: &PlacementInput<'_>) {
        let named = if self.heard_recently() {
            self.standbys_for_suspects(input)
        } else {
            Vec::new()
        };
        if named.is_empty() && !self.named_standbys {
            return;
        }
        let ttl = self.config.dead_after.max(self.config.tick * 3).as_millis() as u64;
        match self
            .coordinator
            .write_standby(&self.config.node_id, epoch, &named, ttl)
        {
            Ok(true) => {
                tracing::debug!(?named, "standbys named");
                self.named_standbys = !named.is_empty();
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "naming standbys failed"),
        }
    }

    /// Where the shards of live nodes silent for `suspect_after` would go.
    fn standbys_for_suspects(&self, input: &PlacementInput<'_>) -> Vec<(u32, String)> {
        let suspect_after = self.config.suspect_after().as_millis() as u64;
        let fresh = match self.coordinator.live_nodes(suspect_after) {
            Ok(fresh) => fresh,
            Err(e) => {
                tracing::warn!(error = %e, "reading recent heartbeats failed");
                return Vec::new();
            }
        };
        let suspects: Vec<String> = input
            .live
            .iter()
            .map(|n| n.id.clone())
            .filter(|id| *id != self.config.node_id && !fresh.contains(id))
            .collect();
        if suspects.is_empty() {
            return Vec::new();
        }
        placement::standby_moves(input, &suspects)
            .into_iter()
            .map(|m| (m.shard, m.to))
            .collect()
    }

    /// Every node, every step: asks the host to prepare the shards the
    /// leader names this node the standby of, unless it holds them.
    pub(super) fn prepare_standbys(&mut self) {
        if self.quarantined() || !self.heard_recently() {
            return;
        }
        let named = match self.coordinator.standby() {
            Ok(named) => named,
            Err(e) => {
                tracing::warn!(error = %e, "reading standby names failed");
                return;
            }
        };
        for (shard, node) in named {
            if node == self.config.node_id && !self.held.contains_key(&shard) {
                self.host.prepare(shard);
            }
        }
    }
}
