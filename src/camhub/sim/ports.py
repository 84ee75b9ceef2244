"""Is a TCP port free to listen on, and if not, who holds it (from ``/proc``, else ``ss``)?

The check binds the way the hub's listeners do (aiohttp's ``TCPSite(reuse_address=True)`` and
asyncio's ``start_server``, which amqtt uses, both set ``SO_REUSEADDR``): connections left in
TIME_WAIT by a run that just stopped do not count, a socket that listens does.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess

_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's "st" column (include/net/tcp_states.h)


def port_free(host: str, port: int) -> bool:
    """True when a listener with ``SO_REUSEADDR`` could bind ``host:port`` now."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on ``port`` (any address), from /proc/net/tcp and tcp6."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as lines:
            next(lines, None)  # the header
            for line in lines:
                fields = line.split()
                if len(fields) > 9 and fields[3] == _LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(fields[9])
    return inodes


def _process_of(inodes: set[str]) -> str | None:
    """``name (pid N)`` of a process holding one of the socket ``inodes``, if /proc lets us see it."""
    targets = {f"socket:[{inode}]" for inode in inodes}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            fds = f"/proc/{pid}/fd"
            if any(os.readlink(f"{fds}/{fd}") in targets for fd in os.listdir(fds)):
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmdline = " ".join(f.read().decode(errors="replace").replace("\0", " ").split())
                return f"{cmdline[:120] or '?'} (pid {pid})"
    return None


def _ss_line(port: int) -> str | None:
    """The listening socket as ``ss -ltnp`` shows it (it names the process where it may)."""
    if not shutil.which("ss"):
        return None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, timeout=2)
        return " ".join(out.stdout.split()) or None
    return None


def holder(port: int) -> str:
    """Who listens on ``port``, as well as this machine tells: a process, an ``ss`` line, or a hint."""
    inodes = _listening_inodes(port)
    if inodes and (process := _process_of(inodes)):
        return process
    return _ss_line(port) or f"not visible to this user; `sudo ss -ltnp 'sport = :{port}'` shows it"
