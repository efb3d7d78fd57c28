use serde_json::{json, Value};

use super::record::{Added, Step};
use super::*;
use crate::layout::{PRELOAD, SHIM_VOLUME, TOGGLE_VOLUME};
use crate::pin::{Mode, NodePin};

fn deployment() -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "vllm.v1", "namespace": "prod", "uid": "u-1", "annotations": {"team": "llm"}},
           "spec": {"selector": {"matchLabels": {"app": "vllm"}},
                    "template": {"metadata": {"labels": {"app": "vllm"}},
                                 "spec": {"containers": [
                                     {"name": "vllm", "image": "vllm:1",
                                      "env": [{"name": "A", "value": "1"},
                                              {"name": "LD_PRELOAD", "value": "/usr/lib/libjemalloc.so.2"}],
                                      "resources": {"limits": {"nvidia.com/gpu": "1"}}},
                                     {"name": "metrics", "image": "m:1",
                                      "envFrom": [{"secretRef": {"name": "metrics-token"}}]}]}}}})
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect()
}

#[test]
fn the_patch_opens_with_our_guards_and_ends_with_the_record() {
    let d = deployment();
    let inj = plan(&d, &[], &Options::default()).unwrap();
    let head: Vec<(&str, &str)> = inj.ops.iter().take(3).map(|o| (o.op, o.path.as_str())).collect();
    assert_eq!(
        head,
        [
            ("test", "/metadata/uid"),
            ("test", "/metadata/annotations/cuda-fault~1injection"),
            ("copy", "/cuda-fault-targets-are-stale--rerun-cuda-fault-kustomize")
        ]
    );
    assert_eq!(inj.ops[1].value, Some(Value::Null));
    let last = inj.ops.last().unwrap();
    assert_eq!((last.op, last.path.as_str()), ("add", "/metadata/annotations/cuda-fault~1injection"));
    assert_eq!(last.value, Some(json!(inj.record.to_text())));
    assert_eq!(inj.result["metadata"]["annotations"]["team"], "llm");
    assert_eq!(inj.injected, ["Deployment prod/vllm.v1: container vllm (uses nvidia.com/gpu); LD_PRELOAD keeps /usr/lib/libjemalloc.so.2 from its env after the shim"]);
    assert_eq!(inj.left_alone, ["Deployment prod/vllm.v1: container metrics (no GPU)"]);
}

#[test]
fn the_record_lists_exactly_what_was_added_with_names_along_the_path() {
    let d = deployment();
    let inj = plan(&d, &[], &Options::default()).unwrap();
    let k = |s: &str| Step::Key(s.into());
    let tpl = || vec![k("spec"), k("template"), k("spec")];
    let vllm = |rest: Vec<Step>| {
        let mut p = tpl();
        p.extend([k("containers"), Step::Index(0, Some("vllm".into()))]);
        p.extend(rest);
        p
    };
    let paths: Vec<(Vec<Step>, bool)> = inj.record.added.iter().map(|a| (a.path.clone(), a.was.is_some())).collect();
    let mut init = tpl();
    init.push(k("initContainers"));
    let mut volumes = tpl();
    volumes.push(k("volumes"));
    assert_eq!(
        paths,
        [
            (vllm(vec![k("env"), Step::Index(1, Some("LD_PRELOAD".into())), k("value")]), true),
            (vllm(vec![k("volumeMounts")]), false),
            (init, false),
            (volumes, false),
        ]
    );
    let replaced = &inj.record.added[0];
    assert_eq!(replaced.was, Some(json!("/usr/lib/libjemalloc.so.2")));
    assert_eq!(replaced.value, json!(format!("{PRELOAD}:/usr/lib/libjemalloc.so.2")));
    assert_eq!(names(&inj.record.added[3].value), [SHIM_VOLUME, TOGGLE_VOLUME]);
    // The annotation reads back as written.
    assert_eq!(Record::parse(&inj.record.to_text()).unwrap(), inj.record);
}

#[test]
fn removal_right_after_injection_gives_back_the_object_exactly() {
    let pin = |mode| NodePin { node: "gpu-node-1".into(), mode };
    let mut with_affinity = deployment();
    with_affinity["spec"]["template"]["spec"]["affinity"] = json!({"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["bad"]}]},
            {"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}]}}});
    let no_annotations = {
        let mut d = deployment();
        d["metadata"].as_object_mut().unwrap().remove("annotations");
        d
    };
    let cases = [
        (deployment(), Options::default()),
        (no_annotations, Options { faults_from_start: Some(79), toggle: false, ..Options::default() }),
        (with_affinity.clone(), Options { pin: Some(pin(Mode::Required)), ..Options::default() }),
        (with_affinity, Options { pin: Some(pin(Mode::Preferred)), ..Options::default() }),
        (deployment(), Options { containers: vec!["metrics".into()], ..Options::default() }),
    ];
    let token = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "metrics-token", "namespace": "prod"},
                       "data": {"TOKEN": "eA=="}});
    for (d, opts) in cases {
        let inj = plan(&d, std::slice::from_ref(&token), &opts).unwrap();
        let r = removal::plan(&inj.result).unwrap();
        assert_eq!(r.result, d, "{opts:?}");
        assert!(r.kept.is_empty() && r.gone.is_empty(), "{:?} {:?}", r.kept, r.gone);
        assert!(!r.removed.is_empty());
    }
}

#[test]
fn what_the_user_changed_since_is_kept_and_reported() {
    let d = deployment();
    let inj = plan(&d, &[], &Options::default()).unwrap();
    let mut edited = inj.result.clone();
    let p = &mut edited["spec"]["template"]["spec"];
    // The user moved the GPU container last, added a mount of their own into the mount list the
    // injection created, pointed our init container at their registry, and the API server filled
    // in defaults.
    let containers = p["containers"].as_array_mut().unwrap();
    containers.reverse();
    containers[1]["volumeMounts"].as_array_mut().unwrap().push(json!({"name": "cache", "mountPath": "/cache"}));
    p["volumes"].as_array_mut().unwrap().push(json!({"name": "cache", "emptyDir": {}}));
    p["initContainers"][0]["image"] = json!("registry.local/cuda-fault:0.1.0");
    p["initContainers"][0]["terminationMessagePath"] = json!("/dev/termination-log");
    p["volumes"][1]["hostPath"]["type"] = json!("DirectoryOrCreate");
    let r = removal::plan(&edited).unwrap();
    let out = &r.result["spec"]["template"]["spec"];
    // The user's mount and volume stay; ours go, but for the shim volume, which the kept init
    // container still mounts.
    assert_eq!(out["containers"][1]["volumeMounts"], json!([{"name": "cache", "mountPath": "/cache"}]));
    assert_eq!(names(&out["volumes"]), [SHIM_VOLUME, "cache"]);
    assert_eq!(out["initContainers"], edited["spec"]["template"]["spec"]["initContainers"]);
    assert_eq!(out["containers"][1]["env"], d["spec"]["template"]["spec"]["containers"][0]["env"]);
    assert_eq!(
        r.kept,
        [
            "spec.template.spec.initContainers[cuda-fault-shim-install]: changed since the injection, left as it is",
            "spec.template.spec.volumes[cuda-fault-shim]: still mounted by spec.template.spec.initContainers[cuda-fault-shim-install], left as it is",
        ]
    );
    assert_eq!(
        r.removed,
        [
            "spec.template.spec.containers[vllm].env[LD_PRELOAD].value restored to \"/usr/lib/libjemalloc.so.2\""
                .to_string(),
            "spec.template.spec.containers[vllm].volumeMounts[cuda-fault-shim]".to_string(),
            "spec.template.spec.containers[vllm].volumeMounts[cuda-fault-toggle]".to_string(),
            "spec.template.spec.volumes[cuda-fault-toggle]".to_string(),
        ]
    );
    assert!(r.result["metadata"]["annotations"].get(ANNOTATION).is_none());
    assert_eq!(r.result["metadata"]["annotations"]["team"], "llm");
}

#[test]
fn a_changed_ld_preload_stays_and_the_ops_test_everything_they_change() {
    let d = deployment();
    let inj = plan(&d, &[], &Options::default()).unwrap();
    let mut edited = inj.result.clone();
    edited["spec"]["template"]["spec"]["containers"][0]["env"][1]["value"] = json!("/usr/lib/libother.so");
    let r = removal::plan(&edited).unwrap();
    assert_eq!(
        r.kept,
        ["spec.template.spec.containers[vllm].env[LD_PRELOAD].value: changed since the injection, left as it is"]
    );
    assert_eq!(r.result["spec"]["template"]["spec"]["containers"][0]["env"][1]["value"], "/usr/lib/libother.so");
    // Tests first (uid, record, every element changed), then the changes, the record last.
    let kinds: String = r.ops.iter().map(|o| &o.op[..1]).collect();
    let tests = kinds.chars().take_while(|c| *c == 't').count();
    assert_eq!(tests, 2 + r.removed.len());
    assert!(kinds[tests..].chars().all(|c| c == 'r'), "{kinds}");
    assert_eq!(r.ops[1].value, Some(json!(record_text(&edited).unwrap())));
    assert_eq!(r.ops.last().unwrap().path, "/metadata/annotations/cuda-fault~1injection");
}

#[test]
fn refusals() {
    let d = deployment();
    let inj = plan(&d, &[], &Options::default()).unwrap();
    let e = plan(&inj.result, &[], &Options::default()).unwrap_err();
    assert_eq!(e.0, "Deployment prod/vllm.v1 is already injected (annotation cuda-fault/injection); remove it first with cuda-fault inject --remove");
    let e = removal::plan(&d).unwrap_err();
    assert!(e.0.starts_with("Deployment prod/vllm.v1 carries no record of cuda-fault inject (annotation cuda-fault/injection): nothing to remove"), "{e}");
    let mut by_component = inj.result.clone();
    by_component["metadata"]["annotations"].as_object_mut().unwrap().remove(ANNOTATION);
    assert!(plan(&by_component, &[], &Options::default())
        .unwrap_err()
        .0
        .contains("it came from the kustomize Component"));
    let mut garbled = inj.result.clone();
    garbled["metadata"]["annotations"][ANNOTATION] = json!("{\"version\": 7}");
    assert_eq!(
        removal::plan(&garbled).unwrap_err().0,
        "Deployment prod/vllm.v1: the annotation cuda-fault/injection is format version 7, which this cuda-fault does not know (it knows 1): use the cuda-fault that wrote it; nothing was changed, remove the injection by hand"
    );
    let mut outside = inj.result.clone();
    let mut record = inj.record.clone();
    record.added.push(Added {
        path: vec![Step::Key("metadata".into()), Step::Key("labels".into())],
        value: json!({}),
        was: None,
    });
    outside["metadata"]["annotations"][ANNOTATION] = json!(record.to_text());
    assert_eq!(
        removal::plan(&outside).unwrap_err().0,
        "Deployment prod/vllm.v1: the annotation cuda-fault/injection is malformed (it lists metadata.labels, outside the object's spec); nothing was changed, remove the injection by hand"
    );
    let opts = Options { containers: vec!["nope".into()], ..Options::default() };
    assert_eq!(plan(&d, &[], &opts).unwrap_err().0, "--container nope matches no container of Deployment prod/vllm.v1");
    let mut no_gpu = d.clone();
    no_gpu["spec"]["template"]["spec"]["containers"][0].as_object_mut().unwrap().remove("resources");
    assert!(plan(&no_gpu, &[], &Options::default()).unwrap_err().0.contains("has nothing to inject into"));
    let opts = Options { faults_from_start: Some(1), ..Options::default() };
    assert!(plan(&d, &[], &opts).unwrap_err().0.starts_with("--faults-from-start 1: unknown XID"));
}

#[test]
fn only_the_sources_an_injected_container_reads_are_asked_for() {
    let mut d = deployment();
    let vllm = &mut d["spec"]["template"]["spec"]["containers"][0];
    vllm["env"].as_array_mut().unwrap().remove(1);
    vllm["envFrom"] = json!([{"configMapRef": {"name": "vllm-env"}}, {"secretRef": {"name": "hf"}, "prefix": "HF_"}]);
    // The sidecar's Secret is not read: it gets no shim. A prefix that no variable of ours can
    // carry means the Secret cannot set one.
    assert_eq!(sources(&d, &Options::default()).unwrap(), [SourceRef { kind: "ConfigMap", name: "vllm-env".into() }]);
    let opts = Options { envfrom_without_ld_preload: vec!["vllm-env".into()], ..Options::default() };
    assert_eq!(sources(&d, &opts).unwrap(), []);
    // What the ConfigMap sets is kept after the shim.
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "vllm-env", "namespace": "prod"},
                    "data": {"LD_PRELOAD": "libtcmalloc.so.4"}});
    let inj = plan(&d, &[cm], &Options::default()).unwrap();
    let env = &inj.result["spec"]["template"]["spec"]["containers"][0]["env"];
    assert_eq!(env[1], json!({"name": "LD_PRELOAD", "value": format!("{PRELOAD}:libtcmalloc.so.4")}));
    // Without it the rules cannot decide, and say so.
    assert!(plan(&d, &[], &Options::default()).unwrap_err().0.contains("ConfigMap vllm-env"));
}

#[test]
fn dgd_services_and_components_round_trip() {
    let v1alpha1 = json!({"apiVersion": "nvidia.com/v1alpha1", "kind": "DynamoGraphDeployment",
        "metadata": {"name": "llm", "namespace": "llm"},
        "spec": {"services": {
            "Frontend": {"componentType": "frontend"},
            "a/b~worker": {"componentType": "worker", "envFromSecret": "hf",
                           "extraPodSpec": {"mainContainer": {"image": "x", "env": [{"name": "K", "value": "v"}]}}},
            "prefill": {"componentType": "prefill"}}}});
    let v1beta1 = json!({"apiVersion": "nvidia.com/v1beta1", "kind": "DynamoGraphDeployment",
        "metadata": {"name": "llm", "namespace": "serving"},
        "spec": {"components": [
            {"name": "Frontend", "type": "frontend"},
            {"name": "decode", "type": "decode", "podTemplate": {"spec": {"containers": [
                {"name": "metrics", "image": "m"}, {"name": "main", "image": "x"}]}}},
            {"name": "prefill", "type": "prefill"}]}});
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hf", "namespace": "llm"},
                        "data": {"HF_TOKEN": "eA=="}});
    assert_eq!(sources(&v1alpha1, &Options::default()).unwrap(), [SourceRef { kind: "Secret", name: "hf".into() }]);
    for (d, s) in [(v1alpha1, vec![secret]), (v1beta1, vec![])] {
        let inj = plan(&d, &s, &Options::default()).unwrap();
        assert!(inj.record.added.iter().all(|a: &Added| a.was.is_none()));
        let r = removal::plan(&inj.result).unwrap();
        assert_eq!(r.result, d);
        // The operator's own fields beside ours do not stop a created key from going.
        let mut touched = inj.result.clone();
        if let Some(c) = touched.pointer_mut("/spec/components/2/podTemplate/spec/containers/0") {
            c["resources"] = json!({});
        }
        let r = removal::plan(&touched).unwrap();
        assert!(r.kept.is_empty(), "{:?}", r.kept);
    }
}

#[test]
fn an_ld_preload_entry_without_a_value_gets_one_and_loses_it_again() {
    // `{name: LD_PRELOAD}` sets it to "": the shim alone is preloaded, and removal restores the
    // entry as it was.
    let mut d = deployment();
    d["spec"]["template"]["spec"]["containers"][0]["env"][1] = json!({"name": "LD_PRELOAD"});
    let inj = plan(&d, &[], &Options::default()).unwrap();
    assert_eq!(
        inj.result["spec"]["template"]["spec"]["containers"][0]["env"][1],
        json!({"name": "LD_PRELOAD", "value": PRELOAD})
    );
    let set = inj.ops.iter().find(|o| o.path == "/spec/template/spec/containers/0/env/1/value").unwrap();
    assert_eq!((set.op, &set.value), ("add", &Some(json!(PRELOAD))));
    assert_eq!(removal::plan(&inj.result).unwrap().result, d);
}
