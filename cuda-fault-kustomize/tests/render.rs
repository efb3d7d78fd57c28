//! The generator against user-shaped bases (tests/fixtures), rendered with the real
//! `kubectl kustomize`: the output validates (k8s-openapi types, the DGD CRDs), differs from the
//! base by exactly our additions, keeps every value of the user's, and fails the build loudly
//! when the base changes in a way the Component did not see.

mod support;

use serde_json::{json, Value};
use support::diff::{Expect, PRELOAD};
use support::{find, generate, Layout};

const STALE: &str = "cuda-fault-targets-are-stale--rerun-cuda-fault-kustomize";

/// Renders base and overlay, validates the overlay and checks it differs from the base by
/// exactly our additions (and that every object of the base is still there).
fn check(l: &Layout, expect: &Expect) -> (Vec<Value>, Vec<Value>) {
    let base = support::docs(&l.base());
    let out = l.render().unwrap_or_else(|e| panic!("the overlay does not build: {e}"));
    support::validate_all(&out);
    assert_eq!(base.len(), out.len(), "the overlay renders other objects than the base");
    let mut problems = Vec::new();
    for b in &base {
        let o = find(&out, b["kind"].as_str().unwrap(), b["metadata"]["name"].as_str().unwrap());
        for p in expect.unexpected(b, o) {
            problems.push(format!("{} {}: {p}", b["kind"], b["metadata"]["name"]));
        }
    }
    assert!(problems.is_empty(), "changes that are not the injection:\n{}", problems.join("\n"));
    (base, out)
}

fn env<'a>(container: &'a Value, name: &str) -> Vec<&'a Value> {
    container["env"].as_array().into_iter().flatten().filter(|e| e["name"] == name).collect()
}

fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn has_shim(c: &Value) -> bool {
    c["volumeMounts"].as_array().into_iter().flatten().any(|m| m["mountPath"] == "/cuda-fault")
}

#[test]
fn apps_workloads_get_the_shim_in_gpu_containers_only_and_keep_everything_of_the_user() {
    let l = Layout::new("apps");
    let g = l.generate(&["--container", "bench", "--pin-node", "gpu-node-1", "--pin", "required"]);
    assert_eq!(g.stderr, "");
    let expect = Expect { node: Some("gpu-node-1".into()), ..Expect::default() };
    let (base, out) = check(&l, &expect);

    let pod = &find(&out, "Deployment", "vllm.v1")["spec"]["template"]["spec"];
    let vllm = container(pod, "vllm");
    assert_eq!(
        env(vllm, "LD_PRELOAD"),
        [&json!({"name": "LD_PRELOAD", "value": format!("{PRELOAD}:/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")})]
    );
    assert_eq!(env(vllm, "LD_PRELOAD_ORIG"), [&json!({"name": "LD_PRELOAD_ORIG", "value": "keep-me"})]);
    assert_eq!(env(vllm, "NOT_CUDA_XID_TYPE_HINT"), [&json!({"name": "NOT_CUDA_XID_TYPE_HINT", "value": "48"})]);
    // The sidecar whose name starts like the GPU container's is untouched.
    let base_pod = &find(&base, "Deployment", "vllm.v1")["spec"]["template"]["spec"];
    assert_eq!(container(pod, "vllm-metrics"), container(base_pod, "vllm-metrics"));
    // The user's volume named like the original tool's stays, beside ours.
    let volumes: Vec<&str> = pod["volumes"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(volumes, ["cuda-fault-lib", "cuda-fault-shim", "cuda-fault-toggle"]);
    // The pin is ANDed into both of the user's terms, which keep what they had.
    let terms = &pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"];
    let pin = json!({"key": "metadata.name", "operator": "In", "values": ["gpu-node-1"]});
    assert_eq!(
        terms[0]["matchFields"],
        json!([{"key": "metadata.name", "operator": "NotIn", "values": ["flaky-node"]}, pin])
    );
    assert_eq!(terms[1]["matchFields"], json!([pin]));
    assert_eq!(terms[1]["matchExpressions"][0]["key"], "nvidia.com/gpu.product");

    // LD_PRELOAD from a ConfigMap (envFrom, a generated name) is kept after the shim.
    let trainer = container(&find(&out, "StatefulSet", "trainer")["spec"]["template"]["spec"], "trainer");
    assert_eq!(env(trainer, "LD_PRELOAD")[0]["value"], format!("{PRELOAD}:libtcmalloc.so.4"));
    // Named with --container; a MIG slice in a CronJob; no GPU in the DaemonSet.
    assert!(has_shim(container(&find(&out, "Job", "bench")["spec"]["template"]["spec"], "bench")));
    assert!(has_shim(container(
        &find(&out, "CronJob", "nightly")["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        "eval"
    )));
    assert_eq!(find(&out, "DaemonSet", "node-agent"), find(&base, "DaemonSet", "node-agent"));
    // Env values are strings in the text, too.
    let text = support::kustomize(&l.path("overlay")).unwrap();
    assert!(!text.contains("value: 48\n") && text.contains("value: \"48\"\n"));

    // What kubectl rendered is what the generator planned.
    let opts = cuda_fault_kustomize::Options {
        containers: vec!["bench".into()],
        pin: Some(cuda_fault_kustomize::pin::NodePin {
            node: "gpu-node-1".into(),
            mode: cuda_fault_kustomize::pin::Mode::Required,
        }),
        ..Default::default()
    };
    let planned = cuda_fault_kustomize::generate(&l.base(), &opts).unwrap();
    assert_eq!(planned.results.len(), 5, "four injected workloads and the pinned DaemonSet");
    for (id, predicted) in &planned.results {
        assert_eq!(find(&out, &id.kind, &id.name), predicted, "{id}");
    }
}

#[test]
fn dgd_v1alpha1_workers_found_by_type_with_the_effective_ld_preload_kept() {
    let l = Layout::new("dgd-v1alpha1");
    l.generate(&["--pin-node", "gpu-node-1"]);
    let expect = Expect { node: Some("gpu-node-1".into()), ..Expect::default() };
    let (base, out) = check(&l, &expect);
    let dgd = find(&out, "DynamoGraphDeployment", "llm.prod");
    let services = &dgd["spec"]["services"];
    let main = |s: &str| &services[s]["extraPodSpec"]["mainContainer"];
    // The operator merges graph envs, then service envs, then the container's env: the shim is
    // prefixed to what each worker would have had.
    assert_eq!(env(main("decode"), "LD_PRELOAD")[0]["value"], format!("{PRELOAD}:/opt/service/libservice.so"));
    assert_eq!(env(main("decode-canary"), "LD_PRELOAD")[0]["value"], format!("{PRELOAD}:/opt/graph/libgraph.so"));
    assert_eq!(env(main("prefill"), "LD_PRELOAD")[0]["value"], format!("{PRELOAD}:/opt/graph/libgraph.so"));
    assert_eq!(env(main("decode"), "LD_PRELOAD_ORIG")[0]["value"], "keep-me");
    // The frontend, the graph envs and the service envs are untouched.
    let b = &find(&base, "DynamoGraphDeployment", "llm.prod")["spec"];
    assert_eq!(services["Frontend"], b["services"]["Frontend"]);
    assert_eq!(dgd["spec"]["envs"], b["envs"]);
    assert_eq!(services["decode"]["envs"], b["services"]["decode"]["envs"]);
    assert_eq!(services["decode"]["volumeMounts"], json!([{"name": "cuda-fault-lib", "mountPoint": "/models"}]));
    // A preferred pin appended; the user's required term untouched.
    let na = &services["decode"]["extraPodSpec"]["affinity"]["nodeAffinity"];
    assert_eq!(
        na["requiredDuringSchedulingIgnoredDuringExecution"],
        b["services"]["decode"]["extraPodSpec"]["affinity"]["nodeAffinity"]
            ["requiredDuringSchedulingIgnoredDuringExecution"]
    );
    assert_eq!(na["preferredDuringSchedulingIgnoredDuringExecution"][0]["weight"], 100);
    // A service with no extraPodSpec at all gets one holding only the injection.
    assert_eq!(services["prefill"]["extraPodSpec"]["initContainers"][0]["name"], "cuda-fault-shim-install");
}

#[test]
fn dgd_v1beta1_components_by_type_main_container_by_exact_name() {
    let l = Layout::new("dgd-v1beta1");
    l.generate(&[]);
    let (base, out) = check(&l, &Expect::default());
    let comps = find(&out, "DynamoGraphDeployment", "llm")["spec"]["components"].as_array().unwrap().clone();
    let comp = |n: &str| comps.iter().find(|c| c["name"] == n).unwrap();
    let b = find(&base, "DynamoGraphDeployment", "llm")["spec"]["components"].as_array().unwrap().clone();
    assert_eq!(comp("Frontend"), &b[0]);
    let pod = &comp("decode")["podTemplate"]["spec"];
    assert_eq!(env(container(pod, "main"), "LD_PRELOAD")[0]["value"], format!("{PRELOAD}:/opt/lib/libuser.so"));
    assert_eq!(container(pod, "metrics"), &b[1]["podTemplate"]["spec"]["containers"][0], "the sidecar is untouched");
    // decode-canary had no podTemplate: a main container holding only env and mounts is created.
    let canary = &comp("decode-canary")["podTemplate"]["spec"];
    assert_eq!(canary["containers"][0]["name"], "main");
    assert_eq!(canary["containers"][0].as_object().unwrap().len(), 3);
    assert!(has_shim(container(&comp("prefill")["podTemplate"]["spec"], "main")));
}

#[test]
fn faults_from_start_without_toggle_sets_string_env_and_no_host_path() {
    let l = Layout::new("dgd-v1beta1");
    l.generate(&["--faults-from-start", "48", "--no-toggle"]);
    check(&l, &Expect { toggle: false, xid: Some(48), ..Expect::default() });
    let text = support::kustomize(&l.path("overlay")).unwrap();
    assert!(!text.contains("hostPath"), "--no-toggle left a hostPath");
    assert!(text.contains("- name: CUDA_XID_TYPE\n            value: \"48\"\n"), "{text}");
    assert!(text.contains("- name: CUDA_FAULT_INJECTION_ENABLED\n            value: \"1\"\n"));
    let g = generate(&l.base(), &["--no-toggle"]);
    assert_eq!(g.code, 0);
    assert!(
        g.stderr.contains("--no-toggle without --faults-from-start loads a shim that nothing can turn on"),
        "{}",
        g.stderr
    );
    let g = generate(&l.base(), &["--faults-from-start", "77"]);
    assert_eq!(g.code, 2);
    assert!(
        g.stderr.starts_with("cuda-fault-kustomize: --faults-from-start 77: unknown XID; supported: 13, "),
        "{}",
        g.stderr
    );
}

#[test]
fn the_users_images_transformer_rewrites_the_init_container_everywhere() {
    for fixture in ["apps", "dgd-v1alpha1", "dgd-v1beta1"] {
        let l = Layout::new(fixture);
        l.generate(if fixture == "apps" { &["--container", "bench"][..] } else { &[] });
        l.overlay(
            "images:\n- {name: ghcr.io/cuda-fault/cuda-fault, newName: registry.example/cuda-fault, newTag: \"9.9\"}\n",
        );
        let text = support::kustomize(&l.path("overlay")).unwrap();
        assert!(!text.contains("ghcr.io/cuda-fault"), "{fixture}: the default image survived");
        assert!(text.matches("image: registry.example/cuda-fault:9.9").count() >= 3, "{fixture}");
    }
}

/// The generator's one-line refusal for a base built from `fixture` after `edit`.
fn refusal(fixture: &str, file: &str, from: &str, to: &str, args: &[&str]) -> String {
    let l = Layout::new(fixture);
    l.edit(file, from, to);
    let g = generate(&l.base(), args);
    assert_eq!(g.code, 2, "expected a refusal, got:\n{}{}", g.stdout, g.stderr);
    assert_eq!(g.stdout, "");
    assert_eq!(g.stderr.lines().count(), 1, "{}", g.stderr);
    g.stderr
}

#[test]
fn what_cannot_be_injected_safely_is_refused_with_one_line() {
    // envFrom naming a ConfigMap that is not in the input.
    let e = refusal(
        "apps",
        "workloads.yaml",
        "configMapRef: {name: trainer-env}",
        "configMapRef: {name: external-env}",
        &["--container", "bench"],
    );
    assert!(e.contains("StatefulSet prod/trainer: container trainer takes its environment from ConfigMap external-env (envFrom), which is not in the input"), "{e}");
    assert!(e.contains("--envfrom-without-ld-preload external-env"), "{e}");
    // ... unless the user says it sets no LD_PRELOAD.
    let l = Layout::new("apps");
    l.edit("workloads.yaml", "configMapRef: {name: trainer-env}", "configMapRef: {name: external-env}");
    l.generate(&["--container", "bench", "--envfrom-without-ld-preload", "external-env"]);
    check(&l, &Expect::default());

    let e = refusal(
        "apps",
        "workloads.yaml",
        "{name: LD_PRELOAD, value: /usr/lib/x86_64-linux-gnu/libjemalloc.so.2}",
        "{name: LD_PRELOAD, valueFrom: {configMapKeyRef: {name: x, key: y}}}",
        &["--container", "bench"],
    );
    assert!(e.contains("takes LD_PRELOAD from valueFrom"), "{e}");
    // Our names are never overwritten.
    let e = refusal(
        "apps",
        "workloads.yaml",
        "- name: cuda-fault-lib\n        emptyDir: {}",
        "- name: cuda-fault-shim\n        emptyDir: {}",
        &["--container", "bench"],
    );
    assert_eq!(e.trim_end(), "cuda-fault-kustomize: Deployment prod/vllm.v1 already has a volume named cuda-fault-shim, which the injection uses; rename yours (nothing of the user's is ever replaced)");
    let e =
        refusal("apps", "workloads.yaml", "mountPath: /opt/lib", "mountPath: /host-fault", &["--container", "bench"]);
    assert!(e.contains("container vllm already mounts cuda-fault-lib at /host-fault"), "{e}");
    let e = refusal("dgd-v1alpha1", "dgd.yaml", "mountPoint: /models", "mountPoint: /cuda-fault", &[]);
    assert!(
        e.contains("service decode (worker): container mainContainer already mounts cuda-fault-lib at /cuda-fault"),
        "{e}"
    );
    // --faults-from-start never overrides the user's own setting.
    let e = refusal(
        "dgd-v1alpha1",
        "dgd.yaml",
        "NOT_CUDA_XID_TYPE_HINT, value: keep",
        "CUDA_XID_TYPE, value: \"43\"",
        &["--faults-from-start", "79"],
    );
    assert!(e.contains("already sets CUDA_XID_TYPE in its graph envs"), "{e}");
    // A name that matches nothing, and a base with nothing to inject.
    let e =
        refusal("apps", "workloads.yaml", "      - name: bench\n", "      - name: bench2\n", &["--container", "bench"]);
    assert!(e.contains("--container bench matches no container"), "{e}");
    let e = refusal(
        "dgd-v1beta1",
        "dgd.yaml",
        "type: decode\n    replicas: 2",
        "type: planner\n    replicas: 2",
        &["--container", "x"],
    );
    assert!(e.contains("--container x matches no container"), "{e}");
    let l = Layout::new("apps");
    let g = generate(
        &support::kustomize(&l.path("app"))
            .unwrap()
            .replace("nvidia.com/gpu", "example.com/fpga")
            .replace("nvidia.com/mig-1g.10gb", "example.com/fpga"),
        &[],
    );
    assert_eq!(g.code, 2);
    assert!(g.stderr.contains("found nothing to inject into"), "{}", g.stderr);
}

#[test]
fn an_injected_output_is_not_injected_twice() {
    let l = Layout::new("dgd-v1beta1");
    l.generate(&[]);
    let injected = support::kustomize(&l.path("overlay")).unwrap();
    let g = generate(&injected, &[]);
    assert_eq!(g.code, 2);
    assert!(g.stderr.contains("already has a container named cuda-fault-shim-install"), "{}", g.stderr);
}

/// Builds the overlay after `edit` of the base (the Component generated before it).
fn stale(fixture: &str, args: &[&str], file: &str, from: &str, to: &str) -> String {
    let l = Layout::new(fixture);
    l.generate(args);
    l.render().expect("builds before the change");
    l.edit(file, from, to);
    l.render().expect_err("the build must fail after the change")
}

#[test]
fn a_base_that_changed_after_generation_fails_the_build_naming_the_fix() {
    // A worker service added (v1alpha1), a component added (v1beta1), a workload added.
    let e = stale(
        "dgd-v1alpha1",
        &[],
        "dgd.yaml",
        "    prefill:\n",
        "    decode-2:\n      componentType: worker\n    prefill:\n",
    );
    assert!(e.contains(&format!("testing value /{STALE}/services failed")), "{e}");
    let e = stale(
        "dgd-v1beta1",
        &[],
        "dgd.yaml",
        "  - name: prefill\n",
        "  - name: decode-2\n    type: decode\n  - name: prefill\n",
    );
    assert!(e.contains(STALE), "{e}");
    let e = stale("apps", &["--container", "bench"], "workloads.yaml", "---\n# No GPU anywhere", "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: late}\nspec:\n  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n    spec:\n      containers: [{name: w, image: w, resources: {limits: {nvidia.com/gpu: \"1\"}}}]\n---\n# No GPU anywhere");
    assert!(e.contains(&format!("metadata.annotations.{STALE}--new-Deployment")), "{e}");
    // A renamed GPU container; a GPU given to the sidecar; a container added.
    let e = stale("apps", &["--container", "bench"], "workloads.yaml", "- name: vllm\n", "- name: vllm-main\n");
    assert!(e.contains(&format!("testing value /{STALE}/template/spec/containers/0/name failed")), "{e}");
    let e = stale(
        "apps",
        &["--container", "bench"],
        "workloads.yaml",
        "image: example.com/metrics:1\n",
        "image: example.com/metrics:1\n        resources: {limits: {nvidia.com/gpu: \"1\"}}\n",
    );
    assert!(e.contains(&format!("/{STALE}/template/spec/containers/1/resources")), "{e}");
    // An LD_PRELOAD added where there was none, a changed one, and one added to the ConfigMap.
    let e = stale("dgd-v1beta1", &[], "dgd.yaml", "name: main\n          image: nvcr.io/nvidia/ai-dynamo/vllm-runtime:0.6.0\n          resources", "name: main\n          image: nvcr.io/nvidia/ai-dynamo/vllm-runtime:0.6.0\n          env: [{name: LD_PRELOAD, value: /x.so}]\n          resources");
    assert!(e.contains(STALE), "{e}");
    let e = stale("apps", &["--container", "bench"], "workloads.yaml", "libjemalloc.so.2}", "libjemalloc.so.1}");
    assert!(e.contains(&format!("/{STALE}/template/spec/containers/0/env/2/value")), "{e}");
    let e = stale(
        "apps",
        &["--container", "bench"],
        "kustomization.yaml",
        "LD_PRELOAD=libtcmalloc.so.4",
        "LD_PRELOAD=libother.so",
    );
    assert!(e.contains(&format!("testing value /{STALE}/LD_PRELOAD failed")), "{e}");
    // A node selector term added after a required pin was generated.
    let e = stale(
        "apps",
        &["--container", "bench", "--pin-node", "n1", "--pin", "required"],
        "workloads.yaml",
        "            - matchExpressions:\n",
        "            - matchExpressions: [{key: a, operator: Exists}]\n            - matchExpressions:\n",
    );
    assert!(e.contains(&format!("/{STALE}/template/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms")), "{e}");
}

#[test]
fn changes_that_do_not_touch_the_injection_still_build() {
    let l = Layout::new("apps");
    l.generate(&["--container", "bench"]);
    l.edit("workloads.yaml", "image: vllm/vllm-openai:v0.9.0", "image: vllm/vllm-openai:v0.9.1");
    l.edit("workloads.yaml", "{name: WORKERS, value: \"8\"}", "{name: WORKERS, value: \"16\"}");
    l.edit("kustomization.yaml", "EPOCHS=3", "EPOCHS=4");
    l.edit("workloads.yaml", "replicas: 2", "replicas: 3");
    check(&l, &Expect::default());
}

#[test]
fn objects_are_matched_by_exact_name_and_namespace() {
    // The same Deployment name in two namespaces, one with a GPU; a name with regex characters.
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app");
    std::fs::create_dir_all(&app).unwrap();
    let dep = |ns: &str, name: &str, gpu: bool| {
        let res = if gpu { ", resources: {limits: {nvidia.com/gpu: \"1\"}}" } else { "" };
        format!("apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  selector: {{matchLabels: {{a: b}}}}\n  template:\n    metadata: {{labels: {{a: b}}}}\n    spec:\n      containers: [{{name: w, image: w{res}}}]\n---\n")
    };
    let objects = [dep("a", "w", true), dep("b", "w", false), dep("a", "w.x", false), dep("a", "wyx", false)].concat();
    std::fs::write(app.join("d.yaml"), objects).unwrap();
    std::fs::write(app.join("kustomization.yaml"), "resources: [d.yaml]\n").unwrap();
    let base = support::kustomize(&app).unwrap();
    let g = generate(&base, &[]);
    assert_eq!(g.code, 0, "{}", g.stderr);
    std::fs::create_dir_all(dir.path().join("c")).unwrap();
    std::fs::write(dir.path().join("c/kustomization.yaml"), &g.stdout).unwrap();
    std::fs::create_dir_all(dir.path().join("o")).unwrap();
    std::fs::write(dir.path().join("o/kustomization.yaml"), "resources: [../app]\ncomponents: [../c]\n").unwrap();
    let out = support::render(&dir.path().join("o"));
    let injected: Vec<String> = out
        .iter()
        .filter(|d| d["spec"]["template"]["spec"]["initContainers"].is_array())
        .map(|d| {
            format!("{}/{}", d["metadata"]["namespace"].as_str().unwrap(), d["metadata"]["name"].as_str().unwrap())
        })
        .collect();
    assert_eq!(injected, ["a/w"]);
    assert!(g.stdout.contains("name: ^w\\.x$") || g.stdout.contains("name: ^w\\.x$"), "escaped: {}", g.stdout);
}

#[test]
fn the_checks_catch_damage_to_the_users_spec() {
    let l = Layout::new("apps");
    let base = support::docs(&l.base());
    let dep = find(&base, "Deployment", "vllm.v1").clone();
    let e = Expect::default();
    let mut damaged = dep.clone();
    damaged["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] = json!("changed");
    assert_eq!(e.unexpected(&dep, &damaged).len(), 1, "a changed value");
    let mut damaged = dep.clone();
    damaged["spec"]["template"]["spec"]["volumes"].as_array_mut().unwrap().remove(0);
    assert!(!e.unexpected(&dep, &damaged).is_empty(), "a removed volume");
    let mut damaged = dep.clone();
    damaged["spec"]["template"]["spec"]["containers"][1]["env"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "LD_PRELOAD", "value": "x"}));
    assert!(!e.unexpected(&dep, &damaged).is_empty(), "an entry that is not ours");
    let mut damaged = dep.clone();
    damaged["spec"]["template"]["spec"]["containers"][0]["env"][2]["value"] = json!(PRELOAD);
    assert!(!e.unexpected(&dep, &damaged).is_empty(), "the user's LD_PRELOAD dropped");

    let mut unknown = dep.clone();
    unknown["spec"]["template"]["spec"]["containers"][0]["volumeMount"] = json!([]);
    assert!(support::openapi::roundtrip(&unknown).unwrap_err().contains("volumeMount"));
    let mut number = dep;
    number["spec"]["template"]["spec"]["containers"][0]["env"][1]["value"] = json!(48);
    assert!(support::openapi::roundtrip(&number).unwrap_err().contains("invalid type: integer"));

    let crds = support::crd::Crds::load();
    let dgd = support::docs(&Layout::new("dgd-v1beta1").base()).remove(0);
    assert_eq!(crds.validate(&dgd), Ok(()));
    let mut twice = dgd.clone();
    let first = twice["spec"]["components"][0].clone();
    twice["spec"]["components"].as_array_mut().unwrap().push(first);
    assert!(crds.validate(&twice).unwrap_err().contains("two entries with [\"name\"]"));
    let mut unknown = dgd;
    unknown["spec"]["components"][1]["podTemplate"]["spec"]["containers"][1]["envv"] = json!([]);
    assert!(crds.validate(&unknown).unwrap_err().contains("envv"));
}

#[test]
fn every_sample_workload_gets_exactly_the_injection() {
    // The upstream Dynamo samples take HF_TOKEN from a Secret that is not part of them.
    for sample in
        ["workloads", "dgd-v1alpha1/vllm-disagg", "dgd-v1alpha1/vllm-disagg-router", "dgd-v1beta1/vllm-disagg-router"]
    {
        let dir = tempfile::tempdir().unwrap();
        let app = support::repo().join("manifests").join(sample);
        let base = support::kustomize(&app).unwrap();
        let g = generate(&base, &["--envfrom-without-ld-preload", "hf-token-secret"]);
        assert_eq!(g.code, 0, "{sample}: {}", g.stderr);
        std::fs::create_dir_all(dir.path().join("c")).unwrap();
        std::fs::write(dir.path().join("c/kustomization.yaml"), &g.stdout).unwrap();
        std::fs::create_dir_all(dir.path().join("o")).unwrap();
        // kustomize takes only relative paths: from o/ up to / and down to the sample.
        let up = "../".repeat(dir.path().components().count());
        let sample_dir = app.display().to_string();
        let resource = format!("{up}{}", sample_dir.trim_start_matches('/'));
        std::fs::write(
            dir.path().join("o/kustomization.yaml"),
            format!("resources: [{resource}]\ncomponents: [../c]\n"),
        )
        .unwrap();
        let out = support::render(&dir.path().join("o"));
        support::validate_all(&out);
        let base = support::docs(&base);
        let injected =
            out.iter().filter(|d| serde_json::to_string(d).unwrap().contains("cuda-fault-shim-install")).count();
        assert!(injected >= 1, "{sample}: nothing injected");
        for b in &base {
            let o = find(&out, b["kind"].as_str().unwrap(), b["metadata"]["name"].as_str().unwrap());
            let extra = Expect::default().unexpected(b, o);
            assert!(extra.is_empty(), "{sample}: {extra:?}");
        }
    }
}
