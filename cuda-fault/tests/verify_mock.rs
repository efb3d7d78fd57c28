//! `cuda-fault verify` against kube's mock API (tower-test): the workload's selector, the pods,
//! the read-only status Job per node and the hold pods; text and JSON; each request checked
//! against the declared RBAC.

use std::time::Duration;

use clap::Parser;
use cuda_fault::exit::{self, Failure};
use cuda_fault::{verify_with, Cli, Command};
use serde_json::{json, Value};

mod support;
use support::*;

fn injected_pod(name: &str, node: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "prod"},
           "spec": {"nodeName": node,
                    "initContainers": [{"name": "cuda-fault-shim-install"}],
                    "containers": [
                        {"name": "vllm", "env": [{"name": "LD_PRELOAD", "value": "/cuda-fault/cuda_intercept.so:/usr/lib/libjemalloc.so.2"}],
                         "volumeMounts": [{"name": "cuda-fault-shim", "mountPath": "/cuda-fault", "readOnly": true},
                                          {"name": "cuda-fault-toggle", "mountPath": "/host-fault", "readOnly": true}]},
                        {"name": "vllm-metrics"}]},
           "status": {"phase": "Running",
                      "initContainerStatuses": [{"name": "cuda-fault-shim-install", "image": "i", "imageID": "", "ready": false,
                                                 "restartCount": 0, "state": {"terminated": {"exitCode": 0}}}]}})
}

fn plain_pod(name: &str, node: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "prod"},
           "spec": {"nodeName": node, "containers": [{"name": "vllm"}]}, "status": {"phase": "Running"}})
}

const STATUS_JSON: &str = r#"{"file":"/host-fault/cuda_fault_enabled","present":true,"state":"on","xid":79,"devices":null,"after_calls":null,"after_ms":null,"mode":null,"sticky":null,"percent":null,"count":null,"functions":null,"seed":null,"raw":"1 79\n","error":null,"effect":"faults on: XID 79 (GPU_HAS_FALLEN_OFF_THE_BUS)"}"#;

struct Outcome {
    result: Result<(), Failure>,
    out: String,
}

async fn verify<F, Fut>(args: &[&str], serve: F) -> Outcome
where
    F: FnOnce(Server) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut argv = vec!["cuda-fault", "verify"];
    argv.extend_from_slice(args);
    let Command::Verify(v) = Cli::try_parse_from(argv).unwrap().command else { unreachable!() };
    let mut plan = v.plan("default").unwrap();
    plan.jobs.poll = Duration::from_millis(1);
    let json = v.json;
    let (result, out) = with_server(
        cuda_fault::cluster::RBAC,
        "cuda-fault",
        |client| async move {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let r = verify_with(&client, &plan, json, &mut out, &mut err).await;
            (r, out)
        },
        serve,
    )
    .await;
    Outcome { result, out: String::from_utf8(out).unwrap() }
}

#[tokio::test]
async fn a_deployments_pods_their_nodes_toggle_files_and_hold_pods() {
    let o = verify(&["-n", "prod", "deployment/vllm"], |mut s| async move {
        s.expect("GET", "/apis/apps/v1/namespaces/prod/deployments/vllm").await.json(200, json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "vllm"},
            "spec": {"selector": {"matchLabels": {"app": "vllm"},
                                  "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]},
                     "template": {"spec": {"containers": []}}}}));
        s.expect("GET", "/api/v1/namespaces/prod/pods?&labelSelector=app%3Dvllm%2Ctier+in+%28a%2Cb%29")
            .await
            .json(200, pod_list(json!([injected_pod("vllm-1", "gpu-1"), plain_pod("vllm-2", "gpu-2")])));
        s.expect("GET", "/api/v1/namespaces/cuda-fault/pods?&labelSelector=app.kubernetes.io%2Fname%3Dcuda-fault-hold")
            .await
            .json(200, pod_list(json!([{"metadata": {"name": "cuda-fault-hold-x2x9k"}, "spec": {"nodeName": "gpu-1", "containers": []}}])));
        // The read-only status Job on gpu-1 only (vllm-2 on gpu-2 is not injected).
        let c = s.expect("POST", &format!("{JOBS}?")).await;
        let container = &c.body["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["command"], json!(["/usr/local/bin/cuda-fault", "status", "--file", "/host-fault/cuda_fault_enabled", "--json"]));
        assert_eq!(container["volumeMounts"][0]["readOnly"], true);
        assert_eq!(c.body["spec"]["template"]["spec"]["nodeName"], "gpu-1");
        let name = c.created();
        s.expect("GET", &format!("{JOBS}/{name}")).await.json(200, job_with(&name, condition("Complete", "", "")));
        s.expect("GET", &format!("/api/v1/namespaces/cuda-fault/pods?&labelSelector=job-name%3D{name}"))
            .await
            .json(200, pod_list(json!([pod("p1", json!({}))])));
        s.expect("GET", "/api/v1/namespaces/cuda-fault/pods/p1/log?&container=cuda-fault").await.text(&format!("{STATUS_JSON}\n"));
        s.expect("DELETE", &format!("{JOBS}/{name}?")).await.json(200, deleted());
    })
    .await;
    let f = o.result.unwrap_err();
    assert_eq!(
        (f.code, f.message.as_str()),
        (
            exit::NOT_INJECTED,
            "1 of 2 pods do not carry the injection: vllm-2 (no cuda-fault-shim-install init container: not injected)"
        )
    );
    assert_eq!(
        o.out,
        "namespace prod Deployment vllm (pods app=vllm,tier in (a,b)): 1 of 2 pods carry the injection\n\
         \n\
         POD     NODE   SHIM-INSTALL  LD_PRELOAD  /cuda-fault  /host-fault  INJECTED\n\
         vllm-1  gpu-1  done          vllm        vllm         vllm         yes\n\
         vllm-2  gpu-2  absent        -           -            -            no\n\
         \n\
         not injected:\n\
         vllm-2: no cuda-fault-shim-install init container: not injected\n\
         \n\
         NODE   TOGGLE FILE                                     HOLD POD\n\
         gpu-1  faults on: XID 79 (GPU_HAS_FALLEN_OFF_THE_BUS)  cuda-fault-hold-x2x9k\n"
    );
}

#[tokio::test]
async fn a_dgds_pods_by_the_operators_label_as_json() {
    let o = verify(&["-n", "llm", "dgd/vllm-disagg", "--json", "--no-node-check"], |mut s| async move {
        s.expect("GET", "/apis/nvidia.com/v1alpha1/namespaces/llm/dynamographdeployments/vllm-disagg")
            .await
            .json(200, json!({"apiVersion": "nvidia.com/v1alpha1", "kind": "DynamoGraphDeployment", "metadata": {"name": "vllm-disagg"}}));
        let mut p = injected_pod("vllm-disagg-decode-0", "gpu-3");
        p["metadata"]["namespace"] = json!("llm");
        s.expect("GET", "/api/v1/namespaces/llm/pods?&labelSelector=nvidia.com%2Fdynamo-graph-deployment-name%3Dvllm-disagg")
            .await
            .json(200, pod_list(json!([p])));
    })
    .await;
    assert_eq!(o.result, Ok(()));
    let report: Value = serde_json::from_str(&o.out).unwrap();
    assert_eq!(
        report,
        json!({"namespace": "llm", "workload": "DynamoGraphDeployment vllm-disagg",
               "selector": "nvidia.com/dynamo-graph-deployment-name=vllm-disagg",
               "pods": [{"pod": "vllm-disagg-decode-0", "node": "gpu-3", "phase": "Running", "shim_install": "done",
                         "preloaded": ["vllm"], "shim_mounted": ["vllm"], "toggle_mounted": ["vllm"], "injected": true,
                         "reason": null}],
               "nodes": [], "injected": 1})
    );
}

#[tokio::test]
async fn init_container_states_and_a_failing_status_job() {
    let o = verify(&["-n", "prod", "-l", "app=vllm"], |mut s| async move {
        let mut waiting = injected_pod("w", "gpu-1");
        waiting["status"]["initContainerStatuses"][0]["state"] = json!({"waiting": {"reason": "ImagePullBackOff"}});
        let mut failed = injected_pod("f", "gpu-1");
        failed["status"]["initContainerStatuses"][0]["state"] = json!({"terminated": {"exitCode": 66}});
        let mut no_preload = injected_pod("n", "gpu-1");
        no_preload["spec"]["containers"][0]["env"] =
            json!([{"name": "LD_PRELOAD", "value": "/usr/lib/libjemalloc.so.2"}]);
        s.expect("GET", "/api/v1/namespaces/prod/pods?&labelSelector=app%3Dvllm")
            .await
            .json(200, pod_list(json!([injected_pod("ok", "gpu-1"), waiting, failed, no_preload])));
        s.expect("GET", "/api/v1/namespaces/cuda-fault/pods?&labelSelector=app.kubernetes.io%2Fname%3Dcuda-fault-hold")
            .await
            .json(200, pod_list(json!([])));
        let name = s.expect("POST", &format!("{JOBS}?")).await.created();
        s.expect("GET", &format!("{JOBS}/{name}"))
            .await
            .json(200, job_with(&name, condition("Failed", "BackoffLimitExceeded", "")));
        s.expect("GET", &format!("/api/v1/namespaces/cuda-fault/pods?&labelSelector=job-name%3D{name}"))
            .await
            .json(200, pod_list(json!([pod("p1", json!({}))])));
        s.expect("GET", "/api/v1/namespaces/cuda-fault/pods/p1/log?&container=cuda-fault")
            .await
            .text("cuda-fault: cannot read /host-fault/cuda_fault_enabled: permission denied\n");
        s.expect("DELETE", &format!("{JOBS}/{name}?")).await.json(200, deleted());
    })
    .await;
    assert_eq!(
        o.result.unwrap_err().message,
        "3 of 4 pods do not carry the injection: w (the cuda-fault-shim-install init container is waiting (ImagePullBackOff)), \
         f (the cuda-fault-shim-install init container is failed (exit 66)), \
         n (container vllm: LD_PRELOAD does not name the shim first (it is '/usr/lib/libjemalloc.so.2'))"
    );
    assert!(o.out.contains("\nw    gpu-1  waiting (ImagePullBackOff)"), "{}", o.out);
    assert!(o.out.contains("\nf    gpu-1  failed (exit 66)"), "{}", o.out);
    assert!(o.out.contains("\nn    gpu-1  done                        -"), "{}", o.out);
    assert!(o.out.contains("gpu-1  unknown: Job cuda-fault/cuda-fault-status-gpu-1-t3st1 failed on node gpu-1: cuda-fault: cannot read"), "{}", o.out);
}

/// An overlay that lists the Component and also patches the container's LD_PRELOAD keeps the
/// mounts and the init container but drops the shim, or puts it after the user's library: such a
/// pod is not injected, and the report says why.
#[tokio::test]
async fn a_pod_whose_ld_preload_lost_the_shim_is_not_injected_and_says_why() {
    let o = verify(&["-n", "prod", "-l", "app=vllm", "--no-node-check"], |mut s| async move {
        let mut replaced = injected_pod("replaced", "gpu-1");
        replaced["spec"]["containers"][0]["env"] = json!([{"name": "LD_PRELOAD", "value": "/usr/lib/libprod.so"}]);
        let mut second = injected_pod("second", "gpu-1");
        second["spec"]["containers"][0]["env"] =
            json!([{"name": "LD_PRELOAD", "value": "/usr/lib/libprod.so:/cuda-fault/cuda_intercept.so"}]);
        let mut unset = injected_pod("unset", "gpu-1");
        unset["spec"]["containers"][0]["env"] = json!([]);
        // A native sidecar that mounts the shim counts like a container.
        let mut sidecar = injected_pod("sidecar", "gpu-1");
        sidecar["spec"]["initContainers"] = json!([
            {"name": "cuda-fault-shim-install"},
            {"name": "proxy", "restartPolicy": "Always", "env": [{"name": "LD_PRELOAD", "value": "/x.so"}],
             "volumeMounts": [{"name": "cuda-fault-shim", "mountPath": "/cuda-fault", "readOnly": true}]}]);
        s.expect("GET", "/api/v1/namespaces/prod/pods?&labelSelector=app%3Dvllm")
            .await
            .json(200, pod_list(json!([injected_pod("ok", "gpu-1"), replaced, second, unset, sidecar])));
    })
    .await;
    let f = o.result.unwrap_err();
    assert_eq!(
        (f.code, f.message.as_str()),
        (
            exit::NOT_INJECTED,
            "4 of 5 pods do not carry the injection: \
             replaced (container vllm: LD_PRELOAD does not name the shim first (it is '/usr/lib/libprod.so')), \
             second (container vllm: LD_PRELOAD does not name the shim first (it is '/usr/lib/libprod.so:/cuda-fault/cuda_intercept.so')), \
             unset (container vllm: LD_PRELOAD does not name the shim first (unset)), \
             sidecar (container proxy: LD_PRELOAD does not name the shim first (it is '/x.so'))"
        )
    );
    assert!(o.out.starts_with("namespace prod pods app=vllm: 1 of 5 pods carry the injection\n"), "{}", o.out);
    assert!(o.out.contains("\nsecond    gpu-1  done          -           vllm         vllm         no\n"), "{}", o.out);
    assert!(
        o.out.contains("\nnot injected:\nreplaced: container vllm: LD_PRELOAD does not name the shim first (it is '/usr/lib/libprod.so')\n"),
        "{}",
        o.out
    );
}

#[tokio::test]
async fn nothing_to_verify() {
    let o = verify(&["-n", "prod", "-l", "app=none"], |mut s| async move {
        s.expect("GET", "/api/v1/namespaces/prod/pods?&labelSelector=app%3Dnone").await.json(200, pod_list(json!([])));
    })
    .await;
    let f = o.result.unwrap_err();
    assert_eq!((f.code, f.message.as_str()), (exit::UNAVAILABLE, "no pods in namespace prod match 'app=none'"));
    let o = verify(&["-n", "prod", "sts/trainer"], |mut s| async move {
        s.expect("GET", "/apis/apps/v1/namespaces/prod/statefulsets/trainer").await.status(
            404,
            "NotFound",
            "not found",
        );
    })
    .await;
    let f = o.result.unwrap_err();
    assert_eq!((f.code, f.message.as_str()), (exit::UNAVAILABLE, "StatefulSet trainer not found in namespace prod"));
    let o = verify(&["-n", "prod", "ds/agent"], |mut s| async move {
        s.expect("GET", "/apis/apps/v1/namespaces/prod/daemonsets/agent").await.status(403, "Forbidden", "no");
    })
    .await;
    assert_eq!(o.result.unwrap_err().code, exit::FORBIDDEN);
}

#[test]
fn workload_arguments() {
    let parse = |a: &[&str]| {
        let mut argv = vec!["cuda-fault", "verify"];
        argv.extend_from_slice(a);
        Cli::try_parse_from(argv).map(|_| ()).map_err(|e| e.to_string())
    };
    assert!(parse(&["dgd/x", "-l", "a=b"]).unwrap_err().contains("cannot be used with"));
    assert!(parse(&["pod/x"]).unwrap_err().contains("unsupported kind 'pod'"));
    assert!(parse(&["vllm"]).unwrap_err().contains("expected KIND/NAME"));
    assert!(parse(&["Deployment/vllm.v1"]).is_ok());
}
