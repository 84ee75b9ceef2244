"""Weeks of uptime on virtual time: the real ``Node`` on a board's clocks, the same code on every runtime.

``tests/test_node_clock.py`` runs these scenarios in process on CPython and, through
``tests.support.vm``, inside MicroPython's and CircuitPython's Unix-port VMs, where ``main()``
prints ``RESULT {json}``. On CircuitPython's VM every float is single precision, as on a board: the
node's own arithmetic, asyncio's ``int(t * 1000)`` and the stand-in ``time.monotonic()`` below are
computed as an ESP32-S3 computes them, not emulated. Plain MicroPython code: no annotations.

Virtual time moves only when every task sleeps (or code reads a clock); a sleep lasts whole
milliseconds, as MicroPython-family asyncio has it (MicroPython's and CircuitPython's
``asyncio/core.py``: ``def sleep(t): return sleep_ms(int(t * 1000))``). Reading a clock and each task
turn cost a couple of microseconds, as code does on a board. The platform offers the two clocks such
a board has: ``ticks_ms()``, a ``supervisor.ticks_ms()`` a few seconds before its 2**29 wrap, and
``now()``, ``time.monotonic()`` as a single-precision float at 30 days of uptime (steps of 250 ms) --
what the firmware read before it measured time in integer milliseconds.
"""

import asyncio
import errno
import json
import struct
import sys
import time

from camhub_node import node as node_module
from camhub_node.config import Config
from camhub_node.node import Node

TICKS_PERIOD = 1 << 29  # supervisor.ticks_ms() wraps here (adafruit_ticks: _TICKS_PERIOD)
UPTIME_S = 30 * 86400
SO_RCVBUF = 8  # Linux's value; the ports' socket modules do not name it
_EAGAIN = (errno.EAGAIN, getattr(errno, "EWOULDBLOCK", errno.EAGAIN))


class _Namespace:
    def __init__(self, **names):
        for key in names:
            setattr(self, key, names[key])


class VirtualTime:
    """A clock that moves only when every task sleeps (or code reads the clock)."""

    READ_US = 2  # reading a clock
    TURN_US = 2  # entering a sleep

    def __init__(self):
        self.us = 0
        self.turns = 0
        self._sleepers = []  # (wake at us, n, event)
        self._n = 0

    def read_us(self):
        self.us += self.READ_US
        return self.us

    async def sleep(self, seconds):
        """MicroPython's asyncio.sleep: ``sleep_ms(int(t * 1000))``."""
        self.turns += 1
        self.us += self.TURN_US
        woken = asyncio.Event()
        self._sleepers.append((self.us + int(seconds * 1000) * 1000, self._n, woken))
        self._n += 1
        await woken.wait()

    def asyncio_module(self):
        """The node's view of ``asyncio``: everything real but ``sleep``."""
        return _Namespace(sleep=self.sleep, create_task=asyncio.create_task, gather=asyncio.gather,
                          Event=asyncio.Event, Lock=asyncio.Lock, run=asyncio.run)

    async def run_until(self, until_us, after_each=None, max_turns=200000):
        """Wake sleepers in time order up to ``until_us``; ``after_each()`` runs between wake-ups."""
        while True:
            for _ in range(3):  # let every woken task run on to its next sleep
                await asyncio.sleep(0)
            if after_each is not None:
                after_each()
            if self.turns >= max_turns:
                raise AssertionError("the node is spinning: %d sleeps by %d ms" % (self.turns, self.us // 1000))
            earliest = min(self._sleepers) if self._sleepers else None
            if earliest is None or earliest[0] > until_us:
                self.us = max(self.us, until_us)
                return
            self._sleepers.remove(earliest)
            self.us = max(self.us, earliest[0])
            earliest[2].set()


def _pc_platform_class():
    """This runtime's PC platform: CPython's, or the Unix ports' (after ``unixport.prepare()``)."""
    if sys.implementation.name == "cpython":
        from camhub_node.host import HostPlatform

        return HostPlatform
    from camhub_node.unixport import UnixPortPlatform

    return UnixPortPlatform


def board_clocks(vt, ticks_at_start, uptime_s):
    """The PC platform with a board's clocks after ``uptime_s`` of uptime, on virtual time."""

    class BoardClocks(_pc_platform_class()):
        def ticks_ms(self):
            return (ticks_at_start + vt.read_us() // 1000) % TICKS_PERIOD

        def now(self):
            """time.monotonic() as a single-precision float (what the float-clock firmware read)."""
            return struct.unpack("f", struct.pack("f", uptime_s + vt.read_us() / 1000000))[0]

        def install_stop(self, callback):
            pass  # the scenario stops the node itself

    return BoardClocks()


def _node(vt, ticks_at_start, uptime_s, http_port):
    env = {"CAMHUB_NODE_ID": "uptime", "CAMHUB_HTTP_PORT": str(http_port), "CAMHUB_FRAME_SIZE": "QQVGA",
           "CAMHUB_FPS": "30", "CAMHUB_MAX_CLIENTS": "2", "CAMHUB_WRITE_TIMEOUT_S": "5"}
    platform = board_clocks(vt, ticks_at_start, uptime_s)
    cfg = Config(getenv=env.get, defaults=platform.defaults())
    platform.start(cfg)
    return Node(platform, cfg)


def _would_block(error):
    return error.args and error.args[0] in _EAGAIN


def _loopback_pair(pool, listener, port, rcvbuf=0):
    """A connected 127.0.0.1 pair through ``listener``: (the connecting end, the accepted end)."""
    reader = pool.socket(pool.AF_INET, pool.SOCK_STREAM)
    if rcvbuf:
        reader.setsockopt(pool.SOL_SOCKET, SO_RCVBUF, rcvbuf)
    reader.connect(("127.0.0.1", port))
    served = listener.accept()[0]
    return reader, served


def _fill(pool, served):
    """Fill a viewer's socket whose reader never reads, for good.

    The kernel moves queued bytes on to the reader's buffer in real time, which is far slower than
    virtual time, so fill until a pause frees no more room.
    """
    served.setsockopt(pool.SOL_SOCKET, pool.SO_SNDBUF, 32768)  # what the PC platforms' prepare_viewer sets
    served.setblocking(False)
    junk = bytes(65536)
    for _ in range(100):
        sent = 0
        while True:
            try:
                sent += served.send(junk)
            except OSError as error:
                if not _would_block(error):
                    raise
                break
        if not sent:
            return
        time.sleep(0.05)
    raise AssertionError("the stalled viewer's socket never filled up")


def thirty_days(http_port, viewers_port):
    """30 fps and a 5 s write timeout across the ticks' wrap, 30 days up: what the node did."""
    vt = VirtualTime()
    real_asyncio = node_module.asyncio
    node_module.asyncio = vt.asyncio_module()
    try:
        node = _node(vt, TICKS_PERIOD - 4000, UPTIME_S, http_port)  # the ticks wrap 4 s in
        pool = node.platform.pool
        listener = pool.socket(pool.AF_INET, pool.SOCK_STREAM)
        listener.setsockopt(pool.SOL_SOCKET, pool.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", viewers_port))
        listener.listen(2)
        fast_reader, fast_served = _loopback_pair(pool, listener, viewers_port)
        stalled_reader, stalled_served = _loopback_pair(pool, listener, viewers_port, rcvbuf=4096)
        listener.close()
        socks = (fast_reader, fast_served, stalled_reader, stalled_served)
        try:
            _fill(pool, stalled_served)
            fast_reader.setblocking(False)
            return asyncio.run(_thirty_days(vt, node, fast_reader, fast_served, stalled_served))
        finally:
            for sock in socks:
                sock.close()
    finally:
        node_module.asyncio = real_asyncio


async def _thirty_days(vt, node, fast_reader, fast_served, stalled_served):
    sink = bytearray(65536)
    seen = {"dropped_at_us": None}

    def drain_and_watch():
        while True:  # a viewer that keeps up
            try:
                if not fast_reader.recv_into(sink):
                    if not node.stopping:
                        raise AssertionError("the node closed the fast viewer")
                    break
            except OSError as error:
                if not _would_block(error):
                    raise
                break
        if seen["dropped_at_us"] is None and node.fanout.disconnects:
            seen["dropped_at_us"] = vt.us

    running = asyncio.create_task(node.run())
    await vt.run_until(1000000, drain_and_watch)
    fast = node.fanout.add(fast_served, "fast", "test")
    frames_at_1s, fast_at_1s = node.frames, fast.frames_sent
    await vt.run_until(1500000, drain_and_watch)
    node.fanout.add(stalled_served, "stalled", "test")
    added_at_us = vt.us
    await vt.run_until(11000000, drain_and_watch)
    dropped_at = seen["dropped_at_us"]
    result = {"captured": node.frames - frames_at_1s, "fast": fast.frames_sent - fast_at_1s,
              "stall_ms": (dropped_at - added_at_us) // 1000 if dropped_at is not None else None,
              "reasons": [d["reason"] for d in node.fanout.disconnects], "turns": vt.turns}
    node.request_stop()
    await vt.run_until(13000000, drain_and_watch)
    for _ in range(100):
        if running.done():
            break
        await asyncio.sleep(0)
    if not running.done():
        raise AssertionError("the node did not stop")
    await running
    return result


def nap(ms, uptime_s, http_port):
    """Sleep turns and virtual time ``Node.nap(ms)`` took, the ticks wrapping during the nap."""
    vt = VirtualTime()
    real_asyncio = node_module.asyncio
    node_module.asyncio = vt.asyncio_module()
    try:
        node = _node(vt, TICKS_PERIOD - 20, uptime_s, http_port)

        async def scenario():
            started_us = vt.us
            napping = asyncio.create_task(node.nap(ms))
            await vt.run_until(started_us + (ms + 5) * 1000)
            return {"done": napping.done(), "turns": vt.turns, "us": vt.us - started_us}

        return asyncio.run(scenario())
    finally:
        node_module.asyncio = real_asyncio


def main(argv):
    """In a VM: ``thirty_days HTTP_PORT VIEWERS_PORT`` or ``nap MS,MS.. UPTIME_S,UPTIME_S.. HTTP_PORT``."""
    if argv[0] == "thirty_days":
        result = thirty_days(int(argv[1]), int(argv[2]))
    else:
        result = {}
        for ms in argv[1].split(","):
            for uptime_s in argv[2].split(","):
                result["%s/%s" % (ms, uptime_s)] = nap(int(ms), int(uptime_s), int(argv[3]))
    result["runtime"] = sys.implementation.name
    result["float_bits"] = 32 if 16777217.0 == 16777216.0 else 64
    print("RESULT " + json.dumps(result))
