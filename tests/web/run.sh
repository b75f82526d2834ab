#!/usr/bin/env bash
# The web page's checks, run by tests/run.sh after the binary and the seeded weights exist:
# 1. rebuild the page (crates/server/web: `npm run build` builds @mobilesam/client from
#    clients/typescript first, its buf generate and tsc, then the page's tsc and vite build)
#    and fail when the committed output differs: the page's dist/ (the binary embeds it, so
#    `cargo build` needs no Node.js) or the package's generated code;
# 2. drive the page in Debian's headless Chromium against the real `mobilesam serve`
#    (tests/web/*.test.mjs: annotate.test.mjs on MobileSAM and SAM 2.1 images and MobileSAM
#    video, video_sam2.test.mjs on SAM 2.1 memory tracking, whose rescaled checkpoint
#    sam2_visible_checkpoint.py writes with python3's standard library).
# Needs MOBILESAM_BIN and MOBILESAM_TEST_CHECKPOINT. Prints the seconds it took.
set -euo pipefail
cd "$(dirname "$0")/../.."
started=$SECONDS

bash tests/debian_package.sh /usr/bin/chromium chromium
bash tests/debian_package.sh python3 python3
/usr/bin/chromium --version

npm ci --prefix crates/server/web --no-audit --no-fund --loglevel=error
npm run --prefix crates/server/web build
if ! git diff --exit-code --stat -- crates/server/web/dist clients/typescript/src/gen; then
  echo "crates/server/web/dist or clients/typescript/src/gen is stale: run 'npm run build' in crates/server/web and commit both" >&2
  exit 1
fi

npm ci --prefix tests/web --no-audit --no-fund --loglevel=error
npm test --prefix tests/web
echo "web checks took $((SECONDS - started)) s"
