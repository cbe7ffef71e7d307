#!/usr/bin/env bash
# Builds every fuzz target with libFuzzer and runs each for a few seconds from its seeds, failing on
# the first crash or property violation. Called by scripts/test.sh; also the way to run a campaign.
#
# Usage: bash fuzz/run-ci.sh [SECONDS_PER_TARGET] [TARGET...]
#   SECONDS_PER_TARGET  default 10 (or $FUZZ_SECONDS); TARGETs default to every fuzz_targets/*.rs.
#   FUZZ_TARGET_DIR     where the instrumented build goes (default fuzz/target).
#   FUZZ_ARGS           extra libFuzzer arguments, e.g. "-runs=10000000" for a campaign.
#
# The targets are plain libfuzzer-sys binaries, built the way `cargo fuzz build --sanitizer none`
# builds them (SanitizerCoverage through RUSTFLAGS), so nothing needs installing beyond a toolchain:
# nightly when rustup has one, else the stable compiler with RUSTC_BOOTSTRAP=1. `cargo fuzz run
# <target>` works on the same crate too. Without either, the step prints a SKIP line; the saved inputs
# are replayed on stable by `cargo test` (tests/fuzz_regressions.rs) in any case.
set -euo pipefail
cd "$(dirname "$0")"
FUZZ=$(pwd)

secs=${1:-${FUZZ_SECONDS:-10}}
[ $# -gt 0 ] && shift
if [ $# -gt 0 ]; then
  targets=("$@")
else
  targets=()
  for f in fuzz_targets/*.rs; do targets+=("$(basename "$f" .rs)"); done
fi

host=$(rustc -vV | sed -n 's/^host: //p')
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  cargo_cmd=(cargo +nightly)
  toolchain=nightly
else
  # The coverage flags below are stable codegen options; libfuzzer-sys only needs a C++ compiler.
  export RUSTC_BOOTSTRAP=1
  cargo_cmd=(cargo)
  toolchain="stable (RUSTC_BOOTSTRAP=1)"
fi

# SanitizerCoverage as cargo-fuzz sets it up: edge counters, the PC table, comparison tracing (so the
# fuzzer learns the bytes a comparison wants), plus `cfg(fuzzing)`, debug assertions and overflow
# checks, so an arithmetic overflow is a crash rather than a wrapped number.
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$FUZZ/target}

echo "fuzz: building ${#targets[@]} targets with $toolchain"
bins=()
for t in "${targets[@]}"; do bins+=(--bin "$t"); done
if ! "${cargo_cmd[@]}" build --locked --release --target "$host" "${bins[@]}"; then
  if [ "$toolchain" = nightly ]; then
    echo "fuzz: build failed" >&2
    exit 1
  fi
  echo "SKIP fuzz: no nightly toolchain and the stable build of the libFuzzer targets failed;"
  echo "SKIP fuzz: the saved inputs still run on stable in cargo test (tests/fuzz_regressions.rs)"
  exit 0
fi

status=0
for t in "${targets[@]}"; do
  corpus="$FUZZ/corpus/$t"
  mkdir -p "$corpus" "$FUZZ/artifacts/$t"
  log="$FUZZ/artifacts/$t/last-run.log"
  # The corpus directory comes first: libFuzzer writes new inputs there and only reads the seeds.
  # shellcheck disable=SC2086
  if "$CARGO_TARGET_DIR/$host/release/$t" "$corpus" "$FUZZ/seeds/$t" \
    -dict="$FUZZ/dict/$t.dict" -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
    -max_total_time="$secs" -print_final_stats=1 \
    -artifact_prefix="$FUZZ/artifacts/$t/" ${FUZZ_ARGS:-} >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    cov=$(grep -E '^#[0-9]+' "$log" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+' || true)
    echo "fuzz: $t ok: $runs runs in ${secs}s, $cov"
  else
    status=1
    echo "fuzz: $t FAILED; the input is in fuzz/artifacts/$t/ (crash-*, leak-*, timeout-* or oom-*)."
    echo "fuzz: replay it with $CARGO_TARGET_DIR/$host/release/$t <file>; once fixed, copy it to"
    echo "fuzz: fuzz/regressions/$t/ so that cargo test replays it for good. Log tail:"
    tail -40 "$log"
  fi
done
exit $status
