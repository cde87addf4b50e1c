#!/usr/bin/env python3
"""Attributes the randomized fault mix's outages to the fault before them.

Run the mix with the probe log on and keep its output:

    LIVESEG_PROBE_LOG=1 LIVESEG_FAULT_MIX_SECS=300 cargo nextest run \
      -p liveseg-tests --run-ignored only -E 'test(randomized)' --no-capture \
      > mix.log 2>&1
    scripts/fault-mix-outages.py mix.log

The test prints `fault K on slot S at T s` before each fault and, with
LIVESEG_PROBE_LOG=1, `probe T s TENANT via NODE: ERROR` for each failed
probe and `probe T s TENANT via NODE: ok` for the first good probe after
failures (T on the shared monotonic clock). An outage is a run of failed
probes of one tenant up to the good probe that ends it; it is charged to
the last fault that started before it, and outages during which another
fault started are marked as chains. Prints outages longer than --over
seconds (default 4.0) and, per fault kind, how many outages exceeded the
4.5 s crash bound. The lengths run from the first failed probe to the
good one, one probe interval shorter than the checker's (which starts at
the last good probe before). Logs without `ok` lines (before session 16)
split runs of failures at gaps over 0.5 s instead, which merges outages
separated by a short recovery; --gaps splits any log that way, to
compare new runs with old ones. Per kind, it prints the median and p90
(nearest rank) of the outage lengths too. Logs from session 17 on also
mark the last good probe before failures (`probe T s TENANT: last ok`);
--checker then measures from it, as the checker does.
"""
import argparse
import collections
import re

KINDS = {0: "kill -9", 1: "SIGSTOP", 2: "leave+join", 3: "leader kill", 4: "Redis kill -9"}
BOUND_S = 4.5


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("log")
    p.add_argument("--over", type=float, default=4.0)
    p.add_argument("--gaps", action="store_true", help="split at gaps over 0.5 s even where good probes are logged")
    p.add_argument("--checker", action="store_true", help="measure from the last good probe before, where logged")
    a = p.parse_args()
    faults, fails = [], collections.defaultdict(list)
    last_ok = collections.defaultdict(list)
    with open(a.log, errors="replace") as f:
        for line in f:
            m = re.match(r"fault (\d) on slot (\d+) at ([\d.]+) s", line)
            if m:
                faults.append((float(m.group(3)), int(m.group(1)), int(m.group(2))))
                continue
            m = re.match(r"probe ([\d.]+) s (\S+): last ok", line)
            if m:
                last_ok[m.group(2)].append(float(m.group(1)))
                continue
            m = re.match(r"probe ([\d.]+) s (\S+) via \S+: (.*)", line)
            if m:
                fails[m.group(2)].append((float(m.group(1)), m.group(3)[:100]))
    outages = []
    for tenant, seen in fails.items():
        seen.sort()
        marked = not a.gaps and any(e == "ok" for _, e in seen)
        if a.gaps:
            seen = [(t, e) for t, e in seen if e != "ok"]
        start = None
        last = None
        for t, error in seen + [(float("inf"), "ok")]:
            ends = error == "ok" if marked else last is not None and t - last > 0.5
            if start is not None and ends:
                end = t if marked and t != float("inf") else last
                begin = start
                if a.checker:
                    begin = max([x for x in last_ok[tenant] if x <= start], default=start)
                outages.append((start, end - begin, tenant, first_error))
                start = None
            if error != "ok" and start is None:
                start, first_error = t, error
            last = t
    per_kind = collections.defaultdict(list)
    for start, length, tenant, error in sorted(outages):
        before = [f for f in faults if f[0] <= start + 0.05]
        at, kind, slot = before[-1] if before else (start, -1, -1)
        name = KINDS.get(kind, "before any fault")
        per_kind[name].append(length)
        chain = [f for f in faults if start + 0.05 < f[0] < start + length]
        if length > a.over:
            also = f"; then {len(chain)} more fault(s), the last {start + length - chain[-1][0]:.2f} s before the end" if chain else ""
            print(f"{start:.1f} {tenant} {length:.2f} s, {start - at:.1f} s after {name} (slot {slot}){also}: {error}")
    print()
    for name, lengths in sorted(per_kind.items()):
        over = sum(1 for x in lengths if x > BOUND_S)
        ranked = sorted(lengths)
        median = ranked[(len(ranked) - 1) // 2]
        p90 = ranked[int(0.9 * (len(ranked) - 1))]
        print(f"{name:<16} outages {len(lengths):>4}  over {BOUND_S} s: {over:>3}  median {median:.2f} s  p90 {p90:.2f} s  longest {max(lengths):.2f} s")


if __name__ == "__main__":
    main()
