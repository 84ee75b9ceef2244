"""One camera's upstream: a single MJPEG pull, parsed into frames, reconnected until told to stop.

States (reported through ``on_state`` on every change): ``connecting`` until frames flow,
``streaming`` while they do, ``stalled`` once a stream that flowed is lost (no frame for
``stall_s``, closed, reset) and while it is being re-established, ``offline`` after
``offline_after`` failed attempts in a row
(a camera that accepts and never answers, sends HTML, or parts too big to keep): it is still
retried, and ``last_error`` says what went wrong. Failures are retried with capped exponential
backoff and jitter; the backoff resets once frames flow again.

Frames beyond ``max_fps`` (the hub sets a multiple of the announced rate) are dropped and counted
(``over_rate``), so a runaway camera or a stream loop cannot make the hub fan out thousands of
frames a second.

Everything that comes from the camera is untrusted: connect and header timeouts, a cap on bytes
without a frame, the tolerant parser's size limits, and the source network is checked against
``CAMHUB_ALLOWED_SOURCES`` both for literal addresses and for every address a host name resolves
to, before any request is sent. Each kind of error is counted; it is logged once per failure
episode (connection errors) or once per connection (bad data), never once per chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from camhub import __version__
from camhub.hub.core.camera import CONNECTING, OFFLINE, STALLED, STREAMING
from camhub.hub.ingest.parser import MjpegParser, boundary_from_content_type
from camhub.hub.ingest.sources import AllowedSources, AnnounceRejected, HubAddresses, check_url

log = logging.getLogger(__name__)

FrameCallback = Callable[[bytes, int | None, float | None], None]
StateCallback = Callable[[str], None]
Admit = Callable[[], Awaitable[str | None]]  # before each attempt: None to go ahead, else why not (retried)

_FPS_SMOOTHING = 0.2  # weight of the newest frame interval in the moving average
_PARSER_ERRORS = (("dropped_oversize", "oversize"), ("dropped_not_jpeg", "not_jpeg"), ("resyncs", "resync"))


class SourceNotAllowed(OSError):
    """A host name resolved only to addresses outside CAMHUB_ALLOWED_SOURCES."""


class SourceIsHub(SourceNotAllowed):
    """A host name resolved to the hub's own address and port: pulling it would be a loop."""


class _AllowedResolver(AbstractResolver):
    """aiohttp's resolver, keeping only allowed addresses, so a name cannot point the hub elsewhere.

    aiohttp connects to exactly the addresses the resolver returns (literal IPs skip it and are
    checked before the request instead), so a rebinding DNS answer is caught at connect time.
    """

    def __init__(self, allowed: AllowedSources, hub: HubAddresses | None = None) -> None:
        self._allowed = allowed
        self._hub = hub
        self._inner = DefaultResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        kept = [r for r in results if self._allowed.allows(r["host"])]
        hub = self._hub
        if hub is not None and kept and all(hub.is_self(r["host"], r["port"]) for r in kept):
            raise SourceIsHub(f"{host}:{port} is this hub itself")
        if not kept:
            seen = ", ".join(sorted({r["host"] for r in results}))
            raise SourceNotAllowed(f"{host} resolves to {seen}, outside CAMHUB_ALLOWED_SOURCES")
        return kept

    async def close(self) -> None:
        await self._inner.close()


class _Connection:
    """One connection's parser and what was seen on it; ``consume`` takes each received chunk."""

    __slots__ = ("up", "parser", "streamed", "without_frame", "frames", "progress_at", "_seen", "_counts",
                 "_logged")

    def __init__(self, up: Upstream, parser: MjpegParser) -> None:
        self.up = up
        self.parser = parser
        self.streamed = False
        self.without_frame = 0
        self.frames = 0
        self.progress_at = asyncio.get_running_loop().time()  # the last frame (or the start)
        self._seen = 0  # the parser's error counters' sum when last looked at
        self._counts = {kind: 0 for _, kind in _PARSER_ERRORS}
        self._logged: set[str] = set()  # bad-data kinds logged on this connection

    def consume(self, chunk: bytes) -> tuple[str, str] | None:
        """Parse ``chunk`` and publish its frames; an error (kind, detail) that ends the connection."""
        up, parser = self.up, self.parser
        up.bytes_in += len(chunk)
        frames = parser.feed(chunk)
        if parser.dropped_oversize + parser.dropped_not_jpeg + parser.resyncs != self._seen:
            self._count_errors()
        if not frames:
            self.without_frame += len(chunk)
            if self.without_frame > up.max_bytes_without_frame:
                return "no_frames", f"{self.without_frame} bytes without a frame"
            return None
        self.without_frame = 0
        self.frames += len(frames)
        self.progress_at = asyncio.get_running_loop().time()
        now = time.monotonic()
        if not self.streamed:
            self.streamed = True
            up._streaming()
        for frame in frames:
            up._frame(frame.jpeg, frame.seq, frame.timestamp, now)
        return None

    def _count_errors(self) -> None:
        up, parser = self.up, self.parser
        total = 0
        for attr, kind in _PARSER_ERRORS:
            count = getattr(parser, attr)
            total += count
            if count != self._counts[kind]:
                up.errors[kind] += count - self._counts[kind]
                self._counts[kind] = count
                if kind not in self._logged:
                    self._logged.add(kind)
                    log.warning("camera %s: stream data skipped (%s); further ones counted only",
                                up.camera_id, kind)
        self._seen = total


class _Body(asyncio.Protocol):
    """A response body from the transport straight into ``_Connection.consume``; ``ended`` resolves
    with the error that ended it."""

    def __init__(self, conn: _Connection, ended: asyncio.Future[tuple[str, str] | None]) -> None:
        self.conn = conn
        self.ended = ended

    def _end(self, error: tuple[str, str] | None) -> None:
        if not self.ended.done():
            self.ended.set_result(error)

    def data_received(self, data: bytes) -> None:
        if self.ended.done():
            return
        try:
            error = self.conn.consume(data)
        except Exception as exc:  # a bug must end this connection, not the event loop's callback
            log.exception("camera %s: reading the stream failed", self.conn.up.camera_id)
            error = "read", f"{type(exc).__name__}: {exc}"
        if error is not None:
            self._end(error)

    def eof_received(self) -> bool:
        self._end(("closed", "the camera closed the stream"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(("read", f"{type(exc).__name__}: {exc}") if exc else ("closed", "the camera closed the stream"))


def _plain_body_transport(response: aiohttp.ClientResponse) -> asyncio.Transport | None:
    """The connection's transport if the body is plain bytes until close (and still open)."""
    if "chunked" in response.headers.get("Transfer-Encoding", "").lower() or "Content-Length" in response.headers:
        return None
    connection = response.connection
    transport = connection.transport if connection is not None else None
    if transport is None or transport.is_closing() or not isinstance(transport, asyncio.Transport):
        return None
    return transport


class Upstream:
    """Pulls one camera's ``stream_url`` and calls ``on_frame(jpeg, seq, timestamp)`` per frame."""

    def __init__(self, camera_id: str, stream_url: str, *, on_frame: FrameCallback,
                 on_state: StateCallback | None = None, max_frame_bytes: int = 2 * 1024 * 1024,
                 stall_s: float = 5.0, allowed: AllowedSources | str | None = None,
                 connect_timeout_s: float = 5.0, backoff_min_s: float = 0.5, backoff_max_s: float = 30.0,
                 max_bytes_without_frame: int | None = None, offline_after: int = 3,
                 max_fps: float | None = None, hub: HubAddresses | None = None,
                 user_agent: str | None = None, headers: Mapping[str, str] | None = None,
                 admit: Admit | None = None, resumed: bool = False) -> None:
        self.camera_id = camera_id
        self.url = stream_url
        self.max_frame_bytes = max_frame_bytes
        self.stall_s = stall_s
        self.connect_timeout_s = connect_timeout_s
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        # Enough for a few refused oversize parts in a row, not for a source that never frames.
        self.max_bytes_without_frame = max_bytes_without_frame or 4 * max_frame_bytes + 65536
        self.allowed = allowed if isinstance(allowed, AllowedSources) else AllowedSources.parse(allowed)
        self.offline_after = offline_after
        self.hub = hub  # the hub's own addresses: never pulled (a loop)
        self.user_agent = user_agent or f"camhub-hub/{__version__}"
        self.headers = dict(headers or {})  # sent with every request (e.g. a cluster credential)
        self.admit = admit  # asked before each attempt (e.g. whether two other hubs pull the board already)
        self._resumed = resumed  # frames flowed before this upstream (another one's): retrying shows as "stalled"
        self.max_fps = max_fps  # None: no cap; may be changed while pulling (a new announce)
        self._tokens = 0.0  # the rate cap's bucket: frames that may still pass now
        self._bucket_at: float | None = None
        self._on_frame = on_frame
        self._on_state = on_state
        self._task: asyncio.Task[None] | None = None
        self._lost = False  # frames flowed before and stopped: retrying shows as "stalled"
        self._logged: set[str] = set()  # error kinds logged in this failure episode
        self._interval: float | None = None  # smoothed seconds between frames
        self._prev_at: float | None = None  # the previous frame on this connection (for the rate)
        self.state = OFFLINE
        self.frames_in = 0
        self.bytes_in = 0
        self.reconnects = 0
        self.errors: Counter[str] = Counter()
        self.last_frame_at: float | None = None  # time.monotonic() of the latest frame
        self.connected = False  # a response is being read right now
        self.failures = 0  # attempts in a row that brought no frame
        self.last_error: str | None = None  # "kind: detail" of the latest failure
        self.frames_over_rate = 0

    # ---- control ---------------------------------------------------------------------------
    def start(self) -> None:
        """Begin pulling (from inside the event loop); reconnects until stop()."""
        if self._task is None or self._task.done():
            self._lost = self._resumed
            self.failures = 0
            self._set_state(STALLED if self._lost else CONNECTING)
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"upstream-{self.camera_id}")

    async def stop(self) -> None:
        """Stop pulling and close the connection; returns when it is closed."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # ---- what others read ------------------------------------------------------------------
    @property
    def fps_in(self) -> float:
        """Smoothed incoming frame rate; decays towards 0 while no frames arrive."""
        if self._interval is None or self.last_frame_at is None:
            return 0.0
        quiet = time.monotonic() - self.last_frame_at
        return 1.0 / max(self._interval, quiet, 1e-6)

    def stats(self) -> dict[str, Any]:
        age = None if self.last_frame_at is None else int((time.monotonic() - self.last_frame_at) * 1000)
        return {"url": self.url, "state": self.state, "connected": self.connected,
                "frames_in": self.frames_in, "bytes_in": self.bytes_in, "fps_in": round(self.fps_in, 2),
                "reconnects": self.reconnects, "errors": dict(self.errors), "last_frame_age_ms": age,
                "failures": self.failures, "last_error": self.last_error, "max_fps": self.max_fps,
                "frames_over_rate": self.frames_over_rate}

    # ---- the pull --------------------------------------------------------------------------
    async def _run(self) -> None:
        backoff = self.backoff_min_s
        connector = aiohttp.TCPConnector(limit=1, force_close=True, resolver=_AllowedResolver(self.allowed, self.hub))
        timeout = aiohttp.ClientTimeout(total=None, connect=self.connect_timeout_s,
                                        sock_connect=self.connect_timeout_s)
        headers = {**self.headers, "User-Agent": self.user_agent, "Accept": "multipart/x-mixed-replace, */*"}
        async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers,
                                         auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar(),
                                         read_bufsize=256 * 1024) as session:
            first = True
            while True:
                if not first:
                    self.reconnects += 1
                first = False
                if await self._pull(session):
                    backoff = self.backoff_min_s  # it worked for a while: come back quickly
                else:
                    self.failures += 1
                    if self.failures >= self.offline_after:
                        self._set_state(OFFLINE)  # still retried; says so instead of "connecting"
                # Jitter (0.5-1x): cameras that failed together do not all retry together.
                await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
                backoff = min(self.backoff_max_s, backoff * 2)

    async def _pull(self, session: aiohttp.ClientSession) -> bool:
        """One connection, read until it fails; True if frames flowed on it."""
        if self.failures < self.offline_after:
            self._set_state(STALLED if self._lost else CONNECTING)
        url = self.url
        try:
            check_url(url, self.allowed)
        except AnnounceRejected as exc:
            self._error("not_allowed" if exc.reason == "url_not_allowed" else "bad_url", exc.detail)
            return False
        if self.hub is not None and self.hub.url_is_self(url):
            self._error("self_source", "the URL is this hub itself")
            return False
        if self.admit is not None:
            refused = await self.admit()
            if refused is not None:
                self._error("refused", refused)
                return False
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                response = await session.get(url, allow_redirects=False)
        except TimeoutError:
            self._error("timeout", f"no response within {self.connect_timeout_s:g} s")
            return False
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, SourceIsHub):
                self._error("self_source", str(exc.os_error))
            elif isinstance(exc.os_error, SourceNotAllowed):
                self._error("not_allowed", str(exc.os_error))
            else:
                self._error("connect", str(exc.os_error) or type(exc.os_error).__name__)
            return False
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            self._error("http", f"{type(exc).__name__}: {exc}")
            return False
        async with response:
            content_type = response.headers.get("Content-Type")
            if response.status != 200:
                self._error("http_status", f"HTTP {response.status}")
                return False
            if content_type and not content_type.strip().lower().startswith("multipart/"):
                self._error("content_type", f"not multipart: {content_type[:80]!r}")
                return False
            current = asyncio.current_task() is self._task
            self.connected = current
            try:
                return await self._read(response, boundary_from_content_type(content_type))
            finally:
                if current:
                    self.connected = False

    async def _read(self, response: aiohttp.ClientResponse, boundary: str | None) -> bool:
        """Read the body until it fails; True if frames flowed.

        aiohttp has connected (through the allowed-address resolver), sent the request and parsed
        the response head. A plain body (no chunked encoding, no length) is then taken off its
        stream reader: the transport hands each received chunk straight to ``_Body``, which feeds
        the parser in the same callback — no stream reader, future or task wake-up per chunk, no
        timeout rescheduled per frame (a watchdog checks for a stall every ``stall_s``). Other
        bodies (chunked, as some ESP32 firmwares send) are read through aiohttp's reader.
        """
        conn = _Connection(self, MjpegParser(boundary, self.max_frame_bytes))
        transport = _plain_body_transport(response)
        try:
            if transport is None:
                await self._read_stream(response.content, conn)
            else:
                await self._read_transport(transport, response.content, conn)
        except TimeoutError:
            self._error("stall", f"no frame for {self.stall_s:g} s")
        except (aiohttp.ClientError, OSError) as exc:
            self._error("read", f"{type(exc).__name__}: {exc}")
        if conn.streamed:
            self._lost = True
            self._set_state(STALLED)
        return conn.streamed

    async def _read_stream(self, content: aiohttp.StreamReader, conn: _Connection) -> None:
        async with asyncio.timeout(self.stall_s) as deadline:
            while True:
                chunk = await content.readany()
                if not chunk:
                    self._error("closed", "the camera closed the stream")
                    return
                frames_before = conn.frames
                ended = conn.consume(chunk)
                if ended is not None:
                    self._error(*ended)
                    return
                if conn.frames != frames_before:
                    deadline.reschedule(asyncio.get_running_loop().time() + self.stall_s)

    async def _read_transport(self, transport: asyncio.Transport, content: aiohttp.StreamReader,
                              conn: _Connection) -> None:
        loop = asyncio.get_running_loop()
        body = _Body(conn, loop.create_future())
        try:
            buffered = content.read_nowait(-1)  # what arrived with the response head
            transport.set_protocol(body)
            if buffered:
                body.data_received(buffered)
            if not transport.is_reading():
                transport.resume_reading()
            while not body.ended.done():
                quiet = loop.time() - conn.progress_at
                if quiet >= self.stall_s:
                    raise TimeoutError
                await asyncio.wait((body.ended,), timeout=self.stall_s - quiet)
            ended = body.ended.result()
            if ended is not None:
                self._error(*ended)
        finally:
            transport.close()  # also when cancelled: the camera sees the connection close now

    # ---- bookkeeping -----------------------------------------------------------------------
    def _frame(self, jpeg: bytes, seq: int | None, timestamp: float | None, now: float) -> None:
        if self.max_fps and not self._within_rate(now):
            return
        if self._prev_at is not None and now > self._prev_at:
            gap = now - self._prev_at
            self._interval = gap if self._interval is None else self._interval + _FPS_SMOOTHING * (
                gap - self._interval)
        self._prev_at = self.last_frame_at = now
        self.frames_in += 1
        try:
            self._on_frame(jpeg, seq, timestamp)
        except Exception:  # the owner's bug must not end the pull
            self.errors["callback"] += 1
            if "callback" not in self._logged:
                self._logged.add("callback")
                log.exception("camera %s: frame callback failed", self.camera_id)

    def _within_rate(self, now: float) -> bool:
        """Token bucket: up to ``max_fps`` frames a second, bursts of one second's worth."""
        assert self.max_fps
        if self._bucket_at is None:
            self._tokens = self.max_fps
        else:
            self._tokens = min(self.max_fps, self._tokens + (now - self._bucket_at) * self.max_fps)
        self._bucket_at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        self.frames_over_rate += 1
        self.errors["over_rate"] += 1
        if "over_rate" not in self._logged:
            self._logged.add("over_rate")
            log.warning("camera %s: more than %g frames/s; the excess is dropped and counted",
                        self.camera_id, self.max_fps)
        return False

    def _streaming(self) -> None:
        if self._logged:
            log.info("camera %s: streaming again (after %s)", self.camera_id, ", ".join(sorted(self._logged)))
        self._logged.clear()
        self._lost = False
        self.failures = 0
        self.last_error = None
        self._prev_at = None  # the gap while reconnecting is not a frame interval
        self._set_state(STREAMING)

    def _error(self, kind: str, detail: str) -> None:
        self.errors[kind] += 1
        if len(detail) > 200:  # library messages can quote whole chunks of what the camera sent
            detail = detail[:200] + "..."
        self.last_error = f"{kind}: {detail}"
        if kind in self._logged:
            log.debug("camera %s: %s: %s", self.camera_id, kind, detail)
        else:
            self._logged.add(kind)
            log.warning("camera %s: %s: %s (retrying with backoff; logged once until it streams)",
                        self.camera_id, kind, detail)

    def _set_state(self, state: str) -> None:
        if state == self.state:
            return
        self.state = state
        if self._on_state is not None:
            try:
                self._on_state(state)
            except Exception:
                log.exception("camera %s: state callback failed", self.camera_id)
