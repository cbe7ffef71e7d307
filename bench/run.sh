#!/usr/bin/env bash
# Install what the benchmark needs, build the release relay, then run bench/bench.py (or, with the
# argument `ws`, bench/ws.py) on core 1 (the proxies it starts pin themselves to core 0). Durations and sizes come from BENCH_* variables; see
# bench/README.md. Takes about 2 minutes with the defaults.
set -euo pipefail

cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

if [ "$(nproc)" -lt 2 ]; then
    echo "bench/run.sh: needs two cores (the proxy on one, load and upstreams on the other)" >&2
    exit 2
fi

missing=()
command -v nginx >/dev/null || missing+=(nginx)
command -v wrk >/dev/null || missing+=(wrk)
command -v taskset >/dev/null || missing+=(util-linux)
if [ "${#missing[@]}" -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    # Debian starts a system nginx on port 80 where there is an init system; the bench leaves it
    # alone and runs its own nginx instances from a temporary prefix.
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi

# `bench/run.sh ws`: the WebSocket comparison (bench/ws.py) instead of the HTTP one; no oha needed.
if [ "${1:-}" = ws ]; then
    cargo build --release --bin relayapi
    exec taskset -c 1 python3 bench/ws.py
fi

# oha is needed only for the open-loop latency run (BENCH_LATENCY=0 skips it).
if [ "${BENCH_LATENCY:-1}" != 0 ] && ! command -v oha >/dev/null; then
    # The JSON report format this script parses is oha 1.x's.
    cargo install oha --locked --version '^1'
fi

cargo build --release --bin relayapi

exec taskset -c 1 python3 bench/bench.py "$@"
