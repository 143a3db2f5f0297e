#!/usr/bin/env bash
# Install the peer systems (bench/.venv, bench/node_modules) and run each one on a dataset.
#
#   bench/peers/run.sh DIR [--runs R] [--max-queries M] [--js-max-queries M] [--js-warmup W]
#                          [--only chroma,usearch,agentdb-js] [--no-install]
#
# DIR is a dataset directory written by `agentdb-bench export` (or make_dataset.py).
# Each peer writes DIR/results-<system>.json. A peer that cannot be installed or fails
# gets {"system": ..., "error": "..."} in its results file; the others still run.
# Exit status: 0 if every selected peer produced numbers, 1 otherwise.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bench="$(dirname "$here")"
venv="$bench/.venv"

usage() { sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

dir=""
runs=3
max_q=0
js_max_q=0
js_warmup=""
only="chroma,usearch,agentdb-js"
install=1
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --max-queries) max_q="$2"; shift 2 ;;
    --js-max-queries) js_max_q="$2"; shift 2 ;;
    --js-warmup) js_warmup="$2"; shift 2 ;;
    --only) only="$2"; shift 2 ;;
    --no-install) install=0; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "unknown option $1" >&2; usage >&2; exit 2 ;;
    *) if [ -z "$dir" ]; then dir="$1"; shift; else echo "unexpected argument $1" >&2; exit 2; fi ;;
  esac
done
[ -n "$dir" ] || { usage >&2; exit 2; }
[ -f "$dir/meta.json" ] || { echo "error: $dir/meta.json not found (export a dataset first)" >&2; exit 2; }
dir="$(cd "$dir" && pwd)"

log() { printf '[%s] run.sh: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
want() { case ",$only," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

# Record a failure as {"system": ..., "error": ...} without needing the venv.
record_error() { # system message
  local sys="$1" msg="$2"
  SYS="$sys" MSG="$msg" OUT="$dir/results-$sys.json" python3 - <<'EOF' || node -e 'require("fs").writeFileSync(process.env.OUT, JSON.stringify({system: process.env.SYS, error: process.env.MSG}, null, 2) + "\n")'
import json, os
with open(os.environ["OUT"], "w", encoding="utf-8") as f:
    json.dump({"system": os.environ["SYS"], "error": os.environ["MSG"]}, f, indent=2)
    f.write("\n")
EOF
  log "$sys: FAILED: $msg"
}

cpu="$(grep -m1 '^model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//')"
log "machine: ${cpu:-unknown CPU}, $(nproc) logical cores, $(uname -sr)"
log "dataset: $dir ($(tr -d '\n' < "$dir/meta.json"))"
log "runs: $runs; peers: $only"

py_ok=1; chroma_ok=1; usearch_ok=1; js_ok=1
py_err=""; chroma_err=""; usearch_err=""; js_err=""

# ------------------------------------------------------------------ Python peers
if want chroma || want usearch; then
  if [ "$install" = 1 ]; then
    if [ ! -x "$venv/bin/python" ]; then
      log "creating $venv"
      if ! out="$(python3 -m venv "$venv" 2>&1)"; then py_ok=0; py_err="python3 -m venv failed: $(echo "$out" | tail -n 3 | tr '\n' ' ')"; fi
    fi
    if [ "$py_ok" = 1 ]; then
      # One package at a time, so that one peer failing to install does not stop the other.
      for pkg in numpy chromadb usearch; do
        spec="$(grep -E "^$pkg==" "$here/requirements.txt")"
        if [ "$pkg" = chromadb ] && ! want chroma; then continue; fi
        if [ "$pkg" = usearch ] && ! want usearch; then continue; fi
        log "pip install $spec"
        if ! out="$("$venv/bin/python" -m pip install --disable-pip-version-check -q "$spec" 2>&1)"; then
          err="pip install $spec failed: $(echo "$out" | grep -iE 'error' | tail -n 3 | tr '\n' ' ' | cut -c1-400)"
          case "$pkg" in
            numpy) py_ok=0; py_err="$err" ;;
            chromadb) chroma_ok=0; chroma_err="$err" ;;
            usearch) usearch_ok=0; usearch_err="$err" ;;
          esac
        fi
      done
    fi
  elif [ ! -x "$venv/bin/python" ]; then
    py_ok=0; py_err="$venv does not exist and --no-install was given"
  fi
  if [ "$py_ok" = 0 ]; then
    chroma_ok=0; usearch_ok=0; chroma_err="$py_err"; usearch_err="$py_err"
  fi
fi

# ------------------------------------------------------------------ Node peer
if want agentdb-js; then
  if [ "$install" = 1 ]; then
    if ! command -v npm >/dev/null 2>&1; then
      js_ok=0; js_err="npm not found on PATH"
    else
      # npm ci compiles two native addons (about a minute and a half on 2 cores): skip it when
      # node_modules was installed from this very lock file.
      stamp="$bench/node_modules/.bench-lock.sha256"
      lock_sum="$(sha256sum "$bench/package-lock.json" | cut -d' ' -f1)"
      if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$lock_sum" ] && [ -d "$bench/node_modules/agentdb" ]; then
        log "bench/node_modules is current (agentdb@$(node -p "require('$bench/node_modules/agentdb/package.json').version"))"
      else
        log "npm ci in $bench (agentdb@1.6.1, pinned by bench/package-lock.json)"
        if out="$(cd "$bench" && npm ci --no-audit --no-fund 2>&1)"; then
          echo "$lock_sum" > "$stamp"
        else
          js_ok=0; js_err="npm ci failed: $(echo "$out" | grep -E 'npm error' | head -n 6 | tr '\n' ' ' | cut -c1-400)"
        fi
      fi
    fi
  elif [ ! -d "$bench/node_modules/agentdb" ]; then
    js_ok=0; js_err="$bench/node_modules/agentdb does not exist and --no-install was given"
  fi
fi

# ------------------------------------------------------------------ run
status=0
qflag=()
[ "$max_q" != 0 ] && qflag=(--max-queries "$max_q")

if want usearch; then
  if [ "$usearch_ok" = 1 ]; then
    log "usearch (f32 and i8)"
    "$venv/bin/python" "$here/usearch_runner.py" "$dir" --runs "$runs" "${qflag[@]}" || status=1
  else
    record_error usearch "$usearch_err"; record_error usearch-i8 "$usearch_err"; status=1
  fi
fi

if want chroma; then
  if [ "$chroma_ok" = 1 ]; then
    log "chroma"
    "$venv/bin/python" "$here/chroma_runner.py" "$dir" --runs "$runs" "${qflag[@]}" || status=1
  else
    record_error chroma "$chroma_err"; status=1
  fi
fi

if want agentdb-js; then
  if [ "$js_ok" = 1 ]; then
    # The episode store is an exact scan in JS (~N/80 ms per query here): --js-max-queries
    # bounds its query count separately; its HNSW variant follows --max-queries.
    jsq=()
    if [ "$js_max_q" != 0 ]; then jsq+=(--max-queries "$js_max_q"); elif [ "$max_q" != 0 ]; then jsq+=(--max-queries "$max_q"); fi
    [ "$max_q" != 0 ] && jsq+=(--hnsw-max-queries "$max_q")
    [ -n "$js_warmup" ] && jsq+=(--warmup "$js_warmup")
    log "agentdb-js (episode store) and agentdb-js-hnsw"
    (cd "$bench" && node "$here/agentdb_js_runner.mjs" "$dir" --runs "$runs" "${jsq[@]}") || status=1
  else
    record_error agentdb-js "$js_err"; record_error agentdb-js-hnsw "$js_err"; status=1
  fi
fi

log "done; results in $dir/results-*.json (summarise with: $venv/bin/python $here/report.py $dir)"
exit "$status"
