#!/usr/bin/env bash
# The Python client's tests, as a user gets the package: a fresh venv under target/, then
# `pip install ./clients/python` (with the test tools of requirements-dev.txt), then pytest
# from outside the source tree, against the real server:
#
#   MOBILESAM_BIN=target/debug/mobilesam MOBILESAM_TEST_CHECKPOINT=target/seeded.safetensors \
#     bash clients/python/run_tests.sh [pytest args]
#
# Both variables are required here (pytest alone skips the server tests without them).
# pytest's exit code 5 (no tests collected) counts as a failure.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

for var in MOBILESAM_BIN MOBILESAM_TEST_CHECKPOINT; do
  if [ -z "${!var:-}" ]; then
    echo "run_tests.sh: $var must be set (the server binary and the seeded test checkpoint)" >&2
    exit 2
  fi
done
MOBILESAM_BIN="$(cd "$(dirname "$MOBILESAM_BIN")" && pwd)/$(basename "$MOBILESAM_BIN")"
MOBILESAM_TEST_CHECKPOINT="$(cd "$(dirname "$MOBILESAM_TEST_CHECKPOINT")" && pwd)/$(basename "$MOBILESAM_TEST_CHECKPOINT")"
export MOBILESAM_BIN MOBILESAM_TEST_CHECKPOINT

work="$root/target/python-client"
venv="$work/venv"
rm -rf "$venv" "$here/build" "$here/src/mobilesam_client.egg-info"
mkdir -p "$work"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "$here" -r "$here/requirements-dev.txt"
rm -rf "$here/build" "$here/src/mobilesam_client.egg-info"
"$venv/bin/pip" --disable-pip-version-check list 2>/dev/null | grep -Ei '^(mobilesam-client|grpcio|protobuf|numpy) '

cd "$work"
set +e
"$venv/bin/python" -m pytest -q -p no:cacheprovider --rootdir "$here" -c "$here/pyproject.toml" "$here/tests" "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "run_tests.sh: pytest collected no tests" >&2
  exit 1
fi
exit "$status"
