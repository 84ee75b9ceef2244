"""Weeks of uptime: the node keeps 30 fps and its write timeout on a board that has run for 30 days.

The firmware runs on virtual time -- the real ``Node``, its frame pool, fan-out and HTTP front,
viewers on real loopback sockets -- so the result does not depend on how loaded this machine is
(``tests/vm/uptime.py`` says how). The same scenario runs in process on CPython and inside both
Unix-port VMs; CircuitPython's computes every float in single precision, as an ESP32-S3 does, so
there the node's arithmetic, asyncio's ``int(t * 1000)`` and the 30-day ``time.monotonic()`` are
the board's own rather than emulated.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.procs import RUNTIMES, free_port
from tests.support.vm import Vm
from tests.vm import uptime

NAPS_MS = (7, 50, 199, 1000)
UPTIMES = {"fresh": 1, "30-days": uptime.UPTIME_S}
HEAP = 4 << 20


@pytest.fixture(scope="module", params=RUNTIMES)
def runtime(request: pytest.FixtureRequest) -> Iterator[tuple[str, Vm | None]]:
    """The runtime, with its VM (the scenario's lib/ and the node's JPEG loop) unless it is CPython."""
    if request.param == "cpython":
        yield request.param, None
        return
    vm = Vm(Path(uptime.__file__), request.param)
    try:
        vm.render("QQVGA", 30, node_id="uptime")
        yield request.param, vm
    finally:
        vm.close()


def test_thirty_days_up_and_ticks_wrapping_capture_keeps_30_fps_and_a_stalled_viewer_times_out(
        runtime: tuple[str, Vm | None]) -> None:
    name, vm = runtime
    if vm is None:
        result = uptime.thirty_days(free_port(), free_port())
    else:
        result = vm.result(HEAP, "thirty_days", free_port(), free_port(), timeout=120)
        assert result["runtime"] == name
        # CircuitPython's VM computed all of it in single precision, as a board does
        assert result["float_bits"] == (32 if name == "circuitpython" else 64)
    # 10 s at 30 fps, across the tick wrap: within 5 %.
    assert 285 <= result["captured"] <= 315, result
    assert result["fast"] >= 285, result
    # CAMHUB_WRITE_TIMEOUT_S = 5: the viewer that takes nothing goes after 5 s, not much later (the
    # fan-out looks every few ms), and neither never nor at once when the ticks wrap meanwhile.
    assert result["stall_ms"] is not None and 5000 <= result["stall_ms"] <= 5100, result
    assert result["reasons"] == ["write_timeout"], result


@pytest.mark.parametrize("uptime_s", UPTIMES.values(), ids=UPTIMES.keys())
def test_nap_sleeps_whole_milliseconds_without_spinning(runtime: tuple[str, Vm | None], uptime_s: int) -> None:
    name, vm = runtime
    if vm is None:
        naps = {f"{ms}/{uptime_s}": uptime.nap(ms, uptime_s, free_port()) for ms in NAPS_MS}
    else:
        naps = vm.result(HEAP, "nap", ",".join(map(str, NAPS_MS)), uptime_s, free_port(), timeout=60)
    for ms in NAPS_MS:
        nap = naps[f"{ms}/{uptime_s}"]
        assert nap["done"], (ms, nap)
        # One sleep per 200 ms slice, and at most one more for a millisecond lost to rounding. (A float
        # deadline slept off "what is left" spins through the last sub-millisecond: ~250 turns.)
        assert nap["turns"] <= -(-ms // 200) + 1, (ms, nap)
