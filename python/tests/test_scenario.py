"""Scenario and the binary's contract: validation by the one grammar, the flags made from
keyword arguments, the environment of a child, and every failure mapped to its class and code."""

from __future__ import annotations

import datetime
import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

import cuda_fault
from cuda_fault import Scenario, errors


def test_a_scenario_is_the_line_the_binary_renders(clean_env: None) -> None:
    s = Scenario(
        xid=79,
        devices=[1, "GPU-8f2c1a3e-1111-2222-3333-444455556666"],
        after_ms=datetime.timedelta(seconds=5),
        percent=0.000001,
        seed=7,
        functions=("@launch", "cudaMalloc"),
        count=3,
        after_calls=2,
        mode="hang",
        sticky=True,
    )
    assert s.line() == (
        "1 79 devices=1,GPU-8f2c1a3e-1111-2222-3333-444455556666 after_calls=2 after_ms=5000 mode=hang "
        "sticky=1 percent=0.000001 count=3 functions=@launch,cudaMalloc seed=7"
    )
    assert s.xid == 79
    assert s.keys == {
        "devices": "1,GPU-8f2c1a3e-1111-2222-3333-444455556666",
        "after_calls": "2",
        "after_ms": "5000",
        "mode": "hang",
        "sticky": "1",
        "percent": "0.000001",
        "count": "3",
        "functions": "@launch,cudaMalloc",
        "seed": "7",
    }
    assert Scenario().line() == "1" and Scenario().xid is None and Scenario().keys == {}
    # Canonical forms come from the binary: the same scenario however it is spelled.
    assert Scenario(48, percent="05.50", sticky=False) == Scenario(xid=48, sticky=False, percent=5.5)
    assert Scenario(48, percent=5.5).line() == "1 48 percent=5.5"
    assert Scenario(after_ms="2m").keys == {"after_ms": "120000"}
    assert repr(Scenario(48)) == "Scenario('1 48')"
    # The XID's own behaviour, overridden: XID 31 failing every call of every process at once.
    s = Scenario(31, scope="device", surface="immediate")
    assert s.line() == "1 31 surface=immediate scope=device"
    assert s.keys == {"surface": "immediate", "scope": "device"}
    assert s.variables() == {
        "CUDA_FAULT_INJECTION_ENABLED": "1",
        "CUDA_XID_TYPE": "31",
        "CUDA_FAULT_SURFACE": "immediate",
        "CUDA_FAULT_SCOPE": "device",
    }


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"xid": 999}, "unknown XID 999"),
        ({"percent": 0}, "'0' is not above 0 and at most 100"),
        ({"percent": 1e-7}, "--percent"),
        ({"count": 0}, "--count"),
        ({"devices": [64]}, "--devices"),
        ({"functions": "cuGetErrorString"}, "cuGetErrorString"),
        ({"mode": "explode"}, "--mode"),
        ({"surface": "runtime"}, "--surface"),
        ({"scope": "node"}, "--scope"),
        # A key the grammar does not have (yet) reaches the binary as its flag and is refused there.
        ({"colour": "red"}, "unexpected argument '--colour'"),
    ],
)
def test_bad_values_are_refused_by_the_binary_with_its_line_and_code(
    clean_env: None, kwargs: dict[str, object], needle: str
) -> None:
    with pytest.raises(cuda_fault.UsageError) as info:
        Scenario(**kwargs)  # type: ignore[arg-type]
    assert info.value.code == 2
    assert needle in info.value.message, info.value.message
    assert "\n" not in info.value.message and not info.value.message.startswith("cuda-fault:")
    assert str(info.value) == info.value.message


def test_values_python_cannot_express_as_flags_are_type_errors() -> None:
    with pytest.raises(TypeError):
        Scenario(xid="48")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Scenario(seed=object())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Scenario(count=datetime.timedelta(seconds=1))  # type: ignore[arg-type]


def test_env_runs_exactly_this_scenario_under_the_shim(clean_env: None, tmp_path: Path) -> None:
    shim = cuda_fault.shim_path()
    base = {
        "PATH": "/usr/bin",
        "LD_PRELOAD": "/opt/theirs.so other.so",
        # Inherited scenario variables would make the child run another scenario.
        "CUDA_FAULT_AFTER_CALLS": "1000000",
        "CUDA_XID_TYPE": "13",
        "CUDA_FAULT_POLL_MS": "0",
    }
    env = Scenario(xid=48, percent=5).env(base=base)
    assert env == {
        "PATH": "/usr/bin",
        "LD_PRELOAD": f"{shim}:/opt/theirs.so other.so",
        "CUDA_FAULT_INJECTION_ENABLED": "1",
        "CUDA_XID_TYPE": "48",
        "CUDA_FAULT_PERCENT": "5",
        "CUDA_FAULT_POLL_MS": "0",
    }
    # No XID: the shim's default, not the parent's.
    assert "CUDA_XID_TYPE" not in Scenario().env(base=base)
    off = Scenario(xid=79).env(enabled=False, toggle_file=Path("rel/toggle"), base={"LD_PRELOAD": shim})
    assert off == {
        "LD_PRELOAD": shim,
        "CUDA_FAULT_INJECTION_ENABLED": "0",
        "CUDA_XID_TYPE": "79",
        "CUDA_FAULT_TOGGLE_FILE": os.path.abspath("rel/toggle"),
    }
    assert Scenario(48).variables(enabled=False) == {
        "CUDA_FAULT_INJECTION_ENABLED": "0",
        "CUDA_XID_TYPE": "48",
    }
    # The default base is this process's environment; the shim appears once however often.
    os.environ["LD_PRELOAD"] = f"{shim}:{shim}"
    try:
        assert Scenario().env()["LD_PRELOAD"] == shim
    finally:
        del os.environ["LD_PRELOAD"]


def test_every_exit_code_of_the_binary_has_its_class(installed: object) -> None:
    text = subprocess.run(
        [cuda_fault.binary_path(), "--help"], capture_output=True, text=True, check=True
    ).stdout
    table = text[text.index("Exit codes:") :]
    codes = {int(m.group(1)) for m in re.finditer(r"^\s+(\d+)\s{2}\S", table, re.M)} - {0}
    assert codes == set(errors.BY_CODE), "cuda_fault.errors must name every code of the table"
    for code, cls in errors.BY_CODE.items():
        assert issubclass(cls, cuda_fault.CudaFaultError) and cls.exit_code == code
        e = errors.error_for("x", code)
        assert type(e) is cls and e.code == code
    assert type(errors.error_for("x", 99)) is cuda_fault.CudaFaultError


def fake_binary(tmp_path: Path, script: str) -> str:
    path = tmp_path / "cuda-fault"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@pytest.mark.parametrize(
    "stdout",
    ["", "not json\\n", '{\\"a\\": 1}', "[1]\\n", '{\\"a\\": 1}\\n{\\"b\\": 2}\\n', '{\\"a\\": 1}\\nextra'],
)
def test_output_that_is_not_one_object_and_a_newline_is_a_protocol_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stdout: str
) -> None:
    # A stand-in binary: the real one never prints these, which is what this guards.
    monkeypatch.setenv("CUDA_FAULT_BINARY", fake_binary(tmp_path, f'printf "{stdout}"\n'))
    with pytest.raises(cuda_fault.ProtocolError) as info:
        cuda_fault.ToggleFile(tmp_path / "t").status()
    assert info.value.code == 0


def test_failures_without_the_contract_s_line_and_by_signal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "CUDA_FAULT_BINARY", fake_binary(tmp_path, "echo noise >&2; echo 'boom' >&2; exit 77\n")
    )
    with pytest.raises(cuda_fault.ForbiddenError) as info:
        cuda_fault.ToggleFile(tmp_path / "t").status()
    assert (info.value.message, info.value.code) == ("boom", 77)
    monkeypatch.setenv("CUDA_FAULT_BINARY", fake_binary(tmp_path, "kill -9 $$\n"))
    with pytest.raises(cuda_fault.CudaFaultError) as info:
        cuda_fault.ToggleFile(tmp_path / "t").status()
    assert (info.value.message, info.value.code) == ("cuda-fault was killed by SIGKILL", 137)
    monkeypatch.setenv("CUDA_FAULT_BINARY", fake_binary(tmp_path, "sleep 30\n"))
    with pytest.raises(cuda_fault.CommandTimeoutError) as info:
        cuda_fault.cluster.verify(timeout=0.5)
    assert info.value.code == 124


def test_a_missing_binary_or_shim_says_what_to_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_FAULT_BINARY", str(tmp_path / "nothing"))
    with pytest.raises(cuda_fault.BinaryNotFoundError) as info:
        Scenario(xid=13, seed=12345)
    assert info.value.code == 127 and "CUDA_FAULT_BINARY" in info.value.message
    monkeypatch.setenv("CUDA_FAULT_SHIM", str(tmp_path / "nothing.so"))
    with pytest.raises(cuda_fault.BinaryNotFoundError) as info:
        cuda_fault.shim_path()
    assert info.value.code == 127 and "CUDA_FAULT_SHIM" in info.value.message
