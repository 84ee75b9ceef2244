"""Measuring what a send path allocates (tracemalloc, in process), for the tests and benchmarks/node_stream.py."""

from __future__ import annotations

import gc
import socket
import tracemalloc
from collections.abc import Callable


def loopback_pairs(count: int) -> tuple[list[socket.socket], list[socket.socket]]:
    """``count`` connected 127.0.0.1 TCP pairs: (the connecting ends, the accepted ends)."""
    listener = socket.socket()
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        connecting = [socket.create_connection(listener.getsockname()) for _ in range(count)]
        accepted = [listener.accept()[0] for _ in connecting]
    finally:
        listener.close()
    return connecting, accepted


def measure(step: Callable[[], None], frames: int) -> tuple[int, int]:
    """(largest transient peak above the level before a frame, net growth over ``frames`` calls of ``step``).

    ``step`` runs 50 times first so that caches and lazily built buffers are in place before counting.
    """
    for _ in range(50):
        step()
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        worst = 0
        for _ in range(frames):
            before = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            step()
            worst = max(worst, tracemalloc.get_traced_memory()[1] - before)
        gc.collect()
        return worst, tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
