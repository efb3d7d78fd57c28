"""The pytest plugin (registered through the ``pytest11`` entry point: installing the wheel is
enough).

* The ``cuda_fault`` fixture gives each test its own toggle file and the environment for its
  child processes, and cleans up after the test::

      def test_recovers(cuda_fault):
          with cuda_fault.fault(Scenario(xid=48)):
              assert cuda_fault.run([sys.executable, "train.py"]).returncode == 1
          assert cuda_fault.run([sys.executable, "train.py"]).returncode == 0

* ``@pytest.mark.cuda_fault(xid=48, percent=5)`` runs a test under a scenario: its toggle file
  holds the scenario from the start, and every child process the test starts, however it starts
  it, inherits the environment that loads the shim and follows that file (only children: a
  process loads the shim when it starts). ``@pytest.mark.parametrize("cuda_fault",
  [Scenario(xid=48), {"xid": 79}], indirect=True)`` does the same per parameter.

* When a test fails, its report has a section with the ``[XID N SIM]`` and ``[cuda-fault]`` lines
  of the child processes started through ``cuda_fault.run()`` and ``cuda_fault.popen()``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Union

import pytest

from .errors import UsageError
from .scenario import Scenario
from .toggle import ToggleFile, ToggleStatus

#: The shim's own lines: faults, the on/off notes and its warnings.
SHIM_LINE = re.compile(r"^\[(?:XID \d+ SIM|cuda-fault)\]")
#: How long a child still running at the end of a test gets after SIGTERM.
TERMINATE_GRACE_S = 5.0

Args = Union[str, "os.PathLike[str]", Sequence[Union[str, "os.PathLike[str]"]]]

_FIXTURE = pytest.StashKey["CudaFaultFixture"]()


class _Child:
    def __init__(self, args: Any, log: Path | None, proc: subprocess.Popen[Any] | None = None) -> None:
        self.command = args if isinstance(args, str) else shlex.join(os.fspath(a) for a in args)
        self.log = log
        self.proc = proc
        self.output = ""
        self.returncode: int | None = None

    def text(self) -> str:
        if self.log is not None:
            with contextlib.suppress(OSError):
                return self.log.read_text("utf-8", "replace")
        return self.output


class CudaFaultFixture:
    """What the ``cuda_fault`` fixture gives a test.

    ``toggle`` is the test's own :class:`ToggleFile` (absent at the start unless the test runs
    under a scenario); ``scenario`` is the test's scenario (marker or parameter) or ``None``.
    """

    def __init__(self, directory: Path, scenario: Scenario | None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.toggle = ToggleFile(directory / "cuda_fault_enabled")
        self.scenario = scenario
        self._children: list[_Child] = []

    @property
    def toggle_file(self) -> Path:
        """The toggle file's path."""
        return self.toggle.path

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment of a child process: the shim preloaded (the base's ``LD_PRELOAD``
        after it), the test's toggle file, faults off until that file turns them on, and the
        test's scenario's variables for keys the file does not set."""
        return self.toggle.env(self.scenario, base)

    def enable(self, scenario: Scenario | None = None) -> ToggleStatus:
        """Turns the fault on in the test's toggle file (the test's scenario by default)."""
        return self.toggle.enable(scenario or self.scenario)

    def disable(self) -> ToggleStatus:
        """Turns the fault off (``0``)."""
        return self.toggle.disable()

    def fault(self, scenario: Scenario | None = None) -> contextlib.AbstractContextManager[ToggleStatus]:
        """The fault on for a block (the test's scenario by default), then back as it was."""
        return self.toggle.fault(scenario or self.scenario)

    def run(
        self, args: Args, *, env: Mapping[str, str] | None = None, **kwargs: Any
    ) -> subprocess.CompletedProcess[Any]:
        """``subprocess.run`` with :meth:`env` and stdout and stderr captured as text (unless
        given); the child's shim lines go into the report of a failing test."""
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        if "encoding" not in kwargs and "errors" not in kwargs:
            kwargs.setdefault("text", True)
        child = _Child(args, None)
        self._children.append(child)
        proc = subprocess.run(args, env=dict(env) if env is not None else self.env(), **kwargs)
        child.output = "\n".join(_decoded(o) for o in (proc.stdout, proc.stderr) if o)
        child.returncode = proc.returncode
        return proc

    def popen(
        self, args: Args, *, env: Mapping[str, str] | None = None, **kwargs: Any
    ) -> subprocess.Popen[Any]:
        """``subprocess.Popen`` with :meth:`env`. Unless ``stderr`` is given, the child's stderr
        goes to a file of the test (:meth:`stderr` reads it) so that its shim lines reach the
        report. A child still running when the test ends is terminated."""
        log: Path | None = None
        handle: IO[bytes] | None = None
        if "stderr" not in kwargs:
            log = self.directory / f"child-{len(self._children)}.stderr"
            handle = open(log, "wb")  # noqa: SIM115 (the child writes it; closed below)
            kwargs["stderr"] = handle
        try:
            proc = subprocess.Popen(args, env=dict(env) if env is not None else self.env(), **kwargs)
        finally:
            if handle is not None:
                handle.close()
        self._children.append(_Child(args, log, proc))
        return proc

    def stderr(self, proc: subprocess.Popen[Any]) -> str:
        """What a child started by :meth:`popen` has written to its stderr so far."""
        for child in self._children:
            if child.proc is proc:
                return child.text()
        raise UsageError("this process was not started by cuda_fault.popen()", UsageError.exit_code or 2)

    def lines(self) -> list[str]:
        """The shim's lines (``[XID N SIM] ...``, ``[cuda-fault] ...``) of every child so far."""
        return [line for child in self._children for line in _shim_lines(child.text())]

    def report(self) -> str:
        """Each child's command and its shim lines, as a failing test's report shows them."""
        parts = []
        for child in self._children:
            code = child.proc.poll() if child.proc is not None else child.returncode
            status = "running" if code is None else f"exit {code}"
            found = _shim_lines(child.text())
            body = "\n".join(found) if found else "(no [XID]/[cuda-fault] lines)"
            parts.append(f"$ {child.command}  ({status})\n{body}")
        return "\n".join(parts)

    def close(self) -> None:
        """Ends what the test left: children still running are terminated (then killed), the
        toggle file removed."""
        for child in self._children:
            proc = child.proc
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(TERMINATE_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.toggle.clean()


def _decoded(output: str | bytes) -> str:
    return output.decode("utf-8", "replace") if isinstance(output, bytes) else output


def _shim_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if SHIM_LINE.match(line)]


def _scenario_of(request: pytest.FixtureRequest) -> Scenario | None:
    param = getattr(request, "param", None)
    if param is not None:
        if isinstance(param, Scenario):
            return param
        if isinstance(param, Mapping):
            return Scenario(**param)
        raise UsageError(
            f"a cuda_fault parameter is a Scenario or a dict of its arguments, not {param!r}",
            UsageError.exit_code or 2,
        )
    marker = request.node.get_closest_marker("cuda_fault")
    if marker is None:
        return None
    return Scenario(*marker.args, **marker.kwargs)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "cuda_fault(xid=None, **keys): run the test under this scenario (cuda_fault.Scenario's "
        "arguments): its toggle file holds it, and its child processes load the shim",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A marked test gets the fixture even when it does not name it.
    for item in items:
        names = getattr(item, "fixturenames", None)
        if (
            item.get_closest_marker("cuda_fault") is not None
            and names is not None
            and "cuda_fault" not in names
        ):
            names.append("cuda_fault")


@pytest.fixture
def cuda_fault(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CudaFaultFixture]:
    """The test's own toggle file and the environment for its child processes (see
    :class:`CudaFaultFixture`); under a scenario (marker or parameter) the fault is on from the
    start and every child the test starts inherits that environment."""
    scenario = _scenario_of(request)
    fixture = CudaFaultFixture(tmp_path / "cuda-fault", scenario)
    request.node.stash[_FIXTURE] = fixture
    if scenario is None:
        yield fixture
        fixture.close()
        return
    fixture.toggle.enable(scenario)
    with pytest.MonkeyPatch.context() as mp:
        for name, value in fixture.env().items():
            if os.environ.get(name) != value:
                mp.setenv(name, value)
        for name in set(os.environ) - set(fixture.env()):
            mp.delenv(name)
        yield fixture
    fixture.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    fixture = item.stash.get(_FIXTURE, None)
    if fixture is not None and report.failed:
        text = fixture.report()
        if text:
            report.sections.append(("cuda-fault: the child processes' shim lines", text))
