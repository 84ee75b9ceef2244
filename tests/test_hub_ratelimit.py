"""Repeated warnings and repeated failures are rate-limited, in bounded tables."""

from __future__ import annotations

import logging

import pytest

from camhub.hub.util.ratelimit import AttemptThrottle, LogLimiter
from tests.support.clock import Clock


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


# ---- the log limiter: one line per interval, counted from the line last logged ---------------------
def _lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records]


def test_the_interval_runs_from_the_last_logged_line_not_the_first(caplog: pytest.LogCaptureFixture) -> None:
    """A steady flood (a bad client retrying every 10 s) logs one line a minute, not one per repeat after the first
    minute."""
    clock = Clock()
    limiter = LogLimiter(logging.getLogger("test.limiter"), interval_s=60, clock=clock)
    logged_at = []
    with caplog.at_level(logging.INFO, "test.limiter"):
        for step in range(0, 190, 10):  # every 10 s for three minutes
            clock.now = 1000.0 + step
            if limiter.warning("k", "refused"):
                logged_at.append(step)
    assert logged_at == [0, 60, 120, 180]
    assert _lines(caplog) == [("WARNING", "refused")] + [
        ("WARNING", "refused (5 more like this in the last 60 s)")] * 3
    assert limiter.suppressed == 15


def test_a_repeat_just_inside_the_interval_is_held_back_and_one_at_it_is_logged() -> None:
    clock = Clock()
    limiter = LogLimiter(logging.getLogger("test.limiter"), interval_s=60, clock=clock)
    assert limiter.info("k", "x") is True
    clock.now += 59.999
    assert limiter.info("k", "x") is False
    clock.now += 0.001
    assert limiter.info("k", "x") is True  # exactly one interval after the last line


def test_a_line_after_a_quiet_spell_says_nothing_was_held_back(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    limiter = LogLimiter(logging.getLogger("test.limiter"), interval_s=60, clock=clock)
    with caplog.at_level(logging.INFO, "test.limiter"):
        limiter.info("k", "hub %s", "up")
        clock.now += 3600
        limiter.info("k", "hub %s", "up")
        limiter.info("k", "hub %s", "up")  # held back
        clock.now += 90.4
        limiter.log(logging.ERROR, "k", "hub %s", "up")
    assert _lines(caplog) == [("INFO", "hub up"), ("INFO", "hub up"),
                              ("ERROR", "hub up (1 more like this in the last 90 s)")]


def test_a_full_table_forgets_the_key_logged_longest_ago() -> None:
    clock = Clock()
    limiter = LogLimiter(logging.getLogger("test.limiter"), interval_s=60, max_keys=2, clock=clock)
    limiter.warning("a", "x")
    clock.now += 1
    limiter.warning("b", "x")
    clock.now += 60
    assert limiter.warning("a", "x")  # logged again: now the most recent
    assert limiter.warning("c", "x")  # the table is full: "b", logged longest ago, is forgotten
    assert not limiter.warning("a", "x") and not limiter.warning("c", "x")  # still limited
    assert limiter.warning("b", "x")  # forgotten, so new again


# ---- the login throttle ------------------------------------------------------------------------------
def test_a_full_throttle_table_forgets_the_oldest_address_so_a_new_guesser_is_still_throttled() -> None:
    clock = Clock()
    throttle = AttemptThrottle(limit=3, window_s=60, max_keys=3, clock=clock)
    for address in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):  # the table fills up
        throttle.failed(address)
        clock.now += 1
    throttle.failed("10.0.0.1")  # an old address fails again: now the most recent
    for _ in range(3):
        throttle.failed("192.0.2.66")  # a new guesser
    assert throttle.blocked("192.0.2.66")
    assert len(throttle) == 3
    # "10.0.0.2", whose last failure is the oldest, was forgotten; "10.0.0.1" was not
    for _ in range(2):
        throttle.failed("10.0.0.1")
        throttle.failed("10.0.0.2")
    assert throttle.blocked("10.0.0.1") and not throttle.blocked("10.0.0.2")


def test_the_window_runs_from_the_first_failure_and_blocks_at_the_limit() -> None:
    clock = Clock()
    throttle = AttemptThrottle(limit=3, window_s=60, clock=clock)
    throttle.failed("a")
    clock.now += 50
    throttle.failed("a")
    assert not throttle.blocked("a")  # two of three
    throttle.failed("a")
    assert throttle.blocked("a") and throttle.retry_after("a") == 10
    clock.now += 9.5
    assert throttle.blocked("a") and throttle.retry_after("a") == 1  # whole seconds, rounded up
    clock.now += 0.5  # 60 s after the first failure: a fresh start
    assert not throttle.blocked("a") and throttle.retry_after("a") == 0 and len(throttle) == 0
    throttle.failed("a")
    assert not throttle.blocked("a") and throttle.retry_after("a") == 60


def test_retry_after_is_never_zero_while_blocked() -> None:
    clock = Clock()
    throttle = AttemptThrottle(limit=1, window_s=60, clock=clock)
    throttle.failed("a")
    clock.now += 59.9999
    assert throttle.blocked("a") and throttle.retry_after("a") == 1
    assert throttle.retry_after("never-failed") == 0


def test_the_defaults_every_part_uses(caplog: pytest.LogCaptureFixture) -> None:
    """``LogLimiter(log)``: one line a minute per kind, 1024 kinds; the login throttle's table: 4096 addresses."""
    clock = Clock()
    limiter = LogLimiter(logging.getLogger("test.limiter"), clock=clock)
    assert limiter.warning("k", "x") and not limiter.warning("k", "x")
    clock.now += 59.9
    assert not limiter.warning("k", "x")
    clock.now += 0.1
    assert limiter.warning("k", "x")
    for i in range(1100):
        limiter.warning(f"other-{i}", "x")
    assert len(limiter._seen) == 1024 and limiter.warning("k", "x")  # "k" was forgotten: logged at once
    throttle = AttemptThrottle(clock=clock)
    for i in range(5000):
        throttle.failed(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}")
    assert len(throttle) == 4096
    for _ in range(9):
        throttle.failed("192.0.2.1")
    assert not throttle.blocked("192.0.2.1")
    throttle.failed("192.0.2.1")
    assert throttle.blocked("192.0.2.1") and throttle.retry_after("192.0.2.1") == 60
