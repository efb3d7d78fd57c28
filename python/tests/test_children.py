"""The local API driving real child processes on the fake CUDA stack through the wheel's shim:
the environment a Scenario makes, a toggle file flipped while a child runs, and the user's own
preload kept working beside the shim."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, FakeStack
from cuda_fault import Scenario, ToggleFile

T = 60


def run(cmd: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=T, check=False)


@pytest.mark.parametrize(
    ("xid", "call", "error"),
    [
        # The GPU stays enumerated: the first call that uses it fails.
        (48, "cudaSetDevice", "cudaErrorECCUncorrectable 214"),
        # The GPU is lost: even the device count fails.
        (79, "cudaGetDeviceCount", "cudaErrorNoDevice 100"),
        # An application error surfaces asynchronously, at the first synchronize.
        (13, "cudaStreamSynchronize", "cudaErrorLaunchFailure 719"),
    ],
)
def test_a_scenario_s_env_makes_the_child_fail_with_the_xid_s_error(
    clean_env: None, fake_stack: FakeStack, xid: int, call: str, error: str
) -> None:
    r = run([str(fake_stack.workload)], Scenario(xid=xid).env())
    assert r.returncode == 1, r
    assert r.stdout.splitlines()[-1] == f"FAIL {call} {error}"
    assert f"[XID {xid} SIM] {call} ->" in r.stderr
    assert f"[cuda-fault] faults ON: simulating XID {xid}" in r.stderr


def test_keys_reach_the_shim_and_inherited_ones_do_not(clean_env: None, fake_stack: FakeStack) -> None:
    # Only launches fail: the workload gets through its set-up and fails where PyTorch would.
    r = run([str(fake_stack.workload)], Scenario(xid=48, functions="@launch").env())
    assert r.returncode == 1
    assert r.stdout.splitlines()[-1] == "FAIL cudaLaunchKernelExC cudaErrorECCUncorrectable 214", r.stdout
    # A parent's CUDA_FAULT_AFTER_CALLS would let every call pass; the scenario's env drops it.
    base = {**os.environ, "CUDA_FAULT_AFTER_CALLS": "1000000"}
    r = run([str(fake_stack.workload)], Scenario(xid=48).env(base=base))
    assert r.returncode == 1 and "FAIL cudaSetDevice" in r.stdout
    # Device 1 of 2 only: the workload on device 0 is untouched.
    r = run([str(fake_stack.workload)], Scenario(xid=79, devices=[1]).env())
    assert (r.returncode, r.stdout.splitlines()[-1]) == (0, "workload ok"), r


def test_faults_off_the_child_runs_as_without_the_shim(
    clean_env: None, fake_stack: FakeStack, tmp_path: Path
) -> None:
    plain = run([str(fake_stack.workload)], dict(os.environ))
    r = run([str(fake_stack.workload)], Scenario(xid=48).env(enabled=False, toggle_file=tmp_path / "absent"))
    assert (r.returncode, r.stdout) == (0, plain.stdout)
    assert r.stderr == "", "silent while off"


def test_a_toggle_flipped_while_the_child_runs(
    clean_env: None, fake_stack: FakeStack, tmp_path: Path
) -> None:
    toggle = ToggleFile(tmp_path / "toggle")
    env = {**toggle.env(), "WORKLOAD_FOREVER": "1"}
    child = subprocess.Popen(
        [str(fake_stack.workload), "0", "5"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        # Wait for the marker: the loop is running with faults off.
        for line in child.stdout:
            if line.startswith("step 2 ok"):
                break
        else:
            pytest.fail("the workload never reached step 2")
        with toggle.fault(Scenario(xid=48)):
            out, err = child.communicate(timeout=T)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 1
    assert out.splitlines()[-1].endswith("cudaErrorECCUncorrectable 214"), out
    assert (
        "[cuda-fault] faults ON: simulating XID 48 (Double-bit ECC error) (surface immediate; scope device) "
        f"[toggle file {toggle.path}]" in err
    )
    # Off again: the file is gone, a new child runs clean.
    assert not toggle.path.exists()
    r = run([str(fake_stack.workload)], toggle.env())
    assert (r.returncode, r.stdout.splitlines()[-1]) == (0, "workload ok")


def test_the_user_s_preload_is_kept_after_the_shim(
    clean_env: None, fake_stack: FakeStack, tmp_path: Path
) -> None:
    src = tmp_path / "mine.c"
    src.write_text(
        "#include <unistd.h>\n"
        '__attribute__((constructor)) static void hello(void) { write(2, "mine loaded\\n", 12); }\n'
    )
    lib = tmp_path / "libmine.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    base = {**os.environ, "LD_PRELOAD": str(lib)}
    r = run([str(fake_stack.workload)], Scenario(xid=48).env(base=base))
    assert r.returncode == 1 and "FAIL cudaSetDevice cudaErrorECCUncorrectable 214" in r.stdout
    assert r.stderr.startswith("mine loaded\n"), r.stderr
    assert "[XID 48 SIM]" in r.stderr


def test_the_example_training_script_fails_and_recovers(
    clean_env: None, fake_stack: FakeStack, tmp_path: Path
) -> None:
    train = [sys.executable, str(ROOT / "examples/python/train.py"), "--steps", "2"]
    toggle = ToggleFile(tmp_path / "toggle")
    env = {**toggle.env(), **fake_stack.env()}
    with toggle.fault(Scenario(xid=48, after_calls=3)):
        r = run(train, env)
    assert r.returncode == 1, r
    assert r.stdout.splitlines()[-1] == (
        "RuntimeError: CUDA error: uncorrectable ECC error encountered "
        "(cudaErrorECCUncorrectable = 214) in cudaMemcpy"
    )
    r = run(train, env)
    assert (r.returncode, r.stdout.splitlines()[-1]) == (0, "train ok"), r
