"""A local MJPEG camera that misbehaves on purpose, for the hub's upstream tests.

It stands in for third-party cameras that cannot exist here, sending the quirks they are known
for: HTTP/1.0 responses with no length (the body ends when the connection closes), the boundary
quoted or declared with its ``--``, four dashes on the wire, LF-only lines, parts without
``Content-Length``, no Content-Type at all, and chunked transfer encoding (Espressif's
CameraWebServer streams with ``httpd_resp_send_chunk``). It can also stall, close mid-part, send
garbage, oversize parts and parts that are not JPEGs. Every byte is written by hand on a real
socket (127.0.0.1), so the framing is exactly what the quirk says.

``QuirkyCamera`` runs in the caller's event loop; ``serve_in_thread`` runs one in a background
thread for synchronous tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from PIL import Image, ImageDraw


def make_jpegs(count: int = 8, size: tuple[int, int] = (160, 120)) -> list[bytes]:
    """Small, distinct, decodable JPEGs."""
    out = []
    for i in range(count):
        img = Image.new("RGB", size, ((37 * i) % 256, (91 * i) % 256, (53 * i + 80) % 256))
        ImageDraw.Draw(img).text((10, 10), f"frame {i}", fill=(255, 255, 255))
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=70)
        out.append(buf.getvalue())
    return out


@dataclass
class Quirks:
    """What the camera sends on each connection (changeable between connections)."""

    status: int = 200
    http_version: str = "1.1"  # "1.0": no Connection header, the body ends at close
    content_type: str | None = "multipart/x-mixed-replace; boundary=frame"  # None: no header at all
    wire_boundary: bytes = b"--frame"  # the boundary line as sent
    eol: bytes = b"\r\n"  # line ends inside the multipart body
    head_eol: bytes = b"\r\n"  # line ends of the HTTP response head
    content_length: bool = True
    chunked: bool = False  # Transfer-Encoding: chunked, one HTTP chunk per write
    fps: float = 25.0
    stall_after: int | None = None  # after this many frames, send nothing more but stay connected
    close_mid_part_after: int | None = None  # after this many frames, send half a part and close
    garbage_every: int = 0  # junk between parts before every Nth frame
    oversize_every: int = 0  # every Nth part is a JPEG of oversize_bytes (declared honestly)
    oversize_bytes: int = 0
    not_jpeg_every: int = 0  # every Nth part is HTML instead of a JPEG
    raw_body: bytes | None = None  # send exactly this after the head, then close
    silent: bool = False  # accept, read the request, never answer


@dataclass
class QuirkyCamera:
    """An MJPEG server on 127.0.0.1 sending ``quirks``; counts connections and frames."""

    quirks: Quirks = field(default_factory=Quirks)
    port: int = 0
    jpegs: list[bytes] = field(default_factory=make_jpegs)
    connections: int = 0
    connected_at: list[float] = field(default_factory=list)  # time.monotonic() of each connection
    closed_at: list[float] = field(default_factory=list)  # time.monotonic() of each close (in close order)
    frames_sent: int = 0
    open_connections: int = 0

    def __post_init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._rnd = random.Random(7)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream"

    async def start(self) -> QuirkyCamera:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            for task in list(self._handlers):
                task.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> QuirkyCamera:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- one connection --------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.connected_at.append(time.monotonic())
        self.open_connections += 1
        self._writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        q = self.quirks
        try:
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            if q.silent:
                await reader.read()  # until the client gives up
                return
            await self._send(writer, self._head(q), q, head=True)
            if q.raw_body is not None:
                await self._send(writer, q.raw_body, q)
            elif q.status == 200:
                await self._stream(reader, writer, q)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass
        except asyncio.CancelledError:
            pass  # stop(): the handler ends quietly (asyncio would log a cancelled handler as an error)
        finally:
            self.closed_at.append(time.monotonic())
            self.open_connections -= 1
            self._writers.discard(writer)
            self._handlers.discard(task)
            with contextlib.suppress(OSError):
                if q.chunked and not writer.is_closing():
                    writer.write(b"0\r\n\r\n")
                writer.close()

    def _head(self, q: Quirks) -> bytes:
        reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}.get(q.status, "Error")
        lines = [f"HTTP/{q.http_version} {q.status} {reason}".encode()]
        if q.content_type is not None:
            lines.append(b"Content-Type: " + q.content_type.encode())
        if q.chunked:
            lines.append(b"Transfer-Encoding: chunked")
        if q.http_version == "1.1" and not q.chunked:
            lines.append(b"Connection: close")
        if q.status != 200:
            lines.append(b"Content-Length: 0")
        return q.head_eol.join(lines) + q.head_eol + q.head_eol

    async def _send(self, writer: asyncio.StreamWriter, data: bytes, q: Quirks, head: bool = False) -> None:
        if q.chunked and not head and data:
            data = b"%x\r\n" % len(data) + data + b"\r\n"
        writer.write(data)
        await writer.drain()

    def _part(self, body: bytes, seq: int, q: Quirks) -> bytes:
        head = [q.wire_boundary, b"Content-Type: image/jpeg"]
        if q.content_length:
            head.append(b"Content-Length: %d" % len(body))
        head.append(b"X-Frame-Seq: %d" % seq)
        head.append(b"X-Timestamp: %.6f" % time.time())
        return q.eol.join(head) + q.eol + q.eol + body + q.eol

    async def _stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, q: Quirks) -> None:
        seq = 0
        period = 1.0 / q.fps
        while True:
            if q.stall_after is not None and seq >= q.stall_after:
                await reader.read()  # silent until the client gives up and closes
                return
            n = seq + 1
            if q.garbage_every and n % q.garbage_every == 0:
                await self._send(writer, self._rnd.randbytes(300).replace(b"--frame", b"") + q.eol, q)
            if q.oversize_every and n % q.oversize_every == 0:
                body = b"\xff\xd8" + self._rnd.randbytes(q.oversize_bytes) + b"\xff\xd9"
            elif q.not_jpeg_every and n % q.not_jpeg_every == 0:
                body = b"<html><body>camera busy</body></html>"
            else:
                body = self.jpegs[seq % len(self.jpegs)]
            part = self._part(body, seq, q)
            if q.close_mid_part_after is not None and seq >= q.close_mid_part_after:
                await self._send(writer, part[: len(part) // 2], q)
                writer.transport.abort()
                return
            await self._send(writer, part, q)
            if body in self.jpegs:
                self.frames_sent += 1
            seq += 1
            await asyncio.sleep(period)


@contextlib.contextmanager
def serve_in_thread(quirks: Quirks | None = None, port: int = 0) -> Iterator[QuirkyCamera]:
    """A QuirkyCamera on its own event loop in a background thread (for synchronous tests)."""
    loop = asyncio.new_event_loop()
    camera = QuirkyCamera(quirks or Quirks(), port=port)
    thread = threading.Thread(target=loop.run_forever, name="quirky-camera", daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(camera.start(), loop).result(10)
        yield camera
    finally:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(camera.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
