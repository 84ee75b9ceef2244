"""Entering a Linux network namespace from this thread (for the test bed in ``netbed.py``).

``setns(2)`` with ``CLONE_NEWNET`` moves the calling thread only, and a socket belongs to the namespace
it was made in for its whole life. So ``with entered("ns"):`` makes sockets (an HTTP probe, an MQTT
observer, a stream reader) that live in that namespace, and they keep working there after the block;
threads started inside the block start inside it too. Python 3.11 has no ``os.setns``: libc's, by ctypes.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator

CLONE_NEWNET = 0x40000000  # <sched.h>
NETNS_DIR = "/run/netns"  # where `ip netns add` keeps a namespace's handle

_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def entered(name: str | None) -> Iterator[None]:
    """This thread in the network namespace ``name`` (``ip netns`` name) for the block; ``None``: stay."""
    if name is None:
        yield
        return
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(os.path.join(NETNS_DIR, name), os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(own)
