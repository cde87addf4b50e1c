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

    /// Leader, every round: names standbys (`placement::standby_names`)
    /// for the shards of live nodes silent for `suspect_after`, and keeps
    /// the names of shards whose owner was found dead until a round places
    /// them. `fresh` is the nodes heard within `suspect_after`, `None` if
    /// it could not be read. Best effort: the names expire after
    /// `dead_after` unless a round names them again, and a round with none
    /// to name clears those of the round before (a suspect that spoke
    /// again) or of the leader before. They outlive a few slow rounds and
    /// a leader's death: the round that places a dead owner's shards reads
    /// them, and its leader's steps can be far apart on a machine busy
    /// with those very loads. (With names that expired after three 100 ms
    /// ticks, a mix run's dead round gave two shards to a node that had
    /// loaded neither, 2.8 s full loads, while their standbys loaded
    /// elsewhere.) A leader that cannot tell who is silent (its own beats
    /// are late, or the read failed) leaves the names as they stand: names
    /// it cleared would be named afresh, perhaps on a node that joined
    /// meanwhile. (Most likely what happened in another mix run: a leader
    /// loading three standbys on itself cleared their names, and two of
    /// the shards went to a joiner that had loaded nothing.)
    pub(super) fn name_standbys(
        &mut self,
        epoch: u64,
        input: &PlacementInput<'_>,
        fresh: Option<&[String]>,
    ) {
        let Some(fresh) = fresh.filter(|_| self.heard_recently()) else {
            return;
        };
        let suspects: Vec<String> = input
            .live
            .iter()
            .map(|n| n.id.clone())
            .filter(|id| *id != self.config.node_id && !fresh.contains(id))
            .collect();
        let named = placement::standby_names(input, &suspects);
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

    /// The nodes heard within `suspect_after` and the standbys named last
    /// round whose node is among them, shard -> node (a named node that
    /// has gone silent since is no place to put a shard). Both best
    /// effort: on a failed read, `None` and no names.
    pub(super) fn fresh_and_named(&self) -> (Option<Vec<String>>, Vec<Option<String>>) {
        let suspect_after = self.config.suspect_after().as_millis() as u64;
        let fresh = self
            .coordinator
            .live_nodes(suspect_after)
            .inspect_err(|e| tracing::warn!(error = %e, "reading recent heartbeats failed"))
            .ok();
        let mut named = vec![None; self.config.shards as usize];
        let Some(fresh) = fresh else {
            return (None, named);
        };
        match self.coordinator.standby() {
            Ok(standing) => {
                for (shard, node) in standing {
                    if let Some(slot) = named.get_mut(shard as usize)
                        && fresh.contains(&node)
                    {
                        *slot = Some(node);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading standby names failed"),
        }
        (Some(fresh), named)
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
