"""What the suite runs against, built once per session:

* the wheel, as a release builds it (``pip wheel .`` through maturin's PEP 517 hook, for the
  manylinux2014 musl target with zig), or the one named by ``$CUDA_FAULT_TEST_WHEEL``;
* a fresh virtual environment with that wheel (and pytest, for the plugin's sample project);
* the fake CUDA stack (``examples/python/fake-cuda.sh``, gcc).

The in-process tests import ``cuda_fault`` from the source tree (``python/``, identical to the
wheel's copy: ``test_wheel.py`` checks) and run the wheel's own binary and shim.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import venv
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: The longest a cold release build of the wheel may take on a loaded 2-core machine.
WHEEL_BUILD_TIMEOUT_S = 40 * 60
ARCH = platform.machine()


@dataclass(frozen=True)
class FakeStack:
    lib: Path
    workload: Path

    def env(self) -> dict[str, str]:
        """What a Python child needs to use the fake runtime (the example's train.py)."""
        return {
            "CUDA_FAULT_EXAMPLE_CUDART": str(self.lib / "libcudart.so.12"),
            "LD_LIBRARY_PATH": str(self.lib),
        }


@dataclass(frozen=True)
class Installed:
    """The wheel installed into a fresh virtual environment."""

    wheel: Path
    venv: Path
    python: Path
    binary: Path
    kustomize: Path
    shim: Path


def run(
    args: list[str], *, timeout: float, env: dict[str, str] | None = None, cwd: Path | None = None
) -> str:
    proc = subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=cwd,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        pytest.fail(f"{args} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc.stdout


def build_wheel(out: Path) -> Path:
    """``pip wheel .``: the PEP 517 hook ``pip install .`` uses, with the release arguments."""
    for tool in ("cargo", "cargo-zigbuild", "patchelf"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not on PATH: ./test.sh --setup-only installs what the suite needs")
    env = dict(os.environ)
    env["MATURIN_PEP517_ARGS"] = f"--zig --compatibility manylinux2014 --target {ARCH}-unknown-linux-musl"
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(ROOT),
        ],
        timeout=WHEEL_BUILD_TIMEOUT_S,
        env=env,
    )
    wheels = sorted(out.glob("cuda_fault-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("CUDA_FAULT_TEST_WHEEL")
    if given:
        return Path(given).resolve()
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="session")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    home = tmp_path_factory.mktemp("venv") / "v"
    venv.EnvBuilder(with_pip=True, clear=True).create(home)
    python = home / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    run([*pip, "--no-deps", str(wheel)], timeout=300)
    shim = run([str(python), "-c", "import cuda_fault; print(cuda_fault.shim_path())"], timeout=60).strip()
    return Installed(
        wheel=wheel,
        venv=home,
        python=python,
        binary=home / "bin" / "cuda-fault",
        kustomize=home / "bin" / "cuda-fault-kustomize",
        shim=Path(shim),
    )


@pytest.fixture(scope="session")
def venv_with_pytest(installed: Installed) -> Installed:
    """The same environment with pytest added (from the index or pip's cache)."""
    run(
        [
            str(installed.python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "pytest>=7",
        ],
        timeout=600,
    )
    return installed


@pytest.fixture(scope="session", autouse=True)
def wheel_files(request: pytest.FixtureRequest) -> None:
    """Every in-process test runs the installed wheel's binary and shim."""
    inst: Installed = request.getfixturevalue("installed")
    saved = {k: os.environ.get(k) for k in ("CUDA_FAULT_BINARY", "CUDA_FAULT_SHIM")}
    os.environ["CUDA_FAULT_BINARY"] = str(inst.binary)
    os.environ["CUDA_FAULT_SHIM"] = str(inst.shim)
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def fake_stack(tmp_path_factory: pytest.TempPathFactory) -> FakeStack:
    out = tmp_path_factory.mktemp("fake-cuda")
    lib = (
        run(["bash", str(ROOT / "examples/python/fake-cuda.sh"), str(out)], timeout=300)
        .strip()
        .splitlines()[-1]
    )
    return FakeStack(lib=Path(lib), workload=out / "bin" / "workload")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No scenario, toggle-file or preload variable of the machine leaks into a test."""
    for name in list(os.environ):
        if name.startswith("CUDA_FAULT_") and name not in ("CUDA_FAULT_BINARY", "CUDA_FAULT_SHIM"):
            monkeypatch.delenv(name)
    for name in ("CUDA_XID_TYPE", "LD_PRELOAD"):
        monkeypatch.delenv(name, raising=False)
