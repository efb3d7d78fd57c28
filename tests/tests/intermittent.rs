//! Intermittent and targeted faults: a share of calls (`percent`), reproducible (`seed`), a fixed
//! budget (`count`), chosen functions and families (`functions`), on the fake stack and NVIDIA's
//! real runtime, from the toggle file and from the environment.

use std::time::Duration;

use cuda_fault_tests::{fixture, require_real_cudart, run, scratch_dir, shim_lines, write_atomic, Run};

const T: Duration = Duration::from_secs(120);

/// draw_probe THREADS CALLS FUNC under a toggle file holding `line`.
fn draws(line: &str, threads: u32, calls: u32, func: &str, extra: &[(&str, &str)]) -> Run {
    let dir = scratch_dir("draws");
    let file = dir.join("toggle");
    write_atomic(&file, format!("{line}\n").as_bytes());
    let f = file.display().to_string();
    let mut env = vec![("CUDA_FAULT_TOGGLE_FILE", f.as_str())];
    env.extend_from_slice(extra);
    let r = run(&fixture("draw_probe"), &[&threads.to_string(), &calls.to_string(), func], &env, true, T);
    assert!(r.success(), "{}", r.describe());
    r
}

/// Each thread's "failed F of C first ..." part.
fn per_thread(r: &Run) -> Vec<String> {
    r.lines()
        .iter()
        .filter_map(|l| l.strip_prefix("thread "))
        .map(|l| l.split_once(' ').unwrap().1.to_string())
        .collect()
}

fn total(r: &Run) -> u64 {
    let last = r.lines().last().copied().unwrap_or("");
    last.strip_prefix("total ").and_then(|t| t.split(' ').next()).unwrap().parse().unwrap()
}

#[test]
fn the_same_seed_fails_the_same_calls_in_every_thread_and_every_run() {
    let a = draws("1 48 percent=10 seed=42", 4, 2000, "stream", &[]);
    let threads = per_thread(&a);
    assert_eq!(threads.len(), 4);
    assert!(threads.iter().all(|t| t == &threads[0]), "threads differ:\n{}", a.stdout);
    assert!(!threads[0].contains("first -"), "10% of 2000 calls failed none:\n{}", a.stdout);
    let b = draws("1 48 percent=10 seed=42", 4, 2000, "stream", &[]);
    assert_eq!(per_thread(&b), threads, "a second run differs");
    let c = draws("1 48 percent=10 seed=43", 4, 2000, "stream", &[]);
    assert_ne!(per_thread(&c)[0], threads[0], "another seed fails other calls");
    // The environment's seed does the same.
    let d = draws("1 48 percent=10", 1, 2000, "stream", &[("CUDA_FAULT_SEED", "42")]);
    assert_eq!(per_thread(&d)[0], threads[0]);
    assert!(a.stderr.contains("(10% of calls; seed 42; surface immediate; scope device)"), "{}", a.describe());
}

#[test]
fn without_a_seed_the_faults_on_line_prints_the_one_to_repeat_the_run_with() {
    let a = draws("1 48 percent=25", 2, 1000, "stream", &[]);
    let on = shim_lines(&a.stderr).into_iter().find(|l| l.contains("faults ON")).unwrap().to_string();
    let seed = on.split("seed ").nth(1).and_then(|s| s.split([';', ')']).next()).unwrap_or_else(|| panic!("{on}"));
    seed.parse::<u64>().unwrap();
    let b = draws(&format!("1 48 percent=25 seed={seed}"), 2, 1000, "stream", &[]);
    assert_eq!(per_thread(&b), per_thread(&a), "seed {seed} did not repeat the run");
}

#[test]
fn the_share_of_faulted_calls_over_a_million_is_within_three_sigma() {
    for p in [0.1f64, 5.0, 50.0, 99.9] {
        let n = 1_000_000f64;
        let r = draws(&format!("1 48 percent={p} seed=7"), 1, 1_000_000, "stream", &[]);
        let got = total(&r) as f64;
        let (mean, sigma) = (n * p / 100.0, (n * p / 100.0 * (1.0 - p / 100.0)).sqrt());
        assert!((got - mean).abs() <= 3.0 * sigma, "percent={p}: {got} faulted, expected {mean} ± {}", 3.0 * sigma);
    }
}

#[test]
fn count_stops_after_exactly_n_faults_across_threads_and_says_so() {
    let r = draws("1 48 count=7", 4, 1000, "stream", &[]);
    assert_eq!(total(&r), 7, "{}", r.stdout);
    assert!(
        shim_lines(&r.stderr).contains(&"[cuda-fault] count=7 reached: no more faults until the toggle changes"),
        "{}",
        r.describe()
    );
    // With a share: still exactly N, spread over more calls.
    let r = draws("1 48 percent=10 count=25 seed=3", 4, 2000, "stream", &[]);
    assert_eq!(total(&r), 25, "{}", r.stdout);
    let r = draws("1 48", 1, 100, "stream", &[("CUDA_FAULT_COUNT", "3")]);
    assert_eq!(total(&r), 3, "{}", r.stdout);
}

#[test]
fn functions_and_families_fault_only_what_they_name() {
    let dir = scratch_dir("functions");
    let toggle = dir.join("absent").display().to_string();
    let workload = |functions: &str| {
        let env = [
            ("CUDA_FAULT_TOGGLE_FILE", toggle.as_str()),
            ("CUDA_FAULT_INJECTION_ENABLED", "1"),
            ("CUDA_XID_TYPE", "48"),
            ("CUDA_FAULT_FUNCTIONS", functions),
        ];
        run(&fixture("workload"), &["3"], &env, true, T)
    };
    // A launch-only fault: device queries, allocation and copies work; the first launch fails
    // (the workload's first is a cudaLaunchKernelExC, checked directly).
    let r = workload("@launch");
    assert_eq!(r.lines(), ["devices 2", "FAIL cudaLaunchKernelExC cudaErrorECCUncorrectable 214"], "{}", r.describe());
    // Only cudaLaunchKernel, by its runtime name or the driver function the runtime calls for it:
    // its return value is ignored, and the check after it (PyTorch's cudaGetLastError) reports.
    for launch in ["cudaLaunchKernel", "cuLaunchKernel"] {
        let r = workload(launch);
        assert_eq!(
            r.lines(),
            ["devices 2", "FAIL cudaGetLastError cudaErrorECCUncorrectable 214"],
            "{launch}: {}",
            r.describe()
        );
    }
    for alloc in ["cudaMalloc", "cuMemcpy3D,@alloc"] {
        let r = workload(alloc);
        assert_eq!(
            r.lines(),
            ["devices 2", "FAIL cudaMalloc cudaErrorECCUncorrectable 214"],
            "{alloc}: {}",
            r.describe()
        );
    }
    // Functions the workload never calls: it runs clean, though faults are on.
    let r = workload("cuMemcpy3D,cudaMallocManaged");
    assert!(r.success() && r.has_line("workload ok"), "{}", r.describe());
    assert!(
        r.stderr.contains("(functions cudaMallocManaged,cuMemcpy3D; surface immediate; scope device)"),
        "{}",
        r.describe()
    );
    // Per-thread entry points share their function's name.
    let env = [
        ("CUDA_FAULT_TOGGLE_FILE", toggle.as_str()),
        ("CUDA_FAULT_INJECTION_ENABLED", "1"),
        ("CUDA_FAULT_FUNCTIONS", "cudaStreamSynchronize"),
    ];
    let r = run(&fixture("workload_ptds"), &["3"], &env, true, T);
    assert!(r.has_line("FAIL cudaStreamSynchronize_ptsz cudaErrorNoDevice 100"), "{}", r.describe());
}

#[test]
fn on_the_real_nvidia_runtime_only_the_named_functions_fault() {
    require_real_cudart(12);
    let dir = scratch_dir("functions-real");
    let toggle = dir.join("absent").display().to_string();
    let env = |functions: &'static str| {
        vec![
            ("CUDA_FAULT_TOGGLE_FILE", toggle.clone()),
            ("CUDA_FAULT_INJECTION_ENABLED", "1".to_string()),
            ("CUDA_XID_TYPE", "48".to_string()),
            ("CUDA_FAULT_FUNCTIONS", functions.to_string()),
        ]
    };
    let go = |program: &str, functions: &'static str| {
        let e = env(functions);
        let e: Vec<(&str, &str)> = e.iter().map(|(k, v)| (*k, v.as_str())).collect();
        run(&fixture(program), &[], &e, true, T)
    };
    // On the fake driver the real runtime answers 801 to everything (see driver_nvml.rs); a
    // fault confined to one function changes exactly that one line.
    let r = go("real_rt12", "cudaGetDeviceCount");
    assert_eq!(r.lines(), ["cudaGetDeviceCount 214", "cudaSetDevice 801", "cudaMalloc 801"], "{}", r.describe());
    let r = go("real_rt12", "@launch");
    assert_eq!(r.lines(), ["cudaGetDeviceCount 801", "cudaSetDevice 801", "cudaMalloc 801"], "{}", r.describe());
    // A driver function the runtime fetched through cuGetProcAddress: the runtime itself fails.
    for program in ["real_rt12", "real_rt12_static"] {
        let r = go(program, "cuInit");
        assert_eq!(
            r.lines(),
            ["cudaGetDeviceCount 214", "cudaSetDevice 214", "cudaMalloc 214"],
            "{program}: {}",
            r.describe()
        );
        assert!(r.stderr.contains("[XID 48 SIM] cuInit -> CUDA_ERROR_ECC_UNCORRECTABLE (214)"), "{}", r.describe());
    }
}
