"""cuda_fault.cluster: the command lines it builds, the contract's JSON read into typed results,
the real binary's failures where it has the command (verify), and Fault's enter/exit order
(apply with wait; delete with wait, also after an exception or a failed apply)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

import cuda_fault
from cuda_fault import Scenario, cluster

KUBECONFIG = """apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: https://127.0.0.1:1
contexts:
- name: x
  context: {cluster: c, user: u, namespace: ns}
current-context: x
users:
- name: u
  user: {token: t}
"""


def test_command_lines(clean_env: None) -> None:
    assert cluster.inject_args("deployment/vllm") == ["inject", "deployment/vllm", "--json"]
    assert cluster.inject_args(
        "dgd/llm",
        namespace="prod",
        pin_node="gpu-1",
        pin="required",
        faults_from_start=79,
        toggle=False,
        containers=["main", "sidecar"],
        image="reg/cf:1",
    ) == [
        "inject", "dgd/llm", "-n", "prod", "--pin-node=gpu-1", "--pin=required", "--faults-from-start=79",
        "--no-toggle", "--container=main", "--container=sidecar", "--image=reg/cf:1", "--json",
    ]  # fmt: skip
    assert cluster.remove_args("sts/db", namespace="a", restart=True) == [
        "inject", "--remove", "sts/db", "-n", "a", "--restart", "--json",
    ]  # fmt: skip
    assert cluster.verify_args(selector="app=vllm", node_check=False, job_timeout=30) == [
        "verify", "-l", "app=vllm", "--no-node-check", "--timeout=30", "--json",
    ]  # fmt: skip
    assert cluster.apply_args(79, nodes=["n1", "n2"]) == [
        "fault", "apply", "--xid=79", "--node=n1", "--node=n2", "--wait", "--json",
    ]  # fmt: skip
    # The scenario's keys, checked by the binary, ride along; its XID is the fault's.
    assert cluster.apply_args(
        selector="gpu=true", scenario=Scenario(xid=48, percent=5, sticky=True), kmsg=True, wait_timeout=90
    ) == [
        "fault", "apply", "--xid=48", "-l", "gpu=true", "--percent=5", "--sticky=true", "--kmsg", "--wait",
        "--timeout=90s", "--json",
    ]  # fmt: skip
    assert cluster.delete_args() == ["fault", "delete", "--wait", "--json"]
    assert cluster.delete_args(wait=False, wait_timeout=5) == ["fault", "delete", "--timeout=5s", "--json"]


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda: cluster.apply_args(nodes=["n"]), "needs an XID"),
        (lambda: cluster.apply_args(79), "exactly one"),
        (lambda: cluster.apply_args(79, nodes=["n"], selector="a=b"), "exactly one"),
        (lambda: cluster.apply_args(79, nodes="n1"), "not one string"),
        (lambda: cluster.apply_args(79, nodes=["n"], scenario=Scenario(xid=48)), "differ"),
        (lambda: cluster.verify_args("deploy/x", selector="a=b"), "not both"),
        (lambda: cluster.inject_args("deploy/x", containers="main"), "not one string"),
    ],
)
def test_arguments_that_cannot_work_are_usage_errors(clean_env: None, call, needle: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(cuda_fault.UsageError) as info:
        call()
    assert info.value.code == 2 and needle in info.value.message


def test_the_contract_s_objects_read_into_typed_results() -> None:
    r = cluster.InjectResult.from_json(
        {"kind": "Deployment", "apiVersion": "apps/v1", "namespace": "ns", "name": "x",
         "injected": ["container main"], "annotation": "cuda-fault/injected", "operations": 17, "new": 1}
    )  # fmt: skip
    assert (r.kind, r.api_version, r.injected, r.operations, r.extra) == (
        "Deployment", "apps/v1", ("container main",), 17, {"new": 1}
    )  # fmt: skip
    r2 = cluster.RemoveResult.from_json(
        {"kind": "StatefulSet", "apiVersion": "apps/v1", "namespace": "ns", "name": "x",
         "removed": ["env LD_PRELOAD"], "kept": [], "restarted_pods": ["p-0"]}
    )  # fmt: skip
    assert (r2.removed, r2.kept, r2.restarted_pods) == (("env LD_PRELOAD",), (), ("p-0",))
    s = cluster.FaultStatus.from_json(
        {"present": True, "namespace": "cuda-fault", "xid": 79, "line": "1 79", "nodes": ["gpu-node-1"],
         "selector": None, "kmsg": False, "desired": 1, "ready": 1,
         "pods": [{"node": "gpu-node-1", "pod": "cuda-fault-hold-x", "ready": True, "phase": "Running"}]}
    )  # fmt: skip
    assert s.in_effect and s.nodes == ("gpu-node-1",)
    assert s.pods == (
        cluster.HoldPod(node="gpu-node-1", pod="cuda-fault-hold-x", ready=True, phase="Running"),
    )
    absent = cluster.FaultStatus.from_json(
        {"present": False, "namespace": None, "xid": None, "line": None, "nodes": None, "selector": None,
         "kmsg": None, "desired": None, "ready": None, "pods": []}
    )  # fmt: skip
    assert not absent.in_effect and absent.pods == ()
    d = cluster.DeleteResult.from_json(
        {"deleted": True, "remaining": [{"node": "n1", "pod": "p", "reason": "r"}]}
    )
    assert d.remaining == (cluster.Remaining(node="n1", pod="p", reason="r"),)
    with pytest.raises(cuda_fault.ProtocolError):
        cluster.InjectResult.from_json({"kind": "Deployment"})
    with pytest.raises(cuda_fault.ProtocolError):
        cluster.FaultStatus.from_json({"present": True, "pods": ["not an object"]})


def test_verify_reads_the_binary_s_report() -> None:
    # The object cluster/verify.rs serializes (`Report`), with a node's `status --json`.
    report = {
        "namespace": "prod", "workload": "Deployment vllm", "selector": "app=vllm",
        "pods": [{"pod": "vllm-1", "node": "n1", "phase": "Running", "shim_install": "done",
                  "preloaded": ["main"], "shim_mounted": ["main"], "toggle_mounted": ["main"],
                  "injected": True}],
        "nodes": [{"node": "n1", "toggle": {"file": "/host-fault/cuda_fault_enabled", "present": True,
                                            "state": "on", "xid": 79, "raw": "1 79\n"},
                   "error": None, "hold_pod": "cuda-fault-hold-a"}],
        "injected": 1,
    }  # fmt: skip
    v = cluster.VerifyResult.from_json(report)
    assert v.all_injected and v.pods[0].preloaded == ("main",)
    assert v.nodes[0].toggle is not None and v.nodes[0].toggle.on and v.nodes[0].toggle.xid == 79


def test_verify_against_an_unreachable_api_server(
    clean_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config"
    config.write_text(KUBECONFIG)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(cuda_fault.UnavailableError) as info:
        cluster.verify("deployment/vllm", namespace="prod", node_check=False, kubeconfig=config, timeout=120)
    assert info.value.code == 69
    assert "cannot reach the Kubernetes API server" in info.value.message
    monkeypatch.delenv("KUBECONFIG", raising=False)
    with pytest.raises(cuda_fault.NoConfigError) as info2:
        cluster.verify(kubeconfig=tmp_path / "missing", timeout=120)
    assert info2.value.code == 78 and "KUBECONFIG" in info2.value.message
    # A bad workload is refused before any call.
    with pytest.raises(cuda_fault.UsageError):
        cluster.verify("pod/x", kubeconfig=config)


def recording_binary(tmp_path: Path, replies: dict[str, tuple[int, str]]) -> Path:
    """A stand-in for the binary (the fault commands are not in this build): it appends its
    arguments to calls.jsonl and answers by the first two of them."""
    log = tmp_path / "calls.jsonl"
    table = tmp_path / "replies.json"
    table.write_text(json.dumps(replies))
    script = tmp_path / "cuda-fault"
    script.write_text(
        "#!/usr/bin/env python3\nimport json, sys\n"
        f"open({str(log)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
        f"code, out = json.load(open({str(table)!r}))[' '.join(sys.argv[1:3])]\n"
        "(sys.stdout if code == 0 else sys.stderr).write(out + '\\n')\nsys.exit(code)\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return log


STATUS = json.dumps(
    {"present": True, "namespace": "cuda-fault", "xid": 79, "line": "1 79", "nodes": ["n1"], "selector": None,
     "kmsg": False, "desired": 1, "ready": 1,
     "pods": [{"node": "n1", "pod": "h", "ready": True, "phase": "Running"}]}
)  # fmt: skip
DELETED = json.dumps({"deleted": True, "remaining": []})


def calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_fault_applies_on_enter_and_deletes_on_exit_also_after_an_exception(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = recording_binary(tmp_path, {"fault apply": (0, STATUS), "fault delete": (0, DELETED)})
    monkeypatch.setenv("CUDA_FAULT_BINARY", str(tmp_path / "cuda-fault"))
    with cluster.Fault(xid=79, nodes=["n1"]) as status:
        assert status.in_effect and status.pods[0].pod == "h"
        assert calls(log) == [["fault", "apply", "--xid=79", "--node=n1", "--wait", "--json"]]
    assert calls(log)[1:] == [["fault", "delete", "--wait", "--json"]]
    log.unlink()
    with pytest.raises(RuntimeError, match="the test failed"), cluster.Fault(79, selector="a=b"):
        raise RuntimeError("the test failed")
    assert [c[:2] for c in calls(log)] == [["fault", "apply"], ["fault", "delete"]]


def test_a_failed_apply_is_cleaned_up_unless_it_was_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_FAULT_BINARY", str(tmp_path / "cuda-fault"))
    log = recording_binary(
        tmp_path,
        {"fault apply": (75, "cuda-fault: timed out: 0 of 1 hold pods Ready"), "fault delete": (0, DELETED)},
    )
    with pytest.raises(cuda_fault.TimedOutError) as info, cluster.Fault(79, nodes=["n1"]):
        pytest.fail("the block must not run")
    assert (info.value.code, info.value.message) == (75, "timed out: 0 of 1 hold pods Ready")
    assert [c[:2] for c in calls(log)] == [["fault", "apply"], ["fault", "delete"]]
    log.unlink()
    recording_binary(
        tmp_path, {"fault apply": (2, "cuda-fault: a fault already exists"), "fault delete": (0, DELETED)}
    )
    with pytest.raises(cuda_fault.UsageError), cluster.Fault(79, nodes=["n1"]):
        pytest.fail("the block must not run")
    assert [c[:2] for c in calls(log)] == [["fault", "apply"]], "a refused apply created nothing to delete"


def test_a_node_that_kept_the_fault_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_FAULT_BINARY", str(tmp_path / "cuda-fault"))
    kept = json.dumps(
        {"deleted": True, "remaining": [{"node": "n1", "pod": "h", "reason": "the file changed"}]}
    )
    recording_binary(tmp_path, {"fault apply": (0, STATUS), "fault delete": (0, kept)})
    with pytest.raises(cluster.FaultRemainsError) as info, cluster.Fault(79, nodes=["n1"]):
        pass
    assert "n1 (h): the file changed" in info.value.message
    assert info.value.result.remaining[0].node == "n1"
