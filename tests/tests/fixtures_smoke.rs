//! The fixtures on their own, WITHOUT the shim: the fake CUDA stack and every test program
//! behave as documented, so that whatever changes under LD_PRELOAD is the shim's doing.
//!
//! Run: cargo test -p cuda-fault-tests --release --test fixtures_smoke

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::Duration;

use cuda_fault_tests::{
    fake_lib_dir, finish, fixture, require_real_cudart, run, run_pynvml_probe, spawn, Run, DEFAULT_TIMEOUT,
};
use goblin::elf::Elf;

fn run_plain(name: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    run(&fixture(name), args, env, false, DEFAULT_TIMEOUT)
}

fn assert_lines(r: &Run, expected: &[&str]) {
    assert_eq!(r.lines(), expected, "unexpected output:\n{}", r.describe());
}

/// A file in the system temp dir unique to this test process and `tag`, removed first.
fn temp_file(tag: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("cuda-fault-smoke-{}-{tag}", std::process::id()));
    let _ = fs::remove_file(&path);
    path
}

// ------------------------------------------------------------------------------------------
// Runtime programs

#[test]
fn workload_runs_three_steps() {
    let r = run_plain("workload", &["3"], &[]);
    assert_lines(&r, &["devices 2", "step 0 ok", "step 1 ok", "step 2 ok", "workload ok"]);
    assert!(r.success(), "{}", r.describe());
}

#[test]
fn workload_ptds_runs_three_steps() {
    let r = run_plain("workload_ptds", &[], &[]);
    assert_lines(&r, &["devices 2", "step 0 ok", "step 1 ok", "step 2 ok", "workload ok"]);
    assert!(r.success(), "{}", r.describe());
}

#[test]
fn workload_sees_device_count() {
    let r = run_plain("workload", &["1"], &[("FAKE_CUDA_DEVICE_COUNT", "4")]);
    assert_lines(&r, &["devices 4", "step 0 ok", "workload ok"]);
}

/// Real CUDA on a machine without GPUs: cuInit fails with CUDA_ERROR_NO_DEVICE and
/// cudaGetDeviceCount returns cudaErrorNoDevice (100).
#[test]
fn workload_without_devices_fails_like_real_cuda() {
    let r = run_plain("workload", &[], &[("FAKE_CUDA_DEVICE_COUNT", "0")]);
    assert_lines(&r, &["FAIL cudaGetDeviceCount cudaErrorNoDevice 100"]);
    assert_eq!(r.status, 1, "{}", r.describe());
}

/// A driver older than the runtime: cudaErrorInsufficientDriver (35), as with real CUDA 12.
#[test]
fn workload_on_old_driver_reports_insufficient_driver() {
    let r = run_plain("workload", &[], &[("FAKE_CUDA_DRIVER_VERSION", "11080")]);
    assert_lines(&r, &["FAIL cudaGetDeviceCount cudaErrorInsufficientDriver 35"]);
    assert_eq!(r.status, 1, "{}", r.describe());
}

#[test]
fn workload_forever_streams_steps_until_killed() {
    let mut child = spawn(&fixture("workload"), &[], &[("WORKLOAD_FOREVER", "1")], false);
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    assert_eq!(lines.next().expect("a line").expect("utf-8"), "devices 2");
    for k in 0..20 {
        assert_eq!(lines.next().expect("a line").expect("utf-8"), format!("step {k} ok"));
    }
    child.kill().expect("kill");
    let r = finish(child, Duration::from_secs(10));
    assert!(!r.timed_out);
    assert_eq!(r.status, 128 + 9, "{}", r.describe());
}

#[test]
fn run_kills_on_timeout() {
    let r = run(&fixture("workload"), &["1", "20"], &[("WORKLOAD_FOREVER", "1")], false, Duration::from_millis(1500));
    assert!(r.timed_out, "{}", r.describe());
    assert!(r.has_line("step 0 ok"), "{}", r.describe());
}

/// The runtime reaches the driver only through cuGetProcAddress_v2, with the versions of the
/// PFN typedefs, and asks again with the per-thread flag for the stream-ordered entry points.
#[test]
fn fake_runtime_fetches_driver_through_get_proc_address() {
    let log = temp_file("gpa-fake-runtime");
    let log_s = log.display().to_string();
    let r = run_plain("workload", &["1"], &[("FAKE_CUDA_LOG_GPA", &log_s)]);
    assert!(r.success(), "{}", r.describe());
    let text = fs::read_to_string(&log).expect("GPA log");
    let _ = fs::remove_file(&log);
    for line in [
        "cuInit 2000 0",
        "cuMemAlloc 3020 0",
        "cuLaunchKernel 4000 0",
        "cuLaunchKernel 4000 2",
        "cuCtxSynchronize 2000 0",
        "cuMemcpyAsync 4000 2",
        "cuStreamSynchronize 2000 2",
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in the GPA log:\n{text}");
    }
}

#[test]
fn plugin_loaded_with_rtld_local_works() {
    let plugin = fixture("libplugin.so").display().to_string();
    let r = run_plain("plugin_host", &[&plugin], &[]);
    assert_lines(&r, &["plugin devices 2", "plugin malloc/free ok", "plugin ok"]);
    assert!(r.success(), "{}", r.describe());
}

#[test]
fn runtime_api_and_sticky_last_error() {
    let r = run_plain("rt_probe", &[], &[]);
    assert_lines(
        &r,
        &[
            "cudaRuntimeGetVersion 0 12090",
            "cudaDriverGetVersion 0 13050",
            "cudaGetDevice 0 0",
            "cudaSetDevice 101",
            "cudaPeekAtLastError 101",
            "cudaPeekAtLastError 101",
            "cudaGetLastError 101",
            "cudaGetLastError 0",
            "cudaGetDeviceProperties 0 Fake GPU 1 9.0 132",
            "cudaGetErrorName 719 cudaErrorLaunchFailure",
            "cudaGetErrorString 700 an illegal memory access was encountered",
            "cudaGetErrorName 12345 cudaErrorUnknownCode",
        ],
    );
}

#[test]
fn threads_see_only_success() {
    let r = run_plain("threads", &["8", "20000"], &[]);
    assert_lines(&r, &["codes 0:480000"]);
}

// ------------------------------------------------------------------------------------------
// Driver programs

#[test]
fn triton_like_dlopen_path_works() {
    let r = run_plain("triton_like", &[], &[]);
    assert_lines(&r, &["cuInit 0", "count 2", "ctx 0", "launch 0", "kernel ok"]);
}

#[test]
fn driver_linked_calls_all_succeed() {
    let r = run_plain("driver_linked", &[], &[]);
    let names: Vec<&str> = r.lines().iter().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(
        names,
        [
            "cuInit",
            "cuDriverGetVersion",
            "cuDeviceGetCount",
            "cuDeviceGet",
            "cuDevicePrimaryCtxRetain",
            "cuCtxSetCurrent",
            "cuModuleLoadData",
            "cuModuleGetFunction",
            "cuMemAlloc_v2",
            "cuMemcpyHtoD_v2",
            "cuLaunchKernel",
            "cuLaunchKernel_ptsz",
            "cuGetProcAddress_v2",
            "gpa_cuLaunchKernel",
            "cuMemcpyDtoH_v2",
            "cuGraphLaunch",
            "cuStreamSynchronize",
            "cuCtxSynchronize",
            "cuMemFree_v2",
            "data",
        ],
        "{}",
        r.describe()
    );
    for line in r.lines() {
        if line != "data ok" {
            assert!(line.ends_with(" 0"), "`{line}` failed:\n{}", r.describe());
        }
    }
    assert!(r.has_line("data ok"), "{}", r.describe());
}

/// The cuGetProcAddress contract of the fake driver (one table in fake_cuda.c).
#[test]
fn get_proc_address_contract() {
    let r = run_plain(
        "gpa_probe",
        &[
            "cuMemAlloc,12000,0",
            "cuMemAlloc,2000,0",
            "cuCtxSynchronize,12000,0",
            "cuCtxSynchronize,13000,0",
            "cuLaunchKernel,12000,2",
            "cuLaunchKernel,12000,0",
            "cuLaunchKernel,6000,2",
            ",12000,0",
            "cuNoSuchThing,12000,0",
            "cuGetProcAddress,12000,0",
            "cuGetProcAddress,11030,0",
            "cuInit,12000,2",
            "v1:cuMemcpyAsync,12000,2",
        ],
        &[],
    );
    // The last column is the address handed out; compare everything before it.
    let without_address: Vec<&str> =
        r.lines().iter().map(|l| l.rsplit_once(' ').map_or(*l, |(head, _)| head)).collect();
    assert!(r.success(), "{}", r.describe());
    assert_eq!(
        without_address,
        [
            "cuMemAlloc 12000 0 0 0 cuMemAlloc_v2 libcuda.so.1",
            "cuMemAlloc 2000 0 500 2 NULL -",
            "cuCtxSynchronize 12000 0 0 0 cuCtxSynchronize libcuda.so.1",
            "cuCtxSynchronize 13000 0 0 0 cuCtxSynchronize_v2 libcuda.so.1",
            "cuLaunchKernel 12000 2 0 0 cuLaunchKernel_ptsz libcuda.so.1",
            "cuLaunchKernel 12000 0 0 0 cuLaunchKernel libcuda.so.1",
            "cuLaunchKernel 6000 2 0 0 cuLaunchKernel libcuda.so.1",
            "\"\" 12000 0 500 1 NULL -",
            "cuNoSuchThing 12000 0 500 1 NULL -",
            "cuGetProcAddress 12000 0 0 0 cuGetProcAddress_v2 libcuda.so.1",
            "cuGetProcAddress 11030 0 0 0 cuGetProcAddress libcuda.so.1",
            "cuInit 12000 2 0 0 cuInit libcuda.so.1",
            "cuMemcpyAsync 12000 2 0 - cuMemcpyAsync_ptsz libcuda.so.1",
        ],
        "{}",
        r.describe()
    );
}

// ------------------------------------------------------------------------------------------
// NVML

#[test]
fn nvml_linked_probe() {
    let r = run_plain("nvml_probe", &[], &[]);
    assert_lines(
        &r,
        &[
            "nvmlInit_v2 0",
            "nvmlDeviceGetCount_v2 0",
            "count 2",
            "nvmlDeviceGetHandleByIndex_v2 0",
            "nvmlDeviceGetName 0",
            "name Fake GPU 0",
            "nvmlShutdown 0",
        ],
    );
}

#[test]
fn nvml_dlopen_probe() {
    let r = run_plain("nvml_dlopen_probe", &[], &[]);
    assert_lines(
        &r,
        &[
            "nvmlInit 0",
            "nvmlDeviceGetCount 0",
            "count 2",
            "nvmlInit_v2 0",
            "nvmlDeviceGetCount_v2 0",
            "count 2",
            "nvmlDeviceGetHandleByIndex_v2 0",
            "nvmlDeviceGetName 0",
            "name Fake GPU 0",
            "nvmlShutdown 0",
            "nvmlShutdown 0",
        ],
    );
}

#[test]
fn pynvml_on_fake_nvml() {
    let r = run_pynvml_probe(&[], false, DEFAULT_TIMEOUT);
    assert_lines(&r, &["nvmlInit ok", "count 2", "handle ok", "name Fake GPU 0", "shutdown ok"]);
}

#[test]
fn pynvml_without_devices() {
    let r = run_pynvml_probe(&[("FAKE_CUDA_DEVICE_COUNT", "0")], false, DEFAULT_TIMEOUT);
    // NVML_ERROR_INVALID_ARGUMENT (2) for index 0 of no devices.
    assert_lines(&r, &["nvmlInit ok", "count 0", "handle error 2", "name skipped", "shutdown ok"]);
}

// ------------------------------------------------------------------------------------------
// dlsym contract

#[test]
fn dlsym_probe_with_malloc_counter() {
    let counter = fixture("libmalloc_counter.so").display().to_string();
    let r = run_plain("dlsym_probe", &[], &[("LD_PRELOAD", &counter)]);
    assert_lines(&r, &["counter>0 yes", "missing NULL", "dlerror mentions name yes", "next printf yes"]);
}

// ------------------------------------------------------------------------------------------
// ELF shape of the fake libraries

fn elf_bytes(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Defined dynamic function symbols of a library, with the name of their version node ("" for
/// none).
fn exported_functions(bytes: &[u8]) -> Vec<(String, String)> {
    let elf = Elf::parse(bytes).expect("parse ELF");
    let mut version_names = std::collections::HashMap::new();
    if let Some(verdef) = &elf.verdef {
        for def in verdef.iter() {
            if let Some(aux) = def.iter().next() {
                let name = elf.dynstrtab.get_at(aux.vda_name).unwrap_or("").to_string();
                version_names.insert(def.vd_ndx, name);
            }
        }
    }
    let mut out = Vec::new();
    for (i, sym) in elf.dynsyms.iter().enumerate() {
        if sym.st_shndx == 0 || sym.st_type() != goblin::elf::sym::STT_FUNC {
            continue;
        }
        let name = elf.dynstrtab.get_at(sym.st_name).unwrap_or("").to_string();
        let version = elf
            .versym
            .as_ref()
            .and_then(|v| v.get_at(i))
            .and_then(|v| version_names.get(&v.version()).cloned())
            .unwrap_or_default();
        out.push((name, version));
    }
    out
}

#[test]
fn fake_cudart_exports_carry_the_real_version_node() {
    let bytes = elf_bytes(&fake_lib_dir().join("libcudart.so.12"));
    let exports = exported_functions(&bytes);
    assert!(exports.len() >= 40, "too few exports: {exports:?}");
    for (name, version) in &exports {
        assert!(name.starts_with("cuda"), "unexpected export {name}");
        assert_eq!(version, "libcudart.so.12", "{name} has version `{version}`");
    }
    for wanted in [
        "cudaLaunchKernel",
        "cudaLaunchKernel_ptsz",
        "cudaGetLastError",
        "cudaMemcpyAsync_ptsz",
        "cudaMemcpy_ptds",
        "cudaGetDeviceProperties_v2",
    ] {
        assert!(exports.iter().any(|(n, _)| n == wanted), "{wanted} not exported");
    }
    let elf = Elf::parse(&bytes).expect("parse ELF");
    assert_eq!(elf.soname, Some("libcudart.so.12"));
    assert!(
        !elf.libraries.iter().any(|l| l.starts_with("libcuda.so")),
        "the fake runtime must not link libcuda: {:?}",
        elf.libraries
    );
}

#[test]
fn fake_driver_exports_the_abi_names() {
    let bytes = elf_bytes(&fake_lib_dir().join("libcuda.so.1"));
    let elf = Elf::parse(&bytes).expect("parse ELF");
    assert_eq!(elf.soname, Some("libcuda.so.1"));
    let exports: Vec<String> = exported_functions(&bytes).into_iter().map(|(n, _)| n).collect();
    for wanted in [
        "cuInit",
        "cuDriverGetVersion",
        "cuGetProcAddress",
        "cuGetProcAddress_v2",
        "cuGetErrorString",
        "cuGetErrorName",
        "cuGetExportTable",
        "cuDeviceGet",
        "cuDeviceGetCount",
        "cuDeviceGetName",
        "cuDeviceGetAttribute",
        "cuDeviceTotalMem_v2",
        "cuDevicePrimaryCtxRetain",
        "cuDevicePrimaryCtxRelease_v2",
        "cuCtxSetCurrent",
        "cuCtxGetCurrent",
        "cuCtxGetDevice",
        "cuCtxSynchronize",
        "cuCtxSynchronize_v2",
        "cuMemAlloc_v2",
        "cuMemFree_v2",
        "cuMemAllocAsync",
        "cuMemFreeAsync",
        "cuMemcpy",
        "cuMemcpyAsync",
        "cuMemcpyHtoD_v2",
        "cuMemcpyDtoH_v2",
        "cuMemcpyDtoD_v2",
        "cuMemsetD8_v2",
        "cuMemsetD32_v2",
        "cuMemsetD8Async",
        "cuMemCreate",
        "cuMemMap",
        "cuModuleLoadData",
        "cuModuleGetFunction",
        "cuLaunchKernel",
        "cuLaunchKernelEx",
        "cuLaunchHostFunc",
        "cuGraphLaunch",
        "cuStreamCreate",
        "cuStreamDestroy_v2",
        "cuStreamSynchronize",
        "cuStreamQuery",
        "cuStreamWaitEvent",
        "cuEventCreate",
        "cuEventDestroy_v2",
        "cuEventRecord",
        "cuEventQuery",
        "cuEventSynchronize",
        "cuLaunchKernel_ptsz",
        "cuMemcpyAsync_ptsz",
        "cuMemcpy_ptds",
        "cuMemcpyHtoD_v2_ptds",
        "cuMemcpyDtoH_v2_ptds",
        "cuStreamSynchronize_ptsz",
        "cuStreamQuery_ptsz",
        "cuEventRecord_ptsz",
        "cuGraphLaunch_ptsz",
        "cuMemAllocAsync_ptsz",
        "cuMemFreeAsync_ptsz",
        "cuLaunchKernelEx_ptsz",
        "cuMemsetD8Async_ptsz",
    ] {
        assert!(exports.iter().any(|n| n == wanted), "{wanted} not exported by the fake driver");
    }
    assert!(exports.iter().all(|n| n.starts_with("cu")), "stray exports: {exports:?}");
}

#[test]
fn fake_nvml_soname() {
    let bytes = elf_bytes(&fake_lib_dir().join("libnvidia-ml.so.1"));
    let elf = Elf::parse(&bytes).expect("parse ELF");
    assert_eq!(elf.soname, Some("libnvidia-ml.so.1"));
}

// ------------------------------------------------------------------------------------------
// NVIDIA's real runtime on the fake driver
//
// Observed (CUDA 12.9.79 shared and static, CUDA 13.5.37 shared): all three calls return
// cudaErrorNotSupported (801). The runtime initializes, fetches its entry points (419
// cuGetProcAddress requests for 12.9, 481 for 13.5, including the "" probe), then
// asks for its private export tables, which the fake driver refuses with
// CUDA_ERROR_NOT_SUPPORTED (801), and reports that to every call.

fn check_real_runtime(program: &str, major: u32) {
    require_real_cudart(major);
    let log = temp_file(&format!("gpa-{program}"));
    let log_s = log.display().to_string();
    let r = run_plain(program, &[], &[("FAKE_CUDA_LOG_GPA", &log_s)]);
    assert!(r.success(), "{}", r.describe());
    let lines = r.lines();
    let names: Vec<&str> = lines.iter().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(names, ["cudaGetDeviceCount", "cudaSetDevice", "cudaMalloc"], "{}", r.describe());
    for line in &lines {
        let code: i32 = line.rsplit(' ').next().unwrap().parse().expect("a code");
        assert_ne!(code, 0, "the real runtime cannot succeed on the fake driver: {line}");
    }
    let text = fs::read_to_string(&log).expect("GPA log");
    let _ = fs::remove_file(&log);
    let requests = text.lines().count();
    assert!(requests > 300, "{program} made only {requests} cuGetProcAddress requests");
    assert!(text.lines().any(|l| l.starts_with("cuInit ")), "{program} never asked for cuInit");
}

#[test]
fn real_runtime_12_on_fake_driver() {
    check_real_runtime("real_rt12", 12);
}

#[test]
fn real_runtime_13_on_fake_driver() {
    check_real_runtime("real_rt13", 13);
}

#[test]
fn real_runtime_12_static_on_fake_driver() {
    check_real_runtime("real_rt12_static", 12);
}
