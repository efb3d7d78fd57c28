"""Every failure of the package: a :class:`CudaFaultError` carrying the one-line message and an
exit code.

The ``cuda-fault`` binary reports a failure as one line on stderr (``cuda-fault: <message>``) and
an exit code from its table (``cuda-fault --help``); the subclass is chosen by that code, so a
test can catch exactly the failure it expects::

    try:
        toggle.enable(Scenario(xid=48))
    except cuda_fault.SymlinkError as e:
        print(e.message, e.code)   # "refusing to write ...: it is a symbolic link ...", 40

Failures found before or around the binary have codes of their own: 124 (the binary ran past
the timeout given), 127 (the binary was not found), and :class:`ProtocolError` for output that is
not the contract's.
"""

from __future__ import annotations

from typing import Any, ClassVar


class CudaFaultError(Exception):
    """A failure: ``message`` is the one line the binary printed (without ``cuda-fault:``),
    ``code`` its exit code."""

    #: The exit code this class stands for (``None``: the base class, any code).
    exit_code: ClassVar[int | None] = None

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code})"


class NotInjectedError(CudaFaultError):
    """``verify``: a selected pod does not carry the injection (exit 1). ``report`` holds the
    :class:`cuda_fault.cluster.VerifyResult` the binary printed."""

    exit_code = 1

    def __init__(self, message: str, code: int, report: Any = None) -> None:
        super().__init__(message, code)
        self.report = report


class UsageError(CudaFaultError):
    """A bad value or argument, refused before anything was written (exit 2)."""

    exit_code = 2


class ChangedMeanwhileError(CudaFaultError):
    """``inject``: the object changed while cuda-fault worked on it, so its guarded patch changed
    nothing (exit 11); run it again."""

    exit_code = 11


class PermissionDeniedError(CudaFaultError):
    """Permission denied (exit 13)."""

    exit_code = 13


class IsDirectoryError(CudaFaultError):
    """The toggle path is a directory (exit 21)."""

    exit_code = 21


class ReadOnlyError(CudaFaultError):
    """Read-only file system (exit 30)."""

    exit_code = 30


class SymlinkError(CudaFaultError):
    """The toggle path is a symbolic link: refused, never followed (exit 40)."""

    exit_code = 40


class NoInputError(CudaFaultError):
    """``install``: the shim library was not found (exit 66)."""

    exit_code = 66


class UnavailableError(CudaFaultError):
    """Cluster: a node, namespace, workload or pod not found, or the API server unreachable
    (exit 69)."""

    exit_code = 69


class JobFailedError(CudaFaultError):
    """Cluster: the node Job ran and failed (exit 70)."""

    exit_code = 70


class NotRegularFileError(CudaFaultError):
    """The toggle path is a device node, FIFO or socket: refused, never replaced (exit 73)."""

    exit_code = 73


class CudaFaultIOError(CudaFaultError):
    """Another I/O error (exit 74)."""

    exit_code = 74


class TimedOutError(CudaFaultError):
    """Cluster: timed out waiting (exit 75)."""

    exit_code = 75


class ForbiddenError(CudaFaultError):
    """Cluster: forbidden by RBAC; see ``manifests/rbac/`` (exit 77)."""

    exit_code = 77


class NoConfigError(CudaFaultError):
    """Cluster: no usable Kubernetes configuration, or credentials rejected (exit 78)."""

    exit_code = 78


class CommandTimeoutError(CudaFaultError):
    """The binary ran past the ``timeout`` given to the call and was killed (code 124)."""

    exit_code = 124


class BinaryNotFoundError(CudaFaultError):
    """The ``cuda-fault`` binary or the shim is not where the package expects it (code 127)."""

    exit_code = 127


class ProtocolError(CudaFaultError):
    """The binary succeeded but its output was not one JSON object of the expected shape;
    ``code`` is its exit code."""


#: Exit code -> class, for every code of the binary's table.
BY_CODE: dict[int, type[CudaFaultError]] = {
    cls.exit_code: cls
    for cls in (
        NotInjectedError,
        UsageError,
        ChangedMeanwhileError,
        PermissionDeniedError,
        IsDirectoryError,
        ReadOnlyError,
        SymlinkError,
        NoInputError,
        UnavailableError,
        JobFailedError,
        NotRegularFileError,
        CudaFaultIOError,
        TimedOutError,
        ForbiddenError,
        NoConfigError,
    )
    if cls.exit_code is not None
}


def error_for(message: str, code: int) -> CudaFaultError:
    """The exception for a failed run of the binary: the class of its exit code, or the base."""
    return BY_CODE.get(code, CudaFaultError)(message, code)
