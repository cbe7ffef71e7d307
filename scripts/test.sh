#!/usr/bin/env bash
# Runs every test of the project: Rust (format, lints, unit, integration), the Python SDK and the
# end-to-end suite (official openai/anthropic SDKs against the release binary), the JavaScript SDK, and
# the browser example in headless Chromium. Installs what it needs on a fresh machine (Rust crates via
# cargo, a Python venv, npm ci, redis-server and chromium via apt-get).
# Usage: bash scripts/test.sh            (from anywhere)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
export CARGO_TERM_COLOR=never

step() { printf '\n==> %s\n' "$*"; }

apt_install() {
  # Install Debian packages only when a command is missing (root on CI and dev machines; sudo otherwise).
  local missing=()
  while [ $# -gt 0 ]; do
    command -v "$1" >/dev/null 2>&1 || missing+=("$2")
    shift 2
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  step "apt-get install ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

step "Rust: format and lints"
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings

step "Rust: unit and integration tests"
# The Redis store tests start their own redis-server (free port, no persistence) and fail without it.
apt_install redis-server redis-server
cargo test --locked

step "Rust: fuzz targets, 10 s each from their seeds (nightly; fuzz/README.md)"
bash fuzz/run-ci.sh 10

step "Rust: static release binary (used by every end-to-end suite below)"
bash scripts/build-static.sh
export RELAYAPI_BIN="$ROOT/target/x86_64-unknown-linux-gnu/release/relayapi"

step "Python: venv with the SDK and test dependencies"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e "sdk/python[dev]" -r e2e/requirements.txt
# The original RelayAPI's published SDK, for the compat-v0 tests (e2e/compat_v0_support.py). Its top-level
# package is also `relayapi`, so it goes to a directory of its own, run in a child process.
if [ ! -f .venv/relayapi-sdk-1.0.0/relayapi/token.py ]; then
  .venv/bin/pip install -q --target .venv/relayapi-sdk-1.0.0 relayapi-sdk==1.0.0
fi
.venv/bin/ruff check sdk/python e2e bench
.venv/bin/ruff format --check sdk/python e2e bench
.venv/bin/ruff check --config e2e/ruff.toml examples/mock_provider.py
.venv/bin/ruff format --check --config e2e/ruff.toml examples/mock_provider.py
# The type checker of the Python SDK, as tsc is for the JS SDK (mypy comes with the SDK's dev extra).
.venv/bin/mypy --strict sdk/python/src

step "Python: SDK tests, end-to-end suite and the benchmark's own tests (parsers, nginx configs)"
apt_install nginx nginx
.venv/bin/python -m pytest -q --rootdir . sdk/python/tests e2e bench

step "JavaScript: SDK lint and tests"
(cd sdk/js && npm ci --no-audit --no-fund --loglevel=error && npm run lint && npm run format:check && npm test)

step "Browser example in headless Chromium"
apt_install chromium chromium
(cd examples/web-chat && npm ci --no-audit --no-fund --loglevel=error && npm run lint && npm test)

step "All test suites passed"
