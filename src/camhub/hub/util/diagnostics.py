"""What a long-running hub holds: each part's own structure sizes, the process's memory, and (opt-in)
where memory grows, for ``GET /api/hub/diagnostics`` (``CAMHUB_DIAGNOSTICS``, off by default).

A part says how big its own tables are in ``sizes() -> Mapping[str, int]`` (entries, not bytes:
cameras, viewers, disconnects kept, events kept, queued messages, ...), as it says what it counts in
``counters()``. Every table of a hub that runs for months must stay bounded; a number that only ever
grows here is a leak. ``process_stats()`` reads what the process holds (RSS, descriptors, threads,
asyncio tasks, the garbage collector's and both allocators' view), and ``Tracer`` compares
``tracemalloc`` snapshots: the lines whose allocations grew most since a baseline.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import gc
import os
import sys
import threading
import tracemalloc
from collections.abc import Mapping
from typing import Any, Protocol


class Sized(Protocol):
    """A part that can say how big its own structures are (entries, by name)."""

    def sizes(self) -> Mapping[str, int]: ...


class _MallInfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2`` (glibc 2.33+): every field a ``size_t``."""

    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


@functools.cache
def _mallinfo2() -> Any:
    try:
        mallinfo2 = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):  # not glibc, or older than 2.33
        return None
    mallinfo2.restype = _MallInfo2
    return mallinfo2


def _mallinfo() -> dict[str, int] | None:
    """glibc's heap, all arenas: bytes obtained from the system (sbrk/arenas, mmapped), in use, free."""
    mallinfo2 = _mallinfo2()
    if mallinfo2 is None:
        return None
    info = mallinfo2()
    return {"heap_bytes": info.arena, "mmapped_bytes": info.hblkhd, "in_use_bytes": info.uordblks,
            "free_bytes": info.fordblks, "releasable_bytes": info.keepcost}


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _count(path: str) -> int | None:
    try:
        return len(os.listdir(path))
    except OSError:
        return None


def process_stats() -> dict[str, Any]:
    """What the hub's process holds now (Linux's /proc; None where it cannot be read)."""
    try:
        tasks: int | None = len(asyncio.all_tasks())
    except RuntimeError:  # no running loop
        tasks = None
    return {
        "rss_kb": _status_kb("VmRSS"),
        "fds": _count("/proc/self/fd"),
        "threads": _count("/proc/self/task"),  # every thread, also the libraries' own
        "python_threads": threading.active_count(),
        "asyncio_tasks": tasks,
        "gc": {"objects": len(gc.get_objects()), "counts": list(gc.get_count()),
               "collections": [generation["collections"] for generation in gc.get_stats()]},
        "python_blocks": sys.getallocatedblocks(),  # blocks Python's allocator has handed out
        "malloc": _mallinfo(),
    }


class Tracer:
    """``tracemalloc`` started at construction; ``baseline()`` snapshots, ``growers()`` compares with it.

    Tracing costs memory (a trace per live allocation, ``frames`` deep) and time on every allocation:
    it is for finding a leak, never on by default. Snapshots are taken on a worker thread.
    """

    def __init__(self, frames: int = 8) -> None:
        if not tracemalloc.is_tracing():
            tracemalloc.start(frames)
        self._baseline: tracemalloc.Snapshot | None = None
        self._filters = [tracemalloc.Filter(False, tracemalloc.__file__),
                         tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
                         tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
                         tracemalloc.Filter(False, "<unknown>")]

    def _snapshot(self) -> tracemalloc.Snapshot:
        return tracemalloc.take_snapshot().filter_traces(self._filters)

    def state(self) -> dict[str, Any]:
        current, peak = tracemalloc.get_traced_memory()
        return {"traced_bytes": current, "peak_bytes": peak, "own_bytes": tracemalloc.get_tracemalloc_memory(),
                "baseline": self._baseline is not None}

    def baseline(self) -> None:
        """From now on ``growers()`` compares with this moment (blocking: call it on a worker thread)."""
        self._baseline = None  # the old one's memory is free before the new one is taken
        self._baseline = self._snapshot()

    def growers(self, top: int = 25, key: str = "lineno") -> list[dict[str, Any]]:
        """The ``top`` places whose traced memory grew most since the baseline (blocking)."""
        if self._baseline is None:
            return []
        stats = self._snapshot().compare_to(self._baseline, key)
        grown = sorted((s for s in stats if s.size_diff > 0), key=lambda s: s.size_diff, reverse=True)
        out = []
        for stat in grown[:top]:
            frames = stat.traceback if key == "traceback" else stat.traceback[:1]
            out.append({"where": [f"{f.filename}:{f.lineno}" for f in frames], "size_diff": stat.size_diff,
                        "count_diff": stat.count_diff, "size": stat.size, "count": stat.count})
        return out


class Diagnostics:
    """The parts whose sizes ``/api/hub/diagnostics`` shows (by name), and the tracer if one runs."""

    def __init__(self, parts: Mapping[str, Sized], tracer: Tracer | None = None) -> None:
        self.parts = parts
        self.tracer = tracer

    def sizes(self) -> dict[str, dict[str, int]]:
        return {name: dict(part.sizes()) for name, part in self.parts.items()}

    async def report(self, baseline: bool = False, top: int = 25, key: str = "lineno") -> dict[str, Any]:
        data: dict[str, Any] = {"process": process_stats(), "parts": self.sizes(), "tracemalloc": None}
        tracer = self.tracer
        if tracer is not None:
            if baseline:
                await asyncio.to_thread(tracer.baseline)
            growers = await asyncio.to_thread(tracer.growers, top, key) if top else []
            data["tracemalloc"] = {**tracer.state(), "growers": growers}
        return data
