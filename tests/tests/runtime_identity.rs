//! Which loaded library is the CUDA runtime is told by what it is (it exports the runtime's
//! entry points), never by its file name: a runtime vendored under a hashed name (as pip wheels
//! carry it) or copied under any other name is judged once per application call, like the
//! runtime under its usual name; a library that is merely named `libcudart.so.*` is an ordinary
//! caller whose own driver calls fault like anyone's.

use std::time::Duration;

use cuda_fault_tests::{fixture, require_real_cudart, run, scratch_dir, shim_lines, Run};

const T: Duration = Duration::from_secs(120);

/// The environment of a fault on from the start (no toggle file), XID 48, plus `scenario`.
fn faults_on<'a>(toggle: &'a str, scenario: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env =
        vec![("CUDA_FAULT_TOGGLE_FILE", toggle), ("CUDA_FAULT_INJECTION_ENABLED", "1"), ("CUDA_XID_TYPE", "48")];
    env.extend_from_slice(scenario);
    env
}

/// draw_probe_vendored's "total F" (the calls that failed).
fn total(r: &Run) -> u64 {
    let last = r.lines().last().copied().unwrap_or("");
    let t = last.strip_prefix("total ").and_then(|t| t.split(' ').next());
    t.and_then(|t| t.parse().ok()).unwrap_or_else(|| panic!("no total line:\n{}", r.describe()))
}

fn real_runtime_lines(codes: [u32; 3]) -> Vec<String> {
    ["cudaGetDeviceCount", "cudaSetDevice", "cudaMalloc"].iter().zip(codes).map(|(f, c)| format!("{f} {c}")).collect()
}

#[test]
fn a_runtime_vendored_under_a_hashed_name_is_judged_once_per_application_call() {
    let dir = scratch_dir("vendored");
    let toggle = dir.join("absent").display().to_string();
    let probe = fixture("draw_probe_vendored");
    // Every cudaStreamQuery of the vendored (fake) runtime makes driver calls of its own: judged
    // again, a 50% share would fail 75% of the application's calls.
    let n = 20_000u32;
    let r =
        run(&probe, &["1", &n.to_string(), "stream"], &faults_on(&toggle, &[("CUDA_FAULT_PERCENT", "50")]), true, T);
    assert!(r.success(), "{}", r.describe());
    let (got, mean, sigma) = (total(&r) as f64, f64::from(n) / 2.0, (f64::from(n) / 4.0).sqrt());
    assert!(
        (got - mean).abs() <= 3.0 * sigma,
        "percent=50 failed {got} of {n} calls (expected {mean} ± {})",
        3.0 * sigma
    );
    // after_calls counts the application's calls: exactly the first 100 pass.
    let r = run(&probe, &["1", "200", "stream"], &faults_on(&toggle, &[("CUDA_FAULT_AFTER_CALLS", "100")]), true, T);
    let first: Vec<String> = (100..140).map(|i| i.to_string()).collect();
    assert!(
        r.has_line(&format!("thread 0 failed 100 of 200 first {}", first.join(","))),
        "after_calls=100: {}",
        r.describe()
    );
    // count: exactly N of the application's calls.
    let r = run(&probe, &["1", "200", "stream"], &faults_on(&toggle, &[("CUDA_FAULT_COUNT", "7")]), true, T);
    assert_eq!(total(&r), 7, "{}", r.describe());
}

#[test]
fn nvidias_runtime_vendored_under_a_hashed_name_passes_its_own_driver_calls_for_a_passed_call() {
    require_real_cudart(12);
    let dir = scratch_dir("vendored-real");
    let toggle = dir.join("absent").display().to_string();
    let program = fixture("real_rt12_vendored");
    let bare = run(&program, &[], &[("CUDA_FAULT_TOGGLE_FILE", toggle.as_str())], false, T);
    let off = run(&program, &[], &[("CUDA_FAULT_TOGGLE_FILE", toggle.as_str())], true, T);
    assert_eq!(bare.lines(), real_runtime_lines([801, 801, 801]), "{}", bare.describe());
    assert_eq!((off.status, &off.stdout, &off.stderr), (bare.status, &bare.stdout, &bare.stderr));
    // The first application call passes, and with it the cuInit the runtime makes for it (on the
    // fake driver the runtime then answers 801); the next two fault. XID 79, which loses the GPU,
    // faults the device queries too (48 leaves them working).
    let lost = [("CUDA_FAULT_AFTER_CALLS", "1"), ("CUDA_XID_TYPE", "79")];
    let r = run(&program, &[], &faults_on(&toggle, &lost), true, T);
    assert_eq!(r.lines(), real_runtime_lines([801, 100, 100]), "{}", r.describe());
    assert!(!r.stderr.contains("[XID 79 SIM] cuInit"), "the runtime's own cuInit was judged:\n{}", r.describe());
}

#[test]
fn nvidias_runtime_copied_under_another_name_and_loaded_locally_is_faulted_through_dlsym() {
    let rt = require_real_cudart(12);
    let dir = scratch_dir("renamed-real");
    let toggle = dir.join("absent").display().to_string();
    // A Python extension's bundled copy, under a name that says nothing about CUDA.
    let copy = dir.join("libbundled_rt.so");
    std::fs::copy(rt.join("lib/libcudart.so.12"), &copy).unwrap();
    let copy = copy.display().to_string();
    let program = fixture("rt_dlopen");
    let bare = run(&program, &[&copy], &[("CUDA_FAULT_TOGGLE_FILE", toggle.as_str())], false, T);
    let off = run(&program, &[&copy], &[("CUDA_FAULT_TOGGLE_FILE", toggle.as_str())], true, T);
    assert_eq!(bare.lines(), real_runtime_lines([801, 801, 801]), "{}", bare.describe());
    assert_eq!((off.status, &off.stdout, &off.stderr), (bare.status, &bare.stdout, &bare.stderr));
    let r = run(&program, &[&copy], &faults_on(&toggle, &[("CUDA_FAULT_FUNCTIONS", "cudaGetDeviceCount")]), true, T);
    assert_eq!(r.lines(), real_runtime_lines([214, 801, 801]), "{}", r.describe());
    assert!(
        shim_lines(&r.stderr).contains(&"[XID 48 SIM] cudaGetDeviceCount -> cudaErrorECCUncorrectable (214)"),
        "{}",
        r.describe()
    );
    let lost = [("CUDA_FAULT_AFTER_CALLS", "1"), ("CUDA_XID_TYPE", "79")];
    let r = run(&program, &[&copy], &faults_on(&toggle, &lost), true, T);
    assert_eq!(r.lines(), real_runtime_lines([801, 100, 100]), "{}", r.describe());
}

#[test]
fn a_vendored_runtime_in_a_local_scope_is_found_for_the_shims_exports() {
    // An extension module linked to its vendored runtime, loaded with RTLD_LOCAL: its runtime
    // calls reach the shim's exports, whose real functions are only in that local scope.
    let dir = scratch_dir("vendored-plugin");
    let toggle = dir.join("absent").display().to_string();
    let plugin = fixture("libplugin_vendored.so").display().to_string();
    let env = [("CUDA_FAULT_TOGGLE_FILE", toggle.as_str())];
    let bare = run(&fixture("plugin_host"), &[&plugin], &env, false, T);
    assert!(bare.has_line("plugin ok"), "{}", bare.describe());
    let off = run(&fixture("plugin_host"), &[&plugin], &env, true, T);
    assert_eq!((off.status, &off.stdout, &off.stderr), (bare.status, &bare.stdout, &bare.stderr));
    let on = run(&fixture("plugin_host"), &[&plugin], &faults_on(&toggle, &[("CUDA_XID_TYPE", "79")]), true, T);
    assert_eq!(on.lines(), ["FAIL cudaGetDeviceCount cudaErrorNoDevice 100"], "{}", on.describe());
    // XID 48 leaves the device queries working: the plugin's first allocation meets it.
    let on = run(&fixture("plugin_host"), &[&plugin], &faults_on(&toggle, &[]), true, T);
    assert_eq!(on.lines(), ["plugin devices 2", "FAIL cudaMalloc cudaErrorECCUncorrectable 214"], "{}", on.describe());
}

#[test]
fn a_library_merely_named_like_the_runtime_is_faulted_as_any_caller() {
    let dir = scratch_dir("decoy");
    let toggle = dir.join("absent").display().to_string();
    let n = 20_000u32;
    let r = run(
        &fixture("decoy_probe"),
        &[&n.to_string()],
        &faults_on(&toggle, &[("CUDA_FAULT_PERCENT", "50"), ("CUDA_FAULT_SEED", "11")]),
        true,
        T,
    );
    assert!(r.success(), "{}", r.describe());
    let line = r.lines().into_iter().find_map(|l| l.strip_prefix("decoy failed ").map(str::to_string));
    let failed: f64 = line
        .as_deref()
        .and_then(|l| l.split(' ').next())
        .and_then(|f| f.parse().ok())
        .unwrap_or_else(|| panic!("{}", r.describe()));
    let (mean, sigma) = (f64::from(n) / 2.0, (f64::from(n) / 4.0).sqrt());
    assert!(
        (failed - mean).abs() <= 3.0 * sigma,
        "the decoy's own driver calls: {failed} of {n} faulted at percent=50 (expected {mean} ± {})",
        3.0 * sigma
    );
}
