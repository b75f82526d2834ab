#!/usr/bin/env bash
# Cross-client conformance (README.md): starts ONE real server, runs every runner that is
# present on scenario.json, then compares all results files and checks the expectations.
#
#   MOBILESAM_BIN=target/debug/mobilesam MOBILESAM_TEST_CHECKPOINT=target/seeded.safetensors \
#     bash tests/conformance/run.sh
#
# Results go to target/conformance/<runner>.json; the server's log to target/conformance/server.log.
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$PWD"

for var in MOBILESAM_BIN MOBILESAM_TEST_CHECKPOINT; do
  if [ -z "${!var:-}" ]; then
    echo "conformance: $var must be set (the server binary and the seeded test checkpoint)" >&2
    exit 2
  fi
done
bin="$(cd "$(dirname "$MOBILESAM_BIN")" && pwd)/$(basename "$MOBILESAM_BIN")"
checkpoint="$(cd "$(dirname "$MOBILESAM_TEST_CHECKPOINT")" && pwd)/$(basename "$MOBILESAM_TEST_CHECKPOINT")"
scenario="$root/tests/conformance/scenario.json"
work="$root/target/conformance"
mkdir -p "$work"

# The Python runner's environment: the client installed as users install it.
venv="$work/venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check --force-reinstall --no-deps "$root/clients/python"
"$venv/bin/pip" install --quiet --disable-pip-version-check "$root/clients/python"
rm -rf "$root/clients/python/build" "$root/clients/python/src/mobilesam_client.egg-info"

names=() presents=() commands=()
runner() { names+=("$1"); presents+=("$2"); commands+=("$3"); }
# ---------------------------------------------------------------------------------------
# The runners, in one place: runner NAME PRESENT COMMAND. PRESENT is a shell test (true when
# the runner exists); COMMAND runs from the repository root with {scenario}, {server}
# (host:port) and {out} replaced, and writes the results file {out}. The first runner that
# is present is the comparison's reference.
runner python "true" \
  "$venv/bin/python tests/conformance/run_python.py {scenario} --server {server} --out {out}"
runner node "[ -f tests/conformance/run_node.mjs ] && command -v node" \
  "node tests/conformance/run_node.mjs {scenario} --server {server} --out {out}"
runner rust "'$bin' load --help 2>&1 | grep -q -- --conformance" \
  "'$bin' load --conformance {scenario} --addr {server} --out {out}"
# ---------------------------------------------------------------------------------------

port="$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
addr="127.0.0.1:$port"
read -r -a flags <<<"$("$venv/bin/python" -c 'import json, sys; print(" ".join(json.load(open(sys.argv[1])).get("server_flags", [])))' "$scenario")"
log="$work/server.log"
env -u MOBILESAM_BIN -u MOBILESAM_TEST_CHECKPOINT RUST_LOG=info \
  "$bin" serve --checkpoint "$checkpoint" --addr "$addr" --metrics-addr 127.0.0.1:0 \
  --log-format json "${flags[@]}" 2>"$log" >/dev/null &
server_pid=$!
stop_server() { kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true; }
trap stop_server EXIT
for _ in $(seq 1 360); do
  grep -q '"message":"serving"' "$log" 2>/dev/null && break
  kill -0 "$server_pid" 2>/dev/null || { echo "conformance: the server exited:" >&2; tail -20 "$log" >&2; exit 1; }
  sleep 0.5
done
grep -q '"message":"serving"' "$log" || { echo "conformance: the server did not start" >&2; tail -20 "$log" >&2; exit 1; }
echo "conformance: server on $addr (${flags[*]:-no extra flags})"

results=()
ran=()
failed=0
for i in "${!names[@]}"; do
  name="${names[$i]}" present="${presents[$i]}" command="${commands[$i]}"
  if ! bash -c "$present" >/dev/null 2>&1; then
    echo "conformance: runner $name: not present, skipped"
    continue
  fi
  out="$work/$name.json"
  rm -f "$out"
  command="${command//\{scenario\}/$scenario}"
  command="${command//\{server\}/$addr}"
  command="${command//\{out\}/$out}"
  echo "conformance: runner $name"
  if bash -c "$command" && [ -f "$out" ]; then
    results+=("$out")
    ran+=("$name")
  else
    echo "conformance: runner $name failed (no results file)" >&2
    failed=1
  fi
done

stop_server
trap - EXIT
if [ "${#results[@]}" -eq 0 ]; then
  echo "conformance: no runner produced results" >&2
  exit 1
fi
status=0
"$venv/bin/python" tests/conformance/compare.py --scenario "$scenario" "${results[@]}" || status=1
[ "$failed" -eq 0 ] || status=1
exit "$status"
