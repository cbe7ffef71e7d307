#!/usr/bin/env bash
# Builds the statically linked release binary: glibc linked in with crt-static. Host names are resolved
# by the pure-Rust resolver (hickory) reading /etc/resolv.conf and /etc/hosts, so the binary never needs
# glibc's NSS modules at run time. Output: target/x86_64-unknown-linux-gnu/release/relayapi
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-gnu
# --target keeps the flag away from build scripts and proc-macros, which must stay dynamic.
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --target "$target"
bin="target/$target/release/relayapi"
# ldd says "statically linked" or "not a dynamic executable" depending on its version; a list of
# libraries ("=>") means the build is not static.
deps=$(ldd "$bin" 2>&1 || true)
if echo "$deps" | grep -q "=>"; then
  echo "error: $bin is dynamically linked:" >&2
  echo "$deps" >&2
  exit 1
fi
echo "static binary: $bin ($(du -h "$bin" | cut -f1))"
