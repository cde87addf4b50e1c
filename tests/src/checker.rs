//! The fault checker: from the load generator's ledger, the prober's
//! samples, the nodes' ownership journals and Redis's commit audit, it
//! computes the figures the guarantees are judged on and writes them as a
//! JSON report (`target/fault-reports/<scenario>.json`).

use crate::cluster::{Cluster, read_journals};
use crate::load::{Availability, Ledger, Outcome, SEEN, TWICE};
use crate::poll;
use anyhow::Result;
use std::collections::BTreeSet;
use std::time::Duration;

#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    pub scenario: String,
    pub acked_events: usize,
    pub requests: usize,
    pub requests_indeterminate: usize,
    pub requests_failed: usize,
    pub replies_dropped: usize,
    pub duplicates_answered: u64,
    pub batches_abandoned: u64,
    /// Acknowledged events not applied (contact missing from probe_seen).
    pub lost: usize,
    /// Contacts whose single probe counted twice (members of probe_twice).
    pub applied_twice: usize,
    /// Accepted commits under an older epoch than one accepted before.
    pub stale_commits_accepted: u64,
    /// Commits Redis refused because the writer's lease was gone.
    pub fenced_commits: u64,
    pub commits: u64,
    pub double_ownership_ms: f64,
    /// Queries the prober made, and how many failed.
    pub probes: usize,
    pub probes_failed: usize,
    /// Outages per tenant seen by the prober (ms), sorted.
    pub outages_ms: Vec<f64>,
    pub outage_p99_ms: f64,
    pub outage_max_ms: f64,
    /// Free-form figures a scenario adds (e.g. recovery from a kill).
    pub notes: Vec<String>,
}

impl Report {
    /// The pass criteria of the issue: nothing lost, nothing applied twice,
    /// no stale commit, no double ownership, outages within `max_outage`.
    pub fn assert_pass(&self, max_outage: Duration) {
        let max_ms = max_outage.as_secs_f64() * 1e3;
        assert_eq!(self.lost, 0, "acknowledged events lost: {self:#?}");
        assert_eq!(self.applied_twice, 0, "events applied twice: {self:#?}");
        assert_eq!(
            self.stale_commits_accepted, 0,
            "stale commits accepted: {self:#?}"
        );
        assert_eq!(self.double_ownership_ms, 0.0, "double ownership: {self:#?}");
        assert!(
            self.outage_p99_ms <= max_ms,
            "outage p99 {} ms over {max_ms} ms: {self:#?}",
            self.outage_p99_ms
        );
        assert!(
            self.acked_events > 0,
            "the load generator got nothing acknowledged"
        );
    }

    pub fn write(&self) -> Result<()> {
        let dir = crate::liveseg_bin()
            .parent()
            .map(|p| p.join("fault-reports"))
            .unwrap_or_else(|| "fault-reports".into());
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{}.json", self.scenario));
        std::fs::write(&path, serde_json::to_vec_pretty(self)?)?;
        eprintln!(
            "[{}] acked={} lost={} twice={} stale={} fenced={} double_ms={} outage_p99_ms={:.0} outage_max_ms={:.0} indeterminate={} dup={} -> {}",
            self.scenario,
            self.acked_events,
            self.lost,
            self.applied_twice,
            self.stale_commits_accepted,
            self.fenced_commits,
            self.double_ownership_ms,
            self.outage_p99_ms,
            self.outage_max_ms,
            self.requests_indeterminate,
            self.duplicates_answered,
            path.display()
        );
        Ok(())
    }
}

/// All members of `segment` for one tenant, through any live node. Retried
/// with a deadline, as a client retries `UNAVAILABLE`: the tenant's shard
/// may be moving while the checker reads (placement's settle rule can make
/// a rebalance land after the cluster looked settled).
async fn members(cluster: &Cluster, key: &str, segment: &str) -> Result<BTreeSet<String>> {
    let urls = cluster.live_urls();
    let last = std::sync::Mutex::new(None);
    let read = poll(Duration::from_secs(30), "a membership read", || async {
        for url in &urls {
            match members_at(url, key, segment).await {
                Ok(m) => return Some(m),
                Err(e) => *last.lock().unwrap_or_else(|p| p.into_inner()) = Some(e),
            }
        }
        None
    })
    .await;
    read.map_err(|timeout| {
        let last = last.lock().unwrap_or_else(|p| p.into_inner()).take();
        last.unwrap_or(timeout)
    })
}

async fn members_at(url: &str, key: &str, segment: &str) -> Result<BTreeSet<String>> {
    Ok(crate::members_at(url, key, segment)
        .await?
        .into_iter()
        .map(|m| m.id)
        .collect())
}

/// Computes the report. Waits (with a deadline) for acknowledged events to
/// be applied: what is still missing at the deadline is lost.
pub async fn check(
    scenario: &str,
    cluster: &Cluster,
    tenants: &[(String, String)],
    ledger: &Ledger,
    availability: &Availability,
) -> Result<Report> {
    let mut r = Report {
        scenario: scenario.into(),
        acked_events: ledger.acked.values().map(Vec::len).sum(),
        requests: ledger.attempts.len(),
        duplicates_answered: ledger.duplicates,
        batches_abandoned: ledger.abandoned,
        ..Report::default()
    };
    for a in &ledger.attempts {
        match a.outcome {
            Outcome::Indeterminate => r.requests_indeterminate += 1,
            Outcome::Failed => r.requests_failed += 1,
            Outcome::ReplyDropped => r.replies_dropped += 1,
            Outcome::Ok => {}
        }
    }
    for (tenant, key) in tenants {
        let acked: BTreeSet<String> = ledger
            .acked
            .get(tenant)
            .map(|v| v.iter().cloned().collect())
            .unwrap_or_default();
        let missing = poll(
            Duration::from_secs(30),
            "acknowledged events applied",
            || {
                let acked = &acked;
                async move {
                    let seen = members(cluster, key, SEEN).await.ok()?;
                    let missing = acked.difference(&seen).count();
                    (missing == 0).then_some(0)
                }
            },
        )
        .await;
        r.lost += match missing {
            Ok(n) => n,
            Err(_) => {
                let seen = members(cluster, key, SEEN).await?;
                acked.difference(&seen).count()
            }
        };
        r.applied_twice += members(cluster, key, TWICE).await?.len();
    }
    let store = cluster.redis_store()?;
    for shard in 0..cluster.shards {
        let prefix = liveseg_store::redis::keys::shard(shard);
        let audit: (Option<u64>, Option<u64>, Option<u64>) = store
            .with_conn(|c| {
                ::redis::cmd("HMGET")
                    .arg(format!("{prefix}ckpt"))
                    .arg("stale_accepted")
                    .arg("fenced")
                    .arg("commits")
                    .query(c)
            })
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        r.stale_commits_accepted += audit.0.unwrap_or(0);
        r.fenced_commits += audit.1.unwrap_or(0);
        r.commits += audit.2.unwrap_or(0);
    }
    let records = read_journals(&cluster.journals())?;
    let intervals = liveseg_cluster::journal::intervals(&records);
    let overlap: i64 = liveseg_cluster::journal::double_ownership_ns(&intervals)
        .values()
        .sum();
    r.double_ownership_ms = overlap as f64 / 1e6;
    r.probes = availability.samples.values().map(Vec::len).sum();
    r.probes_failed = availability
        .samples
        .values()
        .flatten()
        .filter(|(_, ok)| !ok)
        .count();
    let mut outages = availability.outages_ms();
    outages.sort_by(f64::total_cmp);
    r.outage_max_ms = outages.last().copied().unwrap_or(0.0);
    r.outage_p99_ms = percentile(&outages, 0.99);
    r.outages_ms = outages;
    Ok(r)
}

/// Takeover after a crash, from the journals: for each shard `victim_prefix`
/// (a node id prefix such as `n1-`) believed it held at `fault_ns`, the time
/// until another node acquired it (ms).
pub fn takeover_ms(cluster: &Cluster, victim_prefix: &str, fault_ns: i64) -> Result<Vec<f64>> {
    use liveseg_cluster::journal::Kind;
    let records = read_journals(&cluster.journals())?;
    let intervals = liveseg_cluster::journal::intervals(&records);
    let held: BTreeSet<u32> = intervals
        .iter()
        .filter(|i| {
            i.node.starts_with(victim_prefix) && i.start_ns <= fault_ns && i.end_ns > fault_ns
        })
        .map(|i| i.shard)
        .collect();
    let mut out = Vec::new();
    for shard in held {
        let next = records
            .iter()
            .filter(|r| {
                r.shard == shard
                    && r.kind == Kind::Acquire
                    && r.mono_ns > fault_ns
                    && !r.node.starts_with(victim_prefix)
            })
            .map(|r| r.mono_ns)
            .min();
        if let Some(t) = next {
            out.push((t - fault_ns) as f64 / 1e6);
        }
    }
    Ok(out)
}

/// Graceful handoffs, from the journals: for every lease release, the time
/// until another node acquired that shard (ms), in release order. A gap is
/// how long the shard had no owner; the drain before it is not included.
pub fn handoff_gaps_ms(cluster: &Cluster) -> Result<Vec<f64>> {
    use liveseg_cluster::journal::Kind;
    let records = read_journals(&cluster.journals())?;
    let mut releases: Vec<_> = records.iter().filter(|r| r.kind == Kind::Release).collect();
    releases.sort_by_key(|r| r.mono_ns);
    Ok(releases
        .iter()
        .filter_map(|rel| {
            records
                .iter()
                .filter(|r| {
                    r.shard == rel.shard
                        && r.kind == Kind::Acquire
                        && r.mono_ns > rel.mono_ns
                        && r.node != rel.node
                })
                .map(|r| r.mono_ns)
                .min()
                .map(|t| (t - rel.mono_ns) as f64 / 1e6)
        })
        .collect())
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}
