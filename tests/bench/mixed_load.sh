#!/usr/bin/env bash
# One run of issue 13's mixed scenario against a fresh server: clicks alone, superseding
# bursts, uploads alone, uploads and clicks together (`mobilesam load --uploaders 2
# --clickers 1`, 20 s phases). Appends one JSON line {label, interval, result} to OUT.
#
# usage: tests/bench/mixed_load.sh OUT LABEL CLICK_INTERVAL [serve flags...]
#   e.g. tests/bench/mixed_load.sh target/mixed.jsonl default 250ms
#        tests/bench/mixed_load.sh target/mixed.jsonl no-pauses 0s --yield-max-pause 0
# Needs target/debug/mobilesam and target/test-weights/seeded.safetensors (tests/run.sh
# makes both).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$1 label=$2 interval=$3
shift 3
port=$((20000 + RANDOM % 20000))
metrics_port=$((port + 1))
log=$(mktemp)
target/debug/mobilesam serve --checkpoint target/test-weights/seeded.safetensors \
  --addr "127.0.0.1:$port" --metrics-addr "127.0.0.1:$metrics_port" "$@" >"$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 1 240); do
  curl -sf "http://127.0.0.1:$metrics_port/metrics" >/dev/null 2>&1 && break
  sleep 0.5
done
result=$(target/debug/mobilesam load --addr "http://127.0.0.1:$port" \
  --image tests/fixtures/images/chelsea.png --uploaders 2 --clickers 1 --duration 20s \
  --click-interval "$interval" --json)
echo "{\"label\":\"$label\",\"interval\":\"$interval\",\"result\":$result}" >>"$out"
echo "$label $interval: appended to $out"
