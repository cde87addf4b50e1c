//! Machine context: CPU time of processes and of the whole machine from
//! /proc, percentiles, and an RFC 3339 formatter for `generate --end`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Clock ticks per second of /proc/<pid>/stat (`getconf CLK_TCK`, else 100).
pub fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// utime + stime of a process (all its threads), in clock ticks.
pub fn proc_ticks(pid: u32) -> u64 {
    proc_ticks_with(pid, false)
}

/// As `proc_ticks`, plus the CPU of children it has reaped when
/// `children` (Redis forks for AOF rewrites and reaps them).
pub fn proc_ticks_with(pid: u32, children: bool) -> u64 {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // The command name is in parentheses and may hold spaces.
    let Some((_, rest)) = text.rsplit_once(')') else {
        return 0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime 15.
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let own = get(11) + get(12);
    if children {
        own + get(13) + get(14)
    } else {
        own
    }
}

/// (busy, steal, total) ticks of the whole machine from /proc/stat.
pub fn machine_ticks() -> (u64, u64, u64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = text.lines().find(|l| l.starts_with("cpu ")) else {
        return (0, 0, 0);
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest is in user).
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    let steal = v.get(7).copied().unwrap_or(0);
    (total.saturating_sub(idle), steal, total)
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// CPU ticks of the processes that matter, at one instant.
#[derive(Debug, Clone)]
pub struct CpuSnap {
    pub at: Instant,
    pub nodes: u64,
    pub redis: u64,
    pub client: u64,
    pub machine_busy: u64,
    pub machine_steal: u64,
    pub machine_total: u64,
}

impl CpuSnap {
    pub fn take(nodes: &[u32], redis: Option<u32>) -> CpuSnap {
        let (machine_busy, machine_steal, machine_total) = machine_ticks();
        CpuSnap {
            at: Instant::now(),
            nodes: nodes.iter().map(|p| proc_ticks(*p)).sum(),
            redis: redis.map_or(0, |p| proc_ticks_with(p, true)),
            client: proc_ticks(std::process::id()),
            machine_busy,
            machine_steal,
            machine_total,
        }
    }
}

/// CPU used between two snapshots, in cores (CPU seconds per wall second).
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuUse {
    pub nodes: f64,
    pub redis: f64,
    pub client: f64,
    /// Whole machine, busy share of all cores (0..1), steal included.
    pub machine_busy: f64,
    /// Whole machine, share of all cores stolen by the hypervisor (0..1).
    pub steal: f64,
}

impl CpuUse {
    pub fn between(a: &CpuSnap, b: &CpuSnap, hz: f64) -> CpuUse {
        let wall = (b.at - a.at).as_secs_f64().max(1e-9);
        let cores = |x: u64, y: u64| y.saturating_sub(x) as f64 / hz / wall;
        let total = b.machine_total.saturating_sub(a.machine_total).max(1) as f64;
        CpuUse {
            nodes: cores(a.nodes, b.nodes),
            redis: cores(a.redis, b.redis),
            client: cores(a.client, b.client),
            machine_busy: b.machine_busy.saturating_sub(a.machine_busy) as f64 / total,
            steal: b.machine_steal.saturating_sub(a.machine_steal) as f64 / total,
        }
    }
}

/// Single-thread speed of this machine now: millions of iterations per
/// second of a fixed integer loop (best of three 100 ms tries). Taken
/// before each setup while nothing of the benchmark runs, it shows whether
/// the machine itself got slower or faster during the run.
pub fn calibrate() -> f64 {
    let mut best = 0.0f64;
    for _ in 0..3 {
        let started = Instant::now();
        let (mut x, mut n) = (0x9e37_79b9_7f4a_7c15u64, 0u64);
        while started.elapsed() < Duration::from_millis(100) {
            for _ in 0..10_000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x = x.wrapping_mul(0x0100_0000_01b3);
            }
            n += 10_000;
            std::hint::black_box(x);
        }
        best = best.max(n as f64 / started.elapsed().as_secs_f64() / 1e6);
    }
    best
}

/// The q-quantile of sorted samples (nearest rank).
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `YYYY-MM-DDTHH:MM:SSZ` of now minus `back`.
pub fn rfc3339_ago(back: Duration) -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_sub(back)
        .as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil from days (H. Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
