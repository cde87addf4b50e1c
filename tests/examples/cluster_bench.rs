//! Cluster benchmark (issue 3): ingest throughput and latency through 1, 2
//! and 3 `liveseg serve --cluster` nodes sharing one real `redis-server`
//! (`appendfsync always`), and recovery time after kill -9 of a shard
//! owner against the state the shard holds. Everything runs on this
//! machine, so nodes, Redis and this client share its cores; the CPU each
//! used is reported with the figures. Peers run side by side in one run
//! (ratios to one node); absolute times drift between runs.
//!
//! ```sh
//! cargo build --release -p liveseg-cli
//! LIVESEG_BIN=$PWD/target/release/liveseg \
//!   cargo run --release -p liveseg-tests --example cluster_bench
//! ```
//!
//! Flags and their defaults: --nodes 1,2,3  --standalone true  --rounds 2
//! --tenants 16  --shards 16  --accounts-per-tenant 500  --days 7
//! --batch 500  --concurrency 8  --recovery-accounts 1000,5000,10000,20000
//! --recovery-days 3  --recovery-trials 2.
//!
//! The peer of the cluster runs is one standalone `liveseg serve` (embedded
//! redb store) on the same workload. Round r runs the setups in ascending
//! order (standalone, 1, 2, 3 nodes) when r is even and descending when
//! odd, so drift does not favour one setup. Recovery runs every size
//! `--recovery-trials` times (fresh cluster and data each time, sizes
//! ascending then descending) with a victim that is not the coordinator
//! leader, then the smallest size once more with a victim that also leads
//! (placement then waits for a new leader). The report is markdown on
//! stdout; progress goes to stderr.

#[path = "cluster_bench/ingest.rs"]
mod ingest;
#[path = "cluster_bench/load.rs"]
mod load;
#[path = "cluster_bench/recovery.rs"]
mod recovery;
#[path = "cluster_bench/sys.rs"]
mod sys;

use anyhow::{Context, Result, bail};
use ingest::IngestRun;
use liveseg_cluster::placement::shard_of;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use sys::ms;

#[derive(Debug, Clone)]
struct Args {
    nodes: Vec<usize>,
    /// Also run the standalone peer (one node on its embedded store).
    standalone: bool,
    rounds: usize,
    tenants: usize,
    shards: u32,
    accounts_per_tenant: usize,
    days: u32,
    batch: usize,
    concurrency: usize,
    recovery_accounts: Vec<usize>,
    recovery_days: u32,
    recovery_trials: usize,
}

impl Args {
    fn parse() -> Result<Args> {
        let mut a = Args {
            nodes: vec![1, 2, 3],
            standalone: true,
            rounds: 2,
            tenants: 16,
            shards: 16,
            accounts_per_tenant: 500,
            days: 7,
            batch: 500,
            concurrency: 8,
            recovery_accounts: vec![1000, 5000, 10_000, 20_000],
            recovery_days: 3,
            recovery_trials: 2,
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let v = it.next().with_context(|| format!("{flag} needs a value"))?;
            let list = |v: &str| -> Result<Vec<usize>> {
                v.split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| Ok(s.trim().parse()?))
                    .collect()
            };
            match flag.as_str() {
                "--nodes" => a.nodes = list(&v)?,
                "--rounds" => a.rounds = v.parse()?,
                "--standalone" => a.standalone = v.parse()?,
                "--tenants" => a.tenants = v.parse()?,
                "--shards" => a.shards = v.parse()?,
                "--accounts-per-tenant" => a.accounts_per_tenant = v.parse()?,
                "--days" => a.days = v.parse()?,
                "--batch" => a.batch = v.parse()?,
                "--concurrency" => a.concurrency = v.parse()?,
                "--recovery-accounts" => a.recovery_accounts = list(&v)?,
                "--recovery-days" => a.recovery_days = v.parse()?,
                "--recovery-trials" => a.recovery_trials = v.parse()?,
                _ => bail!("unknown flag {flag}"),
            }
        }
        if a.tenants > a.shards as usize {
            bail!("--tenants must not exceed --shards (one tenant per shard)");
        }
        Ok(a)
    }
}

/// `n` tenant names on `n` different shards.
fn tenant_names(n: usize, shards: u32) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let mut i = 0u32;
    while out.len() < n {
        let name = format!("bench{i}");
        if seen.insert(shard_of(&name, shards)) {
            out.push(name);
        }
        i += 1;
    }
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse()?;
    let hz = sys::clock_ticks();
    let total = Instant::now();
    let end = sys::rfc3339_ago(Duration::from_secs(60));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    eprintln!("binary: {}", liveseg_tests::liveseg_bin().display());

    let mut tenants = Vec::new();
    for (i, name) in tenant_names(args.tenants, args.shards).iter().enumerate() {
        tenants.push(load::generate(
            name,
            args.accounts_per_tenant,
            args.days,
            &end,
            1 + i as u64,
        )?);
    }
    let batches = Arc::new(load::batches(&tenants, args.batch));
    let contacts: usize = tenants.iter().map(|t| t.contacts).sum();
    println!("# liveseg cluster bench\n");
    println!(
        "machine: {cores} cores, load average at start {}; redis-server with `appendfsync always`; \
         nodes with `--test-timers` (2 s lease) and 1 s checkpoints\n",
        sys::loadavg()
    );
    println!(
        "ingest workload: {} events, {} tenants on {} different shards (of {}), {} accounts x {} days each, {} contacts in all; {} in flight x {} per request, spread over every node\n",
        batches.events,
        tenants.len(),
        tenants.len(),
        args.shards,
        args.accounts_per_tenant,
        args.days,
        contacts,
        args.concurrency,
        args.batch
    );

    let mut setups = Vec::new();
    if args.standalone {
        setups.push(0);
    }
    setups.extend(args.nodes.iter().copied());
    let mut runs: Vec<(usize, IngestRun)> = Vec::new();
    for round in 0..args.rounds {
        let mut order = setups.clone();
        if round % 2 == 1 {
            order.reverse();
        }
        for &n in &order {
            eprintln!("ingest: round {round}, {} ...", label(n));
            let r = if n == 0 {
                ingest::run_standalone(&tenants, batches.clone(), args.concurrency, hz).await?
            } else {
                ingest::run(
                    n,
                    args.shards,
                    &tenants,
                    batches.clone(),
                    args.concurrency,
                    hz,
                )
                .await?
            };
            eprintln!(
                "  acked {:.0}/s applied {:.0}/s p50 {:.1} ms p99 {:.1} ms",
                r.acked_per_s,
                r.applied_per_s,
                ms(r.p50),
                ms(r.p99)
            );
            runs.push((round, r));
        }
    }
    print_ingest(&args, &setups, &runs, cores);
    drop(tenants);

    // Every size with a victim that is not the coordinator leader, then
    // the smallest again with a victim that also leads.
    // Sizes ascending in even trials and descending in odd ones.
    let mut plan: Vec<(usize, bool)> = Vec::new();
    for trial in 0..args.recovery_trials {
        let mut sizes = args.recovery_accounts.clone();
        if trial % 2 == 1 {
            sizes.reverse();
        }
        plan.extend(sizes.into_iter().map(|a| (a, false)));
    }
    if let Some(&first) = args.recovery_accounts.first() {
        plan.push((first, true));
    }
    let mut rec = Vec::new();
    for (i, &(accounts, kill_leader)) in plan.iter().enumerate() {
        eprintln!("recovery: {accounts} accounts, victim leads: {kill_leader} ...");
        let t = load::generate(
            &format!("rec{i}"),
            accounts,
            args.recovery_days,
            &end,
            100 + i as u64,
        )?;
        let r = recovery::run(
            args.shards,
            &t,
            args.batch,
            args.concurrency,
            hz,
            kill_leader,
        )
        .await?;
        eprintln!(
            "  takeover {:.0} ms, load {:.0} ms, answer {:.0} ms",
            r.takeover_ms, r.load_ms, r.same_answer_ms
        );
        rec.push(r);
    }
    print_recovery(&args, &rec);
    println!(
        "total run time: {:.0} s; load average at the end {}",
        total.elapsed().as_secs_f64(),
        sys::loadavg()
    );
    Ok(())
}

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 { 0.0 } else { s / n as f64 }
}

/// 0 is the standalone peer.
fn label(n: usize) -> String {
    match n {
        0 => "standalone (redb)".into(),
        1 => "1 node".into(),
        n => format!("{n} nodes"),
    }
}

fn print_ingest(args: &Args, setups: &[usize], runs: &[(usize, IngestRun)], cores: usize) {
    let other =
        |c: sys::CpuUse| (c.machine_busy * cores as f64 - c.nodes - c.redis - c.client).max(0.0);
    println!(
        "| setup | round | acked events/s | applied events/s | request p50 | p99 | max | drain after last ack | retries | shards per node | events applied per node | node + redis CPU per event | Redis AOF rewrites | other processes | steal | machine speed before (calibration, 1st run = 1) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let speed0 = runs.first().map_or(1.0, |(_, r)| r.speed.max(1e-9));
    for (round, r) in runs {
        println!(
            "| {} | {round} | {:.0} | {:.0} | {:.1} ms | {:.1} ms | {:.1} ms | {:.2} s | {} | {:?} | {:?} | {:.1} µs | {} | {:.2} cores | {:.0}% | {:.2} |",
            label(r.nodes),
            r.acked_per_s,
            r.applied_per_s,
            ms(r.p50),
            ms(r.p99),
            ms(r.max),
            r.apply_lag.as_secs_f64(),
            r.retries,
            r.shards_per_node,
            r.applied_per_node,
            r.us_per_event.0 + r.us_per_event.1,
            r.aof_rewrites,
            other(r.cpu_ingest),
            100.0 * r.cpu_ingest.steal,
            r.speed / speed0
        );
    }
    println!();
    let of = |n: usize| runs.iter().map(|(_, r)| r).filter(move |r| r.nodes == n);
    let base_ack = mean(of(1).map(|r| r.acked_per_s));
    let base_app = mean(of(1).map(|r| r.applied_per_s));
    let base_p50 = mean(of(1).map(|r| ms(r.p50)));
    let base_p99 = mean(of(1).map(|r| ms(r.p99)));
    let ratio = |x: f64, b: f64| if b > 0.0 { x / b } else { 0.0 };
    println!(
        "| setup (mean of {} rounds) | acked events/s | ratio to 1 node | applied events/s | ratio | request p50 | ratio | p99 | ratio |",
        args.rounds
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for &n in setups {
        let ack = mean(of(n).map(|r| r.acked_per_s));
        let app = mean(of(n).map(|r| r.applied_per_s));
        let p50 = mean(of(n).map(|r| ms(r.p50)));
        let p99 = mean(of(n).map(|r| ms(r.p99)));
        println!(
            "| {} | {ack:.0} | {:.2} | {app:.0} | {:.2} | {p50:.1} ms | {:.2} | {p99:.1} ms | {:.2} |",
            label(n),
            ratio(ack, base_ack),
            ratio(app, base_app),
            ratio(p50, base_p50),
            ratio(p99, base_p99)
        );
    }
    println!();
    println!(
        "| setup (mean) | node processes (cores) | redis-server (cores) | bench client (cores) | other processes (cores) | machine busy ({cores} cores) | steal | CPU per event: nodes | redis | client | nodes + redis, ratio to 1 node |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let base_us = mean(of(1).map(|r| r.us_per_event.0 + r.us_per_event.1));
    for &n in setups {
        let us = mean(of(n).map(|r| r.us_per_event.0 + r.us_per_event.1));
        println!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0}% | {:.0}% | {:.1} µs | {:.1} µs | {:.1} µs | {:.2} |",
            label(n),
            mean(of(n).map(|r| r.cpu_ingest.nodes)),
            mean(of(n).map(|r| r.cpu_ingest.redis)),
            mean(of(n).map(|r| r.cpu_ingest.client)),
            mean(of(n).map(|r| other(r.cpu_ingest))),
            100.0 * mean(of(n).map(|r| r.cpu_ingest.machine_busy)),
            100.0 * mean(of(n).map(|r| r.cpu_ingest.steal)),
            mean(of(n).map(|r| r.us_per_event.0)),
            mean(of(n).map(|r| r.us_per_event.1)),
            mean(of(n).map(|r| r.us_per_event.2)),
            ratio(us, base_us)
        );
    }
    println!();
}

fn print_recovery(args: &Args, rec: &[recovery::RecoveryRun]) {
    println!(
        "recovery: 2 nodes, one tenant ({} days of history), {} shards; kill -9 of the owner of the tenant's shard right after a checkpoint; times from the kill\n",
        args.recovery_days, args.shards
    );
    println!(
        "| accounts | contacts | events | account states in Redis | event stream in Redis | checkpoint RPC on the owner | victim was leader | victim's lease left | takeover (journal) | load (checkpoint read + tail) | peer: slowest load of an empty shard | first answer via survivor | same first page as before | accounts resident before / after | Redis AOF rewrites meanwhile |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rec {
        println!(
            "| {} | {} | {} | {:.1} MiB | {:.1} MiB | {:.0} ms ({} accounts) | {} | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {} / {} | {} |",
            r.accounts,
            r.contacts,
            r.events,
            r.state_bytes as f64 / 1048576.0,
            r.stream_bytes as f64 / 1048576.0,
            ms(r.checkpoint),
            r.checkpointed_accounts,
            if r.victim_led { "**yes**" } else { "no" },
            r.lease_left_ms,
            r.takeover_ms,
            r.load_ms,
            r.empty_load_ms,
            r.first_answer_ms,
            r.same_answer_ms,
            r.accounts_before,
            r.accounts_after,
            r.aof_rewrites
        );
    }
    // Per (size, victim leads): medians with min-max.
    let mut groups: Vec<(usize, bool)> = rec.iter().map(|r| (r.accounts, r.victim_led)).collect();
    groups.sort_unstable_by_key(|&(a, led)| (led, a));
    groups.dedup();
    let med = |mut v: Vec<f64>| -> (f64, f64, f64) {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n == 0 {
            return (0.0, 0.0, 0.0);
        }
        let m = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        (m, v[0], v[n - 1])
    };
    let of = |g: (usize, bool)| rec.iter().filter(move |r| (r.accounts, r.victim_led) == g);
    let Some(&base) = groups.first() else {
        return;
    };
    let base_load = med(of(base).map(|r| r.load_ms).collect()).0.max(1.0);
    let base_vis = med(of(base).map(|r| r.same_answer_ms).collect()).0.max(1.0);
    println!();
    println!(
        "| accounts | trials | takeover (median) | load: median (min - max) | per account | load ratio to {} accounts | client-visible: median (min - max) | ratio | survivor CPU, kill to answer (median) | redis CPU (median) |",
        base.0
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for &g in &groups {
        let load = med(of(g).map(|r| r.load_ms).collect());
        let vis = med(of(g).map(|r| r.same_answer_ms).collect());
        println!(
            "| {}{} | {} | {:.0} ms | {:.0} ms ({:.0} - {:.0}) | {:.3} ms | {:.2} | {:.0} ms ({:.0} - {:.0}) | {:.2} | {:.2} s | {:.2} s |",
            g.0,
            if g.1 { " (victim leads)" } else { "" },
            of(g).count(),
            med(of(g).map(|r| r.takeover_ms).collect()).0,
            load.0,
            load.1,
            load.2,
            load.0 / g.0.max(1) as f64,
            load.0 / base_load,
            vis.0,
            vis.1,
            vis.2,
            vis.0 / base_vis,
            med(of(g).map(|r| r.cpu_survivor_s).collect()).0,
            med(of(g).map(|r| r.cpu_redis_s).collect()).0,
        );
    }
    println!();
}
