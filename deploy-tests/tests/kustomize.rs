//! Renders every overlay under kustomize/ with `kubectl kustomize` and validates the output:
//! built-in kinds against k8s-openapi types, DynamoGraphDeployments against the CRD schemas,
//! and the injection itself (deploy_tests::check). A missing kubectl fails these tests.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use deploy_tests::check::{self, Expect, PinMode};
use deploy_tests::k8s::{self, DgdSchemas};
use deploy_tests::sites::{self, key, keys, named};
use deploy_tests::{gen, kubectl, paths, yaml, PRELOAD};
use serde_json::{json, Value};

const NODE: &str = "gpu-node-7";

fn kdir(p: &str) -> PathBuf {
    paths::kustomize_dir().join(p)
}

/// A fresh scratch directory under the target dir (kustomize needs relative paths, so it must
/// be on the same filesystem tree as the repository).
fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("deploy-tests")
        .join(name);
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

fn node_yaml(node: &str) -> String {
    format!(
        "apiVersion: cuda-fault/v1alpha1\nkind: TargetNode\nmetadata:\n  name: cuda-fault-target-node\n  \
         annotations:\n    config.kubernetes.io/local-config: \"true\"\nspec:\n  nodeName: {node}\n"
    )
}

/// Writes an overlay at `dir` over `base` with these components (paths absolute; written
/// relative), a TargetNode when pinned, and an `images:` entry when given.
fn overlay(
    dir: &Path,
    base: &Path,
    components: &[PathBuf],
    node: Option<&str>,
    image: Option<(&str, &str)>,
) {
    let mut k = String::from(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n",
    );
    k += &format!("- {}\n", paths::relative(dir, base));
    if let Some(n) = node {
        write(&dir.join("node.yaml"), &node_yaml(n));
        k += "- node.yaml\n";
    }
    k += "components:\n";
    for c in components {
        k += &format!("- {}\n", paths::relative(dir, c));
    }
    if let Some((name, tag)) = image {
        k += &format!(
            "images:\n- name: {}\n  newName: {name}\n  newTag: \"{tag}\"\n",
            deploy_tests::IMAGE_NAME
        );
    }
    write(&dir.join("kustomization.yaml"), &k);
}

fn validate(docs: &[Value], schemas: &DgdSchemas, what: &str) {
    if let Err(e) = k8s::validate_all(docs, schemas) {
        panic!("{what}: invalid output:\n{e}");
    }
}

fn render_checked(
    dir: &Path,
    base: &[Value],
    expect: &Expect,
    schemas: &DgdSchemas,
) -> (Vec<Value>, usize) {
    let docs = kubectl::render(dir);
    validate(&docs, schemas, &dir.display().to_string());
    let n = check::check_overlay(&docs, base, expect)
        .unwrap_or_else(|e| panic!("{}:\n{e}", dir.display()));
    (docs, n)
}

/// The YAML files a kustomization lists, followed through directories (no transformers:
/// only for the plain bases here).
fn raw_docs(dir: &Path) -> Vec<Value> {
    let k = yaml::read_docs(&dir.join("kustomization.yaml"))
        .unwrap()
        .remove(0);
    let mut out = Vec::new();
    for r in k["resources"].as_array().unwrap() {
        let p = dir.join(r.as_str().unwrap());
        if p.is_dir() {
            out.extend(raw_docs(&p));
        } else {
            out.extend(yaml::read_docs(&p).unwrap());
        }
    }
    out
}

fn sorted(mut docs: Vec<Value>) -> Vec<Value> {
    docs.sort_by_key(yaml::id);
    docs
}

#[test]
fn kubectl_with_kustomize_v5_is_installed() {
    let (major, minor, patch) = kubectl::kustomize_version().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        major >= 5,
        "kubectl's built-in kustomize is v{major}.{minor}.{patch}; these overlays need v5 or newer"
    );
}

#[test]
fn base_renders_identical_to_the_unpatched_manifests() {
    let base = kdir("base");
    let rendered = sorted(kubectl::render(&base));
    let raw = sorted(raw_docs(&base));
    assert!(!raw.is_empty());
    assert_eq!(rendered.len(), raw.len());
    for (r, m) in rendered.iter().zip(&raw) {
        if let Some(d) = yaml::diff(r, m) {
            panic!(
                "kubectl kustomize kustomize/base differs from the manifest at {}: {d}",
                yaml::id(m)
            );
        }
    }
    // By default, the sample vLLM disaggregated DGD (v1alpha1).
    let ids: Vec<String> = rendered.iter().map(yaml::id).collect();
    assert_eq!(
        ids,
        vec!["nvidia.com/v1alpha1 DynamoGraphDeployment vllm-disagg".to_string()]
    );
}

#[test]
fn samples_and_fixtures_are_valid_as_written() {
    let schemas = DgdSchemas::load();
    let mut dirs = vec![
        paths::repo_root().join("manifests/dgd-v1alpha1/vllm-disagg"),
        paths::repo_root().join("manifests/dgd-v1alpha1/vllm-disagg-router"),
        paths::repo_root().join("manifests/dgd-v1beta1/vllm-disagg-router"),
        paths::repo_root().join("manifests/workloads"),
    ];
    for f in ["apps-user", "dgd-v1alpha1-user", "dgd-v1beta1-user"] {
        dirs.push(paths::fixtures_dir().join("workloads").join(f));
    }
    for d in dirs {
        let raw = raw_docs(&d);
        validate(&raw, &schemas, &d.display().to_string());
        // What kustomize renders for a plain base is the files' content.
        let rendered = sorted(kubectl::render(&d));
        for (r, m) in rendered.iter().zip(sorted(raw).iter()) {
            assert_eq!(yaml::diff(r, m), None, "{}", d.display());
        }
    }
}

#[test]
fn the_schema_validator_rejects_a_broken_dgd_from_an_overlay() {
    let schemas = DgdSchemas::load();
    let docs = kubectl::render(&kdir("xid79"));
    let mut dgd = docs[0].clone();
    assert!(schemas.validate(&dgd).is_ok());
    let env = dgd
        .pointer_mut("/spec/services/VllmDecodeWorker/extraPodSpec/mainContainer/env/2/value")
        .unwrap();
    *env = json!(79);
    let e = schemas.validate(&dgd).unwrap_err();
    assert!(e.contains("spec.services.VllmDecodeWorker.extraPodSpec.mainContainer.env[2].value: expected string, found integer 79"), "{e}");
    let mut dgd = docs[0].clone();
    dgd.pointer_mut("/spec/services/VllmDecodeWorker/extraPodSpec/mainContainer")
        .unwrap()["volumeMount"] = json!([]);
    let e = schemas.validate(&dgd).unwrap_err();
    assert!(
        e.contains("mainContainer.volumeMount: unknown field"),
        "{e}"
    );
}

#[test]
fn xid_overlay_dirs_match_the_xid_table() {
    let want: BTreeSet<String> = xid_table::table()
        .iter()
        .map(|x| format!("xid{}", x.xid))
        .collect();
    let dirs = |d: &Path| -> BTreeSet<String> {
        fs::read_dir(d)
            .unwrap()
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("xid"))
            .collect()
    };
    assert_eq!(
        dirs(&paths::kustomize_dir()),
        want,
        "kustomize/xidNN overlays vs the XID table"
    );
    assert_eq!(
        dirs(&kdir("components")),
        want,
        "kustomize/components/xidNN vs the XID table"
    );
    for x in ["xid79", "xid48", "xid94", "xid95", "xid43", "xid74"] {
        assert!(want.contains(x), "{x} is in the table");
    }
}

#[test]
fn every_xid_overlay_injects_its_xid_into_every_worker() {
    let schemas = DgdSchemas::load();
    let base = kubectl::render(&kdir("base"));
    for x in xid_table::table() {
        let dir = kdir(&format!("xid{}", x.xid));
        let (docs, sites) = render_checked(&dir, &base, &Expect::faults_on(x.xid), &schemas);
        assert_eq!(
            sites, 2,
            "xid{}: the sample DGD has two worker services",
            x.xid
        );
        // The values are YAML strings in the text kubectl prints, not just after parsing.
        let text = kubectl::kustomize(&dir).unwrap();
        assert_eq!(
            text.matches(&format!("value: \"{}\"\n", x.xid)).count(),
            2,
            "xid{}: CUDA_XID_TYPE as a quoted string",
            x.xid
        );
        assert_eq!(text.matches("value: \"1\"\n").count(), 2);
        // The frontend is untouched (also covered by check_overlay).
        let fe = docs[0].pointer("/spec/services/Frontend").unwrap();
        assert_eq!(Some(fe), base[0].pointer("/spec/services/Frontend"));
    }
}

#[test]
fn passthrough_overlay_loads_the_shim_with_faults_off() {
    let schemas = DgdSchemas::load();
    let base = kubectl::render(&kdir("base"));
    let (docs, sites) = render_checked(
        &kdir("passthrough"),
        &base,
        &Expect::passthrough(xid_table::DEFAULT_XID),
        &schemas,
    );
    assert_eq!(sites, 2);
    let main = keys(&[
        "spec",
        "services",
        "VllmDecodeWorker",
        "extraPodSpec",
        "mainContainer",
    ]);
    assert_eq!(
        check::env_value(&docs[0], &main, "CUDA_FAULT_INJECTION_ENABLED").as_deref(),
        Some("0")
    );
    assert_eq!(
        check::env_value(&docs[0], &main, "LD_PRELOAD").as_deref(),
        Some(PRELOAD)
    );
}

#[test]
fn example_overlays_pin_the_node_and_render_valid() {
    let schemas = DgdSchemas::load();
    let base = kubectl::render(&kdir("base"));
    for (dir, expect) in [
        (
            "examples/xid79-pin-required",
            Expect::faults_on(79).pinned(PinMode::Required, "gpu-node-1"),
        ),
        (
            "examples/passthrough-pin-preferred",
            Expect::passthrough(79).pinned(PinMode::Preferred, "gpu-node-1"),
        ),
    ] {
        let (_, sites) = render_checked(&kdir(dir), &base, &expect, &schemas);
        assert_eq!(sites, 2, "{dir}");
    }
}

#[test]
fn generated_files_are_current() {
    let files = gen::repo_files().unwrap_or_else(|e| panic!("{e}"));
    let mut stale = Vec::new();
    for (path, text) in &files {
        if fs::read_to_string(path).ok().as_deref() != Some(text.as_str()) {
            stale.push(
                path.strip_prefix(paths::repo_root())
                    .unwrap()
                    .display()
                    .to_string(),
            );
        }
    }
    stale.extend(gen::stale_dirs().iter().map(|d| d.display().to_string()));
    assert!(
        stale.is_empty(),
        "out of date (run `cargo run -p deploy-tests --bin gen-overlays`): {stale:?}"
    );
}

/// Every sample and fixture base, in three modes: faults on; passthrough with a preferred
/// pin; faults on with a required pin and the image changed as `kustomize edit set image` would.
#[test]
fn every_base_in_every_mode() {
    let schemas = DgdSchemas::load();
    let root = paths::repo_root();
    let fx = paths::fixtures_dir().join("workloads");
    let cases: Vec<(&str, PathBuf, usize)> = vec![
        (
            "dgd-v1alpha1-router",
            root.join("manifests/dgd-v1alpha1/vllm-disagg-router"),
            2,
        ),
        (
            "dgd-v1beta1-router",
            root.join("manifests/dgd-v1beta1/vllm-disagg-router"),
            2,
        ),
        ("workloads", root.join("manifests/workloads"), 2),
        ("apps-user", fx.join("apps-user"), 2),
        ("dgd-v1alpha1-user", fx.join("dgd-v1alpha1-user"), 3),
        ("dgd-v1beta1-user", fx.join("dgd-v1beta1-user"), 3),
    ];
    let c = |n: &str| kdir("components").join(n);
    for (name, base_dir, want_sites) in cases {
        let tmp = scratch(&format!("mode-{name}"));
        let base = kubectl::render(&base_dir);
        for (path, text) in gen::target_files(&base, name, &tmp).unwrap() {
            write(&path, &text);
        }
        let t = |n: &str| tmp.join("targets").join(n);

        let on = tmp.join("xid48");
        overlay(
            &on,
            &base_dir,
            &[c("cuda-fault"), c("xid48"), t("inject")],
            None,
            None,
        );
        let (_, n) = render_checked(&on, &base, &Expect::faults_on(48), &schemas);
        assert_eq!(n, want_sites, "{name}");

        let pt = tmp.join("passthrough-preferred");
        overlay(
            &pt,
            &base_dir,
            &[
                c("cuda-fault"),
                c("xid94"),
                c("passthrough"),
                t("inject"),
                t("pin-preferred"),
            ],
            Some(NODE),
            None,
        );
        render_checked(
            &pt,
            &base,
            &Expect::passthrough(94).pinned(PinMode::Preferred, NODE),
            &schemas,
        );

        let req = tmp.join("required-image");
        overlay(
            &req,
            &base_dir,
            &[c("cuda-fault"), c("xid95"), t("inject"), t("pin-required")],
            Some(NODE),
            Some(("registry.example/cf", "0.2.0")),
        );
        let expect = Expect {
            image: "registry.example/cf:0.2.0".into(),
            ..Expect::faults_on(95)
        }
        .pinned(PinMode::Required, NODE);
        let (docs, _) = render_checked(&req, &base, &expect, &schemas);
        // The user's images are untouched (covered by check_overlay too) and ours is gone.
        let text = serde_json::to_string(&docs).unwrap();
        assert!(
            !text.contains(deploy_tests::IMAGE),
            "{name}: default image left after set image"
        );
    }
}

/// The user's LD_PRELOAD survives, with the shim first; spelled out value by value.
#[test]
fn a_users_ld_preload_is_kept_after_the_shim() {
    let fx = paths::fixtures_dir().join("workloads");
    let c = |n: &str| kdir("components").join(n);
    let pre = |theirs: &str| format!("{PRELOAD}:{theirs}");
    let mut seen = 0;
    for (name, checks) in [
        (
            "apps-user",
            vec![
                (
                    "user-infer",
                    keys(&["spec", "template", "spec"]),
                    "server",
                    Some(pre("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")),
                ),
                (
                    "user-infer",
                    keys(&["spec", "template", "spec"]),
                    "metrics",
                    Some(PRELOAD.to_string()),
                ),
                (
                    "user-train",
                    keys(&["spec", "template", "spec"]),
                    "trainer",
                    Some(pre("libtcmalloc.so.4")),
                ),
                (
                    "not-opted-in",
                    keys(&["spec", "template", "spec"]),
                    "app",
                    None,
                ),
                (
                    "opted-out",
                    keys(&["spec", "template", "spec"]),
                    "app",
                    None,
                ),
            ],
        ),
        (
            "dgd-v1beta1-user",
            vec![
                (
                    "user-graph-b",
                    vec![
                        key("spec"),
                        key("components"),
                        named("name", "dec"),
                        key("podTemplate"),
                        key("spec"),
                    ],
                    "main",
                    Some(pre("/opt/profiler/libprof.so")),
                ),
                (
                    "user-graph-b",
                    vec![
                        key("spec"),
                        key("components"),
                        named("name", "dec"),
                        key("podTemplate"),
                        key("spec"),
                    ],
                    "sidecar",
                    None,
                ),
                (
                    "user-graph-b",
                    vec![
                        key("spec"),
                        key("components"),
                        named("name", "pre"),
                        key("podTemplate"),
                        key("spec"),
                    ],
                    "main",
                    Some(pre("/opt/graph/libgraph.so")),
                ),
                (
                    "user-graph-b",
                    vec![
                        key("spec"),
                        key("components"),
                        named("name", "generic"),
                        key("podTemplate"),
                        key("spec"),
                    ],
                    "main",
                    Some(pre("/opt/graph/libgraph.so")),
                ),
                (
                    "user-graph-b",
                    vec![
                        key("spec"),
                        key("components"),
                        named("name", "fe"),
                        key("podTemplate"),
                        key("spec"),
                    ],
                    "main",
                    None,
                ),
            ],
        ),
    ] {
        let tmp = scratch(&format!("preload-{name}"));
        let base_dir = fx.join(name);
        let base = kubectl::render(&base_dir);
        for (path, text) in gen::target_files(&base, name, &tmp).unwrap() {
            write(&path, &text);
        }
        let ov = tmp.join("ov");
        overlay(
            &ov,
            &base_dir,
            &[c("cuda-fault"), c("xid79"), tmp.join("targets/inject")],
            None,
            None,
        );
        let docs = kubectl::render(&ov);
        for (obj, pod, container, want) in checks {
            let doc = docs.iter().find(|d| d["metadata"]["name"] == obj).unwrap();
            let path = sites::join(&pod, &[key("containers"), named("name", container)]);
            let got = check::env_value(doc, &path, "LD_PRELOAD");
            assert_eq!(got, want, "{name} {obj} {container}");
            seen += 1;
        }
        if name == "dgd-v1beta1-user" {
            // The graph-wide LD_PRELOAD itself (the frontend's) is unchanged.
            assert_eq!(
                docs[0].pointer("/spec/env/0/value"),
                Some(&json!("/opt/graph/libgraph.so"))
            );
        }
    }
    // v1alpha1: container level, service level (`envs`, which the operator uses when the
    // container has none) and none.
    let tmp = scratch("preload-v1alpha1");
    let base_dir = fx.join("dgd-v1alpha1-user");
    let base = kubectl::render(&base_dir);
    for (path, text) in gen::target_files(&base, "v1alpha1", &tmp).unwrap() {
        write(&path, &text);
    }
    let ov = tmp.join("ov");
    overlay(
        &ov,
        &base_dir,
        &[c("cuda-fault"), c("xid79"), tmp.join("targets/inject")],
        None,
        None,
    );
    let d = &kubectl::render(&ov)[0];
    let main = |s: &str| keys(&["spec", "services", s, "extraPodSpec", "mainContainer"]);
    assert_eq!(
        check::env_value(d, &main("decode-a"), "LD_PRELOAD"),
        Some(pre("/opt/profiler/libprof.so"))
    );
    assert_eq!(
        check::env_value(d, &main("prefill-pool"), "LD_PRELOAD"),
        None
    );
    assert_eq!(
        check::env_value(
            d,
            &keys(&["spec", "services", "prefill-pool"]),
            "LD_PRELOAD"
        ),
        None
    );
    assert_eq!(
        d.pointer("/spec/services/prefill-pool/envs/0/value"),
        Some(&json!(pre("/opt/service/libsvc.so")))
    );
    assert_eq!(
        check::env_value(d, &main("Plain"), "LD_PRELOAD").as_deref(),
        Some(PRELOAD)
    );
    assert!(
        d.pointer("/spec/services/Planner/extraPodSpec").is_none(),
        "planner untouched"
    );
    assert_eq!(seen, 10);
}

/// Renders the overlay at `dir` once per listed component with that component left out; a
/// component whose removal changes nothing matched nothing (or did nothing): an error.
fn silent_components(dir: &Path, scratch_name: &str) -> Result<(), String> {
    let full = kubectl::render(dir);
    let k = yaml::read_docs(&dir.join("kustomization.yaml"))
        .unwrap()
        .remove(0);
    let comps: Vec<String> = k["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    let tmp = scratch(scratch_name);
    let mut silent = Vec::new();
    // components/image holds a setting (the init container's image), no selector; with the
    // default image it is a no-op by design. It is tested by image_component_sets_every_init_image.
    for skip in comps.iter().filter(|c| !c.ends_with("components/image")) {
        let ab = tmp.join("ablated");
        let _ = fs::remove_dir_all(&ab);
        let mut out = k.clone();
        let rel = |p: &str| -> Value {
            let target = dir.join(p);
            if target.is_file() {
                fs::create_dir_all(&ab).unwrap();
                fs::copy(&target, ab.join(p)).unwrap();
                json!(p)
            } else {
                json!(paths::relative(&ab, &target))
            }
        };
        out["resources"] = Value::Array(
            k["resources"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| rel(r.as_str().unwrap()))
                .collect(),
        );
        out["components"] = Value::Array(
            comps
                .iter()
                .filter(|c| *c != skip)
                .map(|c| rel(c))
                .collect(),
        );
        write(
            &ab.join("kustomization.yaml"),
            &serde_json::to_string_pretty(&out).unwrap(),
        );
        if let Ok(text) = kubectl::kustomize(&ab) {
            if yaml::parse_docs(&text).unwrap() == full {
                silent.push(skip.clone());
            }
        }
    }
    if silent.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}: these components change nothing (a selector that matches nothing?): {silent:?}",
            dir.display()
        ))
    }
}

#[test]
fn every_component_of_every_overlay_changes_the_output() {
    let mut dirs: Vec<String> = xid_table::table()
        .iter()
        .map(|x| format!("xid{}", x.xid))
        .collect();
    dirs.extend(
        [
            "passthrough",
            "examples/xid79-pin-required",
            "examples/passthrough-pin-preferred",
        ]
        .map(String::from),
    );
    for d in dirs {
        silent_components(&kdir(&d), &format!("ablate-{}", d.replace('/', "-")))
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn image_component_sets_every_init_image() {
    let schemas = DgdSchemas::load();
    let tmp = scratch("image-component");
    let img = tmp.join("image");
    let text = fs::read_to_string(kdir("components/image/kustomization.yaml")).unwrap();
    let text = text.replace(
        "  newName: ghcr.io/cuda-fault/cuda-fault\n  newTag: 0.1.0",
        "  newName: registry.example.com/cf\n  newTag: 0.1.0-dev",
    );
    assert!(
        text.contains("registry.example.com/cf"),
        "components/image has the expected stanza"
    );
    write(&img.join("kustomization.yaml"), &text);
    let c = |n: &str| kdir("components").join(n);
    let ov = tmp.join("ov");
    overlay(
        &ov,
        &kdir("base"),
        &[
            c("cuda-fault"),
            c("xid79"),
            kdir("base/targets/inject"),
            img,
        ],
        None,
        None,
    );
    let base = kubectl::render(&kdir("base"));
    let expect = Expect {
        image: "registry.example.com/cf:0.1.0-dev".into(),
        ..Expect::faults_on(79)
    };
    render_checked(&ov, &base, &expect, &schemas);
}

#[test]
fn a_component_whose_selector_matches_nothing_fails() {
    let tmp = scratch("matches-nothing");
    let ov = tmp.join("ov");
    let c = |n: &str| kdir("components").join(n);
    overlay(
        &ov,
        &kdir("base"),
        &[
            c("cuda-fault"),
            c("xid79"),
            paths::fixtures_dir().join("components/matches-nothing"),
            kdir("base/targets/inject"),
        ],
        None,
        None,
    );
    // kustomize itself is silent about it...
    assert!(kubectl::kustomize(&ov).is_ok());
    // ...the check is not.
    let e = silent_components(&ov, "matches-nothing-ablate").unwrap_err();
    assert!(e.contains("matches-nothing"), "{e}");
    assert!(!e.contains("targets/inject") && !e.contains("xid79"), "{e}");
}

#[test]
fn stale_targets_fail_the_build_instead_of_inventing_services() {
    // Targets generated for another workload, used on the default base: the guards fail.
    let tmp = scratch("stale");
    let other = paths::fixtures_dir().join("workloads/dgd-v1alpha1-user");
    for (path, text) in gen::target_files(&kubectl::render(&other), "other", &tmp).unwrap() {
        write(&path, &text);
    }
    // Point the generated component at the sample DGD's name, so only the services differ.
    let inject = tmp.join("targets/inject/kustomization.yaml");
    write(
        &inject,
        &fs::read_to_string(&inject)
            .unwrap()
            .replace("name: user-graph", "name: vllm-disagg"),
    );
    let ov = tmp.join("ov");
    let c = |n: &str| kdir("components").join(n);
    overlay(
        &ov,
        &kdir("base"),
        &[c("cuda-fault"), c("xid79"), tmp.join("targets/inject")],
        None,
        None,
    );
    let e = kubectl::kustomize(&ov).unwrap_err();
    assert!(e.contains("is missing for replacement source"), "{e}");
}

#[test]
fn misordered_or_missing_components_fail_loudly() {
    let c = |n: &str| kdir("components").join(n);
    let t = kdir("base/targets/inject");
    let cases: Vec<(&str, Vec<PathBuf>, Option<&str>, &str)> = vec![
        (
            "no-xid",
            vec![c("cuda-fault"), t.clone()],
            None,
            "fieldPath `spec.env.xid` is missing",
        ),
        (
            "xid-before-template",
            vec![c("xid79"), c("cuda-fault"), t.clone()],
            None,
            "fieldPath `spec.env.xid` is missing",
        ),
        (
            "passthrough-before-xid",
            vec![c("cuda-fault"), c("passthrough"), c("xid79"), t.clone()],
            None,
            "fieldPath `spec.env.xid.name` is missing",
        ),
        (
            "no-template",
            vec![c("xid79"), t.clone()],
            None,
            "nothing selected by InjectionTemplate",
        ),
        (
            "pin-without-node",
            vec![
                c("cuda-fault"),
                c("xid79"),
                t.clone(),
                kdir("base/targets/pin-required"),
            ],
            None,
            "nothing selected by TargetNode",
        ),
    ];
    for (name, comps, node, needle) in cases {
        let ov = scratch(&format!("order-{name}"));
        overlay(&ov, &kdir("base"), &comps, node, None);
        match kubectl::kustomize(&ov) {
            Ok(_) => panic!("{name}: rendered, but must fail"),
            Err(e) => assert!(e.contains(needle), "{name}: {e}"),
        }
    }
}

#[test]
fn the_generator_refuses_what_kustomize_cannot_do_safely() {
    let dep = |env: Value, affinity: Value| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "d", "labels": {"cuda-fault/inject": "true"}},
               "spec": {"template": {"spec": {"affinity": affinity, "containers": [{"name": "c", "image": "i", "env": env}]}}}})
    };
    let e = sites::discover(&[dep(json!([{"name": "LD_PRELOAD", "valueFrom": {"configMapKeyRef": {"name": "x", "key": "y"}}}]), json!({}))]).unwrap_err();
    assert!(e.contains("valueFrom"), "{e}");
    let clash = json!({"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 99, "preference": {}}]}});
    let s = sites::discover(&[dep(json!([]), clash)]).unwrap();
    let e = gen::targets(&s, "x", "..").err().unwrap();
    assert!(e.contains("weight 99"), "{e}");
    let e = gen::targets(
        &sites::discover(&[dep(json!([]), json!({}))]).unwrap(),
        "x",
        "..",
    )
    .map(|_| ())
    .err();
    assert!(e.is_none());
    let v1 = json!({"apiVersion": "nvidia.com/v1alpha2", "kind": "DynamoGraphDeployment", "metadata": {"name": "g"}});
    assert!(sites::discover(&[v1])
        .unwrap_err()
        .contains("not supported"));
    let dotted = json!({"apiVersion": "nvidia.com/v1alpha1", "kind": "DynamoGraphDeployment", "metadata": {"name": "g"},
                        "spec": {"services": {"a.b": {"componentType": "worker"}}}});
    assert!(sites::discover(&[dotted])
        .unwrap_err()
        .contains("kustomize field path"));
}

#[test]
fn the_pin_weight_in_the_component_matches_the_generator() {
    let pin = yaml::read_docs(&kdir("components/pin-node-preferred/pin.yaml"))
        .unwrap()
        .remove(0);
    assert_eq!(
        pin.pointer("/spec/preferred/weight"),
        Some(&json!(deploy_tests::PREFERRED_WEIGHT))
    );
    let pin = yaml::read_docs(&kdir("components/pin-node-required/pin.yaml"))
        .unwrap()
        .remove(0);
    assert_eq!(
        pin.pointer("/spec/required/key"),
        Some(&json!(deploy_tests::PIN_FIELD))
    );
}

#[test]
fn the_init_container_is_hardened_and_uses_the_image_helper() {
    let t = check::template();
    let ic = &t["initContainer"];
    assert_eq!(ic["name"], "cuda-fault-install");
    assert_eq!(ic["image"], deploy_tests::IMAGE);
    assert_eq!(ic["args"], json!(["install", "/cuda-fault"]));
    assert!(
        ic.get("command").is_none(),
        "the image's entrypoint is the helper; no shell"
    );
    let sc = &ic["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["runAsUser"], 65532);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(ic["resources"]["requests"], ic["resources"]["limits"]);
    assert!(
        ic["resources"]["limits"]["cpu"].is_string()
            && ic["resources"]["limits"]["memory"].is_string()
    );
    assert_eq!(
        ic["volumeMounts"],
        json!([{"name": "cuda-fault-lib", "mountPath": "/cuda-fault"}])
    );
    assert_eq!(t["volumes"]["lib"]["emptyDir"]["sizeLimit"], "64Mi");
    assert_eq!(
        t["volumes"]["marker"]["hostPath"],
        json!({"path": "/var/lib/cuda-fault-test", "type": "DirectoryOrCreate"})
    );
    assert_eq!(
        t["volumeMounts"]["lib"],
        json!({"name": "cuda-fault-lib", "mountPath": "/cuda-fault", "readOnly": true})
    );
    assert_eq!(t["volumeMounts"]["marker"]["mountPath"], "/host-fault");
    assert_eq!(t["preload"], PRELOAD);
}
