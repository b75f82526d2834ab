#!/usr/bin/env bash
# The CPU paths that machines without AVX-512 run, on emulated CPUs (QEMU user mode, Debian's
# qemu-user): CI machines have AVX-512, so natively only the AVX-512 kernels are tested.
#
#   -cpu Haswell   AVX2 + FMA, no AVX-512: the `multiversion` AVX2 clones, the formula GELU,
#                  the general attention path (AMD Zen 2/3, most laptops)
#   -cpu Nehalem   SSE4.2, no AVX: the baseline x86-64 build of every clone
#
# On each: every unit test of the kernels crate (crates/kernels: the kernels, the SiLU
# epilogue and the RGB and F(4x4, 3x3) convolutions of the detector included, each checked
# against a plain reference on small shapes), then the model crate's tests of the mask
# upscale's clones and the RLE (`masks::upscale::`, `masks::rle::`) and of the resize
# (`image::tests::`), about 2-3 min per CPU on a 2-core machine.
# An end-to-end parity case does not fit: one encode under emulation took over 5 min. The
# kernels crate's `dispatch` test fails if the emulated CPU does not select the path named
# here. Run by tests/run.sh; prints the time of each run.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tests/debian_package.sh qemu-x86_64 qemu-user
qemu-x86_64 --version | head -n 1

# The test binaries, built natively: the same binaries `cargo test --workspace` ran natively
# (asking for the workspace, not `-p mobilesam-kernels -p mobilesam-model` alone, keeps the
# dependencies' features and so reuses that build instead of compiling candle and the rest
# again).
executables=$(cargo test --workspace --no-run --message-format=json \
  | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["target"]["kind"][0], m["target"]["name"], m["executable"])
')
kernels=$(awk '$1 == "lib" && $2 == "mobilesam_kernels" {print $3}' <<<"$executables")
model=$(awk '$1 == "lib" && $2 == "mobilesam_model" {print $3}' <<<"$executables")
if [ -z "$kernels" ] || [ -z "$model" ]; then
  echo "test binaries not found in: $executables" >&2
  exit 1
fi

for cpu in "Haswell avx2+fma" "Nehalem baseline"; do
  read -r cpu_model expected <<<"$cpu"
  export MOBILESAM_EXPECT_INSTRUCTION_SET=$expected
  started=$SECONDS
  # qemu warns once per thread about CPUID bits its TCG cannot emulate (x2apic, hle, ...),
  # none of which the kernels use: those lines are dropped, every other line is kept.
  qemu-x86_64 -cpu "$cpu_model" "$kernels" --test-threads 2 -q \
    2> >(grep -v "TCG doesn't support requested feature" >&2)
  qemu-x86_64 -cpu "$cpu_model" "$model" --test-threads 2 -q masks::upscale:: masks::rle:: image::tests:: \
    2> >(grep -v "TCG doesn't support requested feature" >&2)
  echo "emulated $cpu_model ($expected): kernel tests $((SECONDS - started)) s"
done
