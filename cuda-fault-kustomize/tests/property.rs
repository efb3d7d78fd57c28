//! Properties over arbitrary bytes: whatever the input and the flag values hold, the generator
//! either refuses with one line (exit 2, nothing on stdout) or writes a Component that is
//! nothing but a Component, and the overlay built with the real `kubectl kustomize` differs from
//! the base only by the documented additions.

mod support;

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use serde_json::{json, Value};
use support::diff::Expect;
use support::{find, generate, Layout};

/// Strings as an attacker would write them: arbitrary bytes, pieces of YAML syntax and line
/// breaks of every YAML version, and plain names.
fn hostile() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("\n"),
        Just("\r"),
        Just("\r\n"),
        Just("\u{85}"),
        Just("\u{2028}"),
        Just("\u{2029}"),
        Just("\u{feff}"),
        Just("\0"),
        Just("\t"),
        Just("# "),
        Just(": "),
        Just("namePrefix: pwned-"),
        Just("namespace: pwned"),
        Just("'"),
        Just("\""),
        Just("{"),
        Just("]"),
        Just("\\"),
        Just("*a"),
        Just("&a "),
        Just("!!binary "),
        Just("--- "),
        Just("a"),
        Just("-"),
        Just("."),
    ];
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 1..16).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        proptest::collection::vec(piece, 1..6).prop_map(|v| v.concat()),
        "[a-z0-9][a-z0-9.-]{0,10}[a-z0-9]",
    ]
}

fn config(cases: u32) -> Config {
    Config { cases, failure_persistence: Some(Box::new(FileFailurePersistence::Off)), ..Config::default() }
}

/// The generated text: a header of comment lines free of anything that ends a line, then a
/// Component whose top-level keys are only the Component's own.
fn check_component(text: &str) -> Result<(), TestCaseError> {
    for line in text.lines().take_while(|l| l.starts_with('#')) {
        prop_assert_eq!(injection::text::escape(line), line);
    }
    let doc: Value = serde_norway::from_str(text).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let keys: std::collections::BTreeSet<&str> = doc.as_object().unwrap().keys().map(String::as_str).collect();
    prop_assert_eq!(keys, ["apiVersion", "configMapGenerator", "kind", "patches", "replacements"].into());
    prop_assert_eq!(&doc["kind"], "Component");
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    /// Arbitrary bytes spliced anywhere into a real base, and arbitrary bytes alone: never a
    /// panic, never a second line in a refusal, and what is written is only a Component.
    #[test]
    fn any_input_is_refused_in_one_line_or_gives_only_a_component(
        splice in proptest::collection::vec(any::<u8>(), 0..24),
        at in any::<prop::sample::Index>(),
        alone in any::<bool>(),
    ) {
        static BASE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let base = BASE.get_or_init(|| Layout::new("apps").base());
        let input = if alone {
            splice.clone()
        } else {
            let mut b = base.clone().into_bytes();
            let i = at.index(b.len() + 1);
            b.splice(i..i, splice.iter().copied());
            b
        };
        let opts = injection::Options { containers: vec!["bench".into()], ..Default::default() };
        let result = injection::stream::text(&input).and_then(|t| cuda_fault_kustomize::generate(t, &opts));
        match result {
            Err(e) => prop_assert!(!injection::text::has_control(&e.0), "{:?}", e.0),
            Ok(g) => check_component(&g.text)?,
        }
    }
}

proptest! {
    #![proptest_config(config(64))]

    /// Names, values and flags from [`hostile`] in a Deployment rendered by kubectl: the
    /// generator refuses in one line, or the overlay builds to the base plus our additions, with
    /// every name and namespace as it was.
    #[test]
    fn hostile_names_and_flags_render_to_the_base_plus_the_injection(
        name in hostile(),
        namespace in hostile(),
        container in hostile(),
        preload in hostile(),
        annotation in hostile(),
        image in prop_oneof![1 => hostile(), 2 => Just("registry.example/cuda-fault:1".to_string())],
        node in prop_oneof![1 => hostile(), 2 => Just("gpu-1".to_string())],
    ) {
        // A command line cannot hold a NUL byte.
        let (image, node) = (image.replace('\0', ""), node.replace('\0', ""));
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path().join("app");
        std::fs::create_dir_all(&app).unwrap();
        let deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "annotations": {"note": annotation}},
            "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {
                "containers": [{"name": container, "image": "w", "env": [{"name": "LD_PRELOAD", "value": preload}],
                                "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}}
        });
        // JSON is YAML: any string is written as a double-quoted scalar.
        std::fs::write(app.join("d.yaml"), serde_json::to_string(&deployment).unwrap()).unwrap();
        std::fs::write(app.join("kustomization.yaml"), "resources: [d.yaml]\n").unwrap();
        let l = Layout::at(dir);
        let Ok(base) = support::kustomize(&l.path("app")) else {
            // kubectl itself refuses this base: nothing reaches the generator.
            return Ok(());
        };
        let g = generate(&base, &[&format!("--image={image}"), &format!("--pin-node={node}"), "--pin", "required"]);
        if g.code != 0 {
            prop_assert_eq!(g.code, 2, "{}", g.stderr);
            prop_assert_eq!(&g.stdout, "");
            prop_assert_eq!(g.stderr.lines().count(), 1, "{:?}", g.stderr);
            return Ok(());
        }
        check_component(&g.stdout)?;
        std::fs::write(l.path("app-cuda-fault/kustomization.yaml"), &g.stdout).unwrap();
        let base = support::docs(&base);
        let out = l.render().map_err(|e| TestCaseError::fail(format!("the overlay does not build: {e}")))?;
        prop_assert_eq!(out.len(), base.len());
        let b = &base[0];
        let o = find(&out, "Deployment", b["metadata"]["name"].as_str().unwrap());
        prop_assert_eq!(&o["metadata"]["namespace"], &b["metadata"]["namespace"]);
        let expect = Expect { image: image.clone(), node: Some(node.clone()), ..Expect::default() };
        let extra = expect.unexpected(b, o);
        prop_assert!(extra.is_empty(), "{:?}", extra);
        // The injection is there: the preload prefixed, the init container with the image.
        let spec = &o["spec"]["template"]["spec"];
        prop_assert_eq!(&spec["initContainers"][0]["image"], &json!(image));
        prop_assert!(spec["containers"][0]["env"][0]["value"].as_str().unwrap().starts_with(support::diff::PRELOAD));
    }
}
