#!/usr/bin/env bash
# Multi-replica test: three `mobilesam serve` replicas behind nginx (grpc_pass, consistent
# hash on x-session-id), on loopback. Installs what it needs (nginx from Debian's packages
# when missing, the Python venv of tests/run.sh), runs tests/deploy/test_multi_replica.py
# within a time limit, and ends every process it started, even on failure.
# Run from anywhere: bash tests/deploy/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

step() { printf '\n==> %s\n' "$*"; }

step "nginx"
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  bash tests/debian_package.sh nginx nginx-light nginx
  # The package may start a system nginx on port 80; the test runs its own.
  if [ -f /run/nginx.pid ]; then kill "$(cat /run/nginx.pid)" 2>/dev/null || true; fi
fi
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
"$nginx_bin" -v

step "redis-server (the embedding-store test runs its own on loopback)"
bash tests/debian_package.sh /usr/bin/redis-server redis-server

step "Python venv"
venv=target/test-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/python/requirements.txt

step "server binary and seeded weights"
bin=${MOBILESAM_BIN:-$PWD/target/debug/mobilesam}
if [ ! -x "$bin" ]; then
  cargo build -p mobilesam
fi
mkdir -p target/deploy-test
weights=target/deploy-test/seeded.safetensors
"$bin" seeded-checkpoint --manifest tests/fixtures/weights_manifest.json --output "$weights" >/dev/null

step "three replicas behind nginx"
pidfile=$(mktemp)
child=
cleanup() {
  # End the replicas and nginx the test started, should pytest itself have been killed
  # (a signal to this script, or the time limit).
  if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
    kill -TERM "$child" 2>/dev/null || true
    wait "$child" 2>/dev/null || true
  fi
  while read -r pid; do
    # Only our own children: a recycled pid of another program is left alone.
    if kill -0 "$pid" 2>/dev/null && grep -qaE 'mobilesam|nginx|redis-server' "/proc/$pid/cmdline" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      sleep 1
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done <"$pidfile"
  rm -f "$pidfile"
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
# In the background and waited for, so that a signal reaches the trap at once.
MOBILESAM_BIN="$bin" MOBILESAM_TEST_CHECKPOINT="$PWD/$weights" NGINX_BIN="$nginx_bin" \
  DEPLOY_TEST_PIDFILE="$pidfile" \
  timeout --signal=TERM --kill-after=30 "${DEPLOY_TEST_TIMEOUT:-900}" \
  "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/deploy/test_multi_replica.py "$@" &
child=$!
status=0
wait "$child" || status=$?
child=
exit "$status"
