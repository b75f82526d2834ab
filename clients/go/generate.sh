#!/usr/bin/env bash
# Regenerates the Go code of proto/mobilesam/v1/mobilesam.proto into mobilesam/v1/ (or into
# OUT_DIR/mobilesam/v1/ when given: tests/contract/run.sh compares a fresh copy with the
# committed one). Uses Debian's protoc, protoc-gen-go and protoc-gen-go-grpc (README.md).
#
#   bash clients/go/generate.sh [OUT_DIR]
#
# The proto has no go_package option (it is shared by every client), so the M mapping flags
# give the Go import path and package name.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$here}
mkdir -p "$out"
mapping="Mmobilesam/v1/mobilesam.proto=github.com/mobilesam-serve/mobilesam-serve/clients/go/mobilesam/v1;mobilesamv1"
protoc -I "$root/proto" \
  --go_out="$out" --go_opt=paths=source_relative --go_opt="$mapping" \
  --go-grpc_out="$out" --go-grpc_opt=paths=source_relative --go-grpc_opt="$mapping" \
  mobilesam/v1/mobilesam.proto
