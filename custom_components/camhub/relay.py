"""The live view: a frame-aware MJPEG relay between the hub and one Home Assistant viewer.

Home Assistant's own MJPEG proxy (``helpers/aiohttp_client.py``, ``async_aiohttp_proxy_web``) copies
bytes and awaits every write, so a viewer slower than the camera gets further and further behind; it
ends a stream after 10 s without bytes, and streams whatever the upstream answered, error pages
included. This relay does for a Home Assistant viewer what the hub does for its own (the hub's frame
broker, ``src/camhub/hub/core/broker.py``):

- one upstream request per viewer: the hub fans out, the relay never shares a stream;
- the upstream is read continuously and cut into parts by ``Content-Length`` (``mjpeg.py``); only the
  newest part is kept;
- a part is written to the viewer only when the previous one has gone out (the connection's asyncio
  buffer is empty); parts that arrived meanwhile are skipped and counted;
- the viewer's socket gets the hub's settings, ``TCP_NOTSENT_LOWAT`` 16 KiB and a 256 KiB send buffer,
  so "gone out" means the kernel holds at most that much not yet sent: a slow viewer gets fewer
  frames, never older ones;
- the hub's answer is checked before anything is sent: 503 → 503 (with its ``Retry-After``), 404 →
  404, 401 → Home Assistant's reauth flow and 502, anything else 502; an error body never becomes video;
- a stream lost midway (the hub restarted, the network dropped) is reopened with backoff while the
  viewer stays connected, so an open view resumes by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from .hub import HubError
from .mjpeg import CONTENT_TYPE, Part, PartParser, boundary_of

log = logging.getLogger(__name__)

SEND_BUFFER = 256 * 1024  # SO_SNDBUF of the viewer's socket, as the hub's FanoutSettings.send_buffer
UNSENT_LIMIT = 16 * 1024  # TCP_NOTSENT_LOWAT, as the hub's FanoutSettings.unsent_limit
WRITE_TIMEOUT_S = 10.0  # a viewer that takes no byte for this long is dropped (the hub's write_timeout_s)
RETRY_S = (0.5, 10.0)  # reopening a lost upstream: first delay, longest delay
_TCP_NOTSENT_LOWAT = getattr(socket, "TCP_NOTSENT_LOWAT", 25 if sys.platform.startswith("linux") else None)


@dataclass
class RelayStats:
    """One camera's relay counters (shown as the camera entity's attributes)."""

    viewers: int = 0
    frames_out: int = 0
    frames_skipped: int = 0  # arrived from the hub, replaced by a newer one before the viewer was ready


class Refused(Exception):
    """The hub did not give a stream: what to answer the viewer, and whether trying again can help."""

    def __init__(self, status: int, reason: str, final: bool, retry_after: str | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.final = final
        self.retry_after = retry_after

    def response(self) -> web.Response:
        headers = {"Retry-After": self.retry_after} if self.retry_after and self.retry_after.isdigit() else None
        return web.Response(status=self.status, text=f"{self}\n", headers=headers)


def tune_viewer_socket(transport: asyncio.BaseTransport) -> None:
    """The hub's per-viewer socket settings, on Home Assistant's connection to the viewer."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if _TCP_NOTSENT_LOWAT is not None:
            sock.setsockopt(socket.IPPROTO_TCP, _TCP_NOTSENT_LOWAT, UNSENT_LIMIT)


async def drained(transport: asyncio.WriteTransport) -> None:
    """Return once the connection's asyncio buffer is empty: the kernel has taken the whole part.

    asyncio tells a protocol, not its user, when a buffer drains, and aiohttp waits for that only past
    64 KiB, so the buffer is looked at, every 1-20 ms while it holds anything. ConnectionResetError: the
    viewer is gone; TimeoutError: it took no byte for WRITE_TIMEOUT_S.
    """
    loop = asyncio.get_running_loop()
    pending = transport.get_write_buffer_size()
    progress = loop.time()
    delay = 0.001
    while pending:
        if transport.is_closing():
            raise ConnectionResetError("the viewer went away")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.02)
        left = transport.get_write_buffer_size()
        if left < pending:
            progress = loop.time()
        elif loop.time() - progress > WRITE_TIMEOUT_S:
            raise TimeoutError(f"the viewer took nothing for {WRITE_TIMEOUT_S:g} s")
        pending = left


class Relay:
    """One viewer's stream: ``serve(request)`` until the viewer leaves or the camera is gone."""

    def __init__(self, open_stream: Callable[[], Awaitable[aiohttp.ClientResponse]],
                 on_auth_failed: Callable[[], None], stats: RelayStats, name: str) -> None:
        self._open = open_stream
        self._on_auth_failed = on_auth_failed
        self.stats = stats
        self.name = name
        self._newest: Part | None = None
        self._arrived = asyncio.Event()
        self._over = False

    async def serve(self, request: web.Request) -> web.StreamResponse:
        try:
            upstream, parser = await self._connect()
        except Refused as exc:
            log.debug("%s: no stream for a viewer: %s (%d)", self.name, exc, exc.status)
            return exc.response()
        response = web.StreamResponse(headers={"Content-Type": CONTENT_TYPE,
                                               "Cache-Control": "no-cache, no-store, must-revalidate",
                                               "Pragma": "no-cache"})
        reader = asyncio.create_task(self._read(upstream, parser), name=f"camhub relay {self.name}")
        self.stats.viewers += 1
        try:
            await response.prepare(request)
            if request.transport is not None:
                tune_viewer_socket(request.transport)
                await self._send(response, request.transport)
        except (ConnectionError, TimeoutError) as exc:
            log.debug("%s: viewer dropped: %s", self.name, exc)
        finally:
            self.stats.viewers -= 1
            reader.cancel()
            await asyncio.wait([reader])
        return response

    async def _connect(self) -> tuple[aiohttp.ClientResponse, PartParser]:
        try:
            resp = await self._open()
        except HubError as exc:
            raise Refused(502, f"the hub cannot be reached ({exc})", final=False) from exc
        boundary = boundary_of(resp.headers.get("Content-Type")) if resp.status == 200 else None
        if boundary is not None:
            return resp, PartParser(boundary)
        status, retry_after = resp.status, resp.headers.get("Retry-After")
        resp.close()
        if status == 401:
            self._on_auth_failed()
            raise Refused(502, "the hub refused the integration's credentials: re-authenticate camhub", final=True)
        if status == 404:
            raise Refused(404, "the hub no longer has this camera", final=True)
        if status == 503:
            raise Refused(503, "the hub cannot serve this camera now", final=False, retry_after=retry_after)
        raise Refused(502, f"the hub answered HTTP {status}" + (" without a stream" if status == 200 else ""),
                      final=False)

    async def _read(self, upstream: aiohttp.ClientResponse, parser: PartParser) -> None:
        """Take every part the hub sends, keeping the newest; reopen the stream when it is lost."""
        delay = RETRY_S[0]
        try:
            while True:
                try:
                    async for chunk in upstream.content.iter_any():
                        for part in parser.feed(chunk):
                            self._offer(part)
                            delay = RETRY_S[0]
                    log.debug("%s: the hub ended the stream", self.name)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    log.debug("%s: stream lost: %s", self.name, exc or type(exc).__name__)
                finally:
                    upstream.close()
                while True:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RETRY_S[1])
                    try:
                        upstream, parser = await self._connect()
                        break
                    except Refused as exc:
                        log.debug("%s: reopening the stream: %s", self.name, exc)
                        if exc.final:
                            return
        finally:
            self._over = True
            self._arrived.set()

    def _offer(self, part: Part) -> None:
        if self._newest is not None:
            self.stats.frames_skipped += 1
        self._newest = part
        self._arrived.set()

    async def _send(self, response: web.StreamResponse, transport: asyncio.BaseTransport) -> None:
        """Write the newest part whenever the previous one has gone out, until the stream is over."""
        while True:
            part, self._newest = self._newest, None
            if part is None:
                if self._over:
                    return
                self._arrived.clear()
                await self._arrived.wait()
                continue
            await response.write(part.encode())
            await drained(transport)  # type: ignore[arg-type]
            self.stats.frames_out += 1
