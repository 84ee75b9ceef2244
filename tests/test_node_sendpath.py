"""No frame-sized allocation in the node's send path (tracemalloc, in process, real local sockets).

The firmware's own pieces run here unchanged: the simulated camera's ``take()``, the frame pool's
single copy, and the fan-out's non-blocking sends to two loopback viewers that this test drains.
A probe run of the per-client ``bytes(frame)`` pattern shows the measurement does catch a copy.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from adafruit_ticks import ticks_ms

from camhub_node.fanout import Fanout
from camhub_node.frames import FramePool, jpeg_capacity
from camhub_node.simcam import SimCamera
from tests.support.allocations import loopback_pairs, measure

FRAMES = 1000


class Rig:
    """Camera -> pool -> fan-out -> two loopback sockets, drained into one preallocated buffer."""

    def __init__(self) -> None:
        self.camera = SimCamera("mem", "VGA", 12, scene="busy")  # frames of one size: the byte count below
        self.pool = FramePool(4, jpeg_capacity(640, 480))
        self.fanout = Fanout(2, 5000, ticks_ms)
        self.readers, self.served = loopback_pairs(2)
        for reader in self.readers:
            reader.setblocking(False)
        self.sink = bytearray(1 << 20)
        self.received = 0

    def drain(self) -> None:
        for reader in self.readers:
            while True:
                try:
                    n = reader.recv_into(self.sink)
                except BlockingIOError:
                    break
                if not n:
                    raise EOFError("the fan-out closed a viewer")
                self.received += n

    def capture(self):
        ns = time.time_ns()
        return self.pool.store(self.camera.take(), ns // 10**9, (ns // 1000) % 10**6, ticks_ms())

    def fanout_frame(self) -> None:
        self.fanout.publish(self.capture())
        while True:
            self.drain()
            if not self.fanout.pump():
                return

    def close(self) -> None:
        for sock in self.readers + self.served:
            sock.close()


@pytest.fixture
def rig() -> Iterator[Rig]:
    rig = Rig()
    yield rig
    rig.close()


def test_the_send_path_allocates_nothing_frame_sized(rig: Rig) -> None:
    for sock in rig.served:
        rig.fanout.add(sock, "127.0.0.1:0", "probe")
    frame_size = rig.capture().size
    rig.received = 0
    peak, growth = measure(rig.fanout_frame, FRAMES)
    assert rig.received >= 2 * FRAMES * frame_size * 0.99, "the viewers did not get the frames"
    assert peak < frame_size // 8, f"a {peak}-byte allocation per frame (frames are {frame_size} bytes)"
    assert growth < 16384, f"memory grew by {growth} bytes over {FRAMES} frames"
    assert [v["frames_dropped"] for v in rig.fanout.viewers()] == [0, 0]


def test_the_probe_sees_a_per_viewer_copy(rig: Rig) -> None:
    """The same measurement on the pattern camhub avoids: a copy of the frame for every viewer."""

    def copy_per_viewer() -> None:
        frame = rig.capture()
        for sock in rig.served:
            data = bytes(frame.part())
            view = memoryview(data)
            while view:
                try:
                    view = view[sock.send(view):]
                except BlockingIOError:
                    rig.drain()
        rig.drain()

    frame_size = rig.capture().size
    peak, _ = measure(copy_per_viewer, 100)
    assert peak >= frame_size
