#!/usr/bin/env bash
# Builds `mobilesam` with `--features cuda` on a machine without a CUDA installation or GPU,
# for copying to a GPU machine (driver >= 580, CUDA 13 libraries there: libcublas.so.13,
# libcurand.so.10, libcudart.so.13, e.g. those of a cu130 PyTorch wheel on LD_LIBRARY_PATH).
#
# The CUDA 13.0 compiler, headers and runtime come from NVIDIA's PyPI wheels. The binary links
# against the driver, cuBLAS and cuRAND (cudarc's dynamic linking), which are not on PyPI in a
# small form, so link-time stub libraries are generated from the functions cudarc declares; at
# run time the real libraries are found by their sonames.
#
#   tests/bench/build_cuda.sh [COMPUTE_CAP]    # default 90 (H100/H200)
# Output: target/cuda/release/mobilesam. Takes about 20 minutes on 2 cores (candle's kernels).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cap=${1:-90}
work=${MOBILESAM_CUDA_WORK:-$repo/target/cuda/toolkit}
python=${PYTHON:-python3}
mkdir -p "$work/wheels" "$work/stubs"

echo "fetching the CUDA 13.0 compiler wheels into $work/wheels"
for pkg in "nvidia-cuda-nvcc==13.0.*" "nvidia-cuda-runtime==13.0.*" "nvidia-cuda-cccl==13.0.*" \
           "nvidia-cuda-crt==13.0.*" "nvidia-nvvm==13.0.*"; do
    "$python" -m pip download -q --no-deps -d "$work/wheels" "$pkg"
done
for wheel in "$work"/wheels/*.whl; do
    "$python" -m zipfile -e "$wheel" "$work/raw"
done
toolkit=$work/raw/nvidia/cu13
chmod +x "$toolkit"/bin/* "$toolkit"/nvvm/bin/*
ln -sf libcudart.so.13 "$toolkit/lib/libcudart.so"

echo "generating link stubs from cudarc's declarations"
(cd "$repo" && cargo fetch -q)
cudarc=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.* | tail -n 1)
for spec in "driver cuda libcuda.so.1" "nvrtc nvrtc libnvrtc.so.13" "curand curand libcurand.so.10" \
            "cublas cublas libcublas.so.13" "cublaslt cublasLt libcublasLt.so.13"; do
    set -- $spec
    grep -rhoP '^\s{8,}fn \K\w+(?=\()' "$cudarc/src/$1/sys/" | sort -u \
        | awk '{print "void " $1 "(void){}"}' > "$work/stubs/$2.c"
    cc -shared -fPIC -o "$work/stubs/lib$2.so" -Wl,-soname,"$3" "$work/stubs/$2.c"
done

export PATH=$toolkit/bin:$PATH CUDA_ROOT=$toolkit CUDA_HOME=$toolkit CUDA_PATH=$toolkit
export CUDA_COMPUTE_CAP=$cap CUDARC_CUDA_VERSION=13000
export LIBRARY_PATH=$toolkit/lib:$work/stubs
export CARGO_TARGET_DIR=$repo/target/cuda
if [ -n "${MOBILESAM_CUDA_PREPARE_ONLY:-}" ]; then
    echo "toolkit and stubs ready in $work"; exit 0
fi
cd "$repo"
cargo build --release -p mobilesam --features cuda
echo "built $CARGO_TARGET_DIR/release/mobilesam (needs the CUDA 13 libraries at run time)"
