"""Rate limits for things that repeat: log lines, and failed attempts per client address.

``LogLimiter`` lets the first of a kind of warning through and then at most one per interval,
saying how many like it were held back, so a flood of bad input costs a few log lines, not one
per event. ``AttemptThrottle`` remembers recent failures per key (a client address) in a bounded
table, so guessing passwords gets slow without a table an attacker can grow.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable


class LogLimiter:
    """``warning(key, msg, *args)``: logged at once, then at most once per ``interval_s`` per key."""

    def __init__(self, logger: logging.Logger, interval_s: float = 60.0, max_keys: int = 1024,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = logger
        self.interval_s = interval_s
        self._max_keys = max_keys
        self._clock = clock
        self._seen: OrderedDict[str, list[float]] = OrderedDict()  # key -> [last logged at, held back]
        self.suppressed = 0

    def log(self, level: int, key: str, msg: str, *args: object) -> bool:
        """Log (True) or count (False) this occurrence of ``key``."""
        now = self._clock()
        entry = self._seen.get(key)
        if entry is not None and now - entry[0] < self.interval_s:
            entry[1] += 1
            self.suppressed += 1
            return False
        if entry is not None and entry[1]:
            msg += " (%d more like this in the last %.0f s)"
            args = (*args, int(entry[1]), now - entry[0])
        self._seen[key] = [now, 0]
        self._seen.move_to_end(key)
        while len(self._seen) > self._max_keys:
            self._seen.popitem(last=False)
        self._log.log(level, msg, *args)
        return True

    def warning(self, key: str, msg: str, *args: object) -> bool:
        return self.log(logging.WARNING, key, msg, *args)

    def __len__(self) -> int:
        """Kinds of message remembered (at most ``max_keys``)."""
        return len(self._seen)

    def info(self, key: str, msg: str, *args: object) -> bool:
        return self.log(logging.INFO, key, msg, *args)


class AttemptThrottle:
    """Counts failures per key in a sliding window; ``blocked(key)`` once there were too many.

    The table keeps at most ``max_keys`` addresses (the oldest forgotten first), so a scan from
    many addresses cannot grow it; each forgotten address merely starts again from zero.
    """

    def __init__(self, limit: int = 10, window_s: float = 60.0, max_keys: int = 4096,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self._max_keys = max_keys
        self._clock = clock
        self._failures: OrderedDict[str, list[float]] = OrderedDict()  # key -> [window start, count]

    def _entry(self, key: str) -> list[float] | None:
        entry = self._failures.get(key)
        if entry is not None and self._clock() - entry[0] >= self.window_s:
            del self._failures[key]
            return None
        return entry

    def blocked(self, key: str) -> bool:
        entry = self._entry(key)
        return entry is not None and entry[1] >= self.limit

    def retry_after(self, key: str) -> int:
        entry = self._entry(key)
        return 0 if entry is None else max(1, int(entry[0] + self.window_s - self._clock() + 0.999))

    def failed(self, key: str) -> None:
        entry = self._entry(key)
        if entry is None:
            self._failures[key] = [self._clock(), 1]
        else:
            entry[1] += 1
            self._failures.move_to_end(key)
        while len(self._failures) > self._max_keys:
            self._failures.popitem(last=False)

    def __len__(self) -> int:
        return len(self._failures)
