//! One set of rules: `cuda-fault inject` on a live object leaves it exactly as the generator's
//! Component renders it with the real `kubectl kustomize`, for the generator's user-shaped
//! fixtures (a Deployment with a sidecar, its own LD_PRELOAD and a two-term affinity, a
//! StatefulSet whose LD_PRELOAD comes from a generated ConfigMap, a DaemonSet named with
//! --container, DynamoGraphDeployments v1alpha1 and v1beta1 with odd names), under several option
//! sets; and `--remove` gives back the base object exactly.
//!
//! kubectl must be on PATH (the test fails, never skips, without it).

mod live_api;

use std::path::{Path, PathBuf};
use std::process::Command;

use cuda_fault::cluster::INJECT_RBAC;
use injection::pin::{Mode, NodePin};
use injection::Options;
use live_api::{spec_only, Cluster};
use serde_json::Value;

fn fixture(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../cuda-fault-kustomize/tests/fixtures")
        .join(dir)
        .canonicalize()
        .unwrap()
}

fn kustomize(dir: &Path) -> String {
    let out = Command::new("kubectl").arg("kustomize").arg(dir).output().unwrap_or_else(|e| {
        panic!(
            "kubectl is not on PATH: this test renders with `kubectl kustomize`; install kubectl 1.27 or newer ({e})"
        )
    });
    assert!(out.status.success(), "kubectl kustomize {}: {}", dir.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn docs(text: &str) -> Vec<Value> {
    injection::stream::parse(text).unwrap().into_iter().map(|o| o.doc).collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

struct Case {
    fixture: &'static str,
    generator: Options,
    /// (KIND/NAME, namespace, kind, name, inject's flags)
    targets: Vec<(&'static str, &'static str, &'static str, &'static str, Vec<&'static str>)>,
    /// nvidia.com versions served.
    dgd: Option<&'static str>,
}

fn pin(mode: Mode) -> Option<NodePin> {
    Some(NodePin { node: "gpu-node-1".into(), mode })
}

async fn check(case: Case) {
    let base_text = kustomize(&fixture(case.fixture));
    let base = docs(&base_text);
    let generated = cuda_fault_kustomize::generate(&base_text, &case.generator).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    // The user's layout: their base, the generated Component and their overlay side by side
    // (kustomize takes no absolute paths in resources).
    for dir in ["base", "component", "overlay"] {
        std::fs::create_dir_all(tmp.path().join(dir)).unwrap();
    }
    for f in std::fs::read_dir(fixture(case.fixture)).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, tmp.path().join("base").join(f.file_name().unwrap())).unwrap();
    }
    std::fs::write(tmp.path().join("component/kustomization.yaml"), &generated.text).unwrap();
    std::fs::write(tmp.path().join("overlay/kustomization.yaml"), "resources: [../base]\ncomponents: [../component]\n")
        .unwrap();
    let rendered = docs(&kustomize(&tmp.path().join("overlay")));

    let cluster = Cluster::new();
    for d in &base {
        cluster.lock().unwrap().put(d.clone());
    }
    if let Some(v) = case.dgd {
        cluster.lock().unwrap().serve_group(v, &[(v, &["dynamographdeployments"])]);
    }
    for (target, ns, kind, name, flags) in &case.targets {
        let mut args = vec![*target, "-n", *ns];
        args.extend(flags.iter().copied());
        let r = live_api::run(&cluster, INJECT_RBAC, &args).await;
        assert_eq!((r.code, r.err.as_str()), (0, ""), "{args:?}");
        let path = live_api::path_of(find(&base, kind, name));
        let live = spec_only(cluster.lock().unwrap().get(&path));
        let component = find(&rendered, kind, name);
        assert_ne!(component, find(&base, kind, name), "{kind} {name}: the Component injects");
        assert_eq!(&live, component, "{args:?}: the live injection differs from the Component's rendering");

        let mut args = vec!["--remove", *target, "-n", *ns];
        args.push("--json");
        let r = live_api::run(&cluster, INJECT_RBAC, &args).await;
        assert_eq!((r.code, r.err.as_str()), (0, ""), "{args:?}");
        let out: Value = serde_json::from_str(&r.out).unwrap();
        assert_eq!((out["kept"].as_array().unwrap().len(), out["gone"].as_array().unwrap().len()), (0, 0));
        assert_eq!(&spec_only(cluster.lock().unwrap().get(&path)), find(&base, kind, name), "{args:?}");
    }
}

#[tokio::test]
async fn apps_workloads_pinned_required() {
    check(Case {
        fixture: "apps",
        generator: Options { containers: vec!["agent".into()], pin: pin(Mode::Required), ..Options::default() },
        targets: vec![
            (
                "deployment/vllm.v1",
                "prod",
                "Deployment",
                "vllm.v1",
                vec!["--pin-node", "gpu-node-1", "--pin", "required"],
            ),
            (
                "statefulset/trainer",
                "prod",
                "StatefulSet",
                "trainer",
                vec!["--pin-node", "gpu-node-1", "--pin", "required"],
            ),
            (
                "daemonset/node-agent",
                "prod",
                "DaemonSet",
                "node-agent",
                vec!["--container", "agent", "--pin-node", "gpu-node-1", "--pin", "required"],
            ),
        ],
        dgd: None,
    })
    .await;
}

#[tokio::test]
async fn apps_workloads_faults_from_start_without_toggle_and_another_image() {
    let flags = vec!["--faults-from-start", "48", "--no-toggle", "--image", "registry.local/cuda-fault:1"];
    check(Case {
        fixture: "apps",
        generator: Options {
            faults_from_start: Some(48),
            toggle: false,
            image: "registry.local/cuda-fault:1".into(),
            ..Options::default()
        },
        targets: vec![
            ("deploy/vllm.v1", "prod", "Deployment", "vllm.v1", flags.clone()),
            ("sts/trainer", "prod", "StatefulSet", "trainer", flags),
        ],
        dgd: None,
    })
    .await;
}

#[tokio::test]
async fn dgd_v1alpha1_pinned_preferred() {
    check(Case {
        fixture: "dgd-v1alpha1",
        generator: Options { pin: pin(Mode::Preferred), ..Options::default() },
        targets: vec![("dgd/llm.prod", "llm", "DynamoGraphDeployment", "llm.prod", vec!["--pin-node", "gpu-node-1"])],
        dgd: Some("v1alpha1"),
    })
    .await;
}

#[tokio::test]
async fn dgd_v1beta1_plain_and_faults_from_start() {
    check(Case {
        fixture: "dgd-v1beta1",
        generator: Options::default(),
        targets: vec![("dynamographdeployment/llm", "serving", "DynamoGraphDeployment", "llm", vec![])],
        dgd: Some("v1beta1"),
    })
    .await;
    check(Case {
        fixture: "dgd-v1beta1",
        generator: Options { faults_from_start: Some(79), ..Options::default() },
        targets: vec![("dgd/llm", "serving", "DynamoGraphDeployment", "llm", vec!["--faults-from-start", "79"])],
        dgd: Some("v1beta1"),
    })
    .await;
}
