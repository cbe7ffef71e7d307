#!/usr/bin/env bash
# Instructions per proxied request, the relay against nginx, counted by callgrind (bench/instructions.py;
# see bench/README.md). Independent of other load on the machine, unlike bench/run.sh's CPU time. Installs
# valgrind, nginx and strace if missing and builds the release relay first.
set -euo pipefail

cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

missing=()
command -v valgrind >/dev/null || missing+=(valgrind)
command -v nginx >/dev/null || missing+=(nginx)
command -v strace >/dev/null || missing+=(strace)
if [ "${#missing[@]}" -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi

# RELAY_BIN names another binary to measure instead (e.g. one built with symbols for callgrind_annotate).
[ -n "${RELAY_BIN:-}" ] || cargo build --release --bin relayapi

exec python3 bench/instructions.py "$@"
