"""A fault scenario: which XID, and which calls fail (devices, functions, a share, a budget, a
delay, hang mode, sticky). Checked by the toggle grammar itself, through the bundled binary
(``cuda-fault scenario --json``), so Python never holds a copy of the rules.
"""

from __future__ import annotations

import datetime
import functools
import os
from collections.abc import Iterable, Mapping
from typing import Any, Union

from . import _binary
from .errors import ProtocolError

#: A value of a scenario key: text, a number, a flag, or a list of them (comma-joined).
KeyValue = Union[str, int, float, bool, datetime.timedelta, Iterable[Union[str, int]]]

# Keyword arguments whose flag is not their name with dashes: `after_ms` is `--after`, which
# takes a bare number of milliseconds (or a duration such as "5s").
_FLAG_OF = {"after_ms": "after"}


def _text(name: str, value: Any) -> str:
    """A keyword argument's value as the flag takes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime.timedelta):
        if name != "after_ms":
            raise TypeError(f"{name}: a timedelta is only meaningful for after_ms")
        return str(value // datetime.timedelta(milliseconds=1))
    if isinstance(value, float):
        # The shortest text that reads back as the same float, without an exponent: 1e-06 is
        # "0.000001" (the grammar has no exponents). Imported here: `import cuda_fault` stays cheap.
        from decimal import Decimal

        return format(Decimal(repr(value)), "f")
    if isinstance(value, (str, int)):
        return str(value)
    if isinstance(value, Iterable):
        return ",".join(_text(name, v) for v in value)
    raise TypeError(f"{name}: cannot use a {type(value).__name__} as a scenario value")


def _flags(xid: int | None, keys: Mapping[str, Any]) -> tuple[str, ...]:
    args: list[str] = []
    if xid is not None:
        if isinstance(xid, bool) or not isinstance(xid, int):
            raise TypeError(f"xid must be an int, not {type(xid).__name__}")
        args.append(f"--xid={xid}")
    for name, value in keys.items():
        if value is None:
            continue
        if not name.isidentifier() or name.startswith("_"):
            raise TypeError(f"{name!r} is not a scenario key")
        flag = _FLAG_OF.get(name, name).replace("_", "-")
        args.append(f"--{flag}={_text(name, value)}")
    return tuple(args)


@functools.lru_cache(maxsize=256)
def _describe(flags: tuple[str, ...]) -> dict[str, Any]:
    answer = _binary.run_json(["scenario", *flags, "--json"])
    for field, kind in (("line", str), ("keys", dict), ("env", dict), ("variables", dict)):
        if not isinstance(answer.get(field), kind):
            raise ProtocolError(f"cuda-fault scenario --json: no {field!r} in {answer!r}", 0)
    return answer


class Scenario:
    """A scenario, checked by the binary when it is made (a bad value raises
    :class:`cuda_fault.UsageError`, with the binary's own message)::

        Scenario(xid=48)                                  # every call fails with XID 48's error
        Scenario(xid=79, devices=[1], after_ms=5000)      # only device 1, 5 s after turning on
        Scenario(xid=48, percent=5, seed=7, functions="@launch")

    Keys: ``devices`` (ordinals and ``GPU-``/``MIG-`` UUIDs), ``functions`` (``hooks.list``
    names and ``@launch``, ``@memcpy``, ``@sync``, ``@alloc``), ``percent`` (0 < P <= 100),
    ``seed``, ``count`` (at most N faults), ``after_calls``, ``after_ms`` (an int of
    milliseconds, a ``timedelta`` or a duration such as ``"5s"``), ``mode`` (``"error"`` or
    ``"hang"``), ``sticky``, ``surface`` (``"immediate"``: every call fails; ``"async"``: launches
    succeed and the error surfaces at the next synchronizing call) and ``scope`` (``"process"``:
    only processes running when the fault went on meet it; ``"device"``: every process); the last
    two default to the XID's row of the table. Lists are comma-joined. Any other keyword is passed
    on as the flag of its name (``name="x"`` is ``--name=x``), so keys the grammar gains need no
    change here.
    """

    __slots__ = ("_answer", "_flags")

    def __init__(
        self,
        xid: int | None = None,
        *,
        devices: KeyValue | None = None,
        functions: KeyValue | None = None,
        percent: float | int | str | None = None,
        seed: int | None = None,
        count: int | None = None,
        after_calls: int | None = None,
        after_ms: int | datetime.timedelta | str | None = None,
        mode: str | None = None,
        sticky: bool | None = None,
        surface: str | None = None,
        scope: str | None = None,
        **keys: KeyValue | None,
    ) -> None:
        named = {
            "devices": devices,
            "functions": functions,
            "percent": percent,
            "seed": seed,
            "count": count,
            "after_calls": after_calls,
            "after_ms": after_ms,
            "mode": mode,
            "sticky": sticky,
            "surface": surface,
            "scope": scope,
        }
        self._flags = _flags(xid, {**named, **keys})
        self._answer = _describe(self._flags)

    @property
    def xid(self) -> int | None:
        """The XID, or ``None``: the environment's ``CUDA_XID_TYPE`` (default 79)."""
        xid = self._answer.get("xid")
        return xid if isinstance(xid, int) else None

    @property
    def keys(self) -> dict[str, str]:
        """Each key set, by its toggle-file name, with its canonical value (``{"percent": "5"}``)."""
        return dict(self._answer["keys"])

    def line(self) -> str:
        """The toggle line (``"1 48 percent=5"``), as ``cuda-fault enable`` writes it."""
        line: str = self._answer["line"]
        return line

    def flags(self) -> list[str]:
        """The command-line flags of this scenario (for ``enable``, ``fault apply``, ...)."""
        return list(self._flags)

    def variables(self, enabled: bool = True) -> dict[str, str]:
        """Only the shim's scenario variables (``CUDA_FAULT_INJECTION_ENABLED``,
        ``CUDA_XID_TYPE``, one per key), e.g. for a pod's ``env``; ``enabled=False`` leaves the
        fault off until a toggle file turns it on."""
        env = {str(k): str(v) for k, v in self._answer["env"].items()}
        if not enabled:
            env[self._answer["variables"]["enabled"]] = "0"
        return env

    def env(
        self,
        enabled: bool = True,
        toggle_file: str | os.PathLike[str] | None = None,
        base: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        """The whole environment that runs a child process under the shim with this scenario::

            subprocess.run(["python", "train.py"], env=Scenario(xid=48).env())

        ``base`` (default ``os.environ``) with: ``LD_PRELOAD`` naming the bundled shim first and
        the base's own entries after it; this scenario's variables, and none of the base's other
        scenario variables (the child runs exactly this scenario); with ``enabled=False``
        ``CUDA_FAULT_INJECTION_ENABLED=0``, so faults stay off until the toggle file says on; and
        ``CUDA_FAULT_TOGGLE_FILE`` when ``toggle_file`` is given. A toggle file, when present,
        decides over the environment (see README's Configuration).
        """
        names = self._answer["variables"]
        env = dict(os.environ if base is None else base)
        for name in names["scenario"]:
            env.pop(name, None)
        env.update(self.variables(enabled))
        if toggle_file is not None:
            env[names["toggle_file"]] = os.path.abspath(os.fspath(toggle_file))
        env[names["preload"]] = preload(env.get(names["preload"], ""))
        return env

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Scenario) and other.line() == self.line()

    def __hash__(self) -> int:
        return hash(self.line())

    def __repr__(self) -> str:
        return f"Scenario({self.line()!r})"


def preload(theirs: str) -> str:
    """``LD_PRELOAD`` with the shim first and ``theirs`` kept after it (the shim once only)."""
    shim = _binary.shim_path()
    entries = theirs.replace(":", " ").split()
    if shim in entries:
        theirs = ":".join(e for e in entries if e != shim)
    return f"{shim}:{theirs}" if theirs.strip() else shim
