"""ToggleFile: typed results of every command, and ``fault()`` putting back exactly what was there
(bytes and mode, or no file), exceptions included; what the binary refuses stays untouched."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

import cuda_fault
from cuda_fault import Scenario, ToggleFile, ToggleStatus


def test_each_command_returns_the_status_read_after_it(tmp_path: Path) -> None:
    t = ToggleFile(tmp_path / "d" / "toggle")
    s = t.enable(Scenario(xid=48, devices=[0, 1], functions="@launch", count=2))
    assert s.on and s.present and s.state == "on"
    assert (s.xid, s.devices, s.functions, s.count, s.percent) == (48, ("0", "1"), ("@launch",), 2, None)
    assert s.raw == "1 48 devices=0,1 count=2 functions=@launch\n"
    assert s.file == str(tmp_path / "d" / "toggle")
    assert "XID 48 (GPU_ECC_DBE)" in s.effect
    assert t.status() == s
    assert (tmp_path / "d" / "toggle").read_text() == "1 48 devices=0,1 count=2 functions=@launch\n"

    assert t.enable().raw == "1\n"
    off = t.disable()
    assert (off.state, off.on, off.raw, off.xid) == ("off", False, "0\n", None)
    gone = t.clean()
    assert (gone.state, gone.present, gone.raw) == ("absent", False, None)
    assert not (tmp_path / "d" / "toggle").exists()
    assert sorted(os.listdir(tmp_path / "d")) == [], "no temporary file left"


def test_a_malformed_file_reads_as_invalid(tmp_path: Path) -> None:
    (tmp_path / "t").write_bytes(b"1 48 percent=0\n")
    s = ToggleFile(tmp_path / "t").status()
    assert (s.state, s.on, s.present) == ("invalid", False, True)
    assert "percent" in (s.error or "")


def test_fields_the_binary_adds_are_kept_not_lost() -> None:
    s = ToggleStatus.from_json({"file": "f", "present": True, "state": "on", "xid": 79, "surface": "driver"})
    assert (s.xid, s.extra) == (79, {"surface": "driver"})
    with pytest.raises(cuda_fault.ProtocolError):
        ToggleStatus.from_json({"state": "on"})


@pytest.mark.parametrize(
    "before",
    [None, b"0\n", b"1   79  devices=1", b"\x00garbage, not a toggle line\xff" * 40],
    ids=["absent", "off", "odd-spacing", "garbage"],
)
def test_fault_puts_back_exactly_what_was_there(tmp_path: Path, before: bytes | None) -> None:
    path = tmp_path / "toggle"
    if before is not None:
        path.write_bytes(before)
        path.chmod(0o600)
    t = ToggleFile(path)
    with t.fault(Scenario(xid=48)) as status:
        assert status.on and status.xid == 48
        assert path.read_bytes() == b"1 48\n"
    if before is None:
        assert not path.exists()
    else:
        assert path.read_bytes() == before
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ([] if before is None else ["toggle"])


def test_fault_restores_when_the_block_raises_or_changed_the_file(tmp_path: Path) -> None:
    path = tmp_path / "toggle"
    path.write_bytes(b"0\n")
    t = ToggleFile(path)
    with pytest.raises(KeyError), t.fault(Scenario(xid=79)):
        t.disable()
        t.enable(Scenario(xid=13))
        raise KeyError("the test failed")
    assert path.read_bytes() == b"0\n"
    with pytest.raises(ZeroDivisionError), ToggleFile(tmp_path / "new").fault():
        _ = 1 / 0
    assert not (tmp_path / "new").exists()


def test_what_the_binary_refuses_is_never_touched(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(cuda_fault.SymlinkError) as info, ToggleFile(link).fault(Scenario(xid=48)):
        pytest.fail("the block must not run")
    assert info.value.code == 40 and "symbolic link" in info.value.message
    assert link.is_symlink() and not target.exists()

    (tmp_path / "dir").mkdir()
    with pytest.raises(cuda_fault.IsDirectoryError) as info:
        ToggleFile(tmp_path / "dir").enable()
    assert info.value.code == 21

    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(cuda_fault.NotRegularFileError) as info:
        ToggleFile(tmp_path / "fifo").clean()
    assert info.value.code == 73


def test_a_file_replaced_by_a_link_during_the_block_is_refused_not_followed(tmp_path: Path) -> None:
    path = tmp_path / "toggle"
    path.write_bytes(b"0\n")
    victim = tmp_path / "victim"
    victim.write_bytes(b"the user's file\n")
    with pytest.raises(cuda_fault.SymlinkError), ToggleFile(path).fault(Scenario(xid=48)):
        path.unlink()
        path.symlink_to(victim)
    assert path.is_symlink()
    assert victim.read_bytes() == b"the user's file\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [], "no temporary file left"


def test_a_huge_regular_file_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    path = tmp_path / "toggle"
    path.write_bytes(b"0" * ((1 << 20) + 1))
    with pytest.raises(cuda_fault.UsageError) as info, ToggleFile(path).fault(Scenario(xid=48)):
        pytest.fail("the block must not run")
    assert info.value.code == 2
    assert path.stat().st_size == (1 << 20) + 1
