"""Code run inside a Unix-port VM (MicroPython's or CircuitPython's), driven from CPython.

The VM is the one ``camhub node --sim --runtime micropython|circuitpython`` uses (``camhub.sim.vm``):
the same ``lib/`` (what deploy copies), the same pre-rendered JPEG loops, and
``camhub_node.unixport.prepare()`` first; then ``<side>.main(args)`` of a VM-side module (plain
MicroPython code), which prints one line ``RESULT {json}``. The tests' VM side is
``tests/vm/uptime.py``; the benchmarks' is ``benchmarks/vm_side.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

from camhub.deploy.bundle import find_firmware
from camhub.sim import vm as nodevm


class VmMissing(RuntimeError):
    """The runtime's VM is not on this machine (the message says how to get it)."""


class Vm:
    """A work directory with ``lib/`` and ``frames/``; ``result()`` runs ``side.main(args)`` to its RESULT."""

    def __init__(self, side: Path, runtime: str = "micropython") -> None:
        self.runtime = runtime
        self.binary = nodevm.find_vm(runtime, os.environ)
        if self.binary is None:
            raise VmMissing(nodevm.missing_vm(runtime, os.environ))
        self.side = side
        self._dir = tempfile.TemporaryDirectory(prefix="camhub-vm-side-")
        work = Path(self._dir.name)
        self.lib, self.frames = work / "lib", work / "frames"
        self.frames.mkdir()
        nodevm.link_libraries(find_firmware(), self.lib)

    def render(self, frame_size: str, fps: int, node_id: str = "bench", quality: int = 12,
               scene: str = "busy") -> None:
        """The camera's JPEGs for ``frame_size`` (``busy``: motion on every frame, the same cost each)."""
        nodevm.render(self.frames, node_id, frame_size, quality, fps, scene=scene)

    def argv(self, heap: int, *args: object) -> list[str]:
        call = (f"from camhub_node import unixport; unixport.prepare(); import {self.side.stem}; "
                f"{self.side.stem}.main({[str(a) for a in args]!r})")
        return nodevm.vm_argv(self.binary, heap, [self.lib, self.side.parent], call)

    def result(self, heap: int, *args: object, env: dict[str, str] | None = None, timeout: float = 300) -> dict:
        done = subprocess.run(self.argv(heap, *args), capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "CAMHUB_VM_FRAMES": str(self.frames), **(env or {})})
        for line in done.stdout.splitlines():
            if line.startswith("RESULT "):
                return json.loads(line[len("RESULT "):])
        raise RuntimeError(f"the VM gave no result (exit {done.returncode}): {(done.stdout + done.stderr)[-1500:]}")

    def close(self) -> None:
        self._dir.cleanup()
