"""Where the bundled files are, and running the ``cuda-fault`` binary under its contract: on
success exactly one JSON object and a newline on stdout; on failure nothing on stdout, one line
``cuda-fault: <message>`` on stderr and the exit code.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import BinaryNotFoundError, CommandTimeoutError, ProtocolError, error_for

#: Overrides the binary the package runs (a source checkout, another build).
BINARY_ENV = "CUDA_FAULT_BINARY"
#: Overrides the shim :func:`shim_path` returns.
SHIM_ENV = "CUDA_FAULT_SHIM"
#: The shim's file name inside the package.
SHIM_NAME = "cuda_intercept.so"
#: The wheel's name, and its binary's.
DISTRIBUTION = "cuda-fault"
BINARY_NAME = "cuda-fault"

_PACKAGE_DIR = Path(__file__).resolve().parent
_found: dict[str, str] = {}


def shim_path() -> str:
    """The absolute path of the bundled shim (``cuda_intercept.so``), for ``LD_PRELOAD``.

    ``$CUDA_FAULT_SHIM`` overrides it. Raises :class:`BinaryNotFoundError` when the file is
    missing (a source checkout that was never built).
    """
    override = os.environ.get(SHIM_ENV)
    path = Path(override) if override else _PACKAGE_DIR / SHIM_NAME
    if not path.is_file():
        where = f"${SHIM_ENV}={override}" if override else str(path)
        raise BinaryNotFoundError(
            f"the shim {where} does not exist: install the cuda-fault wheel, or set ${SHIM_ENV}",
            BinaryNotFoundError.exit_code or 127,
        )
    return str(path.absolute())


def binary_path() -> str:
    """The absolute path of the ``cuda-fault`` binary installed with this package (the wheel's
    script), or ``$CUDA_FAULT_BINARY``. Raises :class:`BinaryNotFoundError` when there is none."""
    override = os.environ.get(BINARY_ENV)
    if override:
        if not os.access(override, os.X_OK) or not os.path.isfile(override):
            raise BinaryNotFoundError(
                f"${BINARY_ENV}={override} is not an executable file", BinaryNotFoundError.exit_code or 127
            )
        return os.path.abspath(override)
    cached = _found.get(BINARY_NAME)
    if cached is None:
        cached = _installed_script(BINARY_NAME)
        _found[BINARY_NAME] = cached
    return cached


def _installed_script(name: str) -> str:
    """The script ``name`` recorded in the installed distribution's RECORD (so a user install,
    a venv or ``pip install --target`` all work, whatever PATH says)."""
    from importlib import metadata

    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        dist = None
    for entry in (dist.files or []) if dist is not None else []:
        if entry.name == name and entry.parent.name in ("bin", "scripts"):
            path = Path(str(entry.locate())).resolve()
            if path.is_file() and os.access(path, os.X_OK):
                return str(path)
    raise BinaryNotFoundError(
        f"the {name} binary of the {DISTRIBUTION} wheel was not found "
        f"(this cuda_fault is not installed from the wheel?): install it, or set ${BINARY_ENV}",
        BinaryNotFoundError.exit_code or 127,
    )


def call(
    args: Sequence[str], *, timeout: float | None = None, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Runs the binary with ``args`` (``env``: variables added to this process's) and returns
    the finished process, whatever its exit code."""
    argv = [binary_path(), *args]
    full_env = {**os.environ, **env} if env else None
    try:
        return subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False, env=full_env
        )
    except subprocess.TimeoutExpired:
        raise CommandTimeoutError(
            f"cuda-fault {' '.join(args[:2])} did not finish within {timeout} s (killed)",
            CommandTimeoutError.exit_code or 124,
        ) from None
    except OSError as e:
        raise BinaryNotFoundError(
            f"cannot run {argv[0]}: {e.strerror}", BinaryNotFoundError.exit_code or 127
        ) from e


def run(
    args: Sequence[str], *, timeout: float | None = None, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """:func:`call`, raising the :class:`CudaFaultError` of a failure."""
    proc = call(args, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise failure(proc)
    return proc


def failure(proc: subprocess.CompletedProcess[bytes]) -> Exception:
    """The exception for a failed run: its one line and its code."""
    code = proc.returncode
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return error_for(f"cuda-fault was killed by {name}", 128 - code)
    lines = [line for line in proc.stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    ours = [line for line in lines if line.startswith("cuda-fault: ")]
    if ours:
        message = ours[-1][len("cuda-fault: ") :]
    elif lines:
        message = lines[-1]
    else:
        message = f"cuda-fault exited with {code}"
    return error_for(message, code)


def parse_object(proc: subprocess.CompletedProcess[bytes]) -> dict[str, Any]:
    """The one JSON object on stdout; :class:`ProtocolError` for anything else."""
    text = proc.stdout.decode("utf-8", "replace")
    try:
        if not text.endswith("\n") or text.count("\n") != 1:
            raise ValueError("not one line")
        value = json.loads(text)
    except ValueError:
        raise ProtocolError(
            f"cuda-fault printed {text[:200]!r}, not one JSON object and a newline", proc.returncode
        ) from None
    if not isinstance(value, dict):
        raise ProtocolError(f"cuda-fault printed {text[:200]!r}, not a JSON object", proc.returncode)
    return value


def run_json(
    args: Sequence[str], *, timeout: float | None = None, env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Runs the binary with ``args`` (which end in ``--json``) and returns its object."""
    return parse_object(run(args, timeout=timeout, env=env))
