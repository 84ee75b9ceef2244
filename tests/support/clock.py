"""A clock the test moves by hand, for rules stated in seconds (rate limits, motion, recordings).

``Clock()`` is called like ``time.monotonic``; as a stand-in for a module's ``time`` (``monkeypatch.setattr(
module, "time", clock)``) its ``monotonic()`` and ``time()`` read the same ``now`` and everything else
(``strftime``, ``localtime``, ...) is the real ``time`` module's. Only that module sees it: asyncio's own
clock, and every other module, keep real time.
"""

from __future__ import annotations

import time as _time
from typing import Any


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now

    def __getattr__(self, name: str) -> Any:
        return getattr(_time, name)
