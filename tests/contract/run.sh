#!/usr/bin/env bash
# The gRPC contract's checks (issue 30):
# 1. `buf lint proto`, with the exceptions listed in proto/buf.yaml; the list must be exact:
#    each exception still fires without it, lint without them finds nothing else, and a new
#    violation (a camelCase field, a new file's service without the Service suffix) fails;
# 2. `buf breaking proto --against tests/contract/baseline` (the last released contract)
#    passes, and fails on copies with a field renumbered, a field renamed, a message renamed,
#    an enum value renamed or renumbered; one with a field added still passes;
# 3. the Go module clients/go: the committed generated code is what Debian's protoc and
#    plugins make of the proto now, and the module and its example build offline with
#    Debian's Go gRPC packages (GOPATH mode); with MOBILESAM_BIN and MOBILESAM_TEST_CHECKPOINT
#    set, the example asks a real `mobilesam serve` for its model.
# buf is the npm package @bufbuild/buf, pinned in tests/contract/package-lock.json. Installs
# what it needs (npm ci; Debian packages through tests/debian_package.sh, as root) and can be
# run again. Prints one summary line and the seconds it took.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
started=$SECONDS

step() { printf '\n==> %s\n' "$*"; }
fail() {
  echo "FAIL: $*" >&2
  exit 1
}

work=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

step "buf (npm @bufbuild/buf, pinned)"
npm ci --prefix tests/contract --no-audit --no-fund --loglevel=error
buf=$root/tests/contract/node_modules/.bin/buf
buf_version=$("$buf" --version)
echo "buf $buf_version"

# A copy of the module proto/ (its buf.yaml included) at $work/NAME, for a mutated variant.
copy_module() {
  rm -rf "${work:?}/$1"
  mkdir -p "$work/$1"
  cp -R proto/. "$work/$1/"
}
# Applies a sed expression to a copy's mobilesam.proto and fails when it changed nothing (the
# test would then prove nothing).
mutate() {
  local file=$work/$1/mobilesam/v1/mobilesam.proto
  cp "$file" "$work/before.proto"
  sed -i -e "$2" "$file"
  if cmp -s "$file" "$work/before.proto"; then
    fail "the mutation '$2' matched nothing in the proto: update tests/contract/run.sh"
  fi
}
# "RULE path" lines of buf's JSON output (paths relative to the module root $1).
rules_of() {
  node -e '
    const prefix = process.argv[1] + "/";
    const lines = require("fs").readFileSync(0, "utf8").split("\n").filter(Boolean);
    for (const line of lines) {
      let d;
      try { d = JSON.parse(line); } catch { console.log("UNPARSED " + line); continue; }
      const path = d.path.startsWith(prefix) ? d.path.slice(prefix.length) : d.path;
      console.log(d.type + " " + path);
    }' "$1" | sort -u
}
# Runs `buf breaking` (or lint) and expects exit status 100 (buf's "found problems") with RULE
# among the problems: any other status (a parse error, say) is not the failure we want.
expect_rules() {
  local what=$1 rule=$2
  shift 2
  local status=0
  "$@" --error-format=json >"$work/out.json" 2>"$work/err.txt" || status=$?
  if [ "$status" -ne 100 ]; then
    cat "$work/out.json" "$work/err.txt" >&2
    fail "$what: expected buf to find problems (exit 100), got exit $status"
  fi
  if ! grep -q "\"type\":\"$rule\"" "$work/out.json"; then
    cat "$work/out.json" >&2
    fail "$what: buf failed, but without $rule"
  fi
  echo "ok: $what fails ($(node -e '
    const types = new Set(require("fs").readFileSync(0, "utf8").split("\n").filter(Boolean)
      .map((l) => JSON.parse(l).type));
    console.log([...types].sort().join(", "));' <"$work/out.json"))"
}

step "buf lint proto"
"$buf" lint proto
echo "ok: lint passes with the exceptions of proto/buf.yaml"

# The exceptions: `RULE path` for each path under a rule of lint.ignore_only (the layout of
# proto/buf.yaml: a rule at four spaces, its paths at six).
awk '
  /^  ignore_only:/ { inside = 1; next }
  inside && /^    [A-Z_]+:/ { rule = $1; sub(":", "", rule); next }
  inside && /^      - / { print rule " " $2; next }
  inside && /^  [^ #]/ { inside = 0 }
  /^[^ #]/ { inside = 0 }
' proto/buf.yaml | sort -u >"$work/exceptions.txt"
exceptions=$(wc -l <"$work/exceptions.txt")
[ "$exceptions" -gt 0 ] || fail "found no lint.ignore_only entries in proto/buf.yaml"
if grep -qE '^ *except:' proto/buf.yaml; then
  fail "proto/buf.yaml disables lint rules with except: (a rule off for every file); use ignore_only"
fi
copy_module bare
awk '
  /^  ignore_only:/ { skip = 1; next }
  skip && /^(    |      |    #)/ { next }
  { skip = 0; print }
' proto/buf.yaml >"$work/bare/buf.yaml"
"$buf" lint "$work/bare" --error-format=json >"$work/bare.json" 2>&1 || true
rules_of "$work/bare" <"$work/bare.json" >"$work/found.txt"
if ! diff -u "$work/exceptions.txt" "$work/found.txt"; then
  fail "lint.ignore_only in proto/buf.yaml is not exact: '-' lines no longer fire (remove them), '+' lines are new problems"
fi
echo "ok: each of the $exceptions exceptions still fires, and lint without them finds nothing else:"
sed 's/^/    /' "$work/exceptions.txt"

copy_module camel
mutate camel 's/^message Polygon {$/message Polygon {\n  bool closedPath = 99;/'
expect_rules "lint: a camelCase field" FIELD_LOWER_SNAKE_CASE "$buf" lint "$work/camel"
copy_module newfile
cat >"$work/newfile/mobilesam/v1/extra.proto" <<'EOF'
syntax = "proto3";
package mobilesam.v1;
service Extra {}
EOF
expect_rules "lint: a new file's service without the Service suffix" SERVICE_SUFFIX "$buf" lint "$work/newfile"

step "buf breaking proto --against tests/contract/baseline"
"$buf" breaking proto --against tests/contract/baseline
echo "ok: the proto is compatible with the released baseline"
copy_module added
mutate added 's/^message Rle {$/message Rle {\n  uint32 channels = 99;/'
"$buf" breaking "$work/added" --against tests/contract/baseline
echo "ok: breaking: a field added passes"
copy_module renumber
mutate renumber 's/^  uint32 width = 2;$/  uint32 width = 12;/'  # ImageReady.width, released
expect_rules "breaking: a field renumbered (ImageReady.width 2 -> 12)" FIELD_NO_DELETE \
  "$buf" breaking "$work/renumber" --against tests/contract/baseline
copy_module rename
mutate rename 's/^  string session_id = 1;  \/\/ send it/  string session = 1;  \/\/ send it/'
expect_rules "breaking: a field renamed (ImageReady.session_id -> session)" FIELD_SAME_NAME \
  "$buf" breaking "$work/rename" --against tests/contract/baseline
copy_module message
mutate message 's/\bModelInfo\b/ModelInformation/g'
expect_rules "breaking: a message renamed (ModelInfo -> ModelInformation)" MESSAGE_NO_DELETE \
  "$buf" breaking "$work/message" --against tests/contract/baseline
copy_module enumname
mutate enumname 's/^  TRACK_STATE_LOST = 2;/  TRACK_STATE_GONE = 2;/'
expect_rules "breaking: an enum value renamed (TRACK_STATE_LOST -> TRACK_STATE_GONE)" ENUM_VALUE_SAME_NAME \
  "$buf" breaking "$work/enumname" --against tests/contract/baseline
copy_module enumnumber
mutate enumnumber 's/^  TRACK_STATE_LOST = 2;/  TRACK_STATE_LOST = 4;/'
expect_rules "breaking: an enum value renumbered (TRACK_STATE_LOST 2 -> 4)" ENUM_VALUE_NO_DELETE \
  "$buf" breaking "$work/enumnumber" --against tests/contract/baseline

step "Go: Debian's toolchain, protoc plugins and gRPC packages"
bash tests/debian_package.sh go golang-go
bash tests/debian_package.sh protoc protobuf-compiler
bash tests/debian_package.sh /usr/bin/protoc-gen-go protoc-gen-go
bash tests/debian_package.sh /usr/bin/protoc-gen-go-grpc protoc-gen-go-grpc
# github.com/golang/protobuf 1.5 (internal/ is new in 1.4): grpc's codec marshals through it,
# and 1.4+ hands the APIv2 messages protoc-gen-go makes to google.golang.org/protobuf. Before
# golang-google-grpc-dev, which would otherwise pull in 1.3 (APIv1; the two conflict).
bash tests/debian_package.sh /usr/share/gocode/src/github.com/golang/protobuf/internal \
  golang-github-golang-protobuf-1-5-dev
bash tests/debian_package.sh /usr/share/gocode/src/google.golang.org/grpc golang-google-grpc-dev
bash tests/debian_package.sh /usr/share/gocode/src/google.golang.org/protobuf golang-google-protobuf-dev
go version
protoc --version
protoc-gen-go --version
protoc-gen-go-grpc --version
go_packages=$(dpkg-query -W -f='${Package} ${Version}, ' golang-go protoc-gen-go protoc-gen-go-grpc \
  golang-google-grpc-dev golang-google-protobuf-dev golang-github-golang-protobuf-1-5-dev)
echo "${go_packages%, }"

step "Go: the committed generated code is current"
bash clients/go/generate.sh "$work/generated"
# Ignoring only the protoc version in the header: `buf generate` with clients/go/buf.gen.yaml
# writes "protoc (unknown)" there and the same code otherwise.
if ! diff -ru -I '^//[[:space:]]*protoc[[:space:]]' clients/go/mobilesam "$work/generated/mobilesam"; then
  fail "clients/go/mobilesam is stale: run 'bash clients/go/generate.sh' and commit it"
fi
echo "ok: clients/go/mobilesam/v1 is what clients/go/generate.sh makes of the proto"

step "Go: the module and its example build offline (GOPATH mode, Debian's packages)"
module=github.com/mobilesam-serve/mobilesam-serve/clients/go
mkdir -p "$work/gopath/src/$(dirname "$module")"
cp -R clients/go "$work/gopath/src/$module"
unformatted=$(gofmt -l clients/go)
[ -z "$unformatted" ] || fail "gofmt would change: $unformatted"
export GO111MODULE=off GOPATH="$work/gopath:/usr/share/gocode" GOFLAGS= GOPROXY=off
go vet "$module/..."
go build -o "$work/example" "$module/example"
main_lines=$(awk '/^func main\(\) \{$/ { inside = 1; next } inside && /^\}$/ { inside = 0 } inside' \
  clients/go/example/main.go | wc -l)
echo "ok: go vet and go build of $module/... (the example's main: $main_lines lines)"

step "Go: the example against a real mobilesam serve"
ran="skipped (set MOBILESAM_BIN and MOBILESAM_TEST_CHECKPOINT)"
if [ -n "${MOBILESAM_BIN:-}" ] && [ -n "${MOBILESAM_TEST_CHECKPOINT:-}" ]; then
  # The server reads MOBILESAM_* variables as options: start it without any of ours.
  unset_ours=()
  for name in $(compgen -e | grep '^MOBILESAM_' || true); do
    unset_ours+=(-u "$name")
  done
  env "${unset_ours[@]}" RUST_LOG=info "$MOBILESAM_BIN" serve --checkpoint "$MOBILESAM_TEST_CHECKPOINT" \
    --addr 127.0.0.1:0 --metrics-addr 127.0.0.1:0 --log-format json --workers 1 \
    </dev/null >/dev/null 2>"$work/server.log" &
  server_pid=$!
  addr=
  for _ in $(seq 1 600); do
    if grep -q '"message":"serving"' "$work/server.log"; then
      addr=$(grep '"message":"gRPC listening' "$work/server.log" | head -n 1 |
        sed -E 's/.*"addr":"([^"]+)".*/\1/')
      break
    fi
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$addr" ]; then
    tail -n 20 "$work/server.log" >&2
    fail "mobilesam serve did not start"
  fi
  output=$(timeout 60 "$work/example" "$addr")
  echo "$output"
  case "$output" in
    "family=mobile_sam name="?*) ;;
    *) fail "the example printed '$output', expected family=mobile_sam name=..." ;;
  esac
  ran="ran against mobilesam serve at $addr: $output"
fi
echo "$ran"

echo
echo "contract checks passed in $((SECONDS - started)) s: buf $buf_version lint ($exceptions exact exceptions) and breaking against tests/contract/baseline (5 breaking changes caught, an added field allowed); Go code current, module and example built offline; example $ran"
