#!/usr/bin/env bash
# Coverage-guided fuzzing with libFuzzer, on stable Rust (no cargo-fuzz needed).
#
#   scripts/fuzz.sh --smoke            build, then run every target for 20 s (FUZZ_SMOKE_SECS)
#   scripts/fuzz.sh TARGET SECONDS     build, then run one target for SECONDS
#   scripts/fuzz.sh --build            build only
#   scripts/fuzz.sh --list             the targets
#   scripts/fuzz.sh --seeds            rewrite the committed seeds (fuzz/seeds/main.rs)
#
# Extra arguments after SECONDS go to libFuzzer (e.g. -jobs=2, -only_ascii=1). The targets are
# built with the coverage instrumentation `cargo fuzz build --sanitizer none` uses, into
# fuzz/target. Each run starts from the committed seeds and reproducers in fuzz/corpus/TARGET;
# the corpus it grows is kept in fuzz/target/corpus/TARGET (not committed), or in a temporary
# directory for --smoke. A crash stops the run, is saved under fuzz/artifacts/TARGET/ and makes
# this script fail. See docs/fuzzing.md.
set -euo pipefail
cd "$(dirname "$0")/.."

targets=(frame_decoder messages fed_messages tokens hub_config)
host=$(rustc -vV | sed -n 's/^host: //p')
bin_dir="fuzz/target/$host/release"

# fuzz_cargo COMMAND [ARGS…]: cargo on the fuzz crate with the fuzzing instrumentation.
fuzz_cargo() {
  local command=$1
  shift
  # Not `--locked`: fuzz/Cargo.lock is the starting point, and cargo only adds what a crate of
  # the workspace started to depend on since, without moving the versions already locked.
  # `--target` keeps these flags away from build scripts and proc macros, which are not linked
  # with libFuzzer. Same instrumentation as cargo-fuzz: 8-bit counters, PC table, comparison
  # tracing, stack depth; `--cfg fuzzing` for code that wants to know.
  RUSTFLAGS="-Cpasses=sancov-module \
    -Cllvm-args=-sanitizer-coverage-level=4 \
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
    -Cllvm-args=-sanitizer-coverage-pc-table \
    -Cllvm-args=-sanitizer-coverage-trace-compares \
    -Cllvm-args=-sanitizer-coverage-stack-depth \
    -Cllvm-args=-simplifycfg-branch-fold-threshold=0 \
    --cfg fuzzing ${RUSTFLAGS:-}" \
    cargo "$command" --manifest-path fuzz/Cargo.toml --target-dir fuzz/target --target "$host" \
    --release "$@"
}

build() {
  fuzz_cargo build --bins
}

# run TARGET SECONDS CORPUS_DIR [libFuzzer args…]
run() {
  local target=$1 secs=$2 corpus=$3
  shift 3
  local seeds="fuzz/corpus/$target" artifacts="fuzz/artifacts/$target/"
  mkdir -p "$corpus" "$seeds" "$artifacts"
  echo "== fuzz $target for ${secs}s"
  local log
  log=$(mktemp)
  if ! "$bin_dir/$target" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$artifacts" "$@" "$corpus" "$seeds" >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    rm -f "$log"
    echo "error: fuzz target $target failed; reproducer in $artifacts" >&2
    return 1
  fi
  local execs rate
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  echo "   $target: ${execs:-?} executions, ${rate:-?} exec/s, 0 crashes, corpus $(find "$corpus" -type f | wc -l) inputs"
  rm -f "$log"
}

case "${1:-}" in
  --list)
    printf '%s\n' "${targets[@]}"
    ;;
  --build)
    build
    ;;
  --seeds)
    build
    "$bin_dir/seeds" -runs=1 >/dev/null 2>&1
    find fuzz/corpus -name 'seed-*' | sort
    ;;
  --smoke)
    secs=${FUZZ_SMOKE_SECS:-20}
    build
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    for t in "${targets[@]}"; do
      run "$t" "$secs" "$tmp/$t"
    done
    ;;
  "" | -h | --help)
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
    ;;
  *)
    target=$1
    secs=${2:?usage: scripts/fuzz.sh TARGET SECONDS}
    shift 2
    if [[ ! " ${targets[*]} " == *" $target "* ]]; then
      echo "error: unknown target $target (try --list)" >&2
      exit 2
    fi
    build
    run "$target" "$secs" "fuzz/target/corpus/$target" "$@"
    ;;
esac
