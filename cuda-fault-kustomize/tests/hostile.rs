//! The generator's input is untrusted (a CI pipeline, a pull request, Helm output): names and
//! flag values that reach the generated file are escaped or refused, the input is read within
//! bounds of memory and time, and every refusal is one line, exit 2, nothing on stdout. Rendered
//! with the real `kubectl kustomize`.

mod support;

use std::path::Path;

use support::diff::Expect;
use support::{find, generate, Generated, Layout};

/// A refusal: exit 2, nothing on stdout, exactly one line on stderr; the line.
fn refused(g: &Generated) -> &str {
    assert_eq!(g.code, 2, "expected a refusal, got:\n{}{}", g.stdout, g.stderr);
    assert_eq!(g.stdout, "", "a refusal printed on stdout");
    assert_eq!(g.stderr.lines().count(), 1, "not one line: {:?}", g.stderr);
    assert!(g.stderr.ends_with('\n'));
    g.stderr.trim_end()
}

/// Runs the generator on raw bytes.
fn generate_bytes(input: &[u8], args: &[&str]) -> Generated {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_cuda-fault-kustomize"))
        .arg("generate")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // The generator may refuse before it reads everything (a broken pipe is then fine).
    let _ = stdin.write_all(input);
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    Generated {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// A base of one Deployment whose GPU container is named `container` (a YAML double-quoted
/// scalar, so any character can be written), in namespace `namespace`.
fn base_with(dir: &Path, name: &str, namespace: &str, container: &str) {
    let q = |s: &str| serde_json::to_string(s).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("d.yaml"),
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {}, namespace: {}}}\nspec:\n  selector: {{matchLabels: {{a: b}}}}\n  template:\n    metadata: {{labels: {{a: b}}}}\n    spec:\n      containers:\n      - name: {}\n        image: w\n        env: [{{name: LD_PRELOAD, value: {}}}]\n        resources: {{limits: {{nvidia.com/gpu: \"1\"}}}}\n",
            q(name),
            q(namespace),
            q(container),
            q(&format!("/lib/{container}.so"))
        ),
    )
    .unwrap();
    std::fs::write(dir.join("kustomization.yaml"), "resources: [d.yaml]\n").unwrap();
}

#[test]
fn a_line_break_in_a_name_never_becomes_kustomize_configuration() {
    // Each of these ends a comment line.
    for brk in ["\n", "\r", "\r\n"] {
        let dir = tempfile::tempdir().unwrap();
        let evil = format!("main{brk}namePrefix: pwned-{brk}namespace: pwned");
        base_with(&dir.path().join("app"), "w", "prod", &evil);
        let l = Layout::at(dir);
        let g = l.generate(&[]);
        assert!(
            !g.stdout.contains("\nnamePrefix") && !g.stdout.contains("\nnamespace: pwned"),
            "{brk:?}:\n{}",
            g.stdout
        );
        // Every header line is one comment line, its names escaped.
        for line in g.stdout.lines().take_while(|l| l.starts_with('#')) {
            assert_eq!(injection::text::escape(line), line, "{brk:?}");
        }
        assert!(g.stdout.contains("\n#   Deployment prod/w"), "{}", g.stdout);
        let base = support::docs(&l.base());
        let out = l.render().unwrap_or_else(|e| panic!("{brk:?}: the overlay does not build: {e}"));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0]["metadata"]["namespace"], "prod", "{brk:?}");
        assert_eq!(out[0]["metadata"]["name"], base[0]["metadata"]["name"]);
        assert_eq!(Expect::default().unexpected(&base[0], &out[0]), Vec::<String>::new(), "{brk:?}");
        // An object name or namespace that the API server would refuse is refused here (a ','
        // in one breaks kustomize's own bookkeeping; a line break would reach the header).
        let dir = tempfile::tempdir().unwrap();
        base_with(&dir.path().join("app"), &format!("w{brk}images: []"), "prod", "main");
        let base = support::kustomize(&dir.path().join("app")).unwrap();
        let e = refused(&generate(&base, &[])).to_string();
        assert!(e.ends_with(": its name is not a Kubernetes object name (a DNS-1123 subdomain), which the API server would refuse; fix the base"), "{e}");
        assert!(e.starts_with("cuda-fault-kustomize: Deployment prod/w\\"), "{e}");
    }
    let dir = tempfile::tempdir().unwrap();
    base_with(&dir.path().join("app"), "w", "a,b", "main");
    let e = refused(&generate(&support::kustomize(&dir.path().join("app")).unwrap(), &[])).to_string();
    assert_eq!(e, "cuda-fault-kustomize: Deployment a,b/w: its namespace is not a DNS-1123 label, which the API server would refuse; fix the base");
}

#[test]
fn a_line_break_only_kustomize_sees_is_refused() {
    // kustomize's YAML parser also breaks lines at NEL, LS and PS (and kubectl prints them raw):
    // read as text here, they would make the generator see other names than kustomize does.
    for (brk, code) in [("\u{85}", "0085"), ("\u{2028}", "2028"), ("\u{2029}", "2029")] {
        let dir = tempfile::tempdir().unwrap();
        base_with(&dir.path().join("app"), "w", "prod", &format!("main{brk}namePrefix: pwned-"));
        let base = support::kustomize(&dir.path().join("app")).unwrap();
        // kubectl folds a NEL into a space when it prints; LS and PS it prints as they are.
        if brk != "\u{85}" {
            let e = refused(&generate(&base, &[])).to_string();
            assert!(
                e.ends_with(&format!(
                    "holds U+{code}, a line break to kustomize's YAML parser and text to others; remove it"
                )),
                "{e}"
            );
        }
        // In a comment too, where kustomize would read what follows as configuration.
        let e = refused(&generate(&format!("# x{brk}namePrefix: pwned-\n{base}"), &[])).to_string();
        assert!(e.starts_with("cuda-fault-kustomize: input line 1 holds U+"), "{e}");
    }
}

#[test]
fn flag_values_that_reach_the_output_are_checked_before_the_input_is_read() {
    let base = Layout::new("apps").base();
    let g = generate(&base, &["--container", "bench", "--image", "img:1\nnamespace: pwned"]);
    assert_eq!(
        refused(&g),
        "cuda-fault-kustomize: --image img:1\\nnamespace: pwned: not an image reference: its tag is not [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
    );
    let g = generate(&base, &["--container", "a\nb"]);
    assert!(refused(&g).starts_with("cuda-fault-kustomize: --container a\\nb: not a container name"), "{}", g.stderr);
    let g = generate(&base, &["--container", "bench", "--pin-node", "n1\u{2028}namespace: x"]);
    assert!(refused(&g).starts_with("cuda-fault-kustomize: --pin-node n1\\u{2028}namespace: x: not a node name"));
    let g = generate(&base, &["--envfrom-without-ld-preload", "x\ry"]);
    assert!(refused(&g).starts_with("cuda-fault-kustomize: --envfrom-without-ld-preload x\\ry: not a ConfigMap"));
    let g = generate(&base, &["--pin", "required"]);
    assert_eq!(refused(&g), "cuda-fault-kustomize: --pin needs --pin-node NODE: the node to pin the injected pods to");
    // clap's own messages are one line too, naming the argument.
    let g = generate(&base, &["--faults-from-start"]);
    assert!(refused(&g).contains("--faults-from-start"), "{}", g.stderr);
    // A valid registry, port and digest pass.
    let digest = format!("localhost:5000/cuda-fault@sha256:{}", "a".repeat(64));
    let g = generate(&base, &["--container", "bench", "--image", &digest]);
    assert_eq!(g.code, 0, "{}", g.stderr);
    assert!(g.stdout.contains(&format!("Init container image: {digest}")));
}

#[test]
fn input_bounds_refuse_early_with_one_line() {
    // A linear alias amplification: one 300,000-item anchor referenced 99 times (600 KB in,
    // 30 million nodes out).
    let items: String = (0..300_000).map(|i| format!("- {}\n", i % 10)).collect();
    let refs: String = (0..99).map(|i| format!("  k{i}: *big\n")).collect();
    let amplified = format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: x}}\nbig: &big\n{items}data:\n{refs}");
    let e = refused(&generate(&amplified, &[])).to_string();
    assert!(e.contains("YAML aliases expand to more than 1000000 nodes; feed the output of kubectl kustomize"), "{e}");
    // Deep nesting, flow and compact block: 1 to 2 MB each, refused as the parser meets the
    // 129th level (a parser that looks at the whole depth for each token would take hours here).
    for deep in ["[".repeat(2 << 20), "{a: ".repeat(512 << 10), format!("{}x\n", "- ".repeat(600 << 10))] {
        let e = refused(&generate(&deep, &[])).to_string();
        assert!(e.ends_with("nested more than 128 levels deep; feed the output of kubectl kustomize"), "{e}");
    }
    // Over the size limit: refused without parsing.
    let huge = vec![b'#'; injection::stream::MAX_INPUT_BYTES + 1];
    assert_eq!(
        refused(&generate_bytes(&huge, &[])),
        "cuda-fault-kustomize: the input is larger than 64 MiB; feed the output of kubectl kustomize"
    );
}

#[test]
fn encoding_duplicates_and_lists_are_read_as_kubectl_reads_them() {
    let base = Layout::new("dgd-v1beta1").base();
    // Not UTF-8: exit 2, one line (it was an I/O error, exit 74).
    let mut latin1 = base.clone().into_bytes();
    latin1.extend_from_slice(b"# caf\xe9\n");
    let e = refused(&generate_bytes(&latin1, &[])).to_string();
    assert!(e.starts_with("cuda-fault-kustomize: the input is not UTF-8 (byte "), "{e}");
    // A byte order mark is accepted, as kubectl accepts it: the same Component.
    let plain = generate(&base, &[]);
    let bom = generate(&format!("\u{feff}{base}"), &[]);
    assert_eq!((bom.code, &bom.stdout), (0, &plain.stdout), "{}", bom.stderr);
    // Duplicate keys are refused (strict decoding), not silently the last one.
    let dup = base.replacen("kind: DynamoGraphDeployment\n", "kind: DynamoGraphDeployment\nkind: Deployment\n", 1);
    let e = refused(&generate(&dup, &[])).to_string();
    assert!(
        e.contains("a mapping has the key kind twice (strict decoding refuses it, as kubectl apply does); keep one"),
        "{e}"
    );
    // A kind: List gives its items; a refusal inside names the item and the object.
    let docs = support::docs(&base);
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": docs});
    let g = generate(&serde_json::to_string(&list).unwrap(), &[]);
    assert_eq!((g.code, &g.stdout), (0, &plain.stdout), "{}", g.stderr);
    let mut bad = list.clone();
    bad["items"][0]["spec"]["components"][1]["podTemplate"]["spec"]["volumes"] =
        serde_json::json!([{"name": "cuda-fault-shim", "emptyDir": {}}]);
    let e = refused(&generate(&serde_json::to_string(&bad).unwrap(), &[])).to_string();
    assert!(e.contains("DynamoGraphDeployment serving/llm (v1beta1): component decode (decode) already has a volume named cuda-fault-shim"), "{e}");
    let mut nameless = list;
    nameless["items"][0]["metadata"] = serde_json::json!({});
    assert_eq!(
        refused(&generate(&serde_json::to_string(&nameless).unwrap(), &[])),
        "cuda-fault-kustomize: input document 1 (a List), item 1 (DynamoGraphDeployment): it lacks apiVersion, kind or metadata.name; feed the output of kubectl kustomize"
    );
}

#[test]
fn skip_leaves_a_workload_out_and_lists_it_and_its_guard_holds() {
    let l = Layout::new("apps");
    let g = l.generate(&["--container", "bench", "--skip", "deployment/vllm.v1", "--skip", "cronjob/prod/nightly"]);
    assert!(g.stdout.contains("# Skipped:\n#   Deployment prod/vllm.v1 (--skip deployment/vllm.v1)\n#   CronJob prod/nightly (--skip cronjob/prod/nightly)\n"), "{}", g.stdout);
    assert!(
        g.stdout.contains("'--skip' deployment/vllm.v1")
            || g.stdout.contains("--skip deployment/vllm.v1 --skip cronjob/prod/nightly"),
        "the regenerate command keeps --skip: {}",
        g.stdout
    );
    let base = support::docs(&l.base());
    let out = l.render().unwrap();
    assert_eq!(find(&out, "Deployment", "vllm.v1"), find(&base, "Deployment", "vllm.v1"));
    assert_eq!(find(&out, "CronJob", "nightly"), find(&base, "CronJob", "nightly"));
    assert_ne!(find(&out, "StatefulSet", "trainer"), find(&base, "StatefulSet", "trainer"));
    // The skipped workloads are known to the guards: changing them needs no regeneration...
    l.edit("workloads.yaml", "image: vllm/vllm-openai:v0.9.0", "image: vllm/vllm-openai:v0.9.1");
    l.render().expect("a change to a skipped workload builds");
    // ... and a --skip that matches nothing is refused.
    let e = refused(&generate(&l.base(), &["--container", "bench", "--skip", "deployment/vllm"])).to_string();
    assert_eq!(e, "cuda-fault-kustomize: --skip deployment/vllm matches no workload in the input");
    let e = refused(&generate(&l.base(), &["--skip", "service/trainer"])).to_string();
    assert!(e.starts_with("cuda-fault-kustomize: --skip service/trainer: unknown kind"), "{e}");
}

#[test]
fn an_input_with_no_target_is_refused_listing_what_was_found() {
    let l = Layout::new("apps");
    let base =
        l.base().replace("nvidia.com/gpu", "example.com/fpga").replace("nvidia.com/mig-1g.10gb", "example.com/fpga");
    let e = refused(&generate(&base, &[])).to_string();
    assert!(e.starts_with("cuda-fault-kustomize: found nothing to inject into: Deployment prod/vllm.v1: no container uses a GPU (name one with --container); "), "{e}");
    assert!(e.contains("; Job prod/bench: no container uses a GPU"), "{e}");
    assert!(e.ends_with("; name the containers that use a GPU with --container NAME (for GPUs from DRA resource claims), or generate from the workloads that use one"), "{e}");
    let e = refused(&generate("apiVersion: v1\nkind: Service\nmetadata: {name: s}\n", &[])).to_string();
    assert!(e.contains("the input holds no Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, Pod or DynamoGraphDeployment"), "{e}");
}
