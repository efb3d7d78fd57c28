//! `cuda-fault node …` against kube's mock service (tower-test): the exact Job, the exact calls
//! (node check, create, poll, pod list, log, delete) and every error path. No API server runs here.

use std::time::Duration;

use clap::Parser;
use cuda_fault::exit;
use cuda_fault::exit::Failure;
use cuda_fault::{run_plan, Cli, Command, NodePlan};
use serde_json::{json, Value};

mod support;
use support::*;

fn plan(args: &[&str]) -> NodePlan {
    let mut argv = vec!["cuda-fault"];
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(argv).unwrap();
    let Command::Node(n) = cli.command else { panic!("not a node command") };
    let mut p = n.plan().unwrap();
    p.options.poll = Duration::from_millis(1);
    p
}

struct Outcome {
    result: Result<(), Failure>,
    out: String,
    err: String,
}

/// Runs `args` against the fake server `serve`; both must finish (the server must have seen every
/// call it expects; an extra client call fails because the server is gone).
async fn scenario<F, Fut>(args: &[&str], serve: F) -> Outcome
where
    F: FnOnce(Server) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    scenario_plan(plan(args), serve).await
}

async fn scenario_plan<F, Fut>(plan: NodePlan, serve: F) -> Outcome
where
    F: FnOnce(Server) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let tool_namespace = plan.options.namespace.clone();
    let (result, out, err) = with_server(
        cuda_fault::cluster::RBAC,
        &tool_namespace,
        |client| async move {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let result = run_plan(&client, &plan, &mut out, &mut err).await;
            (result, out, err)
        },
        serve,
    )
    .await;
    Outcome { result, out: String::from_utf8(out).unwrap(), err: String::from_utf8(err).unwrap() }
}

fn labels(node: &str) -> Value {
    json!({"app.kubernetes.io/managed-by": "cuda-fault", "app.kubernetes.io/name": "cuda-fault", "cuda-fault/node": node})
}

fn expected_job(name: &str, node: &str, command: Value, image: &str, deadline: i64, read_only: bool) -> Value {
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"generateName": name.strip_suffix(SUFFIX).unwrap(), "namespace": NS, "labels": labels(node)},
        "spec": {
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": 300,
            "activeDeadlineSeconds": deadline,
            "template": {
                "metadata": {"labels": labels(node)},
                "spec": {
                    "nodeName": node,
                    "restartPolicy": "Never",
                    "tolerations": [{"operator": "Exists"}],
                    "automountServiceAccountToken": false,
                    "volumes": [{"name": "host-fault",
                                 "hostPath": {"path": "/var/lib/cuda-fault-test", "type": "DirectoryOrCreate"}}],
                    "containers": [{
                        "name": "cuda-fault",
                        "image": image,
                        "command": command,
                        "volumeMounts": [{"name": "host-fault", "mountPath": "/host-fault", "readOnly": read_only}],
                        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"},
                                      "limits": {"cpu": "10m", "memory": "16Mi"}},
                        "securityContext": {
                            "runAsUser": 0,
                            "runAsNonRoot": false,
                            "allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true,
                            "capabilities": {"drop": ["ALL"]},
                            "seccompProfile": {"type": "RuntimeDefault"}
                        }
                    }]
                }
            }
        }
    })
}

/// The successful flow after the node check: create (asserting the body), poll once active and
/// once complete, list the pod, read its log, delete in the background.
async fn serve_job(s: &mut Server, name: &str, expected: Option<Value>, log: &str) {
    let c = s.expect("POST", &format!("{JOBS}?")).await;
    if let Some(expected) = expected {
        assert_eq!(c.body, expected, "the Job");
    }
    assert_eq!(c.created(), name);
    s.expect("GET", &format!("{JOBS}/{name}")).await.json(200, job_with(name, json!({"active": 1})));
    s.expect("GET", &format!("{JOBS}/{name}"))
        .await
        .json(200, job_with(name, condition("Complete", "CompletionsReached", "")));
    serve_log(s, name, log).await;
    let c = s.expect("DELETE", &format!("{JOBS}/{name}?")).await;
    assert_eq!(c.body, json!({"propagationPolicy": "Background"}));
    c.json(200, deleted());
}

async fn serve_log(s: &mut Server, name: &str, log: &str) {
    s.expect("GET", &format!("/api/v1/namespaces/cuda-fault/pods?&labelSelector=job-name%3D{name}"))
        .await
        .json(200, pod_list(json!([pod(&format!("{name}-abcde"), json!({"phase": "Succeeded"}))])));
    s.expect("GET", &format!("/api/v1/namespaces/cuda-fault/pods/{name}-abcde/log?&container=cuda-fault"))
        .await
        .text(log);
}

#[tokio::test]
async fn enable_creates_the_exact_job_waits_prints_the_log_and_deletes() {
    let name = job_name("enable", "gpu-1");
    let log = "wrote \"1 48\" to /host-fault/cuda_fault_enabled: faults on: XID 48 (GPU_ECC_DBE)\n";
    let expected = expected_job(
        &name,
        "gpu-1",
        json!(["/usr/local/bin/cuda-fault", "enable", "--file", "/host-fault/cuda_fault_enabled", "--xid", "48"]),
        "registry.example/cuda-fault:test",
        90,
        false,
    );
    let n = name.clone();
    let o = scenario(
        &["node", "gpu-1", "enable", "--xid", "48", "--image", "registry.example/cuda-fault:test", "--timeout", "90"],
        move |mut s| async move {
            s.expect("GET", "/api/v1/nodes/gpu-1").await.json(200, node_json("gpu-1", false, true));
            serve_job(&mut s, &n, Some(expected), log).await;
        },
    )
    .await;
    assert_eq!(o.result, Ok(()));
    assert_eq!(o.out, log, "stdout is the Job's log");
    assert!(o.err.contains(&format!("created Job cuda-fault/{name} on node gpu-1")), "{}", o.err);
    assert!(o.err.contains(&format!("deleted Job cuda-fault/{name}")));
    assert!(!o.err.contains("note:"));
}

#[tokio::test]
async fn default_namespace_image_and_timeout() {
    let name = job_name("disable", "gpu-1");
    let expected = expected_job(
        &name,
        "gpu-1",
        json!(["/usr/local/bin/cuda-fault", "disable", "--file", "/host-fault/cuda_fault_enabled"]),
        // The test process does not set CUDA_FAULT_IMAGE.
        &std::env::var("CUDA_FAULT_IMAGE").unwrap_or_else(|_| "ghcr.io/cuda-fault/cuda-fault:0.1.0".into()),
        120,
        false,
    );
    let n = name.clone();
    let o = scenario(&["node", "gpu-1", "disable"], move |mut s| async move {
        s.expect("GET", "/api/v1/nodes/gpu-1").await.json(200, node_json("gpu-1", false, true));
        serve_job(&mut s, &n, Some(expected), "wrote \"0\"\n").await;
    })
    .await;
    assert_eq!(o.result, Ok(()));
}

#[tokio::test]
async fn scenario_flags_reach_the_job_command() {
    let name = job_name("enable", "gpu-2");
    let n = name.clone();
    let o = scenario(
        &[
            "node",
            "gpu-2",
            "enable",
            "--xid",
            "79",
            "--devices",
            "1,GPU-8f2c1a3e-1111-2222-3333-444455556666",
            "--after-calls",
            "5",
            "--after",
            "5s",
            "--mode",
            "hang",
            "--sticky",
            "-n",
            "chaos",
            "--percent",
            "12.5",
            "--count",
            "3",
            "--functions",
            "@launch,cudaMalloc",
            "--seed",
            "7",
        ],
        move |mut s| async move {
            s.expect("GET", "/api/v1/nodes/gpu-2").await.json(200, node_json("gpu-2", false, true));
            let c = s.expect("POST", "/apis/batch/v1/namespaces/chaos/jobs?").await;
            let container = &c.body["spec"]["template"]["spec"]["containers"][0];
            assert_eq!(
                container["command"],
                json!([
                    "/usr/local/bin/cuda-fault",
                    "enable",
                    "--file",
                    "/host-fault/cuda_fault_enabled",
                    "--xid",
                    "79",
                    "--devices",
                    "1,GPU-8f2c1a3e-1111-2222-3333-444455556666",
                    "--after-calls",
                    "5",
                    "--after",
                    "5000ms",
                    "--mode",
                    "hang",
                    "--percent",
                    "12.5",
                    "--count",
                    "3",
                    "--functions",
                    "@launch,cudaMalloc",
                    "--seed",
                    "7",
                    "--sticky=true"
                ])
            );
            assert_eq!(c.body["metadata"]["namespace"], "chaos");
            c.created();
            let job = format!("/apis/batch/v1/namespaces/chaos/jobs/{n}");
            s.expect("GET", &job).await.json(200, job_with(&n, condition("Complete", "", "")));
            s.expect("GET", &format!("/api/v1/namespaces/chaos/pods?&labelSelector=job-name%3D{n}"))
                .await
                .json(200, pod_list(json!([pod("p", json!({}))])));
            s.expect("GET", "/api/v1/namespaces/chaos/pods/p/log?&container=cuda-fault").await.text("ok");
            s.expect("DELETE", &format!("{job}?")).await.json(200, deleted());
        },
    )
    .await;
    assert_eq!(o.result, Ok(()));
    assert_eq!(o.out, "ok\n");
}

#[tokio::test]
async fn clean_and_status_commands() {
    for (verb, read_only) in [("clean", false), ("status", true)] {
        let name = job_name(verb, "gpu-1");
        let n = name.clone();
        let o = scenario(&["node", "gpu-1", verb], move |mut s| async move {
            s.expect("GET", "/api/v1/nodes/gpu-1").await.json(200, node_json("gpu-1", false, true));
            let c = s.expect("POST", &format!("{JOBS}?")).await;
            let container = &c.body["spec"]["template"]["spec"]["containers"][0];
            assert_eq!(
                container["command"],
                json!(["/usr/local/bin/cuda-fault", verb, "--file", "/host-fault/cuda_fault_enabled"])
            );
            assert_eq!(container["volumeMounts"][0]["readOnly"], read_only);
            c.created();
            s.expect("GET", &format!("{JOBS}/{n}")).await.json(200, job_with(&n, condition("Complete", "", "")));
            serve_log(&mut s, &n, "state: absent: env decides\n").await;
            s.expect("DELETE", &format!("{JOBS}/{n}?")).await.json(200, deleted());
        })
        .await;
        assert_eq!(o.result, Ok(()), "{verb}");
        assert_eq!(o.out, "state: absent: env decides\n");
    }
}

#[tokio::test]
async fn cordoned_or_not_ready_node_is_noted_and_still_targeted() {
    let name = job_name("clean", "gpu-1");
    let n = name.clone();
    let o = scenario(&["node", "gpu-1", "clean"], move |mut s| async move {
        s.expect("GET", "/api/v1/nodes/gpu-1").await.json(200, node_json("gpu-1", true, false));
        serve_job(&mut s, &n, None, "removed\n").await;
    })
    .await;
    assert_eq!(o.result, Ok(()));
    assert!(o.err.contains("note: node gpu-1 is cordoned"), "{}", o.err);
    assert!(o.err.contains("note: node gpu-1 is NotReady"), "{}", o.err);
}

#[tokio::test]
async fn node_not_found() {
    let o = scenario(&["node", "gpu-9", "enable"], |mut s| async move {
        s.expect("GET", "/api/v1/nodes/gpu-9").await.status(404, "NotFound", "nodes \"gpu-9\" not found");
    })
    .await;
    let f = o.result.unwrap_err();
    assert_eq!(f.code, exit::UNAVAILABLE);
    assert_eq!(f.message, "node gpu-9 not found; check the name with kubectl get nodes");
}

#[tokio::test]
async fn forbidden_paths_name_the_verb_and_resource() {
    let o = scenario(&["node", "gpu-1", "enable"], |mut s| async move {
        s.expect("GET", "/api/v1/nodes/gpu-1").await.status(
            403,
            "Forbidden",
            "nodes \"gpu-1\" is forbidden: User \"bob\" cannot get resource \"nodes\" in API group \"\" at the cluster scope",
        );
    })
    .await;
    let f = o.result.unwrap_err();
    assert_eq!(f.code, exit::FORBIDDEN);
    assert!(f.message.starts_with("forbidden: bob cannot get nodes;"), "{}", f.message);
    assert!(f.message.contains("manifests/rbac/"));

    let o = scenario(&["node", "gpu-1", "enable"], |mut s| async move {
        s.expect("GET", "/api/v1/nodes/gpu-1").await.json(200, node_json("gpu-1", false, true));
        s.expect("POST", &format!("{JOBS}?")).await.status(403, "Forbidden", "jobs.batch is forbidden");
    })
    .await;
    let f = o.result.unwrap_err();
    assert_eq!(f.code, exit::FORBIDDEN);
    assert_eq!(
        f.message,
        "forbidden: cannot create jobs.batch in namespace cuda-fault; apply manifests/rbac/ \
         (kubectl apply -k manifests/rbac/) or grant 'create' on 'jobs.batch'"
    );
    assert!(!f.message.contains('\n'));

    // Forbidden while polling: the Job is still deleted.
    let name = job_name("enable", "gpu-1");
    let n = name.clone();
    let o = scenario(&["node", "gpu-1", "enable"], move |mut s| async move {
        s.node_found_and_job_created().await;
        s.expect("GET", &format!("{JOBS}/{n}")).await.status(403, "Forbidden", "no");
        s.expect("DELETE", &format!("{JOBS}/{n}?")).await.json(200, deleted());
    })
    .await;
    let f = o.result.unwrap_err();
    assert_eq!(f.code, exit::FORBIDDEN);
    assert!(f.message.contains("cannot get jobs.batch in namespace cuda-fault"), "{}", f.message);
}

#[tokio::test]
async fn namespace_missing() {
    let o = scenario(&["node", "gpu-1", "clean", "-n", "nope"], |mut s| async move {
        s.expect("GET", "/api/v1/nodes/gpu-1").await.json(200, node_json("gpu-1", false, true));
        s.expect("POST", "/apis/batch/v1/namespaces/nope/jobs?").await.status(
            404,
            "NotFound",
            "namespaces \"nope\" not found",
        );
    })
    .await;
    let f = o.result.unwrap_err();
    assert_eq!(f.code, exit::UNAVAILABLE);
    assert!(f.message.starts_with("namespace nope not found;"), "{}", f.message);
}

#[tokio::test]
async fn job_failure_prints_the_log_names_the_cause_and_deletes() {
    let name = job_name("enable", "gpu-1");
    let n = name.clone();
    let log = "cuda-fault: cannot write /host-fault/cuda_fault_enabled: read-only file system (mount the toggle directory read-write)\n";
    let o = scenario(&["node", "gpu-1", "enable"], move |mut s| async move {
        s.node_found_and_job_created().await;
        s.expect("GET", &format!("{JOBS}/{n}")).await.json(
            200,
            job_with(&n, condition("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")),
        );
        serve_log(&mut s, &n, log).await;
        s.expect("DELETE", &format!("{JOBS}/{n}?")).await.json(200, deleted());
    })
    .await;
    let f = o.result.unwrap_err();
    assert_eq!(f.code, exit::JOB_FAILED);
    assert_eq!(f.message, format!("Job cuda-fault/{name} failed on node gpu-1: {}", log.trim_end()));
    assert_eq!(o.out, log);
    assert!(o.err.contains("deleted Job"));
}

#[tokio::test]
async fn job_failure_without_a_log_uses_the_pod_state() {
    let name = job_name("enable", "gpu-1");
    let n = name.clone();
    let o = scenario(&["node", "gpu-1", "enable"], move |mut s| async move {
        s.node_found_and_job_created().await;
        s.expect("GET", &format!("{JOBS}/{n}"))
            .await
            .json(200, job_with(&n, condition("Failed", "PodFailurePolicy", "Container failed")));
        let pods = format!("/api/v1/namespaces/cuda-fault/pods?&labelSelector=job-name%3D{n}");
        let p = pod("p1", json!({"phase": "Failed", "containerStatuses": [{"name": "cuda-fault", "image": "i", "imageID": "",
            "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "CreateContainerConfigError", "message": "bad"}}}]}));
        s.expect("GET", &pods).await.json(200, pod_list(json!([p.clone()])));
        s.expect("GET", "/api/v1/namespaces/cuda-fault/pods/p1/log?&container=cuda-fault")
            .await
            .status(400, "BadRequest", "container is waiting to start");
        s.expect("GET", &pods).await.json(200, pod_list(json!([p])));
        s.expect("DELETE", &format!("{JOBS}/{n}?")).await.json(200, deleted());
    })
    .await;
    let f = o.result.unwrap_err();
    assert_eq!(f.code, exit::JOB_FAILED);
    assert!(
        f.message.contains("PodFailurePolicy Container failed (pod p1: CreateContainerConfigError: bad)"),
        "{}",
        f.message
    );
    assert!(o.err.contains("warning: cannot read the Job's log"), "{}", o.err);
}

#[tokio::test]
async fn timeout_reports_why_the_pod_is_stuck_and_deletes_the_job() {
    let name = job_name("enable", "gpu-1");
    let n = name.clone();
    let mut p = plan(&["node", "gpu-1", "enable"]);
    p.options.timeout = Duration::from_millis(50);
    p.options.poll = Duration::from_millis(5);
    let o = scenario_plan(p, move |mut s| async move {
        s.expect("GET", "/api/v1/nodes/gpu-1").await.json(200, node_json("gpu-1", false, true));
        let c = s.expect("POST", &format!("{JOBS}?")).await;
        assert_eq!(c.body["spec"]["activeDeadlineSeconds"], 1, "deadline rounds up to whole seconds");
        c.created();
        let mut polls = 0;
        loop {
            let c = s.next().await;
            if c.method == "GET" && c.uri == format!("{JOBS}/{n}") {
                polls += 1;
                c.json(200, job_with(&n, json!({"active": 1})));
                continue;
            }
            assert_eq!(c.uri, format!("/api/v1/namespaces/cuda-fault/pods?&labelSelector=job-name%3D{n}"));
            c.json(
                200,
                pod_list(json!([pod(
                    "p1",
                    json!({"phase": "Pending", "containerStatuses": [{
                "name": "cuda-fault", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"i\""}}}]})
                )])),
            );
            break;
        }
        assert!(polls >= 2, "polled {polls} times");
        s.expect("DELETE", &format!("{JOBS}/{n}?")).await.json(200, deleted());
    })
    .await;
    let f = o.result.unwrap_err();
    assert_eq!(f.code, exit::TIMEOUT);
    assert!(
        f.message.starts_with(&format!("timed out after 1s waiting for Job cuda-fault/{name} on node gpu-1")),
        "{}",
        f.message
    );
    assert!(f.message.contains("ImagePullBackOff"), "{}", f.message);
    assert!(!f.message.contains('\n'));
}

#[tokio::test]
async fn deadline_exceeded_counts_as_timeout() {
    let name = job_name("enable", "gpu-1");
    let n = name.clone();
    let o = scenario(&["node", "gpu-1", "enable"], move |mut s| async move {
        s.node_found_and_job_created().await;
        s.expect("GET", &format!("{JOBS}/{n}")).await.json(
            200,
            job_with(&n, condition("Failed", "DeadlineExceeded", "Job was active longer than specified deadline")),
        );
        s.expect("GET", &format!("/api/v1/namespaces/cuda-fault/pods?&labelSelector=job-name%3D{n}"))
            .await
            .json(200, pod_list(json!([])));
        s.expect("DELETE", &format!("{JOBS}/{n}?")).await.json(200, deleted());
    })
    .await;
    let f = o.result.unwrap_err();
    assert_eq!(f.code, exit::TIMEOUT);
    assert!(f.message.contains("Job was active longer than specified deadline"), "{}", f.message);
}

#[tokio::test]
async fn log_and_delete_problems_are_warnings() {
    let name = job_name("disable", "gpu-1");
    let n = name.clone();
    let o = scenario(&["node", "gpu-1", "disable"], move |mut s| async move {
        s.node_found_and_job_created().await;
        s.expect("GET", &format!("{JOBS}/{n}")).await.json(200, job_with(&n, condition("Complete", "", "")));
        s.expect("GET", &format!("/api/v1/namespaces/cuda-fault/pods?&labelSelector=job-name%3D{n}"))
            .await
            .json(200, pod_list(json!([pod("p1", json!({}))])));
        s.expect("GET", "/api/v1/namespaces/cuda-fault/pods/p1/log?&container=cuda-fault").await.status(
            403,
            "Forbidden",
            "pods \"p1\" is forbidden",
        );
        s.expect("DELETE", &format!("{JOBS}/{n}?")).await.status(403, "Forbidden", "no delete");
    })
    .await;
    assert_eq!(o.result, Ok(()));
    assert!(
        o.err.contains("warning: cannot read the Job's log: forbidden: cannot get pods/log in namespace cuda-fault"),
        "{}",
        o.err
    );
    assert!(o.err.contains("warning: forbidden: cannot delete jobs.batch"), "{}", o.err);
    assert!(o.err.contains("removes itself 300s after finishing"));
}

#[tokio::test]
async fn unreachable_and_unauthorized_api() {
    let o = scenario(&["node", "gpu-1", "enable"], |mut s| async move {
        s.refuse_connection().await;
    })
    .await;
    let f = o.result.unwrap_err();
    assert_eq!(f.code, exit::UNAVAILABLE);
    assert!(f.message.starts_with("cannot reach the Kubernetes API server (get nodes)"), "{}", f.message);
    assert!(f.message.contains("connection refused"));

    let o = scenario(&["node", "gpu-1", "enable"], |mut s| async move {
        s.expect("GET", "/api/v1/nodes/gpu-1").await.status(401, "Unauthorized", "Unauthorized");
    })
    .await;
    assert_eq!(o.result.unwrap_err().code, exit::NO_CONFIG);
}

#[tokio::test]
async fn all_nodes_matching_a_selector_are_cleaned() {
    let o = scenario(&["node", "--all", "--selector", "nvidia.com/gpu.present=true", "clean"], |mut s| async move {
        s.expect("GET", "/api/v1/nodes?&labelSelector=nvidia.com%2Fgpu.present%3Dtrue").await.json(
            200,
            json!({"apiVersion": "v1", "kind": "NodeList", "metadata": {},
                              "items": [node_json("gpu-a", false, true), node_json("gpu-b", true, true)]}),
        );
        for node in ["gpu-a", "gpu-b"] {
            let name = job_name("clean", node);
            let expected = expected_job(
                &name,
                node,
                json!(["/usr/local/bin/cuda-fault", "clean", "--file", "/host-fault/cuda_fault_enabled"]),
                &std::env::var("CUDA_FAULT_IMAGE").unwrap_or_else(|_| "ghcr.io/cuda-fault/cuda-fault:0.1.0".into()),
                120,
                false,
            );
            serve_job(&mut s, &name, Some(expected), &format!("removed on {node}\n")).await;
        }
    })
    .await;
    assert_eq!(o.result, Ok(()));
    assert_eq!(o.out, "== node gpu-a ==\nremoved on gpu-a\n== node gpu-b ==\nremoved on gpu-b\n");
    assert!(o.err.contains("2 node(s): gpu-a, gpu-b"));
    assert!(o.err.contains("note: node gpu-b is cordoned"));
    assert!(o.err.contains("clean on 2 node(s): done"));
}

#[tokio::test]
async fn all_nodes_reports_each_failure_and_goes_on() {
    let o = scenario(&["node", "--all", "clean"], |mut s| async move {
        s.expect("GET", "/api/v1/nodes?").await.json(
            200,
            json!({"apiVersion": "v1", "kind": "NodeList", "metadata": {},
                              "items": [node_json("gpu-a", false, true), node_json("gpu-b", false, true)]}),
        );
        let a = job_name("clean", "gpu-a");
        let c = s.expect("POST", &format!("{JOBS}?")).await;
        c.created();
        s.expect("GET", &format!("{JOBS}/{a}"))
            .await
            .json(200, job_with(&a, condition("Failed", "BackoffLimitExceeded", "")));
        serve_log(&mut s, &a, "cuda-fault: cannot remove /host-fault/cuda_fault_enabled: read-only file system\n")
            .await;
        s.expect("DELETE", &format!("{JOBS}/{a}?")).await.json(200, deleted());
        serve_job(&mut s, &job_name("clean", "gpu-b"), None, "removed\n").await;
    })
    .await;
    let f = o.result.unwrap_err();
    assert_eq!(f.code, exit::JOB_FAILED);
    assert_eq!(f.message, "1 of 2 nodes failed: gpu-a");
    assert!(o.err.contains("read-only file system"), "{}", o.err);
    assert!(o.out.contains("== node gpu-b ==\nremoved\n"));
}

#[tokio::test]
async fn all_nodes_errors() {
    let o = scenario(&["node", "--all", "--selector", "pool=none", "clean"], |mut s| async move {
        s.expect("GET", "/api/v1/nodes?&labelSelector=pool%3Dnone")
            .await
            .json(200, json!({"apiVersion": "v1", "kind": "NodeList", "metadata": {}, "items": []}));
    })
    .await;
    let f = o.result.unwrap_err();
    assert_eq!((f.code, f.message.as_str()), (exit::UNAVAILABLE, "no nodes match selector 'pool=none'"));

    let o = scenario(&["node", "--all", "clean"], |mut s| async move {
        s.expect("GET", "/api/v1/nodes?").await.status(403, "Forbidden", "nodes is forbidden");
    })
    .await;
    let f = o.result.unwrap_err();
    assert_eq!(f.code, exit::FORBIDDEN);
    assert!(f.message.starts_with("forbidden: cannot list nodes;"), "{}", f.message);

    let o = scenario(&["node", "--all", "--selector", "a==", "clean"], |mut s| async move {
        s.expect("GET", "/api/v1/nodes?&labelSelector=a%3D%3D").await.status(
            400,
            "BadRequest",
            "unable to parse requirement",
        );
    })
    .await;
    let f = o.result.unwrap_err();
    assert_eq!(f.code, exit::USAGE);
    assert!(f.message.starts_with("invalid --selector 'a=='"), "{}", f.message);

    // A forbidden create stops at the first node instead of failing every node the same way.
    let o = scenario(&["node", "--all", "clean"], |mut s| async move {
        s.expect("GET", "/api/v1/nodes?").await.json(
            200,
            json!({"apiVersion": "v1", "kind": "NodeList", "metadata": {},
                              "items": [node_json("gpu-a", false, true), node_json("gpu-b", false, true)]}),
        );
        s.expect("POST", &format!("{JOBS}?")).await.status(403, "Forbidden", "no");
    })
    .await;
    assert_eq!(o.result.unwrap_err().code, exit::FORBIDDEN);
}
