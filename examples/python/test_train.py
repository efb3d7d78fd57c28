"""The fault-tolerance tests a user writes for train.py, with the cuda_fault pytest plugin (it
comes with `pip install cuda-fault`):

    pytest examples/python              # on a GPU machine
    # without a GPU, on the project's fake CUDA stack:
    LIB=$(examples/python/fake-cuda.sh /tmp/fake-cuda | tail -1)
    CUDA_FAULT_EXAMPLE_CUDART=$LIB/libcudart.so.12 LD_LIBRARY_PATH=$LIB pytest examples/python
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cuda_fault import Scenario

TRAIN = [sys.executable, str(Path(__file__).with_name("train.py"))]


def test_fails_with_the_xid_s_error_and_recovers_after_the_fault_is_off(cuda_fault):
    assert cuda_fault.run([*TRAIN, "--steps", "2"]).returncode == 0, "healthy before the fault"
    with cuda_fault.fault(Scenario(xid=48)):
        r = cuda_fault.run([*TRAIN, "--steps", "2"])
        assert r.returncode == 1
        assert "uncorrectable ECC error encountered" in r.stdout
        assert "[XID 48 SIM]" in r.stderr
    r = cuda_fault.run([*TRAIN, "--steps", "2"])
    assert r.returncode == 0 and r.stdout.endswith("train ok\n")


def test_a_running_job_fails_when_the_gpu_falls_off_the_bus(cuda_fault):
    job = cuda_fault.popen([*TRAIN, "--forever", "--pause-ms", "5"], stdout=subprocess.PIPE, text=True)
    assert job.stdout.readline().startswith("devices")
    assert job.stdout.readline() == "step 0 ok\n"
    with cuda_fault.fault(Scenario(xid=79)):
        out, _ = job.communicate(timeout=60)
    assert job.returncode == 1
    assert "no CUDA-capable device is detected (cudaErrorNoDevice = 100)" in out.splitlines()[-1]


@pytest.mark.cuda_fault(xid=48, functions="cudaMemcpy")
def test_only_copies_fail():
    # Under the marker every child loads the shim and follows the test's toggle file.
    r = subprocess.run([*TRAIN, "--steps", "2"], capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stdout.splitlines()[-1].endswith("(cudaErrorECCUncorrectable = 214) in cudaMemcpy")
    assert "[XID 48 SIM] cudaMemcpy -> cudaErrorECCUncorrectable (214)" in r.stderr
