"""The wheel: its tag and files, every ELF file within the manylinux2014 floor for its
architecture, the same Python files as the source tree, and, installed in a fresh environment,
the binaries on PATH and a child process faulting through ``shim_path()``."""

from __future__ import annotations

import re
import subprocess
import zipfile

from conftest import ARCH, ROOT, FakeStack, Installed

ELF_MACHINE = {"x86_64": 62, "aarch64": 183}


def version() -> str:
    m = re.search(r'^version = "([^"]+)"', (ROOT / "Cargo.toml").read_text(), re.M)
    assert m
    return m.group(1)


def elf_header(data: bytes) -> tuple[int, int, bool]:
    """(machine, type, has a PT_INTERP) of a 64-bit little-endian ELF file."""
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1
    e_type = int.from_bytes(data[16:18], "little")
    machine = int.from_bytes(data[18:20], "little")
    phoff = int.from_bytes(data[32:40], "little")
    phentsize = int.from_bytes(data[54:56], "little")
    phnum = int.from_bytes(data[56:58], "little")
    interp = any(
        int.from_bytes(data[phoff + i * phentsize : phoff + i * phentsize + 4], "little") == 3
        for i in range(phnum)
    )
    return machine, e_type, interp


def test_the_wheel_s_tag_and_files(installed: Installed) -> None:
    v = version()
    assert installed.wheel.name == (f"cuda_fault-{v}-py3-none-manylinux2014_{ARCH}.manylinux_2_17_{ARCH}.whl")
    with zipfile.ZipFile(installed.wheel) as z:
        names = set(z.namelist())
        package = {n for n in names if n.startswith("cuda_fault/")}
        source = {
            f"cuda_fault/{p.name}"
            for p in (ROOT / "python/cuda_fault").iterdir()
            if p.suffix in (".py", ".typed")
        }
        assert package == source | {"cuda_fault/cuda_intercept.so"}
        for name in source:
            assert z.read(name) == (ROOT / "python" / name).read_bytes(), f"{name} differs from the source"
        scripts = {n for n in names if ".data/" in n}
        assert scripts == {
            f"cuda_fault-{v}.data/scripts/cuda-fault",
            f"cuda_fault-{v}.data/scripts/cuda-fault-kustomize",
        }
        assert z.read(f"cuda_fault-{v}.dist-info/entry_points.txt").decode().split() == [
            "[pytest11]",
            "cuda_fault=cuda_fault.pytest_plugin",
        ]
        for name in scripts:
            machine, e_type, interp = elf_header(z.read(name))
            # Static executables: no loader, nothing of the system's C library.
            assert (machine, interp) == (ELF_MACHINE[ARCH], False), name
            assert z.getinfo(name).external_attr >> 16 & 0o111, f"{name} is executable"
        machine, e_type, _ = elf_header(z.read("cuda_fault/cuda_intercept.so"))
        assert (machine, e_type) == (ELF_MACHINE[ARCH], 3), "a shared object of the wheel's architecture"


def test_the_shim_needs_nothing_above_glibc_2_17(installed: Installed) -> None:
    dynsym = subprocess.run(
        ["objdump", "-T", str(installed.shim)], capture_output=True, text=True, check=True
    ).stdout
    versions = {tuple(int(p) for p in m.split(".")) for m in re.findall(r"GLIBC_([0-9.]+)", dynsym)}
    assert versions and max(versions) <= (2, 17), sorted(versions)
    needed = subprocess.run(
        ["readelf", "-d", str(installed.shim)], capture_output=True, text=True, check=True
    ).stdout
    libs = set(re.findall(r"Shared library: \[([^\]]+)\]", needed))
    assert not any(lib.startswith(("libcuda", "libcudart", "libnvidia", "ld-linux")) for lib in libs), libs


def test_the_installed_binaries_run(installed: Installed) -> None:
    for binary, name in ((installed.binary, "cuda-fault"), (installed.kustomize, "cuda-fault-kustomize")):
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=True).stdout
        assert out == f"{name} {version()}\n"
    # The package finds its own binary (the wheel's script) and its shim (package data).
    probe = subprocess.run(
        [
            str(installed.python),
            "-c",
            "import cuda_fault, sys; print(cuda_fault.binary_path()); "
            "print(cuda_fault.shim_path()); print('cuda_fault.cluster' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    ).stdout.splitlines()
    assert probe == [str(installed.binary.resolve()), str(installed.shim), "False"]
    assert installed.shim.parent.name == "cuda_fault"
    assert installed.shim.parent.parent.name == "site-packages" and installed.venv in installed.shim.parents


def test_a_child_faults_through_the_installed_shim(installed: Installed, fake_stack: FakeStack) -> None:
    script = (
        "import subprocess, sys, cuda_fault\n"
        "env = cuda_fault.Scenario(xid=48).env()\n"
        "assert env['LD_PRELOAD'].split(':')[0] == cuda_fault.shim_path()\n"
        f"r = subprocess.run([{str(fake_stack.workload)!r}], env=env, capture_output=True, text=True)\n"
        "sys.stdout.write(r.stdout + r.stderr)\n"
        "sys.exit(r.returncode)\n"
    )
    r = subprocess.run(
        [str(installed.python), "-c", script], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}
    )
    assert r.returncode == 1, r
    assert "FAIL cudaSetDevice cudaErrorECCUncorrectable 214" in r.stdout
    assert "[XID 48 SIM] cudaSetDevice -> cudaErrorECCUncorrectable (214)" in r.stdout
