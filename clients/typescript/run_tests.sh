#!/usr/bin/env bash
# The @mobilesam/client checks, run by tests/run.sh after the binary and the seeded weights
# exist: `npm ci`, build (buf generate + tsc), the unit tests and the tests against the real
# `mobilesam serve` (node --test), then `npm pack` installed into a fresh project outside the
# repository, imported from Node (both entries) and type-checked from TypeScript.
# Needs MOBILESAM_BIN and MOBILESAM_TEST_CHECKPOINT. Prints the seconds it took.
set -euo pipefail
cd "$(dirname "$0")"
started=$SECONDS

: "${MOBILESAM_BIN:?set MOBILESAM_BIN to the mobilesam binary}"
: "${MOBILESAM_TEST_CHECKPOINT:?set MOBILESAM_TEST_CHECKPOINT to seeded weights (mobilesam seeded-checkpoint)}"
export MOBILESAM_BIN MOBILESAM_TEST_CHECKPOINT

npm ci --no-audit --no-fund --loglevel=error
npm run build
if git rev-parse --is-inside-work-tree >/dev/null 2>&1 && ! git diff --exit-code --stat -- src/gen; then
  echo "clients/typescript/src/gen is stale: run 'npm run build' in clients/typescript and commit it" >&2
  exit 1
fi
npm test

# The packed package, installed as a user would, into a project of its own.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
tarball=$(npm pack --silent --pack-destination "$scratch" | tail -n 1)
mkdir "$scratch/project"
cd "$scratch/project"
cat > package.json <<'JSON'
{ "name": "consumer", "private": true, "type": "module" }
JSON
npm install --no-audit --no-fund --loglevel=error "$scratch/$tarball"
node --input-type=module -e '
import { createClient, Mask, decodeRle, Superseded, MobilesamError, Code } from "@mobilesam/client";
import * as web from "@mobilesam/client/web";
import { SegmentAnything } from "@mobilesam/client/gen";
const mask = new Mask({ score: 1, area: 5, bbox: [0, 0, 3, 3], rle: { size: [3, 4], counts: "255" } });
if (mask.bitmap.join("") !== "011001001100") throw new Error("bitmap " + mask.bitmap.join(""));
if (decodeRle({ size: [1, 1], counts: "01" })[0] !== 1) throw new Error("decodeRle");
if (!(new Superseded("x") instanceof MobilesamError) || Code.NotFound !== 5) throw new Error("errors");
if (SegmentAnything.typeName !== "mobilesam.v1.SegmentAnything") throw new Error("gen");
const client = createClient("127.0.0.1:9"); client.close();
web.createClient("http://127.0.0.1:9");
console.log("the packed @mobilesam/client imports");
'
cat > check.ts <<'TS'
import { createClient, type Prediction, type Mask } from "@mobilesam/client";
const client = createClient("localhost:50051", { token: "t" });
export async function first(image: Uint8Array): Promise<Mask | undefined> {
  const session = await client.openSession(image);
  const result: Prediction = await session.predict({ points: [[10, 20]], labels: [1], multimask: true });
  return result.objects[0]?.best;
}
TS
"$OLDPWD/node_modules/.bin/tsc" --noEmit --strict --module nodenext --moduleResolution nodenext \
  --target es2022 --lib es2022,dom --skipLibCheck false check.ts 2>&1 \
  || { echo "the packed package's types do not check" >&2; exit 1; }
echo "the packed @mobilesam/client type-checks"
echo "TypeScript client checks took $((SECONDS - started)) s"
