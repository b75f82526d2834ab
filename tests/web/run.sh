#!/usr/bin/env bash
# The web page's checks, run by tests/run.sh after the binary and the seeded weights exist:
# 1. rebuild the page (crates/server/web: buf generate, tsc, vite build) and fail when the
#    committed output differs (the binary embeds dist/, so `cargo build` needs no Node.js);
# 2. drive the page in Debian's headless Chromium against the real `mobilesam serve`.
# Needs MOBILESAM_BIN and MOBILESAM_TEST_CHECKPOINT. Prints the seconds it took.
set -euo pipefail
cd "$(dirname "$0")/../.."
started=$SECONDS

bash tests/debian_package.sh /usr/bin/chromium chromium
/usr/bin/chromium --version

npm ci --prefix crates/server/web --no-audit --no-fund --loglevel=error
npm run --prefix crates/server/web build
if ! git diff --exit-code --stat -- crates/server/web/dist crates/server/web/src/gen; then
  echo "crates/server/web/dist is stale: run 'npm run build' in crates/server/web and commit it" >&2
  exit 1
fi

npm ci --prefix tests/web --no-audit --no-fund --loglevel=error
npm test --prefix tests/web
echo "web checks took $((SECONDS - started)) s"
