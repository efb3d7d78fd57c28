//! The Component as users layer it, rendered with the real `kubectl kustomize`: on top of a
//! production overlay that has generators and patches of its own (the documented layout), under
//! one (where a patch of LD_PRELOAD cannot be caught at build time, and `verify` says why the
//! pod is not injected), and listed beside patches or generators (which fails the build naming
//! the stale key); a workload renamed or removed after generation; native sidecars.

mod support;

use std::path::Path;

use k8s_openapi::api::core::v1::{Pod, PodSpec};
use serde_json::{json, Value};
use support::diff::PRELOAD;
use support::{find, generate, kustomize, Layout};

const STALE: &str = "cuda-fault-targets-are-stale--rerun-cuda-fault-kustomize";

fn write(dir: &Path, sub: &str, text: &str) {
    std::fs::create_dir_all(dir.join(sub)).unwrap();
    std::fs::write(dir.join(sub).join("kustomization.yaml"), text).unwrap();
}

/// A production overlay of the `apps` fixture: its own generator merges LD_PRELOAD into the
/// trainer's envFrom ConfigMap, its own patch sets the vllm container's LD_PRELOAD and replicas.
const PROD: &str = "resources: [../app]
configMapGenerator:
- name: trainer-env
  namespace: prod
  behavior: merge
  literals: [LD_PRELOAD=libprod.so]
patches:
- patch: |
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: vllm.v1, namespace: prod}
    spec:
      replicas: 5
      template:
        spec:
          containers:
          - name: vllm
            env:
            - {name: LD_PRELOAD, value: /opt/prod/libprod.so}
";

fn preload(pod: &Value, container: &str) -> String {
    let c = pod["containers"].as_array().unwrap().iter().find(|c| c["name"] == container).unwrap();
    let e: Vec<&Value> = c["env"].as_array().unwrap().iter().filter(|e| e["name"] == "LD_PRELOAD").collect();
    assert_eq!(e.len(), 1, "{c}");
    e[0]["value"].as_str().unwrap().to_string()
}

/// What `cuda-fault verify` says of a pod made from this pod template, its init containers done.
fn verify(template_spec: &Value) -> cuda_fault::cluster::verify::PodReport {
    let spec: PodSpec = serde_json::from_value(template_spec.clone()).unwrap();
    let statuses: Vec<Value> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| json!({"name": c.name, "image": "i", "imageID": "", "ready": true, "restartCount": 0, "state": {"terminated": {"exitCode": 0}}}))
        .collect();
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p"}, "spec": spec, "status": {"phase": "Running", "initContainerStatuses": statuses}
    }))
    .unwrap();
    cuda_fault::cluster::verify::pod_report(&pod)
}

#[test]
fn on_top_of_a_production_overlay_the_component_sees_its_generators_and_patches() {
    let l = Layout::new("apps");
    let dir = l.dir.path();
    write(dir, "prod", PROD);
    // The documented layout: the overlay holding the Component lists the production overlay and
    // nothing else; the Component is generated from the production overlay's render.
    write(dir, "overlay", "resources: [../prod]\ncomponents: [../app-cuda-fault]\n");
    let g = generate(&kustomize(&dir.join("prod")).unwrap(), &["--container", "bench"]);
    assert_eq!(g.code, 0, "{}", g.stderr);
    std::fs::write(dir.join("app-cuda-fault/kustomization.yaml"), &g.stdout).unwrap();
    let out = l.render().unwrap_or_else(|e| panic!("{e}"));
    support::validate_all(&out);
    let vllm = &find(&out, "Deployment", "vllm.v1")["spec"];
    assert_eq!(vllm["replicas"], 5);
    assert_eq!(preload(&vllm["template"]["spec"], "vllm"), format!("{PRELOAD}:/opt/prod/libprod.so"));
    let trainer = &find(&out, "StatefulSet", "trainer")["spec"]["template"]["spec"];
    assert_eq!(
        preload(trainer, "trainer"),
        format!("{PRELOAD}:libprod.so"),
        "the production overlay's ConfigMap value"
    );
    let report = verify(&vllm["template"]["spec"]);
    assert!(report.injected, "{report:?}");
    // A later change of the production overlay that the injection relies on fails the build.
    write(dir, "prod", &PROD.replace("libprod.so]", "libprod2.so]"));
    let e = l.render().expect_err("stale");
    assert!(e.contains(&format!("testing value /{STALE}/LD_PRELOAD failed")), "{e}");
}

#[test]
fn listed_beside_the_overlays_own_generators_or_patches_the_build_fails_naming_the_stale_key() {
    // The overlay's generators run before its components: generated from the base, the
    // Component sees the merged ConfigMap and fails (and regenerating from the base would not
    // help: the header and the README say to move the Component on top).
    let l = Layout::new("apps");
    l.generate(&["--container", "bench"]);
    let own = PROD.replace("resources: [../app]\n", "resources: [../app]\ncomponents: [../app-cuda-fault]\n");
    write(l.dir.path(), "overlay", &own);
    let e = l.render().expect_err("the overlay's own generator changed what the Component relies on");
    assert!(e.contains(&format!("testing value /{STALE}/LD_PRELOAD failed")), "{e}");
    // Generated from the overlay's render (its components line left out), the Component sees
    // the vllm container before the overlay's patch, and fails too: the patch would have
    // replaced the shim's LD_PRELOAD after the injection.
    let l = Layout::new("apps");
    let dir = l.dir.path();
    let only_patch = PROD.replace("configMapGenerator:\n- name: trainer-env\n  namespace: prod\n  behavior: merge\n  literals: [LD_PRELOAD=libprod.so]\n", "");
    write(dir, "overlay", &only_patch);
    let g = generate(&kustomize(&dir.join("overlay")).unwrap(), &["--container", "bench"]);
    assert_eq!(g.code, 0, "{}", g.stderr);
    std::fs::write(dir.join("app-cuda-fault/kustomization.yaml"), &g.stdout).unwrap();
    write(
        dir,
        "overlay",
        &only_patch.replace("resources: [../app]\n", "resources: [../app]\ncomponents: [../app-cuda-fault]\n"),
    );
    let e = l.render().expect_err("the Component sees the container before the overlay's patch");
    assert!(e.contains(STALE), "{e}");
}

#[test]
fn under_a_production_overlay_changes_that_leave_the_injection_alone_build_and_verify_tells_a_lost_shim() {
    // base -> injected overlay -> production overlay on top.
    let l = Layout::new("apps");
    l.generate(&["--container", "bench"]);
    let dir = l.dir.path();
    let base = support::docs(&l.base());
    write(
        dir,
        "prod",
        "resources: [../overlay]\nimages: [{name: vllm/vllm-openai, newTag: v0.9.1}]\nreplicas: [{name: vllm.v1, count: 4}]\nconfigMapGenerator:\n- {name: trainer-env, namespace: prod, behavior: merge, literals: [EPOCHS=9]}\n",
    );
    let out = support::render(&dir.join("prod"));
    support::validate_all(&out);
    assert_eq!(out.len(), base.len(), "the Component's guard source is dropped from the output");
    let vllm = &find(&out, "Deployment", "vllm.v1")["spec"];
    assert_eq!(vllm["replicas"], 4);
    assert_eq!(
        preload(&vllm["template"]["spec"], "vllm"),
        format!("{PRELOAD}:/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
    );
    assert!(verify(&vllm["template"]["spec"]).injected);
    // A production overlay on top that sets LD_PRELOAD replaces the shim's value after the
    // injection: nothing of the Component's runs after it, so the build cannot fail, but the
    // pods are not injected and verify says why.
    write(dir, "prod", &PROD.replace("resources: [../app]", "resources: [../overlay]").replace("configMapGenerator:\n- name: trainer-env\n  namespace: prod\n  behavior: merge\n  literals: [LD_PRELOAD=libprod.so]\n", ""));
    let out = support::render(&dir.join("prod"));
    let spec = &find(&out, "Deployment", "vllm.v1")["spec"]["template"]["spec"];
    assert_eq!(preload(spec, "vllm"), "/opt/prod/libprod.so");
    let report = verify(spec);
    assert!(!report.injected);
    assert_eq!(
        report.reason.as_deref(),
        Some("container vllm: LD_PRELOAD does not name the shim first (it is '/opt/prod/libprod.so')")
    );
}

#[test]
fn a_workload_renamed_after_generation_fails_naming_the_stale_key_and_one_removed_builds() {
    // The first injected workload used to anchor the guards: renaming or removing it failed with
    // kustomize's "nothing selected by Deployment.v1.apps/vllm.v1.prod", naming no way out.
    let l = Layout::new("apps");
    l.generate(&["--container", "bench"]);
    l.render().expect("builds");
    l.edit("workloads.yaml", "  name: vllm.v1\n", "  name: vllm.v2\n");
    let e = l.render().expect_err("a renamed workload is a new one");
    assert!(e.contains(&format!("metadata.annotations.{STALE}--new-Deployment")), "{e}");
    // Removed: nothing is left to inject there, and the rest builds as generated.
    let l = Layout::new("apps");
    l.generate(&["--container", "bench"]);
    let text = std::fs::read_to_string(l.path("app/workloads.yaml")).unwrap();
    let start = text.find("# vllm (GPU)").unwrap();
    let end = text.find("# The GPU is requested").unwrap();
    std::fs::write(l.path("app/workloads.yaml"), format!("{}{}", &text[..start], &text[end..])).unwrap();
    let out = l.render().unwrap_or_else(|e| panic!("{e}"));
    let trainer = &find(&out, "StatefulSet", "trainer")["spec"]["template"]["spec"];
    assert_eq!(preload(trainer, "trainer"), format!("{PRELOAD}:libtcmalloc.so.4"));
}

/// `out` without the injection: the installer, our volumes and mounts, and the shim taken out
/// of LD_PRELOAD (the entry removed where the injection added it).
fn strip(mut pod: Value) -> Value {
    let ours = |v: &Value| {
        ["cuda-fault-shim", "cuda-fault-toggle", "cuda-fault-shim-install"].contains(&v["name"].as_str().unwrap_or(""))
    };
    for key in ["initContainers", "containers"] {
        let Some(list) = pod[key].as_array_mut() else { continue };
        list.retain(|c| !ours(c));
        for c in list {
            if let Some(m) = c.get_mut("volumeMounts").and_then(Value::as_array_mut) {
                m.retain(|m| !ours(m));
                if m.is_empty() {
                    c.as_object_mut().unwrap().remove("volumeMounts");
                }
            }
            if let Some(env) = c.get_mut("env").and_then(Value::as_array_mut) {
                env.retain(|e| e["name"] != "LD_PRELOAD" || e["value"] != PRELOAD);
                for e in env.iter_mut().filter(|e| e["name"] == "LD_PRELOAD") {
                    let v = e["value"].as_str().unwrap().strip_prefix(&format!("{PRELOAD}:")).unwrap().to_string();
                    e["value"] = json!(v);
                }
                if env.is_empty() {
                    c.as_object_mut().unwrap().remove("env");
                }
            }
        }
    }
    pod["volumes"].as_array_mut().unwrap().retain(|v| !ours(v));
    if pod["volumes"].as_array().unwrap().is_empty() {
        pod.as_object_mut().unwrap().remove("volumes");
    }
    pod
}

#[test]
fn native_sidecars_with_a_gpu_are_injected_after_the_shim_is_installed() {
    let l = Layout::new("sidecars");
    let g = l.generate(&[]);
    assert!(g.stdout.contains("#   Deployment serving/engine: native sidecar proxy (uses nvidia.com/gpu); LD_PRELOAD keeps /opt/proxy/libhook.so from its env after the shim\n#   Deployment serving/engine: container main (uses nvidia.com/gpu)\n"), "{}", g.stdout);
    assert!(g.stdout.contains("#   Deployment serving/engine: init container warmup (runs to completion, uses nvidia.com/gpu)\n#   Deployment serving/engine: native sidecar logs (no GPU)\n"), "{}", g.stdout);
    let base = support::docs(&l.base());
    let out = l.render().unwrap_or_else(|e| panic!("{e}"));
    support::validate_all(&out);
    let pod = &find(&out, "Deployment", "engine")["spec"]["template"]["spec"];
    let inits: Vec<&str> =
        pod["initContainers"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    // Sidecars start in order, before later init containers run: the installer goes first.
    assert_eq!(inits, ["warmup", "cuda-fault-shim-install", "proxy", "logs"]);
    assert_eq!(
        preload(&json!({"containers": pod["initContainers"]}), "proxy"),
        format!("{PRELOAD}:/opt/proxy/libhook.so")
    );
    assert_eq!(preload(pod, "main"), PRELOAD);
    let report = verify(pod);
    assert!(report.injected, "{report:?}");
    assert_eq!(report.preloaded, ["proxy", "main"]);
    assert_eq!(
        strip(pod.clone()),
        find(&base, "Deployment", "engine")["spec"]["template"]["spec"],
        "only our additions"
    );
    // --container finds a native sidecar; it does not take an init container that runs to
    // completion (it runs before the shim is installed).
    let g = generate(&l.base(), &["--container", "logs"]);
    assert_eq!(g.code, 0, "{}", g.stderr);
    assert!(g.stdout.contains("native sidecar logs (named with --container)"), "{}", g.stdout);
    let g = generate(&l.base(), &["--container", "warmup"]);
    assert_eq!(g.code, 2);
    assert!(
        g.stderr.contains(
            "--container warmup names an init container of Deployment serving/engine that runs to completion"
        ),
        "{}",
        g.stderr
    );
    // A sidecar added, one given a GPU, or an init container turned into a sidecar after
    // generation fails the build naming the stale key.
    for (from, to) in [
        ("      - name: logs\n", "      - name: gpu-logs\n        image: x\n        restartPolicy: Always\n        resources: {limits: {nvidia.com/gpu: \"1\"}}\n      - name: logs\n"),
        ("        image: example.com/logs:1\n", "        image: example.com/logs:1\n        resources: {limits: {nvidia.com/gpu: \"1\"}}\n"),
        ("        image: example.com/warmup:1\n", "        image: example.com/warmup:1\n        restartPolicy: Always\n"),
    ] {
        let l = Layout::new("sidecars");
        l.generate(&[]);
        l.edit("workloads.yaml", from, to);
        let e = l.render().expect_err("stale");
        assert!(e.contains(&format!("/{STALE}/template/spec/initContainers")), "{to}: {e}");
    }
}
