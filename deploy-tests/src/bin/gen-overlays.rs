//! Writes the generated files under kustomize/ (the per-XID components and overlays, the
//! passthrough overlay, and kustomize/base/targets/ from the base's workloads).
//!
//!   cargo run -p deploy-tests --bin gen-overlays            write them
//!   cargo run -p deploy-tests --bin gen-overlays -- --check  exit 1 if any differs
//!
//! Needs kubectl (it renders kustomize/base). Run it after editing kustomize/base or the XID table.

use std::process::ExitCode;

fn main() -> ExitCode {
    let check = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--check") => true,
        Some(a) => {
            eprintln!("gen-overlays: unknown argument {a:?}; usage: gen-overlays [--check]");
            return ExitCode::from(2);
        }
    };
    let files = match deploy_tests::gen::repo_files() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("gen-overlays: {e}");
            return ExitCode::FAILURE;
        }
    };
    let root = deploy_tests::paths::repo_root();
    let mut differ = 0;
    for (path, text) in &files {
        let shown = path.strip_prefix(&root).unwrap_or(path).display();
        if std::fs::read_to_string(path).ok().as_deref() == Some(text.as_str()) {
            continue;
        }
        differ += 1;
        if check {
            eprintln!("differs: {shown}");
        } else {
            if let Err(e) = std::fs::create_dir_all(path.parent().unwrap())
                .and_then(|_| std::fs::write(path, text))
            {
                eprintln!("gen-overlays: {shown}: {e}");
                return ExitCode::FAILURE;
            }
            println!("wrote {shown}");
        }
    }
    for dir in deploy_tests::gen::stale_dirs() {
        let shown = dir
            .strip_prefix(&root)
            .unwrap_or(&dir)
            .display()
            .to_string();
        differ += 1;
        if check {
            eprintln!("stale (no longer in the XID table): {shown}");
        } else if let Err(e) = std::fs::remove_dir_all(&dir) {
            eprintln!("gen-overlays: removing {shown}: {e}");
            return ExitCode::FAILURE;
        } else {
            println!("removed {shown}");
        }
    }
    if check && differ > 0 {
        eprintln!("{differ} generated file(s) out of date: run `cargo run -p deploy-tests --bin gen-overlays`");
        return ExitCode::FAILURE;
    }
    if differ == 0 {
        println!("{} generated files are up to date", files.len());
    }
    ExitCode::SUCCESS
}
