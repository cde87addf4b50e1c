#!/usr/bin/env bash
# Propensity training side by side in one run: liveseg (`train_bench`:
# Candle, Newton steps) and scikit-learn (scripts/bench_sklearn_peer.py:
# lbfgs) on the same rows, twice each, interleaved. Figures go to
# BENCHMARKS.md ("Propensity models"). Installs scikit-learn into
# target/bench-venv on first use (PyPI).
#
#   scripts/bench-train-peer.sh [rows]     # default 1,000,000 rows x 40
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-1000000}
venv=target/bench-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet scikit-learn
fi
cargo build --release -p liveseg-learn --example train_bench
dump=target/train_bench_rows.bin
for round in 1 2; do
  echo "== round $round"
  target/release/examples/train_bench "$rows" --dump "$dump" | grep -E "generated|train_propensity"
  "$venv/bin/python" scripts/bench_sklearn_peer.py "$dump"
done
rm -f "$dump"
