"""Per-subscriber latest-frame state, shared by the node's and the hub's fan-out.

The write-completion model (µStreamer's): a subscriber has at most one frame in flight; when that
write completes it takes the newest frame. Every published frame ends, for each subscriber, as
exactly one of: sent, dropped (superseded while the subscriber was still busy) or skipped
(superseded while the subscriber's own fps limit held it back). The I/O lives elsewhere: the node
drives this from non-blocking sockets and ``select.poll``, the hub from its asyncio writer.

Every ``now`` is an integer millisecond tick (``adafruit_ticks.ticks_ms()``: wraps at 2**29 ms, about
6.2 days) and every interval is compared with ``ticks_diff``, so a node that has run for weeks keeps
millisecond timing (a single-precision ``time.monotonic()`` steps by 250 ms after 30 days). Intervals
are only compared over seconds; the one long span, how long a viewer has been connected, is
accumulated as it goes. Runs on CircuitPython and CPython alike (no dataclasses, no typing at runtime).
"""

from adafruit_ticks import ticks_diff

# Disconnect reasons (DESIGN.md).
CLOSED = "closed"
RESET = "reset"
WRITE_TIMEOUT = "write_timeout"
EVICTED = "evicted"
SERVER_SHUTDOWN = "server_shutdown"
CAMERA_REMOVED = "camera_removed"


class Subscriber:
    """One viewer's position in a camera's frame stream, and its counters."""

    def __init__(self, sid, peer, user_agent, now, max_fps=0):
        self.id = sid
        self.peer = peer
        self.user_agent = user_agent
        self.min_interval = int(1000 / max_fps) if max_fps and max_fps > 0 else 0  # ms
        self.max_fps = max_fps if self.min_interval else 0
        self._age_ms = 0  # connected for this long up to _age_mark (folded in now and then)
        self._age_mark = now
        self.frame = None  # the frame in flight (whatever object the fan-out uses)
        self.offset = 0  # bytes of the frame in flight already sent
        self.length = 0
        self.pending = -1  # seq of a published frame not yet taken, or -1
        self._pending_limited = False  # the pending frame waits for the fps limit, not for I/O
        self.last_seq = -1  # seq of the last frame taken
        self.started_at = now  # when the last frame was taken (fps limit; only once last_seq >= 0)
        self.last_progress = now
        self.frames_sent = 0
        self.frames_dropped = 0
        self.frames_skipped = 0
        self.bytes_sent = 0
        self.fps = 0.0
        self._fps_count = 0
        self._fps_since = now
        self.reason = None

    def rate_limited(self, now):
        """True while this subscriber's own fps limit holds frames back."""
        # A negative difference can only be a tick wrap after days of idling: not limited.
        return self.last_seq >= 0 and 0 <= ticks_diff(now, self.started_at) < self.min_interval

    def publish(self, seq, now, busy=False):
        """A new latest frame ``seq`` exists; return True if the caller should start it now.

        ``busy`` lets the caller add its own reason to wait (the hub: bytes still queued in the
        kernel). A frame published earlier and never taken is superseded here and counted by why
        it was not taken when it was the latest: busy (dropped) or the fps limit (skipped).
        """
        if self.pending >= 0:
            if self._pending_limited:
                self.frames_skipped += 1
            else:
                self.frames_dropped += 1
        self.pending = seq
        busy = busy or self.frame is not None
        # (rate_limited inlined: this runs for every viewer on every frame)
        self._pending_limited = limited = (not busy and self.min_interval > 0 and self.last_seq >= 0
                                           and 0 <= ticks_diff(now, self.started_at) < self.min_interval)
        return not busy and not limited

    def ready(self, now):
        """True if idle with an untaken frame that the fps limit lets through."""
        return self.frame is None and self.pending >= 0 and not self.rate_limited(now)

    def keepalive_due(self, now, interval):
        """True if idle, nothing new to send, and the last frame finished ``interval`` ms ago."""
        return (self.frame is None and self.pending < 0 and self.last_seq >= 0
                and ticks_diff(now, self.last_progress) >= interval)

    def begin(self, frame, seq, length, now):
        """Start sending ``frame`` (a re-send of ``last_seq`` is a keep-alive)."""
        self.frame = frame
        self.offset = 0
        self.length = length
        if seq == self.pending:
            self.pending = -1
        self.last_seq = seq
        self.started_at = now
        self.last_progress = now

    def swap_unsent(self, frame, seq, length, now):
        """Replace a frame in flight of which no byte went out yet with a newer one (the old one
        counts as dropped): a viewer that waited for buffer space gets the newest frame, not the
        one it was handed before it waited."""
        if self.offset != 0 or self.frame is None:
            return False
        self.frames_dropped += 1
        self.begin(frame, seq, length, now)
        return True

    def advance(self, sent, now):
        """Record ``sent`` more bytes written; return True when the frame in flight completed."""
        if sent > 0:
            self.offset += sent
            self.bytes_sent += sent
            self.last_progress = now
        if self.offset < self.length:
            return False
        self.frame = None
        self.frames_sent += 1
        self._fps_count += 1
        elapsed = ticks_diff(now, self._fps_since)
        if elapsed >= 1000:
            self.fps = self._fps_count * 1000 / elapsed
            self._fps_count = 0
            self._fps_since = now
            self.connected_ms(now)
        return True

    def connected_ms(self, now):
        """Milliseconds since the subscriber connected; exact however long that is, provided this
        runs at least every few days (each completed fps window and each report call it)."""
        step = ticks_diff(now, self._age_mark)
        if step > 0:
            self._age_ms += step
            self._age_mark = now
        return self._age_ms

    def current_fps(self, now):
        """Frames per second delivered, decaying to 0 when nothing completes."""
        elapsed = ticks_diff(now, self._fps_since)
        if elapsed < 0:
            return 0.0  # nothing completed for days: the ticks wrapped past the window's start
        if elapsed >= 2000:
            return self._fps_count * 1000 / elapsed
        return self.fps

    def stalled(self, now, timeout):
        """True if a frame is in flight and no byte went out for ``timeout`` ms."""
        return self.frame is not None and ticks_diff(now, self.last_progress) > timeout

    def close(self, reason):
        """Mark closed with a reason (first reason wins); drop the frame reference."""
        if self.reason is None:
            self.reason = reason
        self.frame = None

    def as_dict(self, now):
        """Counters as JSON-ready values (durations in seconds)."""
        info = {
            "id": self.id,
            "peer": self.peer,
            "user_agent": self.user_agent,
            "connected_for_s": round(self.connected_ms(now) / 1000, 1),
            "frames_sent": self.frames_sent,
            "frames_dropped": self.frames_dropped,
            "frames_skipped": self.frames_skipped,
            "bytes_sent": self.bytes_sent,
            "fps": round(self.current_fps(now), 2),
        }
        if self.max_fps:
            info["max_fps"] = self.max_fps
        if self.reason is not None:
            info["reason"] = self.reason
        return info
