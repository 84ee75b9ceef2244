"""Benchmark code in the MicroPython VM, driven from CPython: its lib/, frames, command and results.

The VM is the one ``camhub node --sim --runtime micropython`` uses (``camhub.sim.vm``): the same
``lib/`` (what deploy copies), the same pre-rendered JPEG loops, ``camhub_node.unixport.prepare()``
first; ``benchmarks/vm_side.py`` is the code that runs inside.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

from camhub.deploy.bundle import find_firmware
from camhub.sim import vm as nodevm

HERE = Path(__file__).resolve().parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


class Vm:
    """A work directory with ``lib/`` and ``frames/``; ``result()`` runs a vm_side mode to its RESULT."""

    def __init__(self) -> None:
        self.binary = nodevm.find_micropython()
        if self.binary is None:
            raise SystemExit(nodevm.MISSING)
        self._dir = tempfile.TemporaryDirectory(prefix="camhub-bench-vm-")
        work = Path(self._dir.name)
        self.lib, self.frames = work / "lib", work / "frames"
        self.frames.mkdir()
        nodevm.link_libraries(find_firmware(), self.lib)

    def render(self, frame_size: str, fps: int, node_id: str = "bench") -> None:
        nodevm.render(self.frames, node_id, frame_size, 12, fps, scene="busy")

    def argv(self, heap: int, *args: object) -> list[str]:
        call = ("from camhub_node import unixport; unixport.prepare(); import vm_side; "
                f"vm_side.main({[str(a) for a in args]!r})")
        return nodevm.vm_argv(self.binary, heap, [self.lib, HERE], call)

    def result(self, heap: int, *args: object, env: dict[str, str] | None = None, timeout: float = 300) -> dict:
        done = subprocess.run(self.argv(heap, *args), capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "CAMHUB_VM_FRAMES": str(self.frames), **(env or {})})
        for line in done.stdout.splitlines():
            if line.startswith("RESULT "):
                return json.loads(line[len("RESULT "):])
        raise RuntimeError(f"the VM gave no result (exit {done.returncode}): {(done.stdout + done.stderr)[-800:]}")

    def close(self) -> None:
        self._dir.cleanup()


class Drain:
    """A loopback listener whose accepted connections are read and discarded by threads."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.port = self.listener.getsockname()[1]
        self.received = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._drain, args=(conn,), daemon=True).start()

    def _drain(self, conn: socket.socket) -> None:
        buf = bytearray(1 << 20)
        with conn:
            try:
                while n := conn.recv_into(buf):
                    self.received += n
            except OSError:
                pass

    def close(self) -> None:
        self.listener.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def vm_pid(pid: int) -> int:
    """The VM under ``camhub node --runtime micropython`` (its child), else ``pid`` itself."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return pid
    return int(children[0]) if children else pid
