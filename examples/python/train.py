"""A training loop shaped like PyTorch's use of the CUDA runtime, in plain Python (ctypes): each
step allocates, copies in, synchronizes, copies back and frees, and checks every call the way
PyTorch does, raising ``RuntimeError: CUDA error: ...`` on the first failure.

    python train.py [--steps N] [--forever] [--pause-ms T]

It runs on any CUDA runtime: ``libcudart.so.12`` from the system or a GPU machine, or the one
named by ``$CUDA_FAULT_EXAMPLE_CUDART`` (NVIDIA's runtime wheel, or the project's fake stack
built by ``fake-cuda.sh``, with ``LD_LIBRARY_PATH`` naming its driver). Prints ``step K ok``
per step and ``train ok`` at the end; exit 1 with the error on the last line otherwise.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
import time

cudaMemcpyHostToDevice = 1
cudaMemcpyDeviceToHost = 2


def load_runtime() -> ctypes.CDLL:
    """The runtime, loaded into the global scope, and its functions looked up there: as a
    program linked with -lcudart (PyTorch) finds them, so a preloaded shim's come first."""
    name = os.environ.get("CUDA_FAULT_EXAMPLE_CUDART", "libcudart.so.12")
    ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL)
    rt = ctypes.CDLL(None)
    rt.cudaGetErrorName.restype = ctypes.c_char_p
    rt.cudaGetErrorString.restype = ctypes.c_char_p
    return rt


def check(rt: ctypes.CDLL, call: str, err: int) -> None:
    if err != 0:
        name = rt.cudaGetErrorName(err).decode()
        text = rt.cudaGetErrorString(err).decode()
        raise RuntimeError(f"CUDA error: {text} ({name} = {err}) in {call}")


def step(rt: ctypes.CDLL, n: int, k: int) -> None:
    host = (ctypes.c_int * n)(*range(k, k + n))
    back = (ctypes.c_int * n)()
    dev = ctypes.c_void_p()
    size = ctypes.sizeof(host)
    check(rt, "cudaMalloc", rt.cudaMalloc(ctypes.byref(dev), ctypes.c_size_t(size)))
    check(rt, "cudaMemcpy", rt.cudaMemcpy(dev, host, ctypes.c_size_t(size), cudaMemcpyHostToDevice))
    check(rt, "cudaDeviceSynchronize", rt.cudaDeviceSynchronize())
    check(rt, "cudaMemcpy", rt.cudaMemcpy(back, dev, ctypes.c_size_t(size), cudaMemcpyDeviceToHost))
    check(rt, "cudaFree", rt.cudaFree(dev))
    if list(back) != list(host):
        raise RuntimeError("wrong result")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--forever", action="store_true", help="run until an error")
    parser.add_argument("--pause-ms", type=int, default=0)
    args = parser.parse_args()
    rt = load_runtime()
    try:
        count = ctypes.c_int()
        check(rt, "cudaGetDeviceCount", rt.cudaGetDeviceCount(ctypes.byref(count)))
        print(f"devices {count.value}", flush=True)
        k = 0
        while args.forever or k < args.steps:
            step(rt, 256, k)
            print(f"step {k} ok", flush=True)
            k += 1
            time.sleep(args.pause_ms / 1000)
    except RuntimeError as e:
        print(f"RuntimeError: {e}", flush=True)
        return 1
    print("train ok", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
