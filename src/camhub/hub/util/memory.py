"""Handing the heap's free memory back to the system now and then (glibc only).

A hub allocates and frees frames, JSON and buffers all day, on the event loop and on worker threads.
glibc keeps what is freed in its arenas for reuse and returns to the system only the free memory at
the top of a heap; free pages between live chunks stay in the process for ever. Over hours that is a
slow climb of RSS with Python's own objects flat (benchmarks/soak.py: the full-featured hub grew
about 1.5 MB/h, all of it glibc's free bytes). ``malloc_trim(0)`` gives back every whole free page of
every arena (glibc 2.8+); it takes a few milliseconds, so it runs on a worker thread, every
``CAMHUB_MALLOC_TRIM_S``.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
from collections.abc import Callable, Iterable

from camhub.hub.util.counters import Family


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to do
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


class HeapTrimmer:
    """Calls glibc's ``malloc_trim`` when asked; counts what it did."""

    def __init__(self) -> None:
        self.trims: dict[str, int] = {"released": 0, "nothing": 0}

    @staticmethod
    def available() -> bool:
        return _malloc_trim() is not None

    async def trim(self) -> None:
        trim = _malloc_trim()
        if trim is None:
            return
        released = await asyncio.to_thread(trim, 0)
        self.trims["released" if released else "nothing"] += 1

    def counters(self) -> Iterable[Family]:
        yield Family("camhub_heap_trims", "Times the hub handed free heap memory back to the system (glibc)",
                     "result", dict(self.trims))
