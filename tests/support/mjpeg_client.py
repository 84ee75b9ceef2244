"""A deliberately simple MJPEG reader for the tests (independent of the hub's tolerant parser).

It trusts ``Content-Length`` and checks the framing strictly, so a framing bug in the code under
test fails here instead of being papered over. A chunked response (Home Assistant's camera proxy
answers HTTP/1.1 requests that way) is de-chunked as it arrives; the throttle counts the bytes on the wire.
"""

from __future__ import annotations

import io
import socket
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from PIL import Image


@dataclass
class Part:
    headers: dict[str, str]
    body: bytes
    received_at: float

    @property
    def seq(self) -> int:
        return int(self.headers["x-frame-seq"])

    @property
    def timestamp(self) -> float:
        return float(self.headers["x-timestamp"])

    def image(self) -> Image.Image:
        img = Image.open(io.BytesIO(self.body))
        img.load()
        return img


@dataclass
class StreamReader:
    """Opens ``url`` and yields parts; ``rate`` (bytes/s) throttles reading to mimic a slow link."""

    url: str
    rate: float | None = None
    headers: dict[str, str] = field(default_factory=dict)
    recv_buffer: int | None = None
    timeout: float = 10.0

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        self.sock = socket.socket()
        if self.recv_buffer:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.recv_buffer)
        self.sock.settimeout(self.timeout)
        self.sock.connect((parts.hostname, parts.port or 80))
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        extra = "".join(f"{k}: {v}\r\n" for k, v in self.headers.items())
        self.sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n{extra}\r\n".encode())
        self._buf = bytearray()
        self._raw: bytearray | None = None  # chunked: bytes received, not yet de-chunked
        self._chunk_left = 0  # data bytes of the current chunk still to come
        self._chunk_end = False  # the CRLF after a chunk's data is next
        self._started = time.monotonic()
        self._consumed = 0
        head = self._read_until(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.response_headers = {k.strip().lower(): v.strip() for k, v in
                                 (line.split(":", 1) for line in lines[1:] if ":" in line)}
        if self.response_headers.get("transfer-encoding", "").lower() == "chunked":
            self._raw, self._buf = self._buf, bytearray()
            self._dechunk()
        self.boundary = None
        ctype = self.response_headers.get("content-type", "")
        if "boundary=" in ctype:
            self.boundary = ctype.split("boundary=", 1)[1].strip().strip('"').encode()

    def _fill(self) -> None:
        size = 4096 if self.rate else 65536
        if self.rate:
            due = self._started + self._consumed / self.rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        chunk = self.sock.recv(size)
        if not chunk:
            raise EOFError("stream closed by the server")
        self._consumed += len(chunk)
        if self._raw is None:
            self._buf += chunk
        else:
            self._raw += chunk
            self._dechunk()

    def _dechunk(self) -> None:
        """Move the data of every complete chunk (and of the started one) from ``_raw`` to ``_buf``."""
        raw = self._raw
        assert raw is not None
        while raw:
            if self._chunk_left:
                take = min(self._chunk_left, len(raw))
                self._buf += raw[:take]
                del raw[:take]
                self._chunk_left -= take
                self._chunk_end = not self._chunk_left
            elif self._chunk_end:
                if len(raw) < 2:
                    return
                assert raw[:2] == b"\r\n", f"chunk not followed by CRLF: {bytes(raw[:20])!r}"
                del raw[:2]
                self._chunk_end = False
            else:
                line_end = raw.find(b"\r\n")
                if line_end < 0:
                    return
                size = int(bytes(raw[:line_end]).split(b";")[0], 16)
                del raw[:line_end + 2]
                if size == 0:
                    raise EOFError("the chunked stream ended")
                self._chunk_left = size

    def _read_until(self, marker: bytes) -> bytes:
        while (i := self._buf.find(marker)) < 0:
            self._fill()
        out = bytes(self._buf[:i])
        del self._buf[: i + len(marker)]
        return out

    def _read_exact(self, n: int) -> bytes:
        while len(self._buf) < n:
            self._fill()
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def read_part(self) -> Part:
        assert self.boundary, f"not a multipart response: {self.response_headers}"
        line = self._read_until(b"\r\n")
        while line == b"":  # the CRLF that ends the previous part
            line = self._read_until(b"\r\n")
        assert line == b"--" + self.boundary, f"expected boundary, got {line[:80]!r}"
        head = self._read_until(b"\r\n\r\n").decode("latin-1")
        headers = {k.strip().lower(): v.strip() for k, v in
                   (h.split(":", 1) for h in head.split("\r\n") if ":" in h)}
        body = self._read_exact(int(headers["content-length"]))
        return Part(headers, body, time.time())

    def parts(self, count: int) -> list[Part]:
        return [self.read_part() for _ in range(count)]

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> StreamReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def frame_ages(reader: StreamReader, seconds: float) -> list[tuple[float, float]]:
    """``(seconds since the start, the frame's age when it arrived)`` for every part read for ``seconds``
    (the age from the part's ``X-Timestamp``, the camera's capture time on this machine's clock)."""
    ages = []
    start = time.time()
    while time.time() - start < seconds:
        part = reader.read_part()
        ages.append((part.received_at - start, part.received_at - part.timestamp))
    return ages
