"""The cluster side: the original Dynamo tool's methods as typed calls, each one run of the bundled
``cuda-fault`` binary with ``--json`` (the Kubernetes configuration is the binary's: the
in-cluster service account, ``$KUBECONFIG`` or ``kubeconfig=``).

* :func:`inject` loads the shim into a live workload (no kustomize sources), :func:`remove` takes
  exactly that out again, :func:`verify` says which pods carry it and what each node's toggle
  file says.
* :class:`Fault` holds a fault on nodes for a block and returns once every targeted node has it::

      with cuda_fault.cluster.Fault(xid=79, nodes=["gpu-node-1"]):
          wait_until_worker_pods_crash()
      # the hold pods are gone and have removed their toggle files

Every failure raises a :class:`cuda_fault.CudaFaultError` subclass with the binary's one-line
message and exit code (69 unreachable or not found, 75 timed out, 77 forbidden, 78 no
configuration, ...).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

from . import _binary
from .errors import CudaFaultError, NotInjectedError, ProtocolError, UsageError
from .scenario import Scenario
from .toggle import ToggleStatus

T = TypeVar("T")

#: Workload kinds, as ``KIND/NAME`` (the binary also takes ``deploy``, ``sts``, ``ds``, ``dgd``).
KINDS = ("deployment", "statefulset", "daemonset", "dynamographdeployment")


def _known(cls: type[T], obj: Mapping[str, Any], renames: Mapping[str, str] | None = None) -> T:
    """A result dataclass from a JSON object: its fields by name (``renames``: JSON name ->
    field), the rest in ``extra``; a missing field is a :class:`ProtocolError`."""
    if not isinstance(obj, Mapping):
        raise ProtocolError(f"expected a JSON object, got {obj!r}", 0)
    renames = renames or {}
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in obj.items():
        name = renames.get(key, key)
        if name in fields and name != "extra":
            values[name] = value
        else:
            extra[key] = value
    missing = [
        n
        for n, f in fields.items()
        if n not in values
        and n != "extra"
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ProtocolError(f"{cls.__name__}: {', '.join(missing)} missing from {dict(obj)!r}", 0)
    if "extra" in fields:
        values["extra"] = extra
    return cls(**values)


def _objects(value: Any) -> list[Mapping[str, Any]]:
    """A JSON list of objects; :class:`ProtocolError` for anything else."""
    items = list(value or ())
    for item in items:
        if not isinstance(item, Mapping):
            raise ProtocolError(f"expected a JSON object, got {item!r}", 0)
    return items


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value or ())


@dataclasses.dataclass(frozen=True)
class InjectResult:
    """``cuda-fault inject --json``: the workload and what was added to it."""

    kind: str
    api_version: str
    namespace: str
    name: str
    #: One line per injected container.
    injected: tuple[str, ...]
    #: The annotation on the object that records what was added.
    annotation: str
    #: Operations of the JSON patch (its ``test`` guards included).
    operations: int
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> InjectResult:
        r = _known(cls, obj, {"apiVersion": "api_version"})
        return dataclasses.replace(r, injected=_strings(r.injected))


@dataclasses.dataclass(frozen=True)
class RemoveResult:
    """``cuda-fault inject --remove --json``: what was removed, what was kept because it changed
    since, and the pods deleted by ``restart``."""

    kind: str
    api_version: str
    namespace: str
    name: str
    removed: tuple[str, ...]
    kept: tuple[str, ...]
    restarted_pods: tuple[str, ...]
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> RemoveResult:
        r = _known(cls, obj, {"apiVersion": "api_version"})
        return dataclasses.replace(
            r, removed=_strings(r.removed), kept=_strings(r.kept), restarted_pods=_strings(r.restarted_pods)
        )


@dataclasses.dataclass(frozen=True)
class HoldPod:
    """A hold pod of the fault DaemonSet: it is Ready once it has written the node's toggle file."""

    node: str | None
    pod: str
    ready: bool
    phase: str | None = None
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class FaultStatus:
    """``cuda-fault fault status --json`` (also what ``fault apply --json`` prints): ``present``
    is False, and the rest empty, when no fault exists."""

    present: bool
    namespace: str | None = None
    xid: int | None = None
    line: str | None = None
    nodes: tuple[str, ...] | None = None
    selector: str | None = None
    kmsg: bool | None = None
    desired: int | None = None
    ready: int | None = None
    pods: tuple[HoldPod, ...] = ()
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def in_effect(self) -> bool:
        """Every targeted node has the fault: every hold pod Ready."""
        return bool(
            self.present and self.desired is not None and self.ready == self.desired and self.desired > 0
        )

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> FaultStatus:
        nodes = obj.get("nodes")
        return _known(
            cls,
            {
                **obj,
                "nodes": _strings(nodes) if nodes is not None else None,
                "pods": tuple(_known(HoldPod, p) for p in _objects(obj.get("pods"))),
            },
        )


@dataclasses.dataclass(frozen=True)
class Remaining:
    """A node that kept its toggle file after ``fault delete --wait``, and why."""

    node: str | None
    pod: str | None
    reason: str
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class DeleteResult:
    """``cuda-fault fault delete --json``."""

    deleted: bool
    remaining: tuple[Remaining, ...] = ()
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> DeleteResult:
        return _known(
            cls, {**obj, "remaining": tuple(_known(Remaining, x) for x in _objects(obj.get("remaining")))}
        )


@dataclasses.dataclass(frozen=True)
class PodReport:
    """One pod in ``verify``'s report."""

    pod: str
    node: str | None
    phase: str | None
    #: The shim-install init container: ``done``, ``running``, ``waiting (REASON)``, ``failed
    #: (exit N)``, ``pending`` or ``absent``.
    shim_install: str
    preloaded: tuple[str, ...]
    shim_mounted: tuple[str, ...]
    toggle_mounted: tuple[str, ...]
    injected: bool
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class NodeReport:
    """One node in ``verify``'s report: its toggle file (``None`` with ``error`` when it could not
    be read) and its hold pod."""

    node: str
    toggle: ToggleStatus | None
    error: str | None
    hold_pod: str | None
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class VerifyResult:
    """``cuda-fault verify --json``."""

    namespace: str
    workload: str | None
    selector: str | None
    pods: tuple[PodReport, ...]
    nodes: tuple[NodeReport, ...]
    #: How many pods carry the injection.
    injected: int
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def all_injected(self) -> bool:
        """Every selected pod carries the injection."""
        return all(p.injected for p in self.pods)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> VerifyResult:
        lists = ("preloaded", "shim_mounted", "toggle_mounted")
        pods = tuple(
            _known(PodReport, {**p, **{k: _strings(p.get(k)) for k in lists}})
            for p in _objects(obj.get("pods"))
        )
        nodes = tuple(
            _known(
                NodeReport, {**n, "toggle": ToggleStatus.from_json(n["toggle"]) if n.get("toggle") else None}
            )
            for n in _objects(obj.get("nodes"))
        )
        return _known(cls, {**obj, "pods": pods, "nodes": nodes})


# -------------------------------------------------------------------------------------------
# Arguments


def _env(kubeconfig: str | os.PathLike[str] | None) -> dict[str, str] | None:
    return {"KUBECONFIG": os.fspath(kubeconfig)} if kubeconfig is not None else None


def _usage(message: str) -> UsageError:
    return UsageError(message, UsageError.exit_code or 2)


def _opt(args: list[str], flag: str, value: object) -> None:
    if value is not None:
        # Short flags as two words (the contract spells them so); long ones as --flag=value,
        # which no value can be mistaken for another flag in.
        args.extend([flag, str(value)] if not flag.startswith("--") else [f"{flag}={value}"])


def inject_args(
    workload: str,
    *,
    namespace: str | None = None,
    pin_node: str | None = None,
    pin: str | None = None,
    faults_from_start: int | None = None,
    toggle: bool = True,
    containers: Iterable[str] = (),
    image: str | None = None,
) -> list[str]:
    """The command line of :func:`inject` (without the binary)."""
    args = ["inject", workload]
    _opt(args, "-n", namespace)
    _opt(args, "--pin-node", pin_node)
    _opt(args, "--pin", pin)
    _opt(args, "--faults-from-start", faults_from_start)
    if not toggle:
        args.append("--no-toggle")
    if isinstance(containers, str):
        raise _usage("containers is a list of container names, not one string")
    for c in containers:
        args.append(f"--container={c}")
    _opt(args, "--image", image)
    args.append("--json")
    return args


def remove_args(workload: str, *, namespace: str | None = None, restart: bool = False) -> list[str]:
    """The command line of :func:`remove`."""
    args = ["inject", "--remove", workload]
    _opt(args, "-n", namespace)
    if restart:
        args.append("--restart")
    args.append("--json")
    return args


def verify_args(
    workload: str | None = None,
    *,
    namespace: str | None = None,
    selector: str | None = None,
    node_check: bool = True,
    jobs_namespace: str | None = None,
    image: str | None = None,
    job_timeout: float | None = None,
) -> list[str]:
    """The command line of :func:`verify`."""
    if workload is not None and selector is not None:
        raise _usage("verify takes a workload or a selector, not both")
    args = ["verify"]
    if workload is not None:
        args.append(workload)
    _opt(args, "-n", namespace)
    _opt(args, "-l", selector)
    if not node_check:
        args.append("--no-node-check")
    _opt(args, "--jobs-namespace", jobs_namespace)
    _opt(args, "--image", image)
    if job_timeout is not None:
        args.append(f"--timeout={int(job_timeout)}")
    args.append("--json")
    return args


def apply_args(
    xid: int | None = None,
    *,
    nodes: Sequence[str] | None = None,
    selector: str | None = None,
    scenario: Scenario | None = None,
    kmsg: bool = False,
    wait: bool = True,
    wait_timeout: float | None = None,
) -> list[str]:
    """The command line of ``fault apply`` (:class:`Fault`'s enter)."""
    if scenario is not None and scenario.xid is not None:
        if xid is not None and xid != scenario.xid:
            raise _usage(f"xid={xid} and the scenario's XID {scenario.xid} differ")
        xid = scenario.xid
    if xid is None:
        raise _usage("a fault needs an XID: xid=N or a scenario with one")
    if isinstance(nodes, str):
        raise _usage("nodes is a list of node names, not one string")
    if bool(nodes) == (selector is not None):
        raise _usage("a fault targets nodes=[...] or selector=..., exactly one of them")
    args = ["fault", "apply", f"--xid={xid}"]
    for n in nodes or ():
        args.append(f"--node={n}")
    _opt(args, "-l", selector)
    if scenario is not None:
        args.extend(f for f in scenario.flags() if not f.startswith("--xid="))
    if kmsg:
        args.append("--kmsg")
    if wait:
        args.append("--wait")
    if wait_timeout is not None:
        args.append(f"--timeout={int(wait_timeout)}s")
    args.append("--json")
    return args


def delete_args(*, wait: bool = True, wait_timeout: float | None = None) -> list[str]:
    """The command line of ``fault delete`` (:class:`Fault`'s exit)."""
    args = ["fault", "delete"]
    if wait:
        args.append("--wait")
    if wait_timeout is not None:
        args.append(f"--timeout={int(wait_timeout)}s")
    args.append("--json")
    return args


# -------------------------------------------------------------------------------------------
# Calls


def inject(
    workload: str,
    *,
    namespace: str | None = None,
    pin_node: str | None = None,
    pin: str | None = None,
    faults_from_start: int | None = None,
    toggle: bool = True,
    containers: Iterable[str] = (),
    image: str | None = None,
    kubeconfig: str | os.PathLike[str] | None = None,
    timeout: float | None = None,
) -> InjectResult:
    """Loads the shim into a live workload (``deployment/NAME``, ``statefulset/NAME``,
    ``daemonset/NAME``, ``dynamographdeployment/NAME``), faults off, as one guarded JSON patch
    that the API server applies whole or not at all; records on the object what it added.

    ``pin_node`` with ``pin`` (``"preferred"`` or ``"required"``) keeps the pods on a node;
    ``faults_from_start=XID`` with ``toggle=False`` needs no hostPath (faults on from the
    start); ``containers`` names the containers to inject besides the GPU ones.
    """
    args = inject_args(
        workload,
        namespace=namespace,
        pin_node=pin_node,
        pin=pin,
        faults_from_start=faults_from_start,
        toggle=toggle,
        containers=containers,
        image=image,
    )
    return InjectResult.from_json(_binary.run_json(args, timeout=timeout, env=_env(kubeconfig)))


def remove(
    workload: str,
    *,
    namespace: str | None = None,
    restart: bool = False,
    kubeconfig: str | os.PathLike[str] | None = None,
    timeout: float | None = None,
) -> RemoveResult:
    """Removes exactly what :func:`inject` added (guarded too: the user's own fields, and what
    changed since, stay); ``restart=True`` deletes the workload's pods so they come back clean.
    A workload that was never injected is refused."""
    args = remove_args(workload, namespace=namespace, restart=restart)
    return RemoveResult.from_json(_binary.run_json(args, timeout=timeout, env=_env(kubeconfig)))


def verify(
    workload: str | None = None,
    *,
    namespace: str | None = None,
    selector: str | None = None,
    node_check: bool = True,
    jobs_namespace: str | None = None,
    image: str | None = None,
    job_timeout: float | None = None,
    check: bool = True,
    kubeconfig: str | os.PathLike[str] | None = None,
    timeout: float | None = None,
) -> VerifyResult:
    """Which pods carry the injection (of ``workload``, of ``selector``, or of the namespace),
    on which nodes, and each such node's toggle file and hold pod (unless ``node_check=False``).

    When a selected pod does not carry the injection, raises :class:`NotInjectedError` (exit 1)
    with the report in ``.report``; with ``check=False`` returns the report instead.
    """
    args = verify_args(
        workload,
        namespace=namespace,
        selector=selector,
        node_check=node_check,
        jobs_namespace=jobs_namespace,
        image=image,
        job_timeout=job_timeout,
    )
    proc = _binary.call(args, timeout=timeout, env=_env(kubeconfig))
    if proc.returncode == NotInjectedError.exit_code and proc.stdout:
        report = VerifyResult.from_json(_binary.parse_object(proc))
        if not check:
            return report
        error = _binary.failure(proc)
        raise NotInjectedError(error.message if isinstance(error, CudaFaultError) else str(error), 1, report)
    if proc.returncode != 0:
        raise _binary.failure(proc)
    return VerifyResult.from_json(_binary.parse_object(proc))


def fault_status(
    *, kubeconfig: str | os.PathLike[str] | None = None, timeout: float | None = None
) -> FaultStatus:
    """The fault on the cluster (``cuda-fault fault status --json``)."""
    return FaultStatus.from_json(
        _binary.run_json(["fault", "status", "--json"], timeout=timeout, env=_env(kubeconfig))
    )


class FaultRemainsError(CudaFaultError):
    """``fault delete --wait`` returned, but some nodes kept their toggle file: ``result`` says
    which and why; ``code`` is the command's exit code (0: it ran, and reported them)."""

    def __init__(self, message: str, code: int, result: DeleteResult) -> None:
        super().__init__(message, code)
        self.result = result


def delete_fault(
    *,
    wait: bool = True,
    wait_timeout: float | None = None,
    kubeconfig: str | os.PathLike[str] | None = None,
    timeout: float | None = None,
) -> DeleteResult:
    """Deletes the fault (its DaemonSet and ConfigMap); with ``wait`` returns once every hold
    pod is gone and has removed its toggle file, or raises :class:`FaultRemainsError` naming the
    nodes that kept it."""
    return _delete(delete_args(wait=wait, wait_timeout=wait_timeout), _env(kubeconfig), timeout)


def _delete(args: list[str], env: dict[str, str] | None, timeout: float | None = None) -> DeleteResult:
    result = DeleteResult.from_json(_binary.run_json(args, timeout=timeout, env=env))
    if result.remaining:
        kept = "; ".join(f"{r.node or '?'} ({r.pod or 'no pod'}): {r.reason}" for r in result.remaining)
        raise FaultRemainsError(f"the fault was deleted but these nodes kept it: {kept}", 0, result)
    return result


class Fault:
    """A fault held on nodes for a block::

        with Fault(xid=79, nodes=["gpu-node-1"]) as status:
            ...                       # status.in_effect: every hold pod Ready

    ``__enter__`` runs ``cuda-fault fault apply ... --wait --json`` (the same DaemonSet and
    ConfigMap as ``kustomize/xidNN``) and returns the :class:`FaultStatus` once every targeted
    node has written its toggle file; ``__exit__`` runs ``fault delete --wait --json``, also when
    the block raised. Target ``nodes=[...]`` or a label ``selector``; ``scenario`` adds the
    scenario's keys (its XID, if any, must match ``xid``); ``kmsg`` also writes a kernel-log XID
    line on the nodes. An apply that fails after it may have created something is followed by a
    delete, so nothing is left half made.
    """

    def __init__(
        self,
        xid: int | None = None,
        *,
        nodes: Sequence[str] | None = None,
        selector: str | None = None,
        scenario: Scenario | None = None,
        kmsg: bool = False,
        wait_timeout: float | None = None,
        kubeconfig: str | os.PathLike[str] | None = None,
    ) -> None:
        self.apply_args = apply_args(
            xid, nodes=nodes, selector=selector, scenario=scenario, kmsg=kmsg, wait_timeout=wait_timeout
        )
        self.delete_args = delete_args(wait_timeout=wait_timeout)
        self.kubeconfig = kubeconfig
        self.status: FaultStatus | None = None

    def __enter__(self) -> FaultStatus:
        try:
            self.status = FaultStatus.from_json(_binary.run_json(self.apply_args, env=_env(self.kubeconfig)))
        except UsageError:
            raise
        except CudaFaultError:
            # It may have created the DaemonSet before failing (a timeout waiting for Ready).
            with contextlib.suppress(CudaFaultError):
                _binary.run(self.delete_args, env=_env(self.kubeconfig))
            raise
        return self.status

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _delete(self.delete_args, _env(self.kubeconfig))
