#!/usr/bin/env bash
# Real-GPU checks of the shim: run on a machine with an NVIDIA GPU, the driver and PyTorch
# (Triton optional). Under 5 minutes; prints a summary table; exits non-zero on any failure.
#   tests/gpu/run.sh [--shim PATH]
# The shim: --shim, else $CUDA_FAULT_SHIM, else target/release/libcuda_intercept.so, else it is
# built with `cargo build --release --offline -p cuda-fault-shim` (needs Rust and a warm cargo
# cache: GPU machines usually have no internet; copy a built .so there instead).
set -euo pipefail
cd "$(dirname "$0")/../.."
SHIM=${CUDA_FAULT_SHIM:-}
if [ "${1:-}" = "--shim" ]; then SHIM=$2; fi
if [ -z "$SHIM" ]; then
  SHIM=$PWD/target/release/libcuda_intercept.so
  if [ ! -f "$SHIM" ]; then
    command -v cargo >/dev/null || { echo "no shim at $SHIM and no cargo: pass --shim PATH" >&2; exit 2; }
    cargo build --release --offline -p cuda-fault-shim >&2
  fi
fi
[ -f "$SHIM" ] || { echo "shim not found: $SHIM" >&2; exit 2; }
command -v nvidia-smi >/dev/null || { echo "nvidia-smi not found: this script needs an NVIDIA GPU machine" >&2; exit 2; }
exec python3 tests/gpu/gpu_checks.py "$(readlink -f "$SHIM")"
