//! Cluster fault scenarios over real processes on 127.0.0.x: a real
//! `redis-server`, `liveseg serve --cluster` nodes with a 2 s test lease,
//! real signals. Each scenario runs the load generator and the prober
//! through the faults, then the checker (see `liveseg_tests::checker`)
//! writes its figures to `target/<profile>/fault-reports/<scenario>.json`
//! and asserts: 0 acknowledged events lost, 0 applied twice, 0 stale
//! commits accepted, 0 ms of double ownership, and outages within the
//! bound of the scenario.

use anyhow::{Context, Result};
use liveseg_cluster::journal::mono_ns;
use liveseg_cluster::placement::shard_of;
use liveseg_tests::checker::{self, Report};
use liveseg_tests::cluster::{Cluster, RedisFsync};
use liveseg_tests::scenario::Run;
use std::time::Duration;

const SHARDS: u32 = 8;
const TENANTS: usize = 6;
/// Lease TTL (2 s) + death detection (1.5 s) + 1 s.
const CRASH_BOUND: Duration = Duration::from_millis(4500);
const STEP: Duration = Duration::from_secs(40);

async fn setup(nodes: usize, fsync: RedisFsync) -> Result<(Cluster, Vec<(String, String)>)> {
    let c = Cluster::start(nodes, SHARDS, fsync).await?;
    let tenants = c.tenants_with_probes(TENANTS).await?;
    Ok((c, tenants))
}

/// The node serving the first tenant's shard.
fn owner_of_first(c: &Cluster, tenants: &[(String, String)]) -> Result<usize> {
    c.lease_holder(shard_of(&tenants[0].0, SHARDS))?
        .context("the first tenant's shard has no owner")
}

async fn finish(name: &str, c: &Cluster, run: Run, notes: Vec<String>) -> Result<Report> {
    let tenants = run.tenants.clone();
    let (ledger, availability) = run.finish().await?;
    let mut report = checker::check(name, c, &tenants, &ledger, &availability).await?;
    report.notes = notes;
    report.write()?;
    Ok(report)
}

/// kill -9 of the first tenant's shard owner, then waits until every shard
/// is served by another node and the load goes on. Returns the victim and a
/// note with the takeover of each of its shards (from the journals).
async fn crash_first_owner(c: &mut Cluster, run: &Run) -> Result<(usize, String)> {
    let victim = owner_of_first(c, &run.tenants)?;
    let killed_at = mono_ns();
    c.kill9(victim);
    run.retarget(c);
    c.wait_all_shards_served(STEP).await?;
    run.wait_progress(300, STEP).await?;
    let takeover = checker::takeover_ms(c, &format!("n{victim}-"), killed_at)?;
    assert!(!takeover.is_empty(), "the victim held no shard");
    Ok((
        victim,
        format!("victim n{victim}; takeover after kill -9 (ms, per shard): {takeover:?}"),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill9_of_an_owner_and_restart() -> Result<()> {
    let (mut c, tenants) = setup(3, RedisFsync::Always).await?;
    let run = Run::start(&c, tenants.clone(), 0);
    run.wait_progress(300, STEP).await?;
    let (victim, takeover) = crash_first_owner(&mut c, &run).await?;
    // The survivors loaded the victim's shards while its lease ran out.
    let standbys = standbys_used(&c).await?;
    c.restart(victim).await?;
    run.retarget(&c);
    run.wait_progress(300, STEP).await?;
    let note = format!("shards served from a standby: {standbys}");
    finish("kill9_owner", &c, run, vec![takeover, note])
        .await?
        .assert_pass(CRASH_BOUND);
    assert!(standbys >= 1.0, "no takeover used a standby");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigstop_of_an_owner_for_three_leases_then_sigcont() -> Result<()> {
    let (mut c, tenants) = setup(3, RedisFsync::Always).await?;
    let run = Run::start(&c, tenants.clone(), 0);
    run.wait_progress(300, STEP).await?;
    let victim = owner_of_first(&c, &tenants)?;
    let stopped_at = mono_ns();
    c.sigstop(victim)?;
    run.retarget(&c);
    // 3x the lease (6 s), measured as load progress plus the clock: the
    // zombie must be replaced meanwhile, and must not write when it wakes.
    let others_serve = async {
        let mut running = c.nodes.iter().map(|n| n.slot).collect::<Vec<_>>();
        running.retain(|s| *s != victim);
        liveseg_tests::poll(STEP, "the zombie's shards re-owned", || {
            let held = (0..SHARDS).all(|s| {
                c.lease_holder(s)
                    .ok()
                    .flatten()
                    .is_some_and(|h| running.contains(&h))
            });
            async move { held.then_some(()) }
        })
        .await
    };
    others_serve.await?;
    liveseg_tests::poll(STEP, "3 leases of SIGSTOP", || {
        let done = mono_ns() - stopped_at >= 6_000_000_000;
        async move { done.then_some(()) }
    })
    .await?;
    run.wait_progress(300, STEP).await?;
    c.sigcont(victim)?;
    run.retarget(&c);
    c.wait_balanced(STEP).await?;
    run.wait_progress(300, STEP).await?;
    let takeover = checker::takeover_ms(&c, &format!("n{victim}-"), stopped_at)?;
    let report = finish(
        "sigstop_owner",
        &c,
        run,
        vec![format!(
            "takeover after SIGSTOP (ms, per shard): {takeover:?}"
        )],
    )
    .await?;
    report.assert_pass(CRASH_BOUND);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scale_out_3_to_5_and_in_to_3_under_load() -> Result<()> {
    let (mut c, tenants) = setup(3, RedisFsync::Always).await?;
    let run = Run::start(&c, tenants.clone(), 0);
    run.wait_progress(300, STEP).await?;
    c.add_node().await?;
    c.add_node().await?;
    run.retarget(&c);
    // Bounded load (cap 2 of 8 per node) makes the two new nodes take at
    // least 2 shards: moves under load, handed off make-before-break.
    liveseg_tests::poll(STEP, "shards moved to the new nodes", || {
        let n = c.leases_held_by(&[3, 4]).unwrap_or(0);
        async move { (n >= 2).then_some(()) }
    })
    .await?;
    // Placement's fixed point, not just owners holding their leases: a
    // node takes one balancing handoff at a time, so leases can match the
    // table between two moves onto the same new node.
    c.wait_placed(STEP).await?;
    run.wait_progress(300, STEP).await?;
    // Each owner froze the shard while the new node loaded a standby of
    // it, and the new node served from that standby (read before the new
    // nodes leave: their counters go with them).
    let frozen = counter(&c, r#"liveseg_shard_freezes_total{kind="frozen"}"#).await?;
    let from_standby = standbys_used(&c).await?;
    assert!(
        frozen >= 2.0 && from_standby >= 2.0,
        "moves onto the new nodes were not handed off: {frozen} frozen, {from_standby} served from standbys"
    );
    for slot in [3, 4] {
        // Clients stop calling a leaving node first, as behind a load balancer.
        c.nodes[slot].stopped = true;
        run.retarget(&c);
        let status = c.terminate(slot).await?;
        assert!(status.success(), "node {slot} exited with {status}");
    }
    c.wait_balanced(STEP).await?;
    run.wait_progress(300, STEP).await?;
    let gaps = checker::handoff_gaps_ms(&c)?;
    let note = format!("unowned after each release (ms, in order): {gaps:?}");
    let report = finish("scale_3_5_3", &c, run, vec![note]).await?;
    // Graceful moves: the handoff is a release, not a lease expiry, so no
    // shard waits for death detection (1.5 s) after its release. (It did
    // when a leaving node's last heartbeat landed after its removal from
    // the live set: one move in a run then took 1.8-2.4 s.) Gaps were
    // 4-230 ms and outages 0.6-1.0 s (5 runs, session 6); with handoffs
    // (session 17) gaps are 3-146 ms and outages 0.2-0.5 s.
    let slowest = gaps.iter().copied().fold(0.0, f64::max);
    assert!(
        slowest < 1000.0,
        "a released shard sat unowned {slowest} ms"
    );
    report.assert_pass(Duration::from_millis(2000));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_retries_after_lost_replies_apply_once() -> Result<()> {
    let (mut c, tenants) = setup(3, RedisFsync::Always).await?;
    // Every second batch: the reply is dropped and the batch re-sent.
    let run = Run::start(&c, tenants.clone(), 2);
    run.wait_progress(300, STEP).await?;
    // And a crash, so re-sends also cross an ownership change.
    let (_, takeover) = crash_first_owner(&mut c, &run).await?;
    let report = finish("client_retries", &c, run, vec![takeover]).await?;
    assert!(report.replies_dropped > 0 && report.duplicates_answered > 0);
    report.assert_pass(CRASH_BOUND);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_kill9_and_restart_with_appendfsync_always() -> Result<()> {
    let (mut c, tenants) = setup(3, RedisFsync::Always).await?;
    let run = Run::start(&c, tenants.clone(), 0);
    run.wait_progress(300, STEP).await?;
    c.redis.kill9();
    c.redis.restart().map_err(|e| anyhow::anyhow!("{e}"))?;
    c.wait_all_shards_served(STEP).await?;
    run.wait_progress(300, STEP).await?;
    let report = finish("redis_kill9_always", &c, run, vec![]).await?;
    // Redis forgets nothing it acknowledged (fsync always), so there is no
    // quarantine after the restart: owners whose leases survived keep
    // serving (commits wait for Redis), and shards whose leases ran out are
    // acquired again as soon as it answers: the crash bound holds.
    report.assert_pass(CRASH_BOUND);
    Ok(())
}

/// Redis stalls past every lease (SIGSTOP for 1.5 leases): each owner stops
/// serving at its deadline and parks its runtime. Nobody can take a shard
/// while Redis is stopped, so when it answers again each owner acquires
/// the next epoch of its shards and resumes the parked runtime: no load,
/// nothing lost or applied twice, and its checkpoints and change batches
/// that failed meanwhile are written under the new epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_stall_past_the_lease_resumes_owners_without_a_reload() -> Result<()> {
    let (c, tenants) = setup(3, RedisFsync::Always).await?;
    let run = Run::start(&c, tenants.clone(), 0);
    run.wait_progress(300, STEP).await?;
    let before = resumes(&c).await?;
    c.redis.pause().map_err(|e| anyhow::anyhow!("{e}"))?;
    let until = mono_ns() + 3_000_000_000;
    liveseg_tests::poll(STEP, "1.5 leases", || {
        let done = mono_ns() >= until;
        async move { done.then_some(()) }
    })
    .await?;
    c.redis.resume().map_err(|e| anyhow::anyhow!("{e}"))?;
    c.wait_all_shards_served(STEP).await?;
    run.wait_progress(300, STEP).await?;
    let resumed = resumes(&c).await? - before;
    let report = finish(
        "redis_stall",
        &c,
        run,
        vec![format!("shards resumed: {resumed}")],
    )
    .await?;
    assert!(
        resumed >= 1.0,
        "no shard resumed after the stall (all reloaded)"
    );
    report.assert_pass(CRASH_BOUND);
    Ok(())
}

/// `liveseg_shard_resumes_total` summed over the running nodes.
async fn resumes(c: &Cluster) -> Result<f64> {
    counter(c, "liveseg_shard_resumes_total").await
}

/// Shards served from a standby loaded ahead of their lease, summed over
/// the running nodes.
async fn standbys_used(c: &Cluster) -> Result<f64> {
    counter(c, r#"liveseg_shard_standbys_total{kind="used"}"#).await
}

/// A counter (`name` may carry labels) summed over the running nodes.
async fn counter(c: &Cluster, name: &str) -> Result<f64> {
    let mut total = 0.0;
    for url in c.live_urls() {
        let addr = url.trim_start_matches("http://");
        let page = liveseg_tests::http_get(addr, "/metrics").await?;
        total += liveseg_tests::metric_value(&page, name);
    }
    Ok(total)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn coordinator_leader_kill() -> Result<()> {
    let (mut c, tenants) = setup(3, RedisFsync::Always).await?;
    let run = Run::start(&c, tenants.clone(), 0);
    run.wait_progress(300, STEP).await?;
    let leader = c.leader()?.context("no leader")?;
    c.kill9(leader);
    run.retarget(&c);
    liveseg_tests::poll(STEP, "a new leader", || {
        let l = c.leader().ok().flatten();
        async move { l.filter(|l| *l != leader) }
    })
    .await?;
    c.wait_all_shards_served(STEP).await?;
    // The new leader also places a node that joins afterwards.
    c.restart(leader).await?;
    run.retarget(&c);
    c.wait_balanced(STEP).await?;
    run.wait_progress(300, STEP).await?;
    finish("leader_kill", &c, run, vec![])
        .await?
        .assert_pass(CRASH_BOUND);
    Ok(())
}

/// Measures (does not bound) what `appendfsync everysec` loses when Redis
/// is killed: up to about a second of acknowledged events. Double
/// ownership and double application must still be 0 (the quarantine after
/// a Redis restart covers the forgotten leases). Run with
/// `cargo nextest run -p liveseg-tests --run-ignored only -E 'test(everysec)' --no-capture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a measurement, ~1 min: see BENCHMARKS.md for the command"]
async fn redis_kill9_with_appendfsync_everysec_loses_at_most_a_second() -> Result<()> {
    let (mut c, tenants) = setup(3, RedisFsync::EverySec).await?;
    let run = Run::start(&c, tenants.clone(), 0);
    run.wait_progress(2000, STEP).await?;
    let acked_before = run.acked();
    c.redis.kill9();
    c.redis.restart().map_err(|e| anyhow::anyhow!("{e}"))?;
    c.wait_all_shards_served(STEP).await?;
    run.wait_progress(300, STEP).await?;
    let note = format!("acknowledged before the kill: {acked_before}");
    let report = finish("redis_kill9_everysec", &c, run, vec![note]).await?;
    assert_eq!(report.applied_twice, 0, "{report:#?}");
    assert_eq!(report.double_ownership_ms, 0.0, "{report:#?}");
    assert_eq!(report.stale_commits_accepted, 0, "{report:#?}");
    Ok(())
}

/// The long randomized mix: random faults (kill -9 and restart, SIGSTOP for
/// 3 leases, graceful leave and join, leader kill, Redis kill -9 and
/// restart) under load for `LIVESEG_FAULT_MIX_SECS` (default 120) seconds,
/// seeded by `LIVESEG_FAULT_MIX_SEED`. Run with
/// `LIVESEG_FAULT_MIX_SECS=300 cargo nextest run -p liveseg-tests --run-ignored only -E 'test(randomized)' --no-capture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "long: run by the documented command"]
async fn randomized_fault_mix() -> Result<()> {
    let secs: i64 = std::env::var("LIVESEG_FAULT_MIX_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    let mut seed: u64 = std::env::var("LIVESEG_FAULT_MIX_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let mut next = move |n: u64| {
        // xorshift64*: reproducible from the seed.
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        (seed.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) % n
    };
    let (mut c, tenants) = setup(4, RedisFsync::Always).await?;
    let run = Run::start(&c, tenants.clone(), 7);
    let end = mono_ns() + secs * 1_000_000_000;
    let mut faults = Vec::new();
    while mono_ns() < end {
        // A random stretch of load between faults (counted in events, so
        // it paces by progress, not by sleeping).
        run.wait_progress(200 + next(800) as usize, STEP).await?;
        let running: Vec<usize> = c
            .nodes
            .iter()
            .filter(|n| n.pid().is_some())
            .map(|n| n.slot)
            .collect();
        let victim = running[next(running.len() as u64) as usize];
        let fault = next(5);
        eprintln!(
            "fault {fault} on slot {victim} at {:.3} s",
            mono_ns() as f64 / 1e9
        );
        match fault {
            0 => {
                c.kill9(victim);
                run.retarget(&c);
                c.wait_all_shards_served(STEP).await?;
                c.restart(victim).await?;
            }
            1 => {
                c.sigstop(victim)?;
                run.retarget(&c);
                let until = mono_ns() + 6_000_000_000;
                liveseg_tests::poll(STEP, "3 leases", || {
                    let done = mono_ns() >= until;
                    async move { done.then_some(()) }
                })
                .await?;
                c.sigcont(victim)?;
            }
            2 => {
                c.nodes[victim].stopped = true;
                run.retarget(&c);
                c.terminate(victim).await?;
                c.restart(victim).await?;
            }
            3 => {
                if let Some(l) = c.leader()? {
                    c.kill9(l);
                    run.retarget(&c);
                    c.wait_all_shards_served(STEP).await?;
                    c.restart(l).await?;
                }
            }
            _ => {
                c.redis.kill9();
                c.redis.restart().map_err(|e| anyhow::anyhow!("{e}"))?;
            }
        }
        faults.push((fault, victim));
        run.retarget(&c);
        c.wait_placed(STEP).await?;
        // Each fault's outage ends before the next fault, so every outage
        // measures the recovery from one fault and the bound applies to it;
        // that includes the balancing moves a fault defers (onto a node that
        // restarted or woke up, once it is warm), which `wait_placed` waits
        // for.
        // (Faults landing mid-recovery chain their outages: measured in the
        // session 3 note on issue 3, up to 15 s over four back-to-back faults.)
        run.wait_queryable(STEP).await?;
    }
    let report = finish(
        "randomized_mix",
        &c,
        run,
        vec![format!(
            "faults (0 kill9, 1 sigstop, 2 leave+join, 3 leader kill, 4 redis kill9), victim slot: {faults:?}"
        )],
    )
    .await?;
    report.assert_pass(CRASH_BOUND);
    Ok(())
}
