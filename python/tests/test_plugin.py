"""The pytest plugin as a user gets it: a sample test project run by pytest itself, in the fresh
environment where only the wheel (and pytest) is installed, so the plugin comes from the wheel's
``pytest11`` entry point alone."""

from __future__ import annotations

import json
import os
import re
import subprocess
import textwrap
from pathlib import Path

from conftest import ROOT, FakeStack, Installed

SAMPLE = """
import json, os, subprocess, sys, time
from pathlib import Path

import pytest
from cuda_fault import Scenario

WORKLOAD = os.environ["SAMPLE_WORKLOAD"]
SEEN = Path(os.environ["SAMPLE_RECORD"])


def record(name, **facts):
    with SEEN.open("a") as f:
        f.write(json.dumps({"test": name, **facts}) + "\\n")


def test_fixture_fault_then_recovery(cuda_fault):
    assert cuda_fault.scenario is None and not cuda_fault.toggle_file.exists()
    with cuda_fault.fault(Scenario(xid=48)):
        r = cuda_fault.run([WORKLOAD])
        assert r.returncode == 1
        assert r.stdout.splitlines()[-1] == "FAIL cudaSetDevice cudaErrorECCUncorrectable 214"
    assert cuda_fault.run([WORKLOAD]).returncode == 0
    assert cuda_fault.lines()[0].startswith("[cuda-fault] faults ON: simulating XID 48")
    record("fixture", toggle=str(cuda_fault.toggle_file), env_file=cuda_fault.env()["CUDA_FAULT_TOGGLE_FILE"])


@pytest.mark.cuda_fault(xid=79)
def test_marker_every_child_inherits_the_shim():
    # No fixture named: a plain subprocess is under the scenario.
    r = subprocess.run([WORKLOAD], capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stdout.splitlines()[-1] == "FAIL cudaGetDeviceCount cudaErrorNoDevice 100"
    record("marker", toggle=os.environ["CUDA_FAULT_TOGGLE_FILE"])


@pytest.mark.cuda_fault(xid=48, functions="@launch")
def test_marker_with_fixture_turns_it_off(cuda_fault):
    assert cuda_fault.toggle.status().raw == "1 48 functions=@launch\\n"
    assert cuda_fault.run([WORKLOAD]).returncode == 1
    cuda_fault.disable()
    assert cuda_fault.run([WORKLOAD]).returncode == 0


@pytest.mark.parametrize("cuda_fault", [Scenario(xid=13), {"xid": 79}], indirect=True)
def test_parameter(cuda_fault):
    r = cuda_fault.run([WORKLOAD])
    code = {13: 719, 79: 100}[cuda_fault.scenario.xid]
    assert r.stdout.splitlines()[-1].endswith(f" {code}")


def test_a_child_left_running_is_ended(cuda_fault):
    child = cuda_fault.popen([WORKLOAD, "0", "5"], env={**cuda_fault.env(), "WORKLOAD_FOREVER": "1"},
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().startswith("devices")
    record("popen", pid=child.pid)


@pytest.mark.cuda_fault(xid=48)
def test_fails_and_shows_the_xid_lines(cuda_fault):
    child = cuda_fault.popen([WORKLOAD], stdout=subprocess.PIPE, text=True)
    child.wait()
    assert "[XID 48 SIM]" in cuda_fault.stderr(child)
    assert cuda_fault.run([WORKLOAD, "1"]).returncode == 0, "this test fails on purpose"
"""


def test_the_plugin_in_a_sample_project(
    venv_with_pytest: Installed, fake_stack: FakeStack, tmp_path: Path, clean_env: None
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_sample.py").write_text(textwrap.dedent(SAMPLE))
    record = tmp_path / "record.jsonl"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("CUDA_FAULT_BINARY", "CUDA_FAULT_SHIM", "PYTHONPATH") and not k.startswith("PYTEST_")
    }
    env.update(SAMPLE_WORKLOAD=str(fake_stack.workload), SAMPLE_RECORD=str(record))
    proc = subprocess.run(
        [
            str(venv_with_pytest.python),
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            "-rN",
            "--basetemp",
            str(tmp_path / "base"),
            str(project),
        ],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    assert re.search(r"^1 failed, 6 passed in ", out, re.M), out
    assert "FAILED" not in out.replace("test_fails_and_shows_the_xid_lines", ""), out

    # The failing test's report: the section, each child's command and status, its shim lines.
    section = out[out.index("cuda-fault: the child processes' shim lines") :]
    assert f"$ {fake_stack.workload}  (exit 1)\n[cuda-fault] faults ON: simulating XID 48" in section, section
    assert "[XID 48 SIM] cudaSetDevice -> cudaErrorECCUncorrectable (214)" in section
    assert f"$ {fake_stack.workload} 1  (exit 0)\n(no [XID]/[cuda-fault] lines)" not in section, (
        "the test's scenario is on: the second child fails too"
    )

    facts = {f["test"]: f for f in map(json.loads, record.read_text().splitlines())}
    # Each test had its own toggle file, and it is gone after the test.
    assert facts["fixture"]["toggle"] == facts["fixture"]["env_file"]
    assert facts["fixture"]["toggle"] != facts["marker"]["toggle"]
    for name in ("fixture", "marker"):
        assert not Path(facts[name]["toggle"]).exists(), name
    # The child left running was ended at teardown.
    assert not Path(f"/proc/{facts['popen']['pid']}").exists()


def test_the_entry_point_is_the_only_registration(installed: Installed) -> None:
    text = subprocess.run(
        [
            str(installed.python),
            "-c",
            "from importlib import metadata; "
            "print([(e.name, e.value) for e in metadata.entry_points(group='pytest11')])",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert text.strip() == "[('cuda_fault', 'cuda_fault.pytest_plugin')]"
    assert (ROOT / "pyproject.toml").read_text().count("pytest11") == 1


def test_the_example_s_tests_pass(venv_with_pytest: Installed, fake_stack: FakeStack, tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("CUDA_FAULT_BINARY", "CUDA_FAULT_SHIM", "PYTHONPATH", "LD_PRELOAD")
        and not k.startswith("PYTEST_")
    }
    env.update(fake_stack.env())
    proc = subprocess.run(
        [str(venv_with_pytest.python), "-m", "pytest", "-p", "no:cacheprovider", "-q", "--rootdir",
         str(tmp_path), str(ROOT / "examples/python")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^3 passed in ", proc.stdout, re.M), proc.stdout
