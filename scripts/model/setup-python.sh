#!/usr/bin/env bash
# Creates the Python venv for the model tooling (scripts/model/*.py) and
# installs scripts/model/requirements.txt into it.
#
#   scripts/model/setup-python.sh
#
# The venv lives at $LIVESEG_PY_VENV, else <repo>/target/py-model (under
# target/ so it is git-ignored and `cargo clean` removes it too). Prints the
# venv's python path on stdout as the last line, so callers can do
#   PY="$(scripts/model/setup-python.sh | tail -1)"
#
# Idempotent: a stamp file records the sha256 of the requirements that were
# installed; when it matches, nothing is downloaded and the script returns at
# once.
set -euo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
venv="${LIVESEG_PY_VENV:-$repo/target/py-model}"
req="$repo/scripts/model/requirements.txt"
python="${PYTHON:-python3}"
stamp="$venv/.liveseg-requirements.sha256"

if command -v sha256sum >/dev/null 2>&1; then
    want="$(sha256sum "$req" | cut -d' ' -f1)"
else # macOS
    want="$(shasum -a 256 "$req" | cut -d' ' -f1)"
fi

if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "python venv up to date: $venv" >&2
else
    if [ ! -x "$venv/bin/python" ]; then
        echo "creating venv $venv" >&2
        "$python" -m venv "$venv"
    fi
    echo "installing $req" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" >&2
    # Written last, so an interrupted install is retried on the next run.
    echo "$want" >"$stamp"
fi

echo "$venv/bin/python"
