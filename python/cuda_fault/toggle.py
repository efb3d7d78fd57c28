"""A toggle file: the switch the shim reads while the process runs. Every write goes through the
binary (atomic, refuses symlinks and anything but a regular file); ``fault()`` turns a fault on
for a block and puts back exactly what was there before.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from . import _binary
from .errors import CudaFaultIOError, PermissionDeniedError, ProtocolError, UsageError
from .scenario import Scenario

#: The most bytes of a previous toggle file ``fault()`` keeps to put back; a larger regular
#: file is no toggle file (the shim reads at most 1024 bytes) and is refused before anything is
#: written.
MAX_RESTORE = 1 << 20


@dataclasses.dataclass(frozen=True)
class ToggleStatus:
    """What the toggle file says, read the way the shim reads it (``cuda-fault status --json``).

    ``state`` is ``"on"``, ``"off"``, ``"invalid"`` (malformed: the shim treats it as off) or
    ``"absent"`` (the environment decides). The key fields are what the file sets, ``None`` where
    it does not (the process's ``CUDA_FAULT_*`` variable applies). ``extra`` holds fields the
    binary reports that this version does not know.
    """

    file: str
    present: bool
    state: str
    xid: int | None = None
    devices: tuple[str, ...] | None = None
    after_calls: int | None = None
    after_ms: int | None = None
    mode: str | None = None
    sticky: bool | None = None
    percent: str | None = None
    count: int | None = None
    functions: tuple[str, ...] | None = None
    seed: int | None = None
    raw: str | None = None
    error: str | None = None
    effect: str = ""
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def on(self) -> bool:
        """Whether the file turns faults on."""
        return self.state == "on"

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> ToggleStatus:
        """From ``status --json``'s object."""
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        if not {"file", "present", "state"} <= obj.keys():
            raise ProtocolError(f"not a status object: {dict(obj)!r}", 0)
        values: dict[str, Any] = {k: v for k, v in obj.items() if k in known}
        for name in ("devices", "functions"):
            if values.get(name) is not None:
                values[name] = tuple(values[name])
        values["extra"] = {k: v for k, v in obj.items() if k not in known}
        return cls(**values)


class ToggleFile:
    """One toggle file::

        toggle = ToggleFile(tmp_path / "cuda_fault_enabled")
        env = Scenario().env(enabled=False, toggle_file=toggle.path)   # a child follows the file
        with toggle.fault(Scenario(xid=48)):
            ...                                                        # the child's calls fail
        # back to what it was: the same bytes, or no file

    Each method returns the file's :class:`ToggleStatus` read after the change.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(os.path.abspath(os.fspath(path)))

    def __repr__(self) -> str:
        return f"ToggleFile({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    def _run(self, verb: str, *flags: str) -> ToggleStatus:
        return ToggleStatus.from_json(_binary.run_json([verb, f"--file={self.path}", *flags, "--json"]))

    def enable(self, scenario: Scenario | None = None) -> ToggleStatus:
        """Turns faults on: writes the scenario's line (``1`` alone without one)."""
        return self._run("enable", *(scenario.flags() if scenario is not None else ()))

    def disable(self) -> ToggleStatus:
        """Turns faults off: writes ``0`` (whatever the environment says)."""
        return self._run("disable")

    def clean(self) -> ToggleStatus:
        """Removes the file: the environment decides again."""
        return self._run("clean")

    def status(self) -> ToggleStatus:
        """Reads the file."""
        return self._run("status")

    def env(self, scenario: Scenario | None = None, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment of a child that runs under the shim and follows this file: faults off
        until the file turns them on (``scenario``'s variables apply where the file sets no key)."""
        return (scenario or Scenario()).env(enabled=False, toggle_file=self.path, base=base)

    @contextlib.contextmanager
    def fault(self, scenario: Scenario | None = None) -> Iterator[ToggleStatus]:
        """Turns the fault on for the block, then puts back what was there before, also when the
        block raises: the same bytes (and mode), or no file."""
        before = _snapshot(self.path)
        status = self.enable(scenario)
        try:
            yield status
        finally:
            if before is None:
                self.clean()
            else:
                _restore(self.path, *before)


def _io_error(action: str, path: Path, e: OSError) -> Exception:
    text = f"cannot {action} {path}: {e.strerror or e}"
    if e.errno in (errno.EACCES, errno.EPERM):
        return PermissionDeniedError(text, PermissionDeniedError.exit_code or 13)
    return CudaFaultIOError(text, CudaFaultIOError.exit_code or 74)


def _snapshot(path: Path) -> tuple[bytes, int] | None:
    """The file's bytes and mode, or ``None`` when there is none. Anything but a regular file is
    left to ``enable``, which refuses it before writing."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO, errno.ENOTDIR):
            return None
        raise _io_error("read", path, e) from e
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        chunks = []
        size = 0
        while size <= MAX_RESTORE:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > MAX_RESTORE:
            raise UsageError(
                f"{path} is larger than {MAX_RESTORE} bytes, not a toggle file: "
                "refusing to replace what could not be put back",
                UsageError.exit_code or 2,
            )
        return b"".join(chunks), stat.S_IMODE(st.st_mode)
    except OSError as e:
        raise _io_error("read", path, e) from e
    finally:
        os.close(fd)


def _restore(path: Path, content: bytes, mode: int) -> None:
    """Writes ``content`` to ``path`` atomically (a temporary file beside it, named as the
    binary names its own so that ``cuda-fault clean`` removes one a killed process left, fsynced,
    renamed over the target), unless the target became something else than a regular file."""
    import tempfile  # only here: `import cuda_fault` stays cheap

    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp.", dir=path.parent)
    except OSError as e:
        raise _io_error("write", path, e) from e
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISREG(st.st_mode):
                # Someone put a link or another file type there meanwhile: never replace it.
                _binary.run(["clean", f"--file={path}"])
        os.replace(tmp, path)
        tmp = ""
        dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as e:
        raise _io_error("write", path, e) from e
    finally:
        if tmp:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
