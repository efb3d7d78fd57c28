"""cuda-fault from Python: make CUDA calls fail the way a real GPU XID error does, in child
processes of a test (the shim, a :class:`Scenario`, a :class:`ToggleFile`, the ``cuda_fault``
pytest fixture) and on Kubernetes nodes (:mod:`cuda_fault.cluster`).

Every rule (the toggle grammar, the XID table, the injection) lives in the bundled ``cuda-fault``
binary; this package runs it with ``--json`` and returns typed results. Every failure raises a
:class:`CudaFaultError` subclass carrying the binary's one-line message and exit code.

    import subprocess, cuda_fault

    toggle = cuda_fault.ToggleFile("/tmp/cuda_fault_enabled")
    child = subprocess.Popen(["python", "train.py"], env=toggle.env())
    with toggle.fault(cuda_fault.Scenario(xid=48)):
        ...   # the child's CUDA calls fail with XID 48's error
    # the fault is off again: the file is as it was before
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._binary import binary_path, shim_path
from .errors import (
    BinaryNotFoundError,
    ChangedMeanwhileError,
    CommandTimeoutError,
    CudaFaultError,
    CudaFaultIOError,
    ForbiddenError,
    IsDirectoryError,
    JobFailedError,
    NoConfigError,
    NoInputError,
    NotInjectedError,
    NotRegularFileError,
    PermissionDeniedError,
    ProtocolError,
    ReadOnlyError,
    SymlinkError,
    TimedOutError,
    UnavailableError,
    UsageError,
)
from .scenario import Scenario
from .toggle import ToggleFile, ToggleStatus

if TYPE_CHECKING:
    from . import cluster

__all__ = [
    "BinaryNotFoundError",
    "ChangedMeanwhileError",
    "CommandTimeoutError",
    "CudaFaultError",
    "CudaFaultIOError",
    "ForbiddenError",
    "IsDirectoryError",
    "JobFailedError",
    "NoConfigError",
    "NoInputError",
    "NotInjectedError",
    "NotRegularFileError",
    "PermissionDeniedError",
    "ProtocolError",
    "ReadOnlyError",
    "Scenario",
    "SymlinkError",
    "TimedOutError",
    "ToggleFile",
    "ToggleStatus",
    "UnavailableError",
    "UsageError",
    "binary_path",
    "cluster",
    "shim_path",
]


def __getattr__(name: str) -> Any:
    # The cluster module and the version are loaded on first use: `import cuda_fault` stays cheap.
    if name == "cluster":
        import importlib

        return importlib.import_module(".cluster", __name__)
    if name == "__version__":
        from importlib import metadata

        return metadata.version("cuda-fault")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
