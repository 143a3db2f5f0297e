#!/usr/bin/env bash
# Tests the Python client (clients/python): builds its wheel, installs the wheel (not the source
# tree) and the pinned requirements into target/venvs/python-client, lints the sources with ruff,
# type-checks the installed package with mypy --strict, then runs pytest against real hubs.
# Needs target/debug/agentdb (or AGENTDB_BIN). No arguments; runs from any directory.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$root/target/venvs/python-client"
agentdb_bin="${AGENTDB_BIN:-$root/target/debug/agentdb}"
if [[ ! -x "$agentdb_bin" ]]; then
  echo "no agentdb binary at $agentdb_bin: build it first (cargo build --bin agentdb), or set AGENTDB_BIN" >&2
  exit 1
fi

if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv"
fi
py="$venv/bin/python"
"$py" -m pip install --quiet --disable-pip-version-check \
  -r "$here/requirements-build.txt" -r "$here/requirements-test.txt"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$py" -m pip wheel --quiet --disable-pip-version-check --no-deps --no-build-isolation \
  --wheel-dir "$work" "$here"
"$py" -m pip install --quiet --disable-pip-version-check --no-deps --force-reinstall "$work"/agentdb_client-*.whl

export PYTHONDONTWRITEBYTECODE=1
export RUFF_CACHE_DIR="$root/target/ruff/python-client"
"$venv/bin/ruff" check --quiet "$here"
"$venv/bin/ruff" format --check --quiet "$here"
# The installed package, from outside the source tree (tests/test_package.py checks pytest's import too).
(cd "$work" && "$venv/bin/mypy" --config-file "$here/pyproject.toml" --strict \
  --cache-dir "$root/target/mypy/python-client" -p agentdb)
cd "$here"
AGENTDB_BIN="$agentdb_bin" "$venv/bin/pytest" --basetemp "$work/pytest"
