"""The hub's frame broker over real loopback TCP sockets: fan-out, drops, staleness, disconnects."""

from __future__ import annotations

import asyncio
import io
import socket
import struct
import time

import pytest
from PIL import Image

from camhub.hub.core.broker import Broker, FanoutSettings, Feed

BOUNDARY = b"--camhubframe\r\n"


def jpeg_of(color: tuple[int, int, int], size: tuple[int, int] = (160, 120), noise: int = 0) -> bytes:
    img = Image.new("RGB", size, color)
    if noise:
        img = Image.effect_noise(size, noise).convert("RGB")
    out = io.BytesIO()
    img.save(out, "JPEG", quality=90)
    return out.getvalue()


class Reader:
    """A viewer: a real TCP client reading parts, optionally throttled to ``rate`` bytes/s."""

    def __init__(self, sock: socket.socket, rate: float | None = None) -> None:
        self.sock = sock
        self.rate = rate
        self.parts: list[tuple[int, float, float, bytes]] = []  # seq, capture time, received at, jpeg
        self.closed = False
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        self.sock.setblocking(False)
        buf = bytearray()
        started, consumed = time.monotonic(), 0
        try:
            while True:
                if self.rate:
                    delay = started + consumed / self.rate - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                chunk = await loop.sock_recv(self.sock, 4096 if self.rate else 262144)
                if not chunk:
                    self.closed = True
                    return
                consumed += len(chunk)
                buf += chunk
                while True:
                    head_end = buf.find(b"\r\n\r\n")
                    if head_end < 0:
                        break
                    assert buf.startswith(BOUNDARY), bytes(buf[:40])
                    headers = dict(line.split(": ", 1) for line in buf[len(BOUNDARY):head_end].decode().split("\r\n"))
                    length = int(headers["Content-Length"])
                    end = head_end + 4 + length + 2
                    if len(buf) < end:
                        break
                    body = bytes(buf[head_end + 4:end - 2])
                    assert buf[end - 2:end] == b"\r\n"
                    self.parts.append((int(headers["X-Frame-Seq"]), float(headers["X-Timestamp"]), time.time(), body))
                    del buf[:end]
        except (ConnectionError, OSError):
            self.closed = True

    def seqs(self) -> list[int]:
        return [p[0] for p in self.parts]

    async def stop(self) -> None:
        self.task.cancel()
        self.sock.close()


@pytest.fixture
async def tcp_pair():
    """Yields a function making connected (client, server) loopback TCP socket pairs."""
    listener = socket.create_server(("127.0.0.1", 0))
    made: list[socket.socket] = []

    def make(rcvbuf: int | None = None) -> tuple[socket.socket, socket.socket]:
        client = socket.socket()
        if rcvbuf:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        client.connect(listener.getsockname())
        server, _ = listener.accept()
        made.extend((client, server))
        return client, server

    yield make
    listener.close()
    for sock in made:
        sock.close()


async def publish_for(feed: Feed, seconds: float, fps: float, jpeg: bytes) -> int:
    count = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        feed.publish(jpeg, time.time())
        count += 1
        await asyncio.sleep(1 / fps)
    return count


async def _connect(feed: Feed, make, rate: float | None = None, rcvbuf: int | None = None,
                   max_fps: float = 0) -> tuple[Reader, object]:
    client, server = make(rcvbuf)
    viewer = feed.add(server, "test", "pytest", max_fps)
    return Reader(client, rate), viewer


# Both ways a frame reaches its viewers: sendfile from a memfd (large audiences) and writev from memory.
PATHS = pytest.mark.parametrize("memfd_min_viewers", [1, 10_000], ids=["memfd", "memory"])


@PATHS
async def test_fan_out_with_a_slow_viewer(tcp_pair, memfd_min_viewers: int) -> None:
    feed = Broker(FanoutSettings(memfd_min_viewers=memfd_min_viewers)).feed("cam")
    jpeg = jpeg_of((0, 0, 0), (320, 240), noise=60)
    fast = [await _connect(feed, tcp_pair) for _ in range(20)]
    slow, slow_viewer = await _connect(feed, tcp_pair, rate=len(jpeg) * 2.0, rcvbuf=8192)
    published = await publish_for(feed, 2.0, 25, jpeg)
    await asyncio.sleep(0.3)
    for reader, viewer in fast:
        seqs = reader.seqs()
        # every frame, in order, no gaps: the slow viewer held nobody back
        assert seqs == list(range(1, published + 1)), (seqs[:5], len(seqs), published)
        assert viewer.frames_dropped == 0
        assert all(part[3] == jpeg for part in reader.parts)
        assert Image.open(io.BytesIO(reader.parts[-1][3])).size == (320, 240)
    assert slow_viewer.frames_dropped > published // 3
    assert slow_viewer.frames_sent + slow_viewer.frames_dropped <= published
    assert len(slow.seqs()) >= 2 and slow.seqs() == sorted(set(slow.seqs()))
    assert all(part[3] == jpeg for part in slow.parts)  # sent in pieces, resumed at the right byte
    for reader, _ in [*fast, (slow, None)]:
        await reader.stop()


@PATHS
async def test_slow_viewer_sees_recent_frames_not_old_ones(tcp_pair, memfd_min_viewers: int) -> None:
    feed = Broker(FanoutSettings(memfd_min_viewers=memfd_min_viewers)).feed("cam")
    jpeg = jpeg_of((0, 0, 0), (320, 240), noise=60)
    rate = len(jpeg) * 2.0  # two frames' worth per second, camera at 20 fps
    slow, _ = await _connect(feed, tcp_pair, rate=rate, rcvbuf=8192)
    await publish_for(feed, 4.0, 20, jpeg)
    transfer = len(jpeg) / rate
    ages = [received - captured for _, captured, received, _ in slow.parts[2:]]
    assert ages, "the slow viewer got no frames"
    # Without the send-queue check the kernel buffers would hold several frames (seconds of delay).
    assert max(ages) < 3 * transfer + 0.25, (ages, transfer)
    await slow.stop()


async def test_disconnects_are_recorded_with_their_reason(tcp_pair) -> None:
    events: list[tuple[str, int, str | None]] = []
    broker = Broker(FanoutSettings(write_timeout_s=0.6, send_buffer=4096))
    broker.viewers.connect(lambda kind, feed, v: events.append((kind, v.id, v.reason)))
    feed = broker.feed("cam")
    jpeg = jpeg_of((10, 20, 30), (320, 240), noise=60)
    leaving, leaving_viewer = await _connect(feed, tcp_pair)
    stuck_client, stuck_server = tcp_pair(4096)
    stuck_viewer = feed.add(stuck_server, "stuck", "never-reads")  # never reads: buffers fill, then no progress
    feed.publish(jpeg, time.time())
    await asyncio.sleep(0.2)
    leaving.sock.close()  # closes while idle: noticed without waiting for the next frame
    await asyncio.wait_for(leaving_viewer.done, 2)
    assert leaving_viewer.reason == "closed"
    housekeeping = asyncio.create_task(broker.run_housekeeping(0.1))
    for _ in range(10):
        feed.publish(jpeg, time.time())
        await asyncio.sleep(0.1)
    assert await asyncio.wait_for(stuck_viewer.done, 3) == "write_timeout"
    housekeeping.cancel()
    reasons = {d["id"]: d["reason"] for d in feed.disconnects}
    assert reasons == {leaving_viewer.id: "closed", stuck_viewer.id: "write_timeout"}
    assert ("disconnect", stuck_viewer.id, "write_timeout") in events
    assert feed.viewers == {}
    stuck_client.close()


async def test_keepalive_resends_the_last_frame_when_the_camera_is_quiet(tcp_pair) -> None:
    broker = Broker(FanoutSettings(keepalive_s=0.3))
    feed = broker.feed("cam")
    reader, viewer = await _connect(feed, tcp_pair)
    feed.publish(jpeg_of((1, 2, 3)), time.time())
    housekeeping = asyncio.create_task(broker.run_housekeeping(0.1))
    await asyncio.sleep(1.2)
    housekeeping.cancel()
    assert reader.seqs()[:3] == [1, 1, 1]  # the same frame again: a dead peer would surface now
    await reader.stop()


async def test_fps_limit_skips_frames_for_that_viewer_only(tcp_pair) -> None:
    feed = Broker(FanoutSettings()).feed("cam")
    limited, limited_viewer = await _connect(feed, tcp_pair, max_fps=2)
    full, full_viewer = await _connect(feed, tcp_pair)
    published = await publish_for(feed, 2.0, 20, jpeg_of((5, 5, 5)))
    await asyncio.sleep(0.1)
    assert len(full.seqs()) == published
    assert 3 <= len(limited.seqs()) <= 6
    assert limited_viewer.frames_skipped >= published - 7 and limited_viewer.frames_dropped == 0
    await limited.stop()
    await full.stop()


async def test_server_shutdown_closes_every_viewer(tcp_pair) -> None:
    broker = Broker(FanoutSettings())
    feed = broker.feed("cam")
    pairs = [await _connect(feed, tcp_pair) for _ in range(3)]
    feed.publish(jpeg_of((9, 9, 9)), time.time())
    broker.close_all()
    for reader, viewer in pairs:
        assert viewer.reason == "server_shutdown"
        await asyncio.wait_for(reader.task, 2)
        assert reader.closed and reader.seqs() == [1]


def _read_exactly(sock: socket.socket, size: int) -> None:
    sock.settimeout(5)
    got = 0
    while got < size:
        chunk = sock.recv(size - got)
        assert chunk, "the broker closed the viewer early"
        got += len(chunk)


@pytest.mark.parametrize("leave,reason", [
    ("half_close", "closed"),  # shutdown(SHUT_WR) after reading: a clean FIN, seen by the read side
    ("close_then_frames", "closed"),  # clean close, frames published before the loop reads the FIN: EPIPE
    ("abort", "reset"),  # SO_LINGER 0: the peer sends RST
    ("stop_reading", "write_timeout"),  # connected, reads nothing: no progress for write_timeout_s
])
async def test_each_way_of_leaving_gets_its_reason(tcp_pair, leave: str, reason: str) -> None:
    broker = Broker(FanoutSettings(write_timeout_s=0.5, send_buffer=4096))
    feed = broker.feed("cam")
    client, server = tcp_pair(4096 if leave == "stop_reading" else None)
    viewer = feed.add(server, "test", leave)
    # small frames go out whole, so the frames after a close reach send() (and its EPIPE)
    jpeg = jpeg_of((40, 50, 60), (320, 240), noise=60) if leave == "stop_reading" else jpeg_of((40, 50, 60))
    frame = feed.publish(jpeg, time.time())
    housekeeping = asyncio.create_task(broker.run_housekeeping(0.1))
    try:
        if leave == "stop_reading":
            for _ in range(20):
                if viewer.done.done():
                    break
                feed.publish(jpeg, time.time())
                await asyncio.sleep(0.1)
        else:
            await asyncio.to_thread(_read_exactly, client, frame.size)
            if leave == "half_close":
                client.shutdown(socket.SHUT_WR)
            elif leave == "abort":
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()
            else:
                client.close()
                for _ in range(3):  # before the event loop gets to read the FIN
                    feed.publish(jpeg, time.time())
        assert await asyncio.wait_for(viewer.done, 3) == reason
    finally:
        housekeeping.cancel()
    assert [d["reason"] for d in feed.disconnects] == [reason]
    assert feed.viewers == {}
