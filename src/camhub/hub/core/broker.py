"""The hub's frame broker: each camera's latest frame, fanned out to its viewers by write completion.

A frame is encoded once (part header + JPEG + CRLF, ``camhub_node.mjpeg``) and never changes. For a
large audience the part goes into a memfd and every viewer's socket is fed from it with
``os.sendfile``, so the kernel copies from the page cache; a small audience is written from the
header and the JPEG in memory with one ``writev`` each (cheaper than a memfd per frame). Python never
copies a frame per viewer. A memfd is never rewritten: a new frame gets a new one, and the old one is
closed when the last in-flight send lets go of it.

A viewer has at most one frame in flight (``camhub_node.subscriber.Subscriber``). When its write
completes it takes the newest frame; frames published meanwhile are dropped for it. "Completed" also
means the kernel has nearly passed the bytes on: each viewer socket has ``TCP_NOTSENT_LOWAT`` set,
so the kernel takes more only while less than that is still unsent and reports the socket writable
only once the backlog has drained. A slow viewer's kernel buffers therefore never fill with seconds
of old video, and a viewer that keeps up costs exactly one ``sendfile`` (or ``writev``) per frame — no queue
probing, no timers.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from adafruit_ticks import ticks_ms

from camhub.hub.util.counters import Family
from camhub.hub.util.ratelimit import LogLimiter
from camhub.hub.util.signals import Signal
from camhub_node import mjpeg, subscriber
from camhub_node.subscriber import Subscriber

log = logging.getLogger(__name__)

_TCP_NOTSENT_LOWAT = getattr(socket, "TCP_NOTSENT_LOWAT", 25)  # Linux's value where Python lacks the name
_HAVE_MEMFD = hasattr(os, "memfd_create")


@dataclass(frozen=True)
class FanoutSettings:
    """Timing and limits of the fan-out (seconds and bytes)."""

    write_timeout_s: float = 10.0  # no byte accepted for this long: drop the viewer
    keepalive_s: float = 2.0  # re-send the last frame when the camera is this quiet
    send_buffer: int = 256 * 1024  # SO_SNDBUF per viewer (the kernel doubles it): bounds memory
    unsent_limit: int = 16 * 1024  # TCP_NOTSENT_LOWAT: the backlog a slow viewer may have queued
    history: int = 50  # recent disconnects kept per camera
    # From this many viewers on, a frame goes into a memfd and is sendfile'd; below, writev from memory.
    # Measured on loopback (benchmarks/README.md): a memfd per frame costs about what ~10-15 writev
    # copies of a VGA frame do.
    memfd_min_viewers: int = 12


class Frame:
    """One published frame: the JPEG (for snapshots and taps) and its part (header, JPEG, CRLF).

    The part is never joined into one buffer: it is written with ``writev`` from the header and
    the JPEG as they are. With ``in_memfd`` (a large audience) it is also written once into a memfd
    that every viewer is fed from by ``sendfile``; otherwise each viewer gets its own ``writev``
    from memory (the kernel copies), which for a few viewers costs less than creating, filling and
    closing a memfd per frame (``benchmarks/README.md``). Either way the bytes never change once
    published.
    """

    __slots__ = ("seq", "capture_time", "arrived", "jpeg", "size", "fd", "_head")

    def __init__(self, jpeg: bytes, seq: int, capture_time: float, arrived: float, in_memfd: bool = True) -> None:
        self.seq = seq
        self.capture_time = capture_time
        self.arrived = arrived
        self.jpeg = jpeg
        seconds = int(capture_time)
        head = self._head = mjpeg.part_header(len(jpeg), seq, seconds, int((capture_time - seconds) * 1_000_000))
        self.size = len(head) + len(jpeg) + len(mjpeg.TRAILER)
        self.fd = -1  # the memfd holding the part, or -1: written from memory
        if in_memfd and _HAVE_MEMFD:
            fd = os.memfd_create("camhub-frame", os.MFD_CLOEXEC)
            try:
                written = 0
                while written < self.size:
                    written += self.write(fd, written)
            except BaseException:
                os.close(fd)
                raise
            self.fd = fd

    def write(self, out_fd: int, offset: int) -> int:
        """Write the part from ``offset`` to the end; returns bytes the kernel took."""
        head, jpeg = self._head, self.jpeg
        if offset == 0:
            return os.writev(out_fd, (head, jpeg, mjpeg.TRAILER))
        body = len(head)
        if offset < body:
            return os.writev(out_fd, (memoryview(head)[offset:], jpeg, mjpeg.TRAILER))
        trailer = body + len(jpeg)
        if offset < trailer:
            return os.writev(out_fd, (memoryview(jpeg)[offset - body:], mjpeg.TRAILER))
        return os.write(out_fd, mjpeg.TRAILER[offset - trailer:])

    def __del__(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Viewer(Subscriber):
    """A viewer's socket (the broker's own descriptor for it) and its latest-frame state."""

    def __init__(self, vid: int, sock: socket.socket, peer: str, user_agent: str, max_fps: float,
                 now: int) -> None:
        super().__init__(vid, peer, user_agent, now, max_fps)
        self.sock = sock
        self.fd = sock.fileno()
        self.connected_at_unix = time.time()
        self.closed_at_unix: float | None = None
        self.done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.writing = False

    def info(self) -> dict[str, object]:
        """The viewer as the API and the MQTT events show it."""
        data: dict[str, object] = self.as_dict(ticks_ms())
        data["connected_at"] = round(self.connected_at_unix, 3)
        if self.closed_at_unix is not None:
            data["closed_at"] = round(self.closed_at_unix, 3)
            data.pop("fps", None)
        return data


ViewerListener = Callable[[str, "Feed", Viewer], None]
FrameTap = Callable[[Frame], None]  # sees every published frame, on the event loop: must return at once


class Feed:
    """One camera's frame cache and its viewers."""

    def __init__(self, camera_id: str, settings: FanoutSettings, ids: Iterator[int],
                 on_viewer: ViewerListener | None = None, tap_errors: Counter[str] | None = None) -> None:
        self.camera_id = camera_id
        self.settings = settings
        self._ids = ids
        self._on_viewer = on_viewer
        self._loop = asyncio.get_running_loop()
        self.latest: Frame | None = None
        self.seq = 0
        self.viewers: dict[int, Viewer] = {}
        self.disconnects: deque[dict[str, object]] = deque(maxlen=settings.history)
        self.frames_out = 0
        self.bytes_out_closed = 0
        self.dropped_closed = 0
        self.skipped_closed = 0
        self.taps: list[tuple[str, FrameTap]] = []  # motion, recordings: they keep a reference, never a copy
        self.tap_errors: Counter[str] = Counter() if tap_errors is None else tap_errors  # by tap (hub-wide)

    # ---- counters --------------------------------------------------------------------------
    @property
    def dropped_total(self) -> int:
        return self.dropped_closed + sum(v.frames_dropped for v in self.viewers.values())

    @property
    def skipped_total(self) -> int:
        return self.skipped_closed + sum(v.frames_skipped for v in self.viewers.values())

    @property
    def bytes_out(self) -> int:
        return self.bytes_out_closed + sum(v.bytes_sent for v in self.viewers.values())

    def add_tap(self, name: str, tap: FrameTap) -> None:
        """``tap`` sees every frame of this feed after the viewers; its failures are counted under ``name``."""
        self.taps.append((name, tap))

    # ---- frames ----------------------------------------------------------------------------
    def publish(self, jpeg: bytes, capture_time: float) -> Frame:
        """Make ``jpeg`` the latest frame and hand it to every viewer that is free to take it."""
        now = ticks_ms()  # the subscriber's clock: integer ms ticks
        self.seq += 1
        frame = Frame(jpeg, self.seq, capture_time, time.monotonic(),  # arrived: the hub's clock for frame ages
                      len(self.viewers) >= self.settings.memfd_min_viewers)
        self.latest = frame
        seq, size = frame.seq, frame.size
        for viewer in list(self.viewers.values()):
            if viewer.publish(seq, now):
                viewer.begin(frame, seq, size, now)
                self._pump(viewer, now)
        for name, tap in self.taps:  # after the viewers: a tap never delays the fan-out
            try:
                tap(frame)
            except Exception:
                self.tap_errors[name] += 1
                errors = self.tap_errors[name]
                if errors in (1, 100) or errors % 10000 == 0:
                    log.exception("frame tap %s on %s failed (%d so far)", name, self.camera_id, errors)
        return frame

    def _pump(self, viewer: Viewer, now: int) -> None:
        """Send the viewer's frame in flight; on completion move it on to the newest frame."""
        while viewer.frame is not None:
            frame: Frame = viewer.frame
            try:
                if frame.fd >= 0:
                    sent = os.sendfile(viewer.fd, frame.fd, viewer.offset, frame.size - viewer.offset)
                else:
                    sent = frame.write(viewer.fd, viewer.offset)
            except BlockingIOError:
                self._want_writable(viewer)
                return
            except BrokenPipeError:
                self.remove(viewer, subscriber.CLOSED)
                return
            except OSError as exc:
                log.debug("viewer %s on %s: send failed: %s", viewer.id, self.camera_id, exc)
                self.remove(viewer, subscriber.RESET)
                return
            if not viewer.advance(sent, now):
                self._want_writable(viewer)  # a short write: the unsent backlog is at its limit
                return
            self.frames_out += 1
            if viewer.writing:
                self._loop.remove_writer(viewer.fd)
                viewer.writing = False
            latest = self.latest
            if viewer.pending < 0 or latest is None or not viewer.ready(now):
                return
            viewer.begin(latest, latest.seq, latest.size, now)

    def _want_writable(self, viewer: Viewer) -> None:
        if not viewer.writing:
            self._loop.add_writer(viewer.fd, self._on_writable, viewer)
            viewer.writing = True

    def _on_writable(self, viewer: Viewer) -> None:
        now = ticks_ms()
        latest = self.latest
        if latest is not None and viewer.pending == latest.seq:
            viewer.swap_unsent(latest, latest.seq, latest.size, now)  # it waited: give it the newest
        self._pump(viewer, now)

    # ---- viewers ---------------------------------------------------------------------------
    def add(self, sock: socket.socket, peer: str, user_agent: str, max_fps: float = 0) -> Viewer:
        """Adopt ``sock`` (after the response head was sent) as a viewer of this camera."""
        sock.setblocking(False)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.settings.send_buffer)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.IPPROTO_TCP, _TCP_NOTSENT_LOWAT, self.settings.unsent_limit)
        except OSError:
            pass  # not a TCP socket (tests may use socketpairs)
        now = ticks_ms()
        viewer = Viewer(next(self._ids), sock, peer, user_agent, max_fps, now)
        self.viewers[viewer.id] = viewer
        self._loop.add_reader(viewer.fd, self._on_readable, viewer)
        if self._on_viewer is not None:
            self._on_viewer("connect", self, viewer)
        if self.latest is not None and viewer.publish(self.latest.seq, now):
            viewer.begin(self.latest, self.latest.seq, self.latest.size, now)
            self._pump(viewer, now)
        return viewer

    def _on_readable(self, viewer: Viewer) -> None:
        try:
            data = viewer.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.remove(viewer, subscriber.RESET)
            return
        if not data:
            self.remove(viewer, subscriber.CLOSED)
        # anything else a player sends is read and ignored, never buffered

    def remove(self, viewer: Viewer, reason: str) -> None:
        """Disconnect a viewer, record why, and wake its HTTP handler."""
        if self.viewers.pop(viewer.id, None) is None:
            return
        viewer.close(reason)
        viewer.closed_at_unix = time.time()
        if viewer.writing:
            self._loop.remove_writer(viewer.fd)
            viewer.writing = False
        self._loop.remove_reader(viewer.fd)
        viewer.sock.close()
        self.bytes_out_closed += viewer.bytes_sent
        self.dropped_closed += viewer.frames_dropped
        self.skipped_closed += viewer.frames_skipped
        self.disconnects.appendleft(viewer.info())
        if not viewer.done.done():
            viewer.done.set_result(reason)
        if self._on_viewer is not None:
            self._on_viewer("disconnect", self, viewer)

    def close_all(self, reason: str) -> None:
        for viewer in list(self.viewers.values()):
            self.remove(viewer, reason)

    def tick(self, now: int) -> None:
        """Housekeeping, about once a second: write timeouts and keep-alive re-sends (``now``: ticks_ms)."""
        latest = self.latest
        write_timeout_ms = int(self.settings.write_timeout_s * 1000)
        keepalive_ms = int(self.settings.keepalive_s * 1000)
        for viewer in list(self.viewers.values()):
            if viewer.stalled(now, write_timeout_ms):
                self.remove(viewer, subscriber.WRITE_TIMEOUT)
            elif latest is not None and viewer.keepalive_due(now, keepalive_ms):
                viewer.begin(latest, latest.seq, latest.size, now)
                self._pump(viewer, now)

    def viewer_infos(self) -> list[dict[str, object]]:
        return [v.info() for v in self.viewers.values()]


class Broker:
    """All cameras' feeds; viewer ids are unique across the hub.

    ``viewers`` says when a viewer connects or disconnects (``"connect"``/``"disconnect"``, the feed,
    the viewer); ``feed_made`` when a camera's feed is made (where its frame taps are attached).
    """

    def __init__(self, settings: FanoutSettings) -> None:
        self.settings = settings
        self._ids = itertools.count(1)
        self.feeds: dict[str, Feed] = {}
        self.viewers: Signal[[str, Feed, Viewer]] = Signal()
        self.feed_made: Signal[[Feed]] = Signal()
        self.tap_errors: Counter[str] = Counter()  # frames a tap failed on, by tap, all feeds
        self._warnings = LogLimiter(log)

    def feed(self, camera_id: str) -> Feed:
        feed = self.feeds.get(camera_id)
        if feed is None:
            feed = self.feeds[camera_id] = Feed(camera_id, self.settings, self._ids, self._viewer, self.tap_errors)
            self.feed_made.emit(feed)
        return feed

    def _viewer(self, kind: str, feed: Feed, viewer: Viewer) -> None:
        if kind == "disconnect":
            # every disconnect is in the API and on MQTT; the log gets the first of a kind a minute
            info = viewer.info()
            self._warnings.info(f"disconnect:{feed.camera_id}:{viewer.reason}",
                                "viewer %s of %s (%s) disconnected: %s after %d frames, %d dropped", viewer.id,
                                feed.camera_id, viewer.peer, viewer.reason, info["frames_sent"], info["frames_dropped"])
        self.viewers.emit(kind, feed, viewer)

    @property
    def viewer_count(self) -> int:
        return sum(len(f.viewers) for f in self.feeds.values())

    def remove_feed(self, camera_id: str) -> None:
        feed = self.feeds.pop(camera_id, None)
        if feed is not None:
            feed.close_all(subscriber.CAMERA_REMOVED)

    def close_all(self, reason: str = subscriber.SERVER_SHUTDOWN) -> None:
        for feed in self.feeds.values():
            feed.close_all(reason)

    async def run_housekeeping(self, interval: float = 0.5) -> None:
        while True:
            await asyncio.sleep(interval)
            now = ticks_ms()
            for feed in list(self.feeds.values()):
                feed.tick(now)

    def sizes(self) -> dict[str, int]:
        """Its tables (``util.diagnostics``): feeds, live viewers, disconnects kept, taps."""
        feeds = list(self.feeds.values())
        return {"feeds": len(feeds), "viewers": sum(len(f.viewers) for f in feeds),
                "disconnects_kept": sum(len(f.disconnects) for f in feeds), "taps": sum(len(f.taps) for f in feeds),
                "tap_error_kinds": len(self.tap_errors), "log_keys": len(self._warnings)}

    def counters(self) -> Iterable[Family]:
        yield Family("camhub_frame_tap_errors", "Frames a frame tap (motion, recordings) failed on", "tap",
                     dict(self.tap_errors))
