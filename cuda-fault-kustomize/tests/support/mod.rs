//! Shared by the render tests: kubectl, the generator binary, directory layouts like a user's,
//! and the validators.

#![allow(dead_code)]

pub mod crd;
pub mod diff;
pub mod openapi;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;
use serde_json::Value;

const MISSING: &str = "kubectl is not on PATH: these tests render with `kubectl kustomize` (kustomize v5 built in); \
install kubectl 1.27 or newer. They fail, never skip, without it";

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace").to_path_buf()
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// `kubectl kustomize DIR`: the output, or kubectl's error (one line).
pub fn kustomize(dir: &Path) -> Result<String, String> {
    let out = Command::new("kubectl").arg("kustomize").arg(dir).output().unwrap_or_else(|e| panic!("{MISSING} ({e})"));
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).expect("UTF-8"))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Renders a directory that must build.
pub fn render(dir: &Path) -> Vec<Value> {
    docs(&kustomize(dir).unwrap_or_else(|e| panic!("kubectl kustomize {}: {e}", dir.display())))
}

pub fn docs(text: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).expect("YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

/// The one object of `kind` named `name` in `docs`.
pub fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind && d["metadata"]["name"] == name).collect();
    assert_eq!(found.len(), 1, "{kind} {name}: {} found", found.len());
    found[0]
}

/// What the generator printed and said.
pub struct Generated {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cuda-fault-kustomize generate ARGS` with `input` on stdin.
pub fn generate(input: &str, args: &[&str]) -> Generated {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_cuda-fault-kustomize"))
        .arg("generate")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run cuda-fault-kustomize");
    // The generator may refuse before it reads everything (a broken pipe is then fine).
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    let out = child.wait_with_output().unwrap();
    Generated {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// A user's layout in a temporary directory: `app/` (their base, copied from a fixture),
/// `app-cuda-fault/` (the generated Component) and `overlay/` (`resources: [../app]`,
/// `components: [../app-cuda-fault]`, plus anything extra).
pub struct Layout {
    pub dir: tempfile::TempDir,
}

impl Layout {
    pub fn new(fixture_name: &str) -> Layout {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&fixture(fixture_name), &dir.path().join("app"));
        std::fs::create_dir_all(dir.path().join("app-cuda-fault")).unwrap();
        let l = Layout { dir };
        l.overlay("");
        l
    }

    /// A layout whose `app/` the caller wrote into `dir`.
    pub fn at(dir: tempfile::TempDir) -> Layout {
        std::fs::create_dir_all(dir.path().join("app-cuda-fault")).unwrap();
        let l = Layout { dir };
        l.overlay("");
        l
    }

    pub fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    /// The base as the user renders it for the generator.
    pub fn base(&self) -> String {
        kustomize(&self.path("app")).unwrap_or_else(|e| panic!("the base: {e}"))
    }

    /// Generates the Component from the base; panics unless it succeeds.
    pub fn generate(&self, args: &[&str]) -> Generated {
        let g = generate(&self.base(), args);
        assert_eq!(g.code, 0, "generate {args:?}: {}", g.stderr);
        std::fs::write(self.path("app-cuda-fault/kustomization.yaml"), &g.stdout).unwrap();
        g
    }

    /// Writes the overlay with `extra` YAML appended.
    pub fn overlay(&self, extra: &str) {
        std::fs::create_dir_all(self.path("overlay")).unwrap();
        std::fs::write(
            self.path("overlay/kustomization.yaml"),
            format!("resources: [../app]\ncomponents: [../app-cuda-fault]\n{extra}"),
        )
        .unwrap();
    }

    pub fn render(&self) -> Result<Vec<Value>, String> {
        kustomize(&self.path("overlay")).map(|t| docs(&t))
    }

    /// Edits a file of the base.
    pub fn edit(&self, file: &str, from: &str, to: &str) {
        let p = self.path("app").join(file);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains(from), "{file} has no {from:?}");
        std::fs::write(&p, text.replacen(from, to, 1)).unwrap();
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Every object validated: built-in kinds through k8s-openapi, DGDs against the CRDs.
pub fn validate_all(docs: &[Value]) {
    let crds = crd::Crds::load();
    let errors: Vec<String> = docs
        .iter()
        .filter_map(|d| {
            let r = if d["kind"] == "DynamoGraphDeployment" { crds.validate(d) } else { openapi::roundtrip(d) };
            r.err().map(|e| format!("{} {}: {e}", d["kind"], d["metadata"]["name"]))
        })
        .collect();
    assert!(errors.is_empty(), "invalid objects:\n{}", errors.join("\n"));
}
