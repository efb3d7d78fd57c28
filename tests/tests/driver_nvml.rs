//! Faults every CUDA consumer sees: the real NVIDIA runtime (shared 12 and 13, static
//! 12) on the fake driver, programs that reach the driver through dlopen + dlsym or -lcuda, NVML
//! (linked, dlopen, and the real pynvml), dlsym correctness, and cuGetProcAddress coverage.

use std::collections::BTreeSet;
use std::time::Duration;

use cuda_fault_tests::{
    fixture, immediate_driver_code, require_real_cudart, run, run_pynvml_probe, scratch_dir, shim_lines,
    triton_like_launch_line, triton_like_under, Run,
};

const T: Duration = Duration::from_secs(30);

fn env_off(toggle: &str) -> Vec<(&str, &str)> {
    vec![("CUDA_FAULT_TOGGLE_FILE", toggle)]
}

fn env_on<'a>(toggle: &'a str, xid: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![("CUDA_FAULT_TOGGLE_FILE", toggle), ("CUDA_FAULT_INJECTION_ENABLED", "1"), ("CUDA_XID_TYPE", xid)]
}

/// Same status, stdout and stderr with the shim (faults off) as without it.
fn assert_passthrough(program: &str, args: &[&str], toggle: &str) -> Run {
    let bare = run(&fixture(program), args, &env_off(toggle), false, T);
    let shim = run(&fixture(program), args, &env_off(toggle), true, T);
    assert_eq!(
        (shim.status, &shim.stdout, &shim.stderr),
        (bare.status, &bare.stdout, &bare.stderr),
        "{program} differs under the shim with faults off:\n{}",
        shim.describe()
    );
    bare
}

#[test]
fn the_real_nvidia_runtime_shared_and_static_fails_with_each_xids_error() {
    require_real_cudart(12);
    require_real_cudart(13);
    let dir = scratch_dir("real-runtime");
    let toggle = dir.join("absent").display().to_string();
    for program in ["real_rt12", "real_rt13", "real_rt12_static"] {
        let reference = assert_passthrough(program, &[], &toggle);
        // The real runtime needs private driver tables the fake cannot give; without the shim it
        // stops after cuInit with cudaErrorNotSupported. That is the reference faults-off answer.
        assert_eq!(reference.lines(), ["cudaGetDeviceCount 801", "cudaSetDevice 801", "cudaMalloc 801"], "{program}");
        for row in xid_table::table() {
            let xid = row.xid.to_string();
            let r = run(&fixture(program), &[], &env_on(&toggle, &xid), true, T);
            let c = row.runtime.code;
            // An asynchronous XID shows at a synchronize after a launch: this program makes none.
            // One that keeps the GPU leaves the device count to the runtime (801 here). The
            // static runtime is reached only through the driver, where it starts with cuInit:
            // only an XID that loses the GPU fails that.
            let statik = program.ends_with("_static");
            let want = match (row.surface, row.lost) {
                (_, true) => [c; 3],
                (xid_table::Surface::Immediate, false) if !statik => [801, c, c],
                _ => [801; 3],
            };
            assert_eq!(
                r.lines(),
                [
                    format!("cudaGetDeviceCount {}", want[0]),
                    format!("cudaSetDevice {}", want[1]),
                    format!("cudaMalloc {}", want[2])
                ],
                "{program} XID {xid}:\n{}",
                r.describe()
            );
        }
    }
}

#[test]
fn the_static_runtime_is_reached_through_the_driver() {
    // libcudart_static.a is inside the executable: no cuda* symbol can be interposed, so the
    // fault must come from the driver entry points the runtime fetched via cuGetProcAddress.
    require_real_cudart(12);
    let dir = scratch_dir("static-runtime");
    let toggle = dir.join("absent").display().to_string();
    let r = run(&fixture("real_rt12_static"), &[], &env_on(&toggle, "79"), true, T);
    assert!(r.stderr.contains("[XID 79 SIM] cuInit -> CUDA_ERROR_NO_DEVICE (100)"), "{}", r.describe());
    assert!(!r.stderr.contains("[XID 79 SIM] cuda"), "runtime symbols cannot be reached here:\n{}", r.describe());
}

#[test]
fn a_triton_shaped_program_using_dlopen_and_dlsym_sees_driver_faults() {
    let dir = scratch_dir("triton");
    let toggle = dir.join("absent").display().to_string();
    let bare = assert_passthrough("triton_like", &[], &toggle);
    assert_eq!(bare.lines(), ["cuInit 0", "count 2", "ctx 0", "launch 0", "kernel ok"]);
    for row in xid_table::table() {
        let xid = row.xid.to_string();
        let r = run(&fixture("triton_like"), &[], &env_on(&toggle, &xid), true, T);
        assert_eq!(r.lines(), triton_like_under(&row), "XID {xid}:\n{}", r.describe());
        let sim = triton_like_launch_line(&row);
        assert!(r.stderr.lines().any(|l| l == sim), "{}", r.describe());
    }
}

#[test]
fn a_program_linked_with_lcuda_sees_faults_on_every_call_but_pure_lookups() {
    let dir = scratch_dir("lcuda");
    let toggle = dir.join("absent").display().to_string();
    let bare = assert_passthrough("driver_linked", &[], &toggle);
    assert!(bare.has_line("data ok"), "{}", bare.describe());
    for xid in ["79", "48", "74"] {
        let row = xid_table::find(xid.parse().unwrap()).unwrap();
        // Every call fails at once (74 is asynchronous by default; its immediate form here).
        let mut env = env_on(&toggle, xid);
        env.push(("CUDA_FAULT_SURFACE", "immediate"));
        let r = run(&fixture("driver_linked"), &[], &env, true, T);
        let calls: Vec<&str> = r.lines().into_iter().filter(|l| l.contains(' ') && !l.starts_with("data")).collect();
        assert_eq!(calls.len(), bare.lines().len() - 1, "{}", r.describe());
        for line in calls {
            let (name, code) = line.split_once(' ').unwrap();
            assert_eq!(code, immediate_driver_code(&row, name).to_string(), "{line} for XID {xid}");
        }
        assert!(r.has_line("data bad"), "{}", r.describe());
        assert!(r.stderr.contains(&format!("[XID {xid} SIM] cuLaunchKernel_ptsz -> ")), "{}", r.describe());
        assert!(r.stderr.contains(&format!("[XID {xid} SIM] cuGraphLaunch -> ")), "{}", r.describe());
    }
}

#[test]
fn nvml_linked_and_dlopened_reports_the_gpu_lost_for_79_and_is_untouched_for_xids_without_nvml_effect() {
    let dir = scratch_dir("nvml");
    let toggle = dir.join("absent").display().to_string();
    for program in ["nvml_probe", "nvml_dlopen_probe"] {
        let bare = assert_passthrough(program, &[], &toggle);
        for row in xid_table::table() {
            let xid = row.xid.to_string();
            let r = run(&fixture(program), &[], &env_on(&toggle, &xid), true, T);
            match row.nvml {
                None => assert_eq!(r.stdout, bare.stdout, "{program} XID {xid} must leave NVML alone"),
                Some(e) if row.lost => {
                    for line in r.lines() {
                        let (name, code) = line.split_once(' ').unwrap();
                        // nvmlShutdown is never faulted; after a refused init it reports
                        // NVML_ERROR_UNINITIALIZED, as the real library does.
                        let want = if name == "nvmlShutdown" { 1 } else { e.code };
                        assert_eq!(code, want.to_string(), "{program} XID {xid}: {line}");
                    }
                    assert!(r.stdout.contains(&format!("nvmlDeviceGetCount_v2 {}", e.code)));
                    if program == "nvml_dlopen_probe" {
                        assert!(r.has_line(&format!("nvmlInit {}", e.code)), "{}", r.describe());
                    }
                }
                // The GPU is still there: NVML starts and counts it; the device's calls fail.
                Some(e) => {
                    for line in r.lines().into_iter().filter(|l| !l.starts_with("count ")) {
                        let (name, code) = line.split_once(' ').unwrap();
                        let device_call = name.starts_with("nvmlDeviceGetHandle") || name == "nvmlDeviceGetName";
                        let want = if device_call { e.code } else { 0 };
                        assert_eq!(code, want.to_string(), "{program} XID {xid}: {line}");
                    }
                    assert!(r.has_line("count 2"), "{}", r.describe());
                }
            }
        }
    }
}

#[test]
fn the_real_pynvml_client_sees_a_lost_gpu() {
    let dir = scratch_dir("pynvml");
    let toggle = dir.join("absent").display().to_string();
    let bare = run_pynvml_probe(&env_off(&toggle), false, T);
    assert_eq!(
        bare.lines(),
        ["nvmlInit ok", "count 2", "handle ok", "name Fake GPU 0", "shutdown ok"],
        "{}",
        bare.describe()
    );
    let off = run_pynvml_probe(&env_off(&toggle), true, T);
    assert_eq!((off.status, &off.stdout, &off.stderr), (bare.status, &bare.stdout, &bare.stderr));
    let on = run_pynvml_probe(&env_on(&toggle, "79"), true, T);
    assert_eq!(
        on.lines(),
        ["nvmlInit error 15", "count error 15", "handle error 15", "name skipped", "shutdown error 1"],
        "{}",
        on.describe()
    );
    assert!(on.stderr.contains("[XID 79 SIM] nvmlInitWithFlags -> NVML_ERROR_GPU_IS_LOST (15)"), "{}", on.describe());
    let ecc = run_pynvml_probe(&env_on(&toggle, "48"), true, T);
    assert_eq!(ecc.stdout, bare.stdout, "XID 48 has no NVML effect");
}

#[test]
fn dlsym_rtld_next_interposers_and_missing_symbols_behave_as_without_the_shim() {
    let dir = scratch_dir("dlsym");
    let toggle = dir.join("absent").display().to_string();
    let counter = fixture("libmalloc_counter.so").display().to_string();
    let mut env = env_off(&toggle);
    env.push(("LD_PRELOAD", counter.as_str()));
    let bare = run(&fixture("dlsym_probe"), &[], &env, false, T);
    assert_eq!(
        bare.lines(),
        ["counter>0 yes", "missing NULL", "dlerror mentions name yes", "next printf yes"],
        "{}",
        bare.describe()
    );
    let shim = run(&fixture("dlsym_probe"), &[], &env, true, T);
    assert_eq!((shim.status, &shim.stdout, &shim.stderr), (bare.status, &bare.stdout, &bare.stderr));
}

/// (name, version, flags) requests a runtime makes through cuGetProcAddress_v2 at start-up.
fn requests_of(program: &str, log: &std::path::Path, toggle: &str) -> BTreeSet<(String, String, String)> {
    let _ = std::fs::remove_file(log);
    let l = log.display().to_string();
    let env = [("CUDA_FAULT_TOGGLE_FILE", toggle), ("FAKE_CUDA_ANY_SYMBOL", "1"), ("FAKE_CUDA_LOG_GPA", l.as_str())];
    let r = run(&fixture(program), &[], &env, true, T);
    assert_eq!(r.status, 0, "{}", r.describe());
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let mut w = l.split(' ');
            let (n, v, f) = (w.next()?, w.next()?, w.next()?);
            (!n.is_empty()).then(|| (n.to_string(), v.to_string(), f.to_string()))
        })
        .collect()
}

#[test]
fn every_entry_point_the_real_runtimes_fetch_is_wrapped_or_documented_exempt() {
    require_real_cudart(12);
    require_real_cudart(13);
    let dir = scratch_dir("coverage");
    let toggle = dir.join("absent").display().to_string();
    let exempt = ["cuGetErrorString", "cuGetErrorName", "cuDriverGetVersion", "cuGetExportTable"];
    for (program, at_least) in [("real_rt12", 400), ("real_rt13", 470)] {
        let requests = requests_of(program, &dir.join(format!("{program}.log")), &toggle);
        assert!(requests.len() >= at_least, "{program}: only {} requests", requests.len());
        let queries: Vec<String> = requests.iter().map(|(n, v, f)| format!("{n},{v},{f}")).collect();
        let q: Vec<&str> = queries.iter().map(String::as_str).collect();
        let r = run(
            &fixture("gpa_probe"),
            &q,
            &[("CUDA_FAULT_TOGGLE_FILE", toggle.as_str()), ("FAKE_CUDA_ANY_SYMBOL", "1")],
            true,
            T,
        );
        assert!(r.success(), "{}", r.describe());
        let (mut wrapped, mut unwrapped) = (0, Vec::new());
        let mut ptsz = 0;
        for line in r.lines() {
            // <name> <version> <flags> <rc> <status> <symbol> <object> <address>
            let w: Vec<&str> = line.split(' ').collect();
            let (name, flags, rc, symbol, object) = (w[0], w[2], w[3], w[5], w[6]);
            if rc != "0" {
                continue; // the fake driver has no such version: nothing handed out
            }
            if name == "cuGetProcAddress" {
                assert!(symbol.starts_with("cuGetProcAddress") && object == "libcuda_intercept.so", "{line}");
            } else if exempt.contains(&name) {
                assert_eq!(object, "libcuda.so.1", "pure lookups are handed out unwrapped: {line}");
            } else if object == "libcuda_intercept.so" {
                wrapped += 1;
                ptsz += usize::from(flags == "2");
            } else {
                unwrapped.push(line.to_string());
            }
        }
        assert!(unwrapped.is_empty(), "{program}: not wrapped:\n{}", unwrapped.join("\n"));
        assert!(wrapped >= at_least - 10, "{program}: {wrapped} wrapped");
        assert!(ptsz >= 60, "{program}: {ptsz} per-thread-stream entry points wrapped");
    }
}

#[test]
fn cu_get_proc_address_hands_out_one_trampoline_per_name_version_and_stream_mode() {
    let dir = scratch_dir("gpa-keys");
    let toggle = dir.join("absent").display().to_string();
    let queries = [
        "cuCtxSynchronize,2000,0",
        "cuCtxSynchronize,13000,0",
        "cuLaunchKernel,12000,0",
        "cuLaunchKernel,12000,2",
        "cuLaunchKernel,12000,0",
        "v1:cuLaunchKernel,12000,2",
        "cuGetProcAddress,11030,0",
        "cuGetProcAddress,12000,0",
        "cuNoSuchFunction,12000,0",
        ",0,0",
    ];
    let bare = run(&fixture("gpa_probe"), &queries, &env_off(&toggle), false, T);
    let shim = run(&fixture("gpa_probe"), &queries, &env_off(&toggle), true, T);
    assert!(shim.success(), "{}", shim.describe());
    let (b, s) = (bare.lines(), shim.lines());
    assert_eq!(
        (b.len(), s.len()),
        (queries.len(), queries.len()),
        "one line per query:\n{}\n{}",
        bare.describe(),
        shim.describe()
    );
    // The driver's own answers: which function each request resolves to.
    assert!(
        b[0].contains(" cuCtxSynchronize libcuda.so.1 ") && b[1].contains(" cuCtxSynchronize_v2 libcuda.so.1 "),
        "{b:?}"
    );
    assert!(b[3].contains(" cuLaunchKernel_ptsz libcuda.so.1 "), "{b:?}");
    // Same return codes and statuses; a wrapper in place of every function.
    for (bl, sl) in b.iter().zip(&s) {
        let (bw, sw): (Vec<&str>, Vec<&str>) = (bl.split(' ').collect(), sl.split(' ').collect());
        assert_eq!(bw[..5], sw[..5], "rc/status differ: {bl} vs {sl}");
    }
    // <name> <version> <flags> <rc> <status> <symbol> <object> <address>
    let field = |l: &str, i: usize| l.split(' ').nth(i).unwrap().to_string();
    for l in &s[0..6] {
        assert_eq!(field(l, 6), "libcuda_intercept.so", "not wrapped: {l}");
        assert_eq!(field(l, 5), "?", "a pool trampoline, not an export: {l}");
    }
    let addrs: Vec<String> = s[0..6].iter().map(|l| field(l, 7)).collect();
    // Different ABIs and stream modes get different trampolines; a repeat gets the same one,
    // through either cuGetProcAddress flavour.
    let distinct: BTreeSet<&String> = addrs[0..4].iter().collect();
    assert_eq!(distinct.len(), 4, "{addrs:?}");
    assert_eq!(addrs[2], addrs[4], "a repeated request must get the same trampoline");
    assert_eq!(addrs[3], addrs[5], "v1 and v2 lookups of one binding share a trampoline");
    assert_eq!(
        (field(s[6], 5), field(s[6], 6)),
        ("cuGetProcAddress".into(), "libcuda_intercept.so".into()),
        "{}",
        s[6]
    );
    assert_eq!(
        (field(s[7], 5), field(s[7], 6)),
        ("cuGetProcAddress_v2".into(), "libcuda_intercept.so".into()),
        "{}",
        s[7]
    );
    assert_eq!(s[8], b[8], "unknown names pass through unchanged");
    assert_eq!(s[9], b[9], "the empty probe passes through unchanged");
    assert!(s[8].ends_with(" 500 1 NULL - (nil)"), "{}", s[8]);
    assert!(shim_lines(&shim.stderr).is_empty());
}
