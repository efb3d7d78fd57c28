#!/usr/bin/env bash
# Builds the project's fake CUDA stack (tests/fixtures, C) for machines without a GPU:
#   examples/python/fake-cuda.sh DIR
# DIR/lib: libcuda.so.1 (a fake driver with 2 devices) and libcudart.so.12 (a fake runtime that
# reaches the driver the way NVIDIA's does); DIR/bin/workload: a PyTorch-shaped training loop in C
# (`workload [steps] [pause_ms]`, WORKLOAD_FOREVER=1 runs until an error). The same compiler
# flags as tests/build.rs. Prints DIR/lib on its last line. Needs gcc.
set -euo pipefail
DIR=${1:?usage: fake-cuda.sh DIR}
SRC="$(cd "$(dirname "$0")/../../tests/fixtures" && pwd)"
mkdir -p "$DIR/lib" "$DIR/bin"
LIB="$(cd "$DIR/lib" && pwd)"
CFLAGS=(-Wall -Wextra -Werror -O2 -fPIC -std=gnu11 -pthread "-I$SRC")
CC=${CC:-cc}
# -fno-ipa-icf and -Bsymbolic-functions: as the real driver, cuGetProcAddress hands out the
# driver's own functions (see tests/build.rs).
"$CC" "${CFLAGS[@]}" -shared -fvisibility=hidden -Wl,-soname,libcuda.so.1 -fno-ipa-icf \
  -Wl,-Bsymbolic-functions "$SRC/fake_cuda.c" -ldl -o "$LIB/libcuda.so.1"
"$CC" "${CFLAGS[@]}" -shared -fvisibility=hidden -Wl,-soname,libcudart.so.12 \
  "-Wl,--version-script=$SRC/fake_cudart.map" "$SRC/fake_cudart.c" -ldl -o "$LIB/libcudart.so.12"
ln -sf libcuda.so.1 "$LIB/libcuda.so"
ln -sf libcudart.so.12 "$LIB/libcudart.so"
# DT_RPATH (not RUNPATH): it also covers the runtime's dlopen("libcuda.so.1").
"$CC" "${CFLAGS[@]}" "$SRC/workload.c" "-L$LIB" -lcudart "-Wl,--disable-new-dtags,-rpath,$LIB" \
  -o "$DIR/bin/workload"
echo "$LIB"
