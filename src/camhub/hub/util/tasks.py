"""Running a function again and again: the hub's periodic jobs (ticks, state refreshes)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def every(interval_s: float, job: Callable[[], object]) -> None:
    """Call ``job`` every ``interval_s`` seconds (the first time after one interval) until cancelled."""
    while True:
        await asyncio.sleep(interval_s)
        job()
