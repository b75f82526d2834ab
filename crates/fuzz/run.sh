#!/usr/bin/env bash
# Runs each fuzz target for a set time and prints the executions per target.
#
#   bash crates/fuzz/run.sh [TARGET...]      (default: every target)
#   FUZZ_SECONDS=120 bash crates/fuzz/run.sh image_decode
#
# Needs a nightly toolchain and cargo-fuzz:
#   rustup toolchain install nightly --profile minimal && cargo install cargo-fuzz
# New inputs the fuzzer finds go to crates/fuzz/target/corpus/TARGET (ignored by git);
# the committed seeds in crates/fuzz/corpus/TARGET are only read. A crash, a timeout
# (> 10 s per input) or an allocation over 512 MB stops a target, saves the input under
# crates/fuzz/artifacts/TARGET and makes this script exit non-zero.
set -uo pipefail
cd "$(dirname "$0")/../.."

seconds=${FUZZ_SECONDS:-60}
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(image_decode segment_request prompt_json rle_round_trip checkpoint_pt checkpoint_safetensors yolo_pickle)
fi

rustup run nightly cargo fuzz build --fuzz-dir crates/fuzz -O || exit 1

status=0
summary=()
for target in "${targets[@]}"; do
  work="crates/fuzz/target/corpus/$target"
  log="crates/fuzz/target/$target.log"
  mkdir -p "$work"
  rustup run nightly cargo fuzz run --fuzz-dir crates/fuzz -O "$target" "$work" "crates/fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=512 \
    -print_final_stats=1 >"$log" 2>&1
  rc=$?
  execs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
  result=ok
  if [ $rc -ne 0 ]; then
    result="FAILED (rc $rc, see $log and crates/fuzz/artifacts/$target)"
    status=1
  fi
  summary+=("$(printf '%-24s %10s executions in %ss, %s: %s' "$target" "${execs:-?}" "$seconds" "${cov:-cov: ?}" "$result")")
  echo "${summary[-1]}"
done
echo
printf '%s\n' "${summary[@]}"
exit $status
