"""Weeks of uptime: the node keeps 30 fps and its write timeout on a board that has run for 30 days.

The firmware runs in process -- the real ``Node``, its frame pool, fan-out and HTTP front, viewers on
real loopback sockets -- on virtual time, so the result does not depend on how loaded this machine
is: time passes only while every task sleeps, and a sleep lasts whole milliseconds, as
MicroPython-family asyncio has it (MicroPython's and CircuitPython's ``asyncio/core.py``:
``def sleep(t): return sleep_ms(int(t * 1000))``). Reading a clock and each task turn cost a couple
of microseconds, as code does on a board. The platform offers the two clocks such a board has:
``ticks_ms()``, a ``supervisor.ticks_ms()`` a few seconds before its 2**29 wrap, and ``now()``,
``time.monotonic()`` as a single-precision float at 30 days of uptime (steps of 250 ms) -- what the
firmware read before it measured time in integer milliseconds.
"""

from __future__ import annotations

import asyncio
import heapq
import socket
import struct
import time
import types

import pytest

from camhub_node import node as node_module
from camhub_node.config import Config
from camhub_node.host import HostPlatform
from camhub_node.node import Node
from tests.support.allocations import loopback_pairs
from tests.support.procs import free_port

TICKS_PERIOD = 2**29  # supervisor.ticks_ms() wraps here (adafruit_ticks: _TICKS_PERIOD)
UPTIME_S = 30 * 86400
_real_sleep = asyncio.sleep


class VirtualTime:
    """A clock that moves only when every task sleeps (or code reads the clock)."""

    READ_US = 2  # reading a clock
    TURN_US = 2  # entering a sleep

    def __init__(self) -> None:
        self.us = 0
        self.turns = 0
        self._sleepers: list[tuple[int, int, asyncio.Future[None]]] = []
        self._n = 0

    def read_us(self) -> int:
        self.us += self.READ_US
        return self.us

    async def sleep(self, seconds: float) -> None:
        """MicroPython's asyncio.sleep: ``sleep_ms(int(t * 1000))``."""
        self.turns += 1
        self.us += self.TURN_US
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.us + int(seconds * 1000) * 1000, self._n, future))
        self._n += 1
        await future

    def asyncio_module(self) -> types.SimpleNamespace:
        """The node's view of ``asyncio``: everything real but ``sleep``."""
        return types.SimpleNamespace(sleep=self.sleep, create_task=asyncio.create_task, gather=asyncio.gather,
                                     Event=asyncio.Event, Lock=asyncio.Lock, run=asyncio.run)

    async def run_until(self, until_us: int, after_each=None, max_turns: int = 200_000) -> None:
        """Wake sleepers in time order up to ``until_us``; ``after_each()`` runs between wake-ups."""
        while True:
            for _ in range(3):  # let every woken task run on to its next sleep
                await _real_sleep(0)
            if after_each is not None:
                after_each()
            assert self.turns < max_turns, f"the node is spinning: {self.turns} sleeps by {self.us // 1000} ms"
            if not self._sleepers or self._sleepers[0][0] > until_us:
                self.us = max(self.us, until_us)
                return
            wake, _, future = heapq.heappop(self._sleepers)
            self.us = max(self.us, wake)
            if not future.done():
                future.set_result(None)


class BoardClocks(HostPlatform):
    """The PC platform with a board's clocks after ``uptime_s`` of uptime, on virtual time."""

    def __init__(self, vt: VirtualTime, ticks_at_start: int, uptime_s: int = UPTIME_S) -> None:
        super().__init__()
        self.vt = vt
        self.ticks_at_start = ticks_at_start
        self.uptime_s = uptime_s

    def ticks_ms(self) -> int:
        return (self.ticks_at_start + self.vt.read_us() // 1000) % TICKS_PERIOD

    def now(self) -> float:
        """time.monotonic() as a single-precision float (what the float-clock firmware read)."""
        return struct.unpack("f", struct.pack("f", self.uptime_s + self.vt.read_us() / 1e6))[0]

    def install_stop(self, callback: object) -> None:
        pass  # the test stops the node itself


def _node(vt: VirtualTime, ticks_at_start: int, uptime_s: int = UPTIME_S, **settings: str) -> Node:
    env = {"CAMHUB_NODE_ID": "uptime", "CAMHUB_HTTP_PORT": str(free_port()), "CAMHUB_FRAME_SIZE": "QQVGA",
           "CAMHUB_FPS": "30", "CAMHUB_MAX_CLIENTS": "2", "CAMHUB_WRITE_TIMEOUT_S": "5", **settings}
    platform = BoardClocks(vt, ticks_at_start, uptime_s)
    cfg = Config(getenv=env.get, defaults=platform.defaults())
    platform.start(cfg)
    return Node(platform, cfg)


def _stalled_socket() -> tuple[socket.socket, socket.socket]:
    """A connected pair whose reading end never reads, with the node's end already full.

    Full for good: the kernel moves queued bytes on to the reader's buffer in real time, which is
    far slower than this test's virtual time, so fill until a pause frees no more room.
    """
    (reader,), (served,) = loopback_pairs(1)
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    served.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32768)  # what HostPlatform.prepare_viewer sets
    served.setblocking(False)
    junk = b"\0" * 65536
    for _ in range(100):
        sent = 0
        while True:
            try:
                sent += served.send(junk)
            except BlockingIOError:
                break
        if not sent:
            return reader, served
        time.sleep(0.05)
    raise AssertionError("the stalled viewer's socket never filled up")


def test_thirty_days_up_and_ticks_wrapping_capture_keeps_30_fps_and_a_stalled_viewer_times_out(
        monkeypatch: pytest.MonkeyPatch) -> None:
    vt = VirtualTime()
    monkeypatch.setattr(node_module, "asyncio", vt.asyncio_module())
    node = _node(vt, TICKS_PERIOD - 4000)  # the ticks wrap 4 s in: inside both measurements below
    (fast_reader,), (fast_served,) = loopback_pairs(1)
    fast_reader.setblocking(False)
    stalled_reader, stalled_served = _stalled_socket()
    sink = bytearray(1 << 20)
    seen = {"dropped_at_us": None}

    def drain_and_watch() -> None:
        while True:  # a viewer that keeps up
            try:
                if not fast_reader.recv_into(sink):
                    assert node.stopping, "the node closed the fast viewer"
                    break
            except BlockingIOError:
                break
        if seen["dropped_at_us"] is None and node.fanout.disconnects:
            seen["dropped_at_us"] = vt.us

    async def scenario() -> dict[str, int]:
        running = asyncio.create_task(node.run())
        await vt.run_until(1_000_000, drain_and_watch)
        fast = node.fanout.add(fast_served, "fast", "test")
        frames_at_1s, fast_at_1s = node.frames, fast.frames_sent
        await vt.run_until(1_500_000, drain_and_watch)
        node.fanout.add(stalled_served, "stalled", "test")
        added_at_us = vt.us
        await vt.run_until(11_000_000, drain_and_watch)
        result = {"captured": node.frames - frames_at_1s, "fast": fast.frames_sent - fast_at_1s,
                  "stall_ms": (seen["dropped_at_us"] - added_at_us) // 1000 if seen["dropped_at_us"] else None}
        node.request_stop()
        await vt.run_until(13_000_000, drain_and_watch)
        await asyncio.wait_for(running, 5)
        return result

    try:
        result = asyncio.run(scenario())
    finally:
        for sock in (fast_reader, fast_served, stalled_reader, stalled_served):
            sock.close()
    # 10 s at 30 fps, across the tick wrap: within 5 %.
    assert 285 <= result["captured"] <= 315, result
    assert result["fast"] >= 285, result
    # CAMHUB_WRITE_TIMEOUT_S = 5: the viewer that takes nothing goes after 5 s, not much later (the
    # fan-out looks every few ms), and neither never nor at once when the ticks wrap meanwhile.
    assert result["stall_ms"] is not None and 5000 <= result["stall_ms"] <= 5100, result
    assert node.fanout.disconnects[0]["reason"] == "write_timeout"


@pytest.mark.parametrize("uptime_s", [1, UPTIME_S], ids=["fresh", "30-days"])
@pytest.mark.parametrize("ms", [7, 50, 199, 1000])
def test_nap_sleeps_whole_milliseconds_without_spinning(monkeypatch: pytest.MonkeyPatch, ms: int,
                                                        uptime_s: int) -> None:
    vt = VirtualTime()
    monkeypatch.setattr(node_module, "asyncio", vt.asyncio_module())
    node = _node(vt, TICKS_PERIOD - 20, uptime_s)  # the ticks wrap during the nap

    async def scenario() -> tuple[int, int]:
        started_us = vt.us
        nap = asyncio.create_task(node.nap(ms))
        await vt.run_until(started_us + (ms + 5) * 1000)
        assert nap.done()
        return vt.turns, vt.us - started_us

    turns, _ = asyncio.run(scenario())
    # One sleep per 200 ms slice, and at most one more for a millisecond lost to rounding. (A float
    # deadline slept off "what is left" spins through the last sub-millisecond: ~250 turns.)
    assert turns <= -(-ms // 200) + 1, turns
