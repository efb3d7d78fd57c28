//! `cuda-fault inject` against a stateful fake API server (kube's mock service) that applies JSON
//! patches as the API server does: the exact patch and output, the `test` guards refusing a
//! concurrent change, injecting twice and removing what was never injected refused, removal
//! keeping what the user changed since, `--restart`, DynamoGraphDeployments through discovery,
//! envFrom sources, and the errors. Every request is checked against the declared RBAC.

mod live_api;

use cuda_fault::cluster::INJECT_RBAC;
use cuda_fault::exit;
use injection::layout::PRELOAD;
use live_api::{spec_only, Cluster, Run};
use serde_json::{json, Value};

const DEPLOY: &str = "/apis/apps/v1/namespaces/prod/deployments/vllm.v1";

/// A user's Deployment: a GPU container with its own LD_PRELOAD, a sidecar (whose name starts
/// like the GPU container's), an init container, a volume named like the original Dynamo tool's,
/// a required node affinity with two terms and a preferred one.
fn deployment() -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "vllm.v1", "namespace": "prod", "labels": {"app": "vllm"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "vllm"}},
            "template": {"metadata": {"labels": {"app": "vllm"}}, "spec": {
                "initContainers": [{"name": "fetch-model", "image": "busybox:1.36"}],
                "containers": [
                    {"name": "vllm", "image": "vllm/vllm-openai:v0.9.0",
                     "env": [{"name": "LD_PRELOAD_ORIG", "value": "keep-me"},
                             {"name": "LD_PRELOAD", "value": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"}],
                     "volumeMounts": [{"name": "cuda-fault-lib", "mountPath": "/opt/lib"}],
                     "resources": {"limits": {"nvidia.com/gpu": "1", "memory": "16Gi"}}},
                    {"name": "vllm-metrics", "image": "example.com/metrics:1",
                     "env": [{"name": "LD_PRELOAD", "value": "/usr/lib/libsidecar.so"}]}],
                "volumes": [{"name": "cuda-fault-lib", "emptyDir": {}}],
                "affinity": {"nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                        {"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["flaky-node"]}]},
                        {"matchExpressions": [{"key": "nvidia.com/gpu.product", "operator": "In", "values": ["H100"]}]}]},
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {"weight": 100, "preference": {"matchExpressions": [
                            {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["zone-a"]}]}}]}}}}}})
}

fn cluster_with(objects: Vec<Value>) -> std::sync::Arc<std::sync::Mutex<Cluster>> {
    let c = Cluster::new();
    for o in objects {
        c.lock().unwrap().put(o);
    }
    c
}

async fn run(c: &std::sync::Arc<std::sync::Mutex<Cluster>>, args: &[&str]) -> Run {
    live_api::run(c, INJECT_RBAC, args).await
}

fn requests(c: &std::sync::Arc<std::sync::Mutex<Cluster>>) -> Vec<String> {
    std::mem::take(&mut c.lock().unwrap().requests)
}

fn json_out(r: &Run) -> Value {
    assert!(r.out.ends_with('\n') && r.out.lines().count() == 1, "one JSON object and a newline: {:?}", r.out);
    serde_json::from_str(&r.out).unwrap()
}

fn pod_of(obj: &Value) -> &Value {
    &obj["spec"]["template"]["spec"]
}

#[tokio::test]
async fn inject_then_remove_gives_back_the_object_exactly() {
    let c = cluster_with(vec![deployment()]);
    let original = c.lock().unwrap().get(DEPLOY).clone();
    let r =
        run(&c, &["deployment/vllm.v1", "-n", "prod", "--pin-node", "gpu-node-1", "--pin", "required", "--json"]).await;
    assert_eq!((r.code, r.err.as_str()), (0, ""));
    assert_eq!(requests(&c), [format!("GET {DEPLOY}"), format!("PATCH {DEPLOY}?fieldManager=cuda-fault")]);
    let patch = c.lock().unwrap().patches[0].clone();
    let ops = patch.as_array().unwrap();
    assert_eq!(
        json_out(&r),
        json!({"kind": "Deployment", "apiVersion": "apps/v1", "namespace": "prod", "name": "vllm.v1",
               "injected": ["Deployment prod/vllm.v1: container vllm (uses nvidia.com/gpu); LD_PRELOAD keeps /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 from its env after the shim"],
               "annotation": "cuda-fault/injection", "operations": ops.len(),
               "left_alone": ["Deployment prod/vllm.v1: init container fetch-model (runs to completion)",
                              "Deployment prod/vllm.v1: container vllm-metrics (no GPU)"]})
    );
    // It opens with test operations: the object's identity, no record yet, then the generator's
    // pins on a scratch copy; only then does it change anything.
    assert_eq!(ops[0], json!({"op": "test", "path": "/metadata/uid", "value": original["metadata"]["uid"]}));
    assert_eq!(ops[1], json!({"op": "test", "path": "/metadata/annotations", "value": null}));
    let first_change = ops.iter().position(|o| o["op"] == "add" || o["op"] == "replace").unwrap();
    assert!(ops[..first_change].iter().all(|o| ["test", "copy", "remove"].contains(&o["op"].as_str().unwrap())));
    assert!(ops[..first_change].iter().filter(|o| o["op"] == "test").count() >= 10);

    // The server applied exactly what the rules planned.
    let stored = c.lock().unwrap().get(DEPLOY).clone();
    let planned = injection::live::plan(&original, &[], &pin_required()).unwrap().result;
    let mut stored_cmp = stored.clone();
    stored_cmp["metadata"]["resourceVersion"] = original["metadata"]["resourceVersion"].clone();
    assert_eq!(stored_cmp, planned);
    let vllm = &pod_of(&stored)["containers"][0];
    assert_eq!(
        vllm["env"][1],
        json!({"name": "LD_PRELOAD", "value": format!("{PRELOAD}:/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")})
    );
    assert_eq!(pod_of(&stored)["containers"][1], pod_of(&original)["containers"][1], "the sidecar is untouched");

    let r = run(&c, &["--remove", "deployment/vllm.v1", "-n", "prod", "--json"]).await;
    assert_eq!((r.code, r.err.as_str()), (0, ""));
    let out = json_out(&r);
    assert_eq!(out["kept"], json!([]));
    assert_eq!(out["restarted_pods"], json!([]));
    assert_eq!(out["gone"], json!([]));
    assert_eq!(
        out["removed"],
        json!([
            "spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchFields[1]",
            "spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[1].matchFields",
            "spec.template.spec.containers[vllm].env[LD_PRELOAD].value restored to \"/usr/lib/x86_64-linux-gnu/libjemalloc.so.2\"",
            "spec.template.spec.containers[vllm].volumeMounts[cuda-fault-shim]",
            "spec.template.spec.containers[vllm].volumeMounts[cuda-fault-toggle]",
            "spec.template.spec.initContainers[cuda-fault-shim-install]",
            "spec.template.spec.volumes[cuda-fault-shim]",
            "spec.template.spec.volumes[cuda-fault-toggle]",
        ])
    );
    let back = c.lock().unwrap().get(DEPLOY).clone();
    assert_eq!(spec_only(&back), spec_only(&original));
    assert!(back["metadata"].get("annotations").is_none());
}

fn pin_required() -> injection::Options {
    injection::Options {
        pin: Some(injection::pin::NodePin { node: "gpu-node-1".into(), mode: injection::pin::Mode::Required }),
        ..injection::Options::default()
    }
}

#[tokio::test]
async fn a_change_between_read_and_write_fails_the_patch_and_changes_nothing() {
    let c = cluster_with(vec![deployment()]);
    // Someone gives the sidecar a GPU while cuda-fault works: the injection would leave it
    // without the shim, and the pin on its resources refuses the patch.
    c.lock().unwrap().after_get(DEPLOY, |d| {
        d["spec"]["template"]["spec"]["containers"][1]["resources"] = json!({"limits": {"nvidia.com/gpu": "1"}});
    });
    let r = run(&c, &["deployment/vllm.v1", "-n", "prod", "--json"]).await;
    assert_eq!(
        (r.code, r.out.as_str(), r.err.as_str()),
        (
            exit::CHANGED,
            "",
            "cuda-fault: Deployment prod/vllm.v1 changed while cuda-fault was working on it, so nothing was changed; run the command again\n"
        )
    );
    let stored = c.lock().unwrap().get(DEPLOY).clone();
    assert!(stored["metadata"].get("annotations").is_none());
    assert!(pod_of(&stored)["initContainers"].as_array().unwrap().len() == 1);
    // Run again: both GPU containers get the shim now.
    let r = run(&c, &["deployment/vllm.v1", "-n", "prod"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(r.out.starts_with("injected Deployment prod/vllm.v1 (apps/v1): one JSON patch of "), "{}", r.out);
    assert!(r.out.ends_with("recorded in the annotation cuda-fault/injection; undo with: cuda-fault inject --remove deployment/vllm.v1 -n prod\n"));
    let stored = c.lock().unwrap().get(DEPLOY).clone();
    for container in pod_of(&stored)["containers"].as_array().unwrap() {
        assert!(container["env"].as_array().unwrap().iter().any(|e| e["value"].as_str().unwrap().starts_with(PRELOAD)));
    }

    // A second injection racing the first: its record appears meanwhile.
    let c = cluster_with(vec![deployment()]);
    c.lock().unwrap().after_get(DEPLOY, |d| d["metadata"]["annotations"] = json!({"cuda-fault/injection": "{}"}));
    let r = run(&c, &["deployment/vllm.v1", "-n", "prod"]).await;
    assert_eq!(r.code, exit::CHANGED);

    // The same during removal: the user drops one of our mounts meanwhile.
    let c = cluster_with(vec![deployment()]);
    assert_eq!(run(&c, &["deployment/vllm.v1", "-n", "prod"]).await.code, 0);
    let injected = c.lock().unwrap().get(DEPLOY).clone();
    c.lock().unwrap().after_get(DEPLOY, |d| {
        d["spec"]["template"]["spec"]["containers"][0]["volumeMounts"].as_array_mut().unwrap().pop();
    });
    let r = run(&c, &["--remove", "deployment/vllm.v1", "-n", "prod"]).await;
    assert_eq!(r.code, exit::CHANGED, "{}", r.err);
    let mut expected = injected;
    expected["spec"]["template"]["spec"]["containers"][0]["volumeMounts"].as_array_mut().unwrap().pop();
    assert_eq!(spec_only(c.lock().unwrap().get(DEPLOY)), spec_only(&expected));
    assert!(c.lock().unwrap().get(DEPLOY)["metadata"]["annotations"]["cuda-fault/injection"].is_string());
}

#[tokio::test]
async fn injecting_twice_and_removing_what_was_never_injected_are_refused() {
    let c = cluster_with(vec![deployment()]);
    let r = run(&c, &["--remove", "deployment/vllm.v1", "-n", "prod"]).await;
    assert_eq!(
        (r.code, r.out.as_str(), r.err.as_str()),
        (
            exit::USAGE,
            "",
            "cuda-fault: Deployment prod/vllm.v1 carries no record of cuda-fault inject (annotation cuda-fault/injection): nothing to remove; an injection by the kustomize Component goes away by applying your base again\n"
        )
    );
    assert_eq!(requests(&c), [format!("GET {DEPLOY}")]);
    assert_eq!(run(&c, &["deployment/vllm.v1", "-n", "prod"]).await.code, 0);
    let injected = c.lock().unwrap().get(DEPLOY).clone();
    requests(&c);
    let r = run(&c, &["deployment/vllm.v1", "-n", "prod", "--pin-node", "other"]).await;
    assert_eq!(
        (r.code, r.out.as_str(), r.err.as_str()),
        (
            exit::USAGE,
            "",
            "cuda-fault: Deployment prod/vllm.v1 is already injected (annotation cuda-fault/injection); remove it first with cuda-fault inject --remove\n"
        )
    );
    assert_eq!(requests(&c), [format!("GET {DEPLOY}")]);
    assert_eq!(c.lock().unwrap().get(DEPLOY), &injected);
}

#[tokio::test]
async fn removal_keeps_what_the_user_changed_since() {
    let c = cluster_with(vec![deployment()]);
    // The API server fills in container defaults, as the real one does.
    c.lock().unwrap().defaults = true;
    assert_eq!(run(&c, &["deployment/vllm.v1", "-n", "prod", "--faults-from-start", "48"]).await.code, 0);
    {
        let mut cl = c.lock().unwrap();
        let d = cl.objects.get_mut(DEPLOY).unwrap();
        let pod = &mut d["spec"]["template"]["spec"];
        // The user adds a variable of their own, reorders the containers, points our init
        // container at their registry and sets our XID variable to another one.
        let vllm = &mut pod["containers"][0];
        vllm["env"].as_array_mut().unwrap().push(json!({"name": "FOO", "value": "bar"}));
        let env = vllm["env"].as_array_mut().unwrap();
        let xid = env.iter_mut().find(|e| e["name"] == "CUDA_XID_TYPE").unwrap();
        xid["value"] = json!("79");
        pod["containers"].as_array_mut().unwrap().reverse();
        let init = pod["initContainers"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|c| c["name"] == "cuda-fault-shim-install")
            .unwrap();
        init["image"] = json!("registry.local/cuda-fault:0.1.0");
    }
    let r = run(&c, &["--remove", "deployment/vllm.v1", "-n", "prod", "--json"]).await;
    assert_eq!((r.code, r.err.as_str()), (0, ""));
    let out = json_out(&r);
    assert_eq!(
        out["kept"],
        json!([
            "spec.template.spec.containers[vllm].env[CUDA_XID_TYPE]: changed since the injection, left as it is",
            "spec.template.spec.initContainers[cuda-fault-shim-install]: changed since the injection, left as it is",
            "spec.template.spec.volumes[cuda-fault-shim]: still mounted by spec.template.spec.initContainers[cuda-fault-shim-install], left as it is"
        ])
    );
    let stored = c.lock().unwrap().get(DEPLOY).clone();
    let pod = pod_of(&stored);
    let vllm = &pod["containers"][1];
    let env: Vec<&str> = vllm["env"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(env, ["LD_PRELOAD_ORIG", "LD_PRELOAD", "CUDA_XID_TYPE", "FOO"]);
    assert_eq!(vllm["env"][1]["value"], "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2");
    assert_eq!(vllm["volumeMounts"], json!([{"name": "cuda-fault-lib", "mountPath": "/opt/lib"}]));
    let volumes: Vec<&str> = pod["volumes"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(volumes, ["cuda-fault-lib", "cuda-fault-shim"]);
    assert_eq!(pod["initContainers"][1]["image"], "registry.local/cuda-fault:0.1.0");
    assert!(stored["metadata"].get("annotations").is_none());
}

fn pod(name: &str, app: &str, injected: bool) -> Value {
    let mut p = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "prod", "labels": {"app": app}},
        "spec": {"containers": [{"name": "vllm", "image": "x"}]}});
    if injected {
        p["spec"]["initContainers"] = json!([{"name": "cuda-fault-shim-install", "image": "i"}]);
    }
    p
}

#[tokio::test]
async fn restart_deletes_only_the_pods_that_still_carry_the_injection() {
    let c = cluster_with(vec![
        deployment(),
        pod("vllm-old", "vllm", true),
        pod("vllm-new", "vllm", false),
        pod("other", "other", true),
    ]);
    assert_eq!(run(&c, &["deployment/vllm.v1", "-n", "prod"]).await.code, 0);
    requests(&c);
    let r = run(&c, &["--remove", "deployment/vllm.v1", "-n", "prod", "--restart", "--json"]).await;
    assert_eq!((r.code, r.err.as_str()), (0, ""));
    assert_eq!(json_out(&r)["restarted_pods"], json!(["vllm-old"]));
    assert_eq!(
        requests(&c),
        [
            format!("GET {DEPLOY}"),
            format!("PATCH {DEPLOY}?fieldManager=cuda-fault"),
            "GET /api/v1/namespaces/prod/pods?&labelSelector=app%3Dvllm".to_string(),
            "DELETE /api/v1/namespaces/prod/pods/vllm-old?".to_string(),
        ]
    );
    let pods: Vec<String> = c.lock().unwrap().objects.keys().filter(|k| k.contains("/pods/")).cloned().collect();
    assert_eq!(pods, ["/api/v1/namespaces/prod/pods/other", "/api/v1/namespaces/prod/pods/vllm-new"]);
}

fn dgd_v1beta1() -> Value {
    json!({"apiVersion": "nvidia.com/v1beta1", "kind": "DynamoGraphDeployment",
        "metadata": {"name": "llm", "namespace": "serving"},
        "spec": {"components": [
            {"name": "Frontend", "type": "frontend", "podTemplate": {"spec": {"containers": [{"name": "main", "image": "f"}]}}},
            {"name": "decode", "type": "decode", "podTemplate": {"spec": {"containers": [
                {"name": "metrics", "image": "m"},
                {"name": "main", "image": "d", "env": [{"name": "LD_PRELOAD", "value": "/opt/lib/libuser.so"}]}]}}},
            {"name": "prefill", "type": "prefill"}]}})
}

#[tokio::test]
async fn dgd_at_the_version_the_server_serves() {
    // nvidia.com also holds the GPU operator's ClusterPolicy (v1, the group's preferred version);
    // DynamoGraphDeployments are served at v1beta1 and v1alpha1.
    let mut decode_pod = pod("llm-decode-0", "x", true);
    decode_pod["metadata"]["namespace"] = json!("serving");
    decode_pod["metadata"]["labels"] = json!({"nvidia.com/dynamo-graph-deployment-name": "llm"});
    let c = cluster_with(vec![dgd_v1beta1(), decode_pod]);
    c.lock().unwrap().serve_group(
        "v1",
        &[
            ("v1", &["clusterpolicies"]),
            ("v1beta1", &["dynamographdeployments"]),
            ("v1alpha1", &["dynamographdeployments"]),
        ],
    );
    let path = "/apis/nvidia.com/v1beta1/namespaces/serving/dynamographdeployments/llm";
    let original = c.lock().unwrap().get(path).clone();
    let r = run(&c, &["dgd/llm", "-n", "serving", "--json"]).await;
    assert_eq!((r.code, r.err.as_str()), (0, ""));
    let out = json_out(&r);
    assert_eq!(
        (out["kind"].as_str(), out["apiVersion"].as_str()),
        (Some("DynamoGraphDeployment"), Some("nvidia.com/v1beta1"))
    );
    assert_eq!(
        out["injected"],
        json!([
            "DynamoGraphDeployment serving/llm (v1beta1): component decode (decode): container main; LD_PRELOAD keeps /opt/lib/libuser.so from its env after the shim",
            "DynamoGraphDeployment serving/llm (v1beta1): component prefill (prefill): container main (created: the operator merges it into its main container)"
        ])
    );
    assert_eq!(
        requests(&c),
        [
            "GET /apis/nvidia.com".to_string(),
            "GET /apis/nvidia.com/v1beta1".to_string(),
            format!("GET {path}"),
            format!("PATCH {path}?fieldManager=cuda-fault"),
        ]
    );
    let stored = c.lock().unwrap().get(path).clone();
    let main = &stored["spec"]["components"][1]["podTemplate"]["spec"]["containers"][1];
    assert_eq!(main["env"][0]["value"], format!("{PRELOAD}:/opt/lib/libuser.so"));
    let r = run(&c, &["--remove", "dgd/llm", "-n", "serving", "--restart", "--json"]).await;
    assert_eq!((r.code, r.err.as_str()), (0, ""));
    assert_eq!(json_out(&r)["restarted_pods"], json!(["llm-decode-0"]));
    assert_eq!(spec_only(c.lock().unwrap().get(path)), spec_only(&original));
    assert!(requests(&c).contains(
        &"GET /api/v1/namespaces/serving/pods?&labelSelector=nvidia.com%2Fdynamo-graph-deployment-name%3Dllm"
            .to_string()
    ));

    // A cluster whose CRD serves only v1alpha1; one without the Dynamo operator.
    let alpha = json!({"apiVersion": "nvidia.com/v1alpha1", "kind": "DynamoGraphDeployment",
        "metadata": {"name": "llm", "namespace": "llm"},
        "spec": {"services": {"Frontend": {"componentType": "frontend"},
                              "VllmDecodeWorker": {"componentType": "worker", "envFromSecret": "hf-token-secret"}}}});
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hf-token-secret", "namespace": "llm"},
                        "type": "Opaque", "data": {"HF_TOKEN": "aGY="}});
    let c = cluster_with(vec![alpha, secret]);
    c.lock().unwrap().serve_group("v1alpha1", &[("v1alpha1", &["dynamographdeployments"])]);
    let r = run(&c, &["dynamographdeployment/llm", "-n", "llm", "--json"]).await;
    assert_eq!((r.code, r.err.as_str()), (0, ""));
    assert_eq!(json_out(&r)["apiVersion"], "nvidia.com/v1alpha1");
    let reqs = requests(&c);
    assert!(reqs.contains(&"GET /api/v1/namespaces/llm/secrets/hf-token-secret".to_string()), "{reqs:?}");

    let c = cluster_with(vec![]);
    let r = run(&c, &["dgd/llm", "-n", "llm"]).await;
    assert_eq!(
        (r.code, r.err.as_str()),
        (
            exit::UNAVAILABLE,
            "cuda-fault: the cluster serves no DynamoGraphDeployment (nvidia.com v1beta1 or v1alpha1): is the Dynamo operator installed?\n"
        )
    );
}

fn trainer() -> Value {
    json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "trainer", "namespace": "prod"},
        "spec": {"serviceName": "trainer", "selector": {"matchLabels": {"app": "trainer"}},
            "template": {"metadata": {"labels": {"app": "trainer"}}, "spec": {"containers": [
                {"name": "trainer", "image": "t", "envFrom": [{"configMapRef": {"name": "trainer-env"}}],
                 "resources": {"limits": {"nvidia.com/gpu": "2"}}}]}}}})
}

#[tokio::test]
async fn ld_preload_from_envfrom_is_read_live_and_kept() {
    const STS: &str = "/apis/apps/v1/namespaces/prod/statefulsets/trainer";
    const CM: &str = "/api/v1/namespaces/prod/configmaps/trainer-env";
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "trainer-env", "namespace": "prod"},
                    "data": {"LD_PRELOAD": "libtcmalloc.so.4", "EPOCHS": "3"}});
    let c = cluster_with(vec![trainer(), cm]);
    let r = run(&c, &["sts/trainer", "-n", "prod"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        requests(&c),
        [format!("GET {STS}"), format!("GET {CM}"), format!("PATCH {STS}?fieldManager=cuda-fault")]
    );
    let stored = c.lock().unwrap().get(STS).clone();
    assert_eq!(
        pod_of(&stored)["containers"][0]["env"],
        json!([{"name": "LD_PRELOAD", "value": format!("{PRELOAD}:libtcmalloc.so.4")}])
    );

    // Missing, forbidden, or said to set nothing.
    let c = cluster_with(vec![trainer()]);
    let r = run(&c, &["sts/trainer", "-n", "prod"]).await;
    assert_eq!(
        (r.code, r.err.as_str()),
        (exit::USAGE, "cuda-fault: StatefulSet prod/trainer takes its environment from ConfigMap trainer-env (envFrom), which does not exist in namespace prod, so it cannot be told whether it sets LD_PRELOAD; create it, or pass --envfrom-without-ld-preload trainer-env if it does not\n")
    );
    c.lock().unwrap().forbidden.push(format!("GET {CM}"));
    let r = run(&c, &["sts/trainer", "-n", "prod"]).await;
    assert_eq!(r.code, exit::FORBIDDEN);
    assert!(
        r.err.contains("cannot get configmaps in namespace prod")
            && r.err.ends_with("pass --envfrom-without-ld-preload trainer-env if it does not)\n"),
        "{}",
        r.err
    );
    requests(&c);
    let r = run(&c, &["sts/trainer", "-n", "prod", "--envfrom-without-ld-preload", "trainer-env"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(requests(&c), [format!("GET {STS}"), format!("PATCH {STS}?fieldManager=cuda-fault")]);
}

#[tokio::test]
async fn errors_are_one_line_with_their_codes() {
    let c = cluster_with(vec![deployment()]);
    let r = run(&c, &["deployment/nope", "-n", "prod"]).await;
    assert_eq!(
        (r.code, r.err.as_str()),
        (exit::UNAVAILABLE, "cuda-fault: Deployment nope not found in namespace prod\n")
    );
    // The context's namespace when -n is not given.
    let r = run(&c, &["deployment/vllm.v1"]).await;
    assert_eq!(r.err, "cuda-fault: Deployment vllm.v1 not found in namespace default\n");
    c.lock().unwrap().forbidden.push(format!("PATCH {DEPLOY}"));
    let r = run(&c, &["deployment/vllm.v1", "-n", "prod"]).await;
    assert_eq!(
        (r.code, r.err.as_str()),
        (exit::FORBIDDEN, "cuda-fault: forbidden: alice cannot patch deployments.apps in namespace prod; apply manifests/rbac/ (kubectl apply -k manifests/rbac/) or grant 'patch' on 'deployments.apps'\n")
    );
    let r = run(&c, &["deployment/vllm.v1", "-n", "prod", "--container", "nope"]).await;
    assert_eq!(
        (r.code, r.err.as_str()),
        (exit::USAGE, "cuda-fault: --container nope matches no container of Deployment prod/vllm.v1\n")
    );
    let r = run(&c, &["deployment/vllm.v1", "-n", "prod", "--faults-from-start", "1"]).await;
    assert_eq!(r.code, exit::USAGE);
    assert!(r.err.starts_with("cuda-fault: --faults-from-start 1: unknown XID; supported: "), "{}", r.err);
    for (args, message) in [
        (&["deployment/x", "-n", "Prod"][..], "invalid namespace 'Prod': expected a DNS-1123 label"),
        (&["deployment/x", "--pin-node", "a_b"][..], "--pin-node 'a_b' is not a node name (a DNS-1123 subdomain)"),
        (&["deployment/x", "--container", "A"][..], "--container 'A' is not a container name (a DNS-1123 label)"),
        (
            &["deployment/x", "--image", "a b"][..],
            "--image \"a b\" is not an image reference (1 to 1024 bytes, no spaces or control characters)",
        ),
        (
            &["deployment/x", "--image", "a\u{1b}[31m"][..],
            "--image \"a\\u{1b}[31m\" is not an image reference (1 to 1024 bytes, no spaces or control characters)",
        ),
    ] {
        let r = run(&c, args).await;
        assert_eq!((r.code, r.err.as_str()), (exit::USAGE, format!("cuda-fault: {message}\n").as_str()), "{args:?}");
    }
    // A --no-toggle injection that nothing could turn on gets a warning first.
    let r = run(&c, &["deployment/vllm.v1", "-n", "prod", "--no-toggle", "--json"]).await;
    assert_eq!(r.code, exit::FORBIDDEN, "the patch is still forbidden");
    assert!(r.err.starts_with("cuda-fault: warning: --no-toggle without --faults-from-start"));
}

#[test]
fn flags_that_do_not_go_together() {
    use clap::Parser;
    for argv in [
        &["cuda-fault", "inject", "deployment/x", "--restart"][..],
        &["cuda-fault", "inject", "--remove", "deployment/x", "--pin-node", "n"][..],
        &["cuda-fault", "inject", "--remove", "deployment/x", "--faults-from-start", "79"][..],
        &["cuda-fault", "inject", "deployment/x", "--pin", "required"][..],
        &["cuda-fault", "inject", "job/x"][..],
        &["cuda-fault", "inject", "deployment/X_Y"][..],
        &["cuda-fault", "inject"][..],
    ] {
        assert!(cuda_fault::Cli::try_parse_from(argv).is_err(), "{argv:?}");
    }
}

#[test]
fn the_binary_without_a_cluster_fails_in_one_line() {
    let home = tempfile::tempdir().unwrap();
    let out = assert_cmd::Command::cargo_bin("cuda-fault")
        .unwrap()
        .args(["inject", "deployment/vllm", "-n", "prod", "--json"])
        .env("KUBECONFIG", home.path().join("none"))
        .env("HOME", home.path())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(i32::from(exit::NO_CONFIG)));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.starts_with("cuda-fault: no usable Kubernetes configuration") && err.lines().count() == 1, "{err}");
    // --help names the command and the new exit code.
    let help = assert_cmd::Command::cargo_bin("cuda-fault").unwrap().args(["inject", "--help"]).output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    assert!(help.contains("--remove") && help.contains("exit 11: run it again"), "{help}");
}
