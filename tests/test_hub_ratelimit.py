"""Repeated warnings and repeated failures are rate-limited, in bounded tables."""

from __future__ import annotations

import logging

import pytest

from camhub.hub.util.ratelimit import AttemptThrottle, LogLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_repeated_warning_is_logged_once_per_interval_with_a_count(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    limiter = LogLimiter(logging.getLogger("test.limiter"), interval_s=60, clock=clock)
    with caplog.at_level(logging.WARNING, "test.limiter"):
        for _ in range(1000):
            limiter.warning("bad_json", "announce rejected: %s", "bad_json")
        limiter.warning("oversized", "announce rejected: %s", "oversized")  # another kind: its own line
        clock.now += 61
        limiter.warning("bad_json", "announce rejected: %s", "bad_json")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["announce rejected: bad_json", "announce rejected: oversized",
                     "announce rejected: bad_json (999 more like this in the last 61 s)"]
    assert limiter.suppressed == 999


def test_the_limiters_tables_stay_bounded() -> None:
    clock = Clock()
    limiter = LogLimiter(logging.getLogger("test.limiter"), max_keys=10, clock=clock)
    throttle = AttemptThrottle(limit=3, window_s=60, max_keys=100, clock=clock)
    for i in range(10_000):
        limiter.warning(f"k{i}", "x")
        throttle.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter._seen) == 10 and len(throttle) == 100


def test_failures_per_address_are_throttled_for_a_window() -> None:
    clock = Clock()
    throttle = AttemptThrottle(limit=3, window_s=60, clock=clock)
    for _ in range(3):
        assert not throttle.blocked("10.0.0.9")
        throttle.failed("10.0.0.9")
    assert throttle.blocked("10.0.0.9") and not throttle.blocked("10.0.0.10")
    assert 0 < throttle.retry_after("10.0.0.9") <= 60
    clock.now += 60
    assert not throttle.blocked("10.0.0.9")
