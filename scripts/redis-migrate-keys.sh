#!/bin/sh
# One-time rename of a RelayAPI Redis store to the hash-tagged key names (docs/redis.md, "Upgrading").
# Usage: scripts/redis-migrate-keys.sh [key_prefix] [redis-cli options such as -h HOST -p PORT -a PASS]
# Stop every relay before running it; start the upgraded relays after it says "done".
set -eu
prefix=${1:-relayapi:}
[ $# -gt 0 ] && shift
lua="$(dirname "$0")/redis-migrate-keys.lua"
cursor=0
renamed=0
clashes=0
while :; do
    # Not on a terminal, redis-cli prints one value per line: the cursor, then the two counts.
    out=$(redis-cli "$@" --eval "$lua" , "$prefix" "$cursor")
    cursor=$(printf '%s\n' "$out" | sed -n 1p | tr -dc '0-9')
    renamed=$((renamed + $(printf '%s\n' "$out" | sed -n 2p | tr -dc '0-9')))
    clashes=$((clashes + $(printf '%s\n' "$out" | sed -n 3p | tr -dc '0-9')))
    [ "$cursor" = 0 ] && break
done
echo "done: $renamed keys renamed, $clashes left because their new name already exists"
[ "$clashes" = 0 ]
