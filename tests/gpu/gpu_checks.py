"""Real-GPU checks of cuda_intercept.so with PyTorch (and Triton, NCCL, nvidia-smi).

Each check runs in a fresh Python process (the shim is preloaded per process) with a timeout.
The parent prints one table row per check and exits 1 if any check failed. A check whose
prerequisite is missing (e.g. Triton not installed) is reported as SKIP and named in the summary;
it is never counted as a pass.
"""
import json
import os
import subprocess
import sys
import tempfile
import time

SHIM = sys.argv[1] if len(sys.argv) > 1 else ""
HERE = os.path.abspath(__file__)


# --------------------------------------------------------------------------------------------
# Workers: run inside the child process; print one JSON line as the last line of stdout.

def _report(**kw):
    print(json.dumps(kw), flush=True)


def w_off_eager():
    import torch
    a = torch.randn(256, 256)
    b = torch.randn(256, 256)
    got = (a.cuda() @ b.cuda()).sum().item()
    want = (a @ b).sum().item()
    ok = abs(got - want) <= 1e-2 * max(1.0, abs(want))
    _report(ok=ok, detail=f"matmul sum {got:.3f} vs cpu {want:.3f}")


def w_off_graph():
    import torch
    x = torch.ones(1024, device="cuda")
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        y = x * 2 + 1  # warm up
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        y = x * 2 + 1
    for _ in range(10):
        g.replay()
    torch.cuda.synchronize()
    _report(ok=bool((y == 3).all().item()), detail="10 graph replays")


def w_off_triton():
    try:
        import triton
        import triton.language as tl
    except ImportError:
        _report(ok=None, detail="triton not installed")
        return
    import torch

    @triton.jit
    def add(x_ptr, y_ptr, out_ptr, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        m = offs < n
        tl.store(out_ptr + offs, tl.load(x_ptr + offs, mask=m) + tl.load(y_ptr + offs, mask=m), mask=m)

    n = 4096
    x = torch.arange(n, device="cuda", dtype=torch.float32)
    out = torch.empty_like(x)
    add[(n // 256,)](x, x, out, n, BLOCK=256)
    torch.cuda.synchronize()
    _report(ok=bool((out == 2 * x).all().item()), detail="triton add kernel")


def _nccl_group():
    import torch
    import torch.distributed as dist
    f = tempfile.mktemp(prefix="cuda-fault-nccl-")
    dist.init_process_group("nccl", init_method=f"file://{f}", rank=0, world_size=1)
    torch.cuda.set_device(0)
    return dist


def w_off_nccl():
    import torch
    dist = _nccl_group()
    t = torch.full((1024,), 3.0, device="cuda")
    dist.all_reduce(t)
    torch.cuda.synchronize()
    ok = bool((t == 3.0).all().item())
    dist.destroy_process_group()
    _report(ok=ok, detail="single-rank all_reduce")


def w_xid79_env():
    import torch
    avail = torch.cuda.is_available()
    err = ""
    try:
        torch.zeros(1, device="cuda")
    except Exception as e:  # noqa: BLE001 - any CUDA error type is the point
        err = str(e)
    ok = (not avail) and ("no CUDA-capable device" in err or "No CUDA GPUs are available" in err)
    _report(ok=ok, detail=f"is_available={avail}; {err.splitlines()[0] if err else 'no error'}")


def _toggle_loop(step):
    """Runs `step` until it raises; the parent writes the toggle after 'ready'."""
    import torch
    step()
    torch.cuda.synchronize()
    print("ready", flush=True)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 20:
        try:
            step()
            torch.cuda.synchronize()
        except Exception as e:  # noqa: BLE001
            _report(ok=True, detail=str(e).splitlines()[0], raised_at=time.time())
            return
    _report(ok=False, detail="no error within 20 s")


def w_toggle_eager():
    import torch
    x = torch.ones(1 << 16, device="cuda")
    _toggle_loop(lambda: (x * 2).sum().item())


def w_toggle_graph():
    import torch
    x = torch.ones(1024, device="cuda")
    for _ in range(3):
        y = x * 2
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        y = x * 2
    _toggle_loop(g.replay)


def w_toggle_nccl():
    import torch
    dist = _nccl_group()
    t = torch.ones(1024, device="cuda")
    _toggle_loop(lambda: dist.all_reduce(t))


def w_xid48_text():
    import torch
    err = ""
    try:
        torch.zeros(1, device="cuda")
        torch.cuda.synchronize()
    except Exception as e:  # noqa: BLE001
        err = str(e)
    _report(ok="uncorrectable ECC error encountered" in err, detail=err.splitlines()[0] if err else "no error")


def w_xid31_async():
    """XID 31 (async, from the environment): launches raise nothing; the synchronize does, with
    the illegal-address error, and every later call keeps failing (a broken context)."""
    import torch
    stage = "allocation"
    try:
        x = torch.ones(1 << 16, device="cuda")
        stage = "launch"
        y = x * 2
        stage = "synchronize"
        torch.cuda.synchronize()
        stage = "none"
    except Exception as e:  # noqa: BLE001
        err = str(e)
    else:
        _report(ok=False, detail=f"no error (y[0]={y[0].item()})")
        return
    later = ""
    try:
        torch.zeros(1, device="cuda").sum().item()
    except Exception as e:  # noqa: BLE001
        later = str(e)
    ok = stage == "synchronize" and "illegal memory access" in err and "illegal memory access" in later
    _report(ok=ok, detail=f"raised at {stage}: {err.splitlines()[0]}; later: {later.splitlines()[0] if later else 'ok'}")


def w_xid48_nvml_ecc():
    """XID 48: NVML keeps working and reports uncorrected ECC errors (volatile count > 0)."""
    import ctypes
    nvml = ctypes.CDLL("libnvidia-ml.so.1")
    rc_init = nvml.nvmlInit_v2()
    handle = ctypes.c_void_p()
    rc_handle = nvml.nvmlDeviceGetHandleByIndex_v2(0, ctypes.byref(handle))
    count = ctypes.c_ulonglong(0)
    # NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1, NVML_VOLATILE_ECC = 0
    rc_ecc = nvml.nvmlDeviceGetTotalEccErrors(handle, 1, 0, ctypes.byref(count))
    ok = (rc_init, rc_handle, rc_ecc) == (0, 0, 0) and count.value > 0
    _report(ok=ok, detail=f"init {rc_init}, handle {rc_handle}, total ECC {rc_ecc}: {count.value} uncorrected")


def w_devices_other():
    """CUDA_FAULT_DEVICES names a GPU this process does not use: GPU 0 keeps working."""
    import torch
    x = torch.ones(1024, device="cuda:0")
    _report(ok=bool((x * 2).sum().item() == 2048), detail=f"GPU 0 works with devices={os.environ.get('CUDA_FAULT_DEVICES')}")


def w_hang():
    """Hang mode: synchronize blocks while the toggle is on and returns once it goes off."""
    import torch
    x = torch.ones(1 << 16, device="cuda")
    torch.cuda.synchronize()
    print("ready", flush=True)
    t0 = time.monotonic()
    time.sleep(0.05)
    y = (x * 2).sum()
    torch.cuda.synchronize()  # blocks until the parent turns the toggle off
    blocked = time.monotonic() - t0
    _report(ok=blocked >= 1.0 and y.item() == 2 * x.numel(), detail=f"synchronize returned after {blocked:.1f} s")


def w_launches():
    import torch
    x = torch.ones(16, device="cuda")
    torch.cuda.synchronize()
    best = 1e9
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(100_000):
            x.add_(1)
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    _report(ok=True, seconds=best, detail=f"{best * 1e6 / 100_000:.2f} us/launch")


WORKERS = {k[2:]: v for k, v in dict(globals()).items() if k.startswith("w_")}


# --------------------------------------------------------------------------------------------
# Parent

def child(name, env_extra, preload=True, timeout=120, toggle=None, toggle_text=None, release_after=None):
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    if preload:
        env["LD_PRELOAD"] = SHIM
    env.update(env_extra)
    p = subprocess.Popen([sys.executable, HERE, "--worker", name], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    written = None
    if toggle:
        line = p.stdout.readline()
        if line.strip() != "ready":
            p.kill()
            return {"ok": False, "detail": f"worker did not get ready: {line!r} {p.stderr.read()[-300:]}"}
        tmp = toggle + ".tmp"
        with open(tmp, "w") as f:
            f.write(toggle_text)
        written = time.time()
        os.rename(tmp, toggle)
        if release_after is not None:
            time.sleep(release_after)
            with open(tmp, "w") as f:
                f.write("0\n")
            os.rename(tmp, toggle)
            written = None
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        return {"ok": False, "detail": f"timed out after {timeout} s"}
    last = out.strip().splitlines()[-1] if out.strip() else ""
    try:
        res = json.loads(last)
    except ValueError:
        return {"ok": False, "detail": f"exit {p.returncode}: {err.strip().splitlines()[-1] if err.strip() else last}"}
    res["stderr"] = err
    if written and res.get("raised_at"):
        res["detail"] += f" ({(res['raised_at'] - written) * 1000:.0f} ms after the toggle)"
    return res


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        WORKERS[sys.argv[2]]()
        return 0
    tmp = tempfile.mkdtemp(prefix="cuda-fault-gpu-")
    toggle = os.path.join(tmp, "cuda_fault_enabled")
    base = {"CUDA_FAULT_TOGGLE_FILE": toggle}
    rows = []

    def check(label, res, expect_sim=None):
        ok = res.get("ok")
        if ok and expect_sim and expect_sim not in res.get("stderr", ""):
            ok, res["detail"] = False, res["detail"] + f"; no '{expect_sim}' in stderr"
        rows.append((label, "SKIP" if ok is None else ("PASS" if ok else "FAIL"), res.get("detail", "")))

    for name in ["off_eager", "off_graph", "off_triton", "off_nccl"]:
        check(f"faults off: {name[4:]}", child(name, base))
    check("XID 79 env: no device", child("xid79_env", {**base, "CUDA_FAULT_INJECTION_ENABLED": "1"}), "[XID 79 SIM]")
    for name in ["toggle_eager", "toggle_graph", "toggle_nccl"]:
        if os.path.exists(toggle):
            os.remove(toggle)
        check(f"toggle mid-loop: {name[7:]}", child(name, base, toggle=toggle, toggle_text="1 79\n"), "[XID 79 SIM]")
    if os.path.exists(toggle):
        os.remove(toggle)
    ngpu = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout.count("GPU ")
    check("devices=<other GPU>: GPU 0 unaffected",
          child("devices_other", {**base, "CUDA_FAULT_INJECTION_ENABLED": "1", "CUDA_FAULT_DEVICES": str(max(ngpu, 1))}))
    if os.path.exists(toggle):
        os.remove(toggle)
    check("hang mode: synchronize blocks, then releases",
          child("hang", base, toggle=toggle, toggle_text="1 79 mode=hang\n", release_after=1.5), "hangs (CUDA_FAULT_MODE=hang)")
    if os.path.exists(toggle):
        os.remove(toggle)
    check("XID 48: ECC error text", child("xid48_text", {**base, "CUDA_FAULT_INJECTION_ENABLED": "1", "CUDA_XID_TYPE": "48"}))
    xid31 = {**base, "CUDA_FAULT_INJECTION_ENABLED": "1", "CUDA_XID_TYPE": "31"}
    check("XID 31: launch passes, synchronize raises, context broken", child("xid31_async", xid31),
          "surfaced at")
    # scope=process: a process started after the toggle file was written runs clean.
    with open(toggle, "w") as f:
        f.write("1 31\n")
    # The child must start on a later tick of the coarse clock the kernel stamps files with
    # (CLOCK_REALTIME_COARSE is clock id 5 on Linux): wait for that tick.
    while time.clock_gettime_ns(5) <= os.stat(toggle).st_mtime_ns:
        time.sleep(0.001)
    res = child("off_eager", base)
    if res.get("ok") and "not in this process" not in res.get("stderr", ""):
        res["ok"], res["detail"] = False, res["detail"] + "; no 'not in this process' in stderr"
    check("XID 31 toggle: a process started after it runs clean", res)
    os.remove(toggle)
    check("XID 48: NVML reports uncorrected ECC errors",
          child("xid48_nvml_ecc", {**base, "CUDA_FAULT_INJECTION_ENABLED": "1", "CUDA_XID_TYPE": "48"}))
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    smi = subprocess.run(["nvidia-smi"], env={**env, "LD_PRELOAD": SHIM, "CUDA_FAULT_INJECTION_ENABLED": "1",
                                                "CUDA_FAULT_TOGGLE_FILE": toggle},
                         capture_output=True, text=True, timeout=60)
    lost = "GPU is lost" in smi.stdout + smi.stderr or "GPU_IS_LOST" in smi.stderr
    check("nvidia-smi under XID 79", {"ok": lost and smi.returncode != 0,
                                      "detail": f"exit {smi.returncode}: {(smi.stdout + smi.stderr).strip().splitlines()[0][:90]}"})
    plain = child("launches", {}, preload=False)
    shim = child("launches", base)
    if plain.get("ok") and shim.get("ok"):
        ratio = shim["seconds"] / plain["seconds"]
        check("100k launches, shim off vs no shim", {"ok": ratio <= 1.01,
              "detail": f"{plain['detail']} vs {shim['detail']}: {(ratio - 1) * 100:+.2f}% (target <= +1%)"})
    else:
        check("100k launches, shim off vs no shim", {"ok": False, "detail": plain.get("detail", "") + shim.get("detail", "")})

    width = max(len(r[0]) for r in rows)
    print(f"\n{'check'.ljust(width)}  result  detail")
    for label, result, detail in rows:
        print(f"{label.ljust(width)}  {result.ljust(6)}  {detail}")
    failed = [r for r in rows if r[1] == "FAIL"]
    skipped = [r[0] for r in rows if r[1] == "SKIP"]
    print(f"\n{len(rows) - len(failed) - len(skipped)} passed, {len(failed)} failed" +
          (f", {len(skipped)} skipped ({', '.join(skipped)})" if skipped else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
