//! `liveseg serve --cluster`: the flags of cluster mode. Unset timers keep
//! the production defaults of `MemberConfig::new`; `--test-timers` selects
//! the fault-test timers (2 s lease) the process-level tests use.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use liveseg_cluster::member::MemberConfig;
use liveseg_node::cluster::ClusterConfig;

use crate::args::parse_duration;
use crate::exit::usage;

#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Cluster mode")]
pub struct ClusterArgs {
    /// Serve as a member of a cluster whose state lives in Redis.
    #[arg(long, env = "LIVESEG_CLUSTER")]
    pub cluster: bool,
    /// Redis URL the cluster shares [default: redis://127.0.0.1:6379/].
    #[arg(long, env = "LIVESEG_REDIS_URL", value_name = "URL")]
    pub redis_url: Option<String>,
    /// Shard count, fixed for the life of the cluster [default: 64].
    #[arg(long, env = "LIVESEG_SHARDS", value_name = "N")]
    pub shards: Option<u32>,
    /// Readable prefix of this node's id (the id adds pid and start time).
    #[arg(long, env = "LIVESEG_NODE_NAME", value_name = "NAME")]
    pub node_name: Option<String>,
    /// Address other nodes and clients reach this node at [default: the bound address].
    #[arg(long, env = "LIVESEG_ADVERTISE", value_name = "HOST:PORT")]
    pub advertise: Option<String>,
    /// Use the fault-test timers: 2 s lease, 1.5 s death detection, 100 ms loop.
    #[arg(long, env = "LIVESEG_TEST_TIMERS")]
    pub test_timers: bool,
    /// Shard lease TTL; owners renew every third of it [default: 10s].
    #[arg(long, env = "LIVESEG_LEASE_TTL", value_parser = parse_duration, value_name = "DURATION")]
    pub lease_ttl: Option<Duration>,
    /// A node silent this long is dead for placement [default: 6s].
    #[arg(long, env = "LIVESEG_DEAD_AFTER", value_parser = parse_duration, value_name = "DURATION")]
    pub dead_after: Option<Duration>,
    /// How long a graceful handoff of one shard may take [default: 10s].
    #[arg(long, env = "LIVESEG_DRAIN_TIMEOUT", value_parser = parse_duration, value_name = "DURATION")]
    pub drain_timeout: Option<Duration>,
    /// Most shard moves per placement round [default: 16].
    #[arg(long, env = "LIVESEG_MAX_MOVES", value_name = "N")]
    pub max_moves: Option<usize>,
    /// Vouch that Redis never loses an acknowledged write (one instance, AOF
    /// with `appendfsync always`, no failover to an asynchronous replica):
    /// nodes then skip the one-lease quarantine after a Redis restart,
    /// resume shards whose lease lapsed while Redis was away instead of
    /// reloading them, load standbys of a silent owner's shards ahead of
    /// its lease, and hand planned moves off make-before-break (the owner
    /// keeps answering while the next one loads), if Redis also reports
    /// that configuration.
    #[arg(long, env = "LIVESEG_REDIS_DURABLE")]
    pub redis_durable: bool,
    /// Append ownership changes (on CLOCK_MONOTONIC) to this JSON-lines file.
    #[arg(long, env = "LIVESEG_OWNERSHIP_JOURNAL", value_name = "FILE")]
    pub ownership_journal: Option<PathBuf>,
}

impl ClusterArgs {
    /// The cluster settings, or `None` for a standalone node.
    pub fn config(&self) -> Result<Option<ClusterConfig>> {
        if !self.cluster {
            let given = self.redis_url.is_some() || self.shards.is_some();
            if given {
                return Err(usage(
                    "--redis-url and --shards need --cluster (or LIVESEG_CLUSTER=true)",
                ));
            }
            return Ok(None);
        }
        let shards = self.shards.unwrap_or(64);
        if shards == 0 || shards > 16_384 {
            return Err(usage("--shards: must be between 1 and 16384"));
        }
        let mut member = if self.test_timers {
            MemberConfig::test("", "", shards)
        } else {
            MemberConfig::new("", "", shards)
        };
        if let Some(v) = self.lease_ttl {
            if v < Duration::from_millis(500) {
                return Err(usage("--lease-ttl: must be at least 500ms"));
            }
            member.lease_ttl = v;
            member.leader_ttl = v / 2;
        }
        if let Some(v) = self.dead_after {
            member.dead_after = v;
        }
        if let Some(v) = self.drain_timeout {
            member.drain_timeout = v;
        }
        if let Some(v) = self.max_moves {
            member.max_moves = v.max(1);
        }
        member.journal = self.ownership_journal.clone();
        member.redis_durable = self.redis_durable;
        let mut c = ClusterConfig {
            member,
            ..ClusterConfig::new(
                self.redis_url
                    .as_deref()
                    .unwrap_or("redis://127.0.0.1:6379/"),
                shards,
            )
        };
        if let Some(n) = &self.node_name {
            c.node_name = n.clone();
        }
        c.advertise = self.advertise.clone();
        Ok(Some(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standalone_unless_cluster_is_set() {
        assert!(ClusterArgs::default().config().expect("ok").is_none());
        let stray = ClusterArgs {
            shards: Some(8),
            ..ClusterArgs::default()
        };
        assert!(stray.config().is_err());
    }

    #[test]
    fn test_timers_and_overrides_apply() {
        let a = ClusterArgs {
            cluster: true,
            shards: Some(8),
            test_timers: true,
            drain_timeout: Some(Duration::from_secs(3)),
            ..ClusterArgs::default()
        };
        let c = a.config().expect("ok").expect("cluster");
        assert_eq!(c.member.shards, 8);
        assert_eq!(c.member.lease_ttl, Duration::from_secs(2));
        assert_eq!(c.member.drain_timeout, Duration::from_secs(3));
        assert_eq!(c.redis_url, "redis://127.0.0.1:6379/");
        let zero = ClusterArgs {
            cluster: true,
            shards: Some(0),
            ..ClusterArgs::default()
        };
        assert!(zero.config().is_err());
    }
}
