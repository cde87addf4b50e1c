#!/usr/bin/env bash
# Installs what the tests and the local cluster need beyond the Rust
# toolchain: `redis-server` (Debian package) for the cluster backend.
# Idempotent: does nothing when everything is present. Needs root (or sudo)
# only when something is missing.
set -euo pipefail

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
echo "installing: ${missing[*]}" >&2
$SUDO apt-get update
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
# The package may start a system instance on 6379; tests use their own
# servers on free ports and do not need it.
