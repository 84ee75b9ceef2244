"""Running a function again and again: the hub's periodic jobs (ticks, state refreshes)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable


async def every(interval_s: float, job: Callable[[], object]) -> None:
    """Call ``job`` every ``interval_s`` seconds (the first time after one interval) until cancelled; a job
    that returns an awaitable is awaited before the next interval starts."""
    while True:
        await asyncio.sleep(interval_s)
        result = job()
        if inspect.isawaitable(result):
            await result
