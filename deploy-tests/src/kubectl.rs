//! `kubectl kustomize`, through `std::process::Command`.
//!
//! kubectl is a hard requirement of these tests: when it is missing they FAIL with a message
//! that says so (CI installs it and checks for it); they never skip.

use std::path::Path;
use std::process::Command;

const MISSING: &str = "kubectl was not found on PATH. The deploy-tests render every kustomize \
overlay with `kubectl kustomize` (kustomize v5 built in); install kubectl (v1.27 or newer) and \
run the tests again. They fail rather than skip without it.";

fn run(args: &[&str]) -> std::process::Output {
    match Command::new("kubectl").args(args).output() {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{MISSING}"),
        Err(e) => panic!("could not run kubectl: {e}. {MISSING}"),
    }
}

/// `kubectl kustomize DIR`: the rendered YAML, or kubectl's error output.
pub fn kustomize(dir: &Path) -> Result<String, String> {
    let out = run(&["kustomize", &dir.to_string_lossy()]);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "kubectl kustomize {} failed ({}): {}",
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Renders and parses; panics with kubectl's message on failure.
pub fn render(dir: &Path) -> Vec<serde_json::Value> {
    let text = kustomize(dir).unwrap_or_else(|e| panic!("{e}"));
    crate::yaml::parse_docs(&text)
        .unwrap_or_else(|e| panic!("output of kubectl kustomize {}: {e}", dir.display()))
}

/// The kustomize version built into kubectl, e.g. (5, 5, 0). Panics when kubectl is missing.
pub fn kustomize_version() -> Result<(u32, u32, u32), String> {
    let out = run(&["version", "--client"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("Kustomize Version:"))
        .ok_or_else(|| {
            format!("`kubectl version --client` printed no Kustomize Version: {text}")
        })?;
    let v = line.trim().trim_start_matches('v');
    let mut it = v
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>());
    match (it.next(), it.next(), it.next()) {
        (Some(Ok(a)), Some(Ok(b)), Some(Ok(c))) => Ok((a, b, c)),
        _ => Err(format!("cannot parse kustomize version {line:?}")),
    }
}
