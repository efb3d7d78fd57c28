// Turns the real-cluster test on when KUBECONFIG is set at build time: without it the test is
// reported as ignored (see tests/real_cluster.rs and README.md, "Testing on a real cluster").
fn main() {
    println!("cargo::rustc-check-cfg=cfg(cuda_fault_kubeconfig)");
    println!("cargo::rerun-if-env-changed=KUBECONFIG");
    println!("cargo::rerun-if-changed=build.rs");
    if std::env::var_os("KUBECONFIG").is_some_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=cuda_fault_kubeconfig");
    }
}
