"""MJPEG parts as the hub sends them, parsed incrementally, and written out again.

The hub frames every part with ``Content-Length`` (``camhub_node/mjpeg.py`` writes them). This parser
relies on that: it finds a boundary, reads the header block, then takes exactly ``Content-Length``
bytes, never scanning a JPEG for a boundary. A part without a usable length, or over the size limit, is
skipped (and counted) and the parser resynchronises at the next boundary; memory stays bounded by the
limit plus a header block. Feed it whatever the socket returns.

Why not the hub's parser (``camhub.hub.ingest.parser``)? This module runs inside Home Assistant, a
different process with its own Python environment, installed by copying this folder (HACS). It cannot
import the camhub package, and it needs far less: the hub's parser copes with every odd camera on the
market, while this one only ever reads the hub, whose framing is known and tested on both sides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

BOUNDARY = "camhubframe"  # the boundary of the parts this integration writes to Home Assistant's viewers
CONTENT_TYPE = f"multipart/x-mixed-replace; boundary={BOUNDARY}"
MAX_PART_BYTES = 16 * 1024 * 1024  # the hub's own limit is 2 MiB by default (CAMHUB_MAX_FRAME_BYTES)
MAX_HEADER_BYTES = 4096
_NUMBER = re.compile(rb"[0-9]{1,20}(\.[0-9]{1,9})?")


@dataclass(slots=True)
class Part:
    """One JPEG and the numbers its part header carried (``X-Frame-Seq``, ``X-Timestamp``; bytes, checked)."""

    jpeg: bytes
    seq: bytes | None = None
    timestamp: bytes | None = None

    def encode(self) -> bytes:
        """The part as this integration sends it: ``--BOUNDARY``, headers, the JPEG, CRLF."""
        head = b"--" + BOUNDARY.encode() + b"\r\nContent-Type: image/jpeg\r\nContent-Length: " + \
            str(len(self.jpeg)).encode() + b"\r\n"
        if self.seq is not None:
            head += b"X-Frame-Seq: " + self.seq + b"\r\n"
        if self.timestamp is not None:
            head += b"X-Timestamp: " + self.timestamp + b"\r\n"
        return b"".join((head, b"\r\n", self.jpeg, b"\r\n"))


def boundary_of(content_type: str | None) -> str | None:
    """The ``boundary`` parameter of a ``multipart/x-mixed-replace`` Content-Type, or None."""
    if not content_type or not content_type.strip().lower().startswith("multipart/x-mixed-replace"):
        return None
    match = re.search(r'(?i);\s*boundary\s*=\s*"?([^";\s]{1,70})"?', content_type)
    return (match.group(1).lstrip("-") or None) if match else None


class PartParser:
    """Bytes in, whole parts out (``feed``); ``skipped`` counts parts dropped as malformed or too large."""

    def __init__(self, boundary: str, max_part_bytes: int = MAX_PART_BYTES) -> None:
        self._delimiter = b"--" + boundary.encode("latin-1")
        self._max = max_part_bytes
        self._buf = bytearray()
        self._body: tuple[int, bytes | None, bytes | None] | None = None  # (length, seq, timestamp) being read
        self._skip = 0  # bytes of a refused body still to discard
        self.skipped = 0

    def feed(self, data: bytes) -> list[Part]:
        self._buf += data
        parts: list[Part] = []
        while True:
            if self._skip:
                dropped = min(self._skip, len(self._buf))
                del self._buf[:dropped]
                self._skip -= dropped
                if self._skip:
                    return parts
            if self._body is None and not self._read_header():
                return parts
            if self._body is None:
                continue  # a refused header: look for the next boundary
            length, seq, timestamp = self._body
            if len(self._buf) < length:
                return parts
            parts.append(Part(bytes(self._buf[:length]), seq, timestamp))
            del self._buf[:length]
            self._body = None

    def _read_header(self) -> bool:
        """Consume a boundary and its header block if all of it is here; False: wait for more bytes."""
        start = self._buf.find(self._delimiter)
        if start < 0:
            keep = len(self._delimiter) - 1  # the start of a boundary cut in two
            del self._buf[:max(0, len(self._buf) - keep)]
            return False
        del self._buf[:start]
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buf) > MAX_HEADER_BYTES:  # not a header block: resynchronise after this boundary
                self.skipped += 1
                del self._buf[:len(self._delimiter)]
                return True
            return False
        block = bytes(self._buf[len(self._delimiter):end])
        del self._buf[:end + 4]
        headers = {}
        for line in block.split(b"\r\n")[1:]:  # the first line is the rest of the boundary line
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        length = headers.get(b"content-length", b"")
        if not length.isdigit() or len(length) > 12:
            self.skipped += 1
            return True
        if int(length) > self._max:
            self.skipped += 1
            self._skip = int(length)
            return True
        seq, timestamp = headers.get(b"x-frame-seq"), headers.get(b"x-timestamp")
        self._body = (int(length), seq if seq and _NUMBER.fullmatch(seq) else None,
                      timestamp if timestamp and _NUMBER.fullmatch(timestamp) else None)
        return True
