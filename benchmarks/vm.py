"""Benchmark code in a Unix-port VM (MicroPython's or CircuitPython's), driven from CPython.

``Vm`` (``tests/support/vm.py``: lib/, frames, command, results) runs ``benchmarks/vm_side.py``, the
code that runs inside; here too a drain for the viewers' sockets and the CPU a process used.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

from tests.support.vm import Vm, VmMissing

HERE = Path(__file__).resolve().parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


def side_vm(runtime: str = "micropython") -> Vm:
    """``vm_side.py`` on ``runtime``'s VM; exits with how to get the VM when it is missing."""
    try:
        return Vm(HERE / "vm_side.py", runtime)
    except VmMissing as missing:
        raise SystemExit(str(missing)) from None


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
