"""A tolerant, incremental MJPEG (``multipart/x-mixed-replace``) parser for untrusted camera streams.

Feed it whatever the socket returns; it hands back whole JPEG frames. It copes with what real
cameras send: the boundary quoted or not, declared with or without its leading ``--``, doubled
dashes on the wire, LF-only line endings, parts without ``Content-Length`` (scanned up to the next
boundary), a wrong ``Content-Length`` (recovered by scanning), no boundary declared at all (taken
from the first ``--token`` line), padding after the JPEG's end marker.

Memory stays bounded: a declared ``Content-Length`` over the limit is refused at once and skipped
without buffering, a part without one is dropped as soon as it outgrows the limit, and no more
than ``max_frame_bytes`` plus a small header allowance is ever held. Garbage never raises; the
parser resynchronises at the next boundary. Frames from a ``Content-Length`` part are copied once
(from the received chunks into the frame); scanning already-received bytes never starts over.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from camhub.hub.core.jpeg import MAX_PAD, SOI, jpeg_end

HEADER_ALLOWANCE = 8192  # the largest part header block accepted (bytes)
_LOOK = 1024  # bytes taken at a time while a boundary and headers are expected
_STEP = 65536  # bytes taken at a time while scanning a body or skipping garbage
_MAX_LWSP = 64  # RFC 2046 allows transport padding after a boundary; a little is enough
_MAX_HEADERS = 64
_MAX_DASHES = 16  # extra dashes tolerated before a boundary
# RFC 2046 bchars: 1-70 of these, not ending in a space.
_BOUNDARY_RE = re.compile(rb"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
_DIGITS_RE = re.compile(r"[0-9]{1,15}")

_SEEK, _HEADERS, _BODY, _SCAN = range(4)


@dataclass(slots=True)
class ParsedFrame:
    """One JPEG from the stream, with what its part header said about it."""

    jpeg: bytes
    seq: int | None = None  # X-Frame-Seq
    timestamp: float | None = None  # X-Timestamp (capture time, Unix seconds)
    headers: dict[str, str] = field(default_factory=dict)  # lower-cased names


def boundary_from_content_type(content_type: str | None) -> str | None:
    """The ``boundary`` parameter of a Content-Type header (quoted or not), or None."""
    if not content_type:
        return None
    match = re.search(r'(?i)(?:^|[;\s])boundary\s*=\s*("([^"]*)"|[^;\s]*)', content_type)
    if match is None:
        return None
    value = match.group(2) if match.group(2) is not None else match.group(1)
    return value.strip() or None


def _needle(boundary: str | None) -> bytes | None:
    """The bytes searched for: ``--`` plus the boundary without any leading dashes.

    Cameras disagree on whether the declared parameter includes the ``--`` and some send four
    dashes on the wire, so the dashes are matched loosely on both sides.
    """
    if boundary is None:
        return None
    core = boundary.strip().strip('"').lstrip("-").encode("latin-1", "replace")
    return b"--" + core if core else None


class MjpegParser:
    """Incremental parser: ``feed(chunk)`` returns the frames completed by that chunk.

    Counters (read freely): ``frames``, ``dropped_oversize``, ``dropped_not_jpeg``, ``resyncs``
    (framing lost and found again at a later boundary), ``bytes_in``, ``parts_whole`` (of ``frames``, those
    the fast path below took).

    A well-formed part that arrives whole inside one chunk (what a camhub node sends over a fast
    link) is taken by ``_whole_part`` straight from the chunk; anything else — or anything it is
    not sure about — goes through the state machine, which gives the same result for it.
    """

    fast_path = True  # False: the state machine only (the tests compare the two)

    def __init__(self, boundary: str | None, max_frame_bytes: int) -> None:
        if max_frame_bytes < 4:
            raise ValueError("max_frame_bytes must be at least 4")
        self.max_frame_bytes = max_frame_bytes
        self._needle = _needle(boundary)
        self._buf = bytearray()
        self._state = _SEEK
        self._expect = False  # bytes other than blanks before the next boundary mean a resync
        self._misses = 0  # SEEK windows without a boundary: widen the window after the first
        self._from = 0  # where the next search in _buf resumes (SEEK, SCAN)
        self._line_start = True  # _buf[0] starts a line (boundary detection only)
        self._hdr_pos = 0
        self._hdr_done = False
        self._headers: dict[str, str] = {}
        self._pieces: list[memoryview | bytes] = []
        self._need = 0
        self._got = 0
        self.frames = 0
        self.dropped_oversize = 0
        self.dropped_not_jpeg = 0
        self.resyncs = 0
        self.bytes_in = 0
        self.parts_whole = 0  # what ordinary streams should go through (tests check it)

    @property
    def boundary(self) -> str | None:
        """The boundary in use (declared, or detected from the stream), without dashes."""
        return None if self._needle is None else self._needle[2:].decode("latin-1")

    @property
    def buffered(self) -> int:
        """Bytes the parser currently holds."""
        return len(self._buf) + self._got

    def feed(self, data: bytes | bytearray | memoryview) -> list[ParsedFrame]:
        """Consume ``data`` (any size, any split); return the frames it completed, in order."""
        if not isinstance(data, bytes):
            data = bytes(data)  # the frames may reference it: it must not change under us
        n = len(data)
        self.bytes_in += n
        out: list[ParsedFrame] = []
        view = memoryview(data)
        buf = self._buf
        pos = 0
        while True:
            if self._state == _SEEK and not buf and self.fast_path and self._needle is not None and pos < n:
                end = self._whole_part(data, pos, n, out)
                if end > pos:
                    pos = end
                    continue
            if self._state == _BODY:
                # A body of known length: slice the caller's chunks, copy once when complete.
                if pos >= n:
                    break
                take = min(self._need, n - pos)
                self._pieces.append(view[pos:pos + take])
                pos += take
                self._got += take
                self._need -= take
                if self._need == 0:
                    self._finish_body(out)
                continue
            if self._step(out):
                continue
            if pos >= n:
                break
            take = self._window()
            buf += view[pos:pos + take]
            pos += take
        return out

    def _whole_part(self, data: bytes, pos: int, n: int, out: list[ParsedFrame]) -> int:
        """Take one ordinary part lying whole in ``data[pos:n]``; where it ended, or ``pos`` to leave
        it to the state machine (changing nothing). Ordinary: only line breaks before the boundary
        line, which is the boundary and CRLF exactly; CRLF-only header lines, none blank or naming
        the boundary; a Content-Length within the limit; a JPEG that ends where it says."""
        needle = self._needle
        assert needle is not None
        i = pos
        while i < n and i - pos < 4 and data[i] in (13, 10):
            i += 1
        if not data.startswith(needle, i) or not data.startswith(b"\r\n", i + len(needle)):
            return pos
        head = i + len(needle) + 2
        stop = data.find(b"\r\n\r\n", head, min(n, head + HEADER_ALLOWANCE // 2))
        if stop < 0:
            return pos
        block = data[head:stop]
        if block.count(b"\n") != block.count(b"\r\n") or block.count(b"\r") != block.count(b"\n") or (
                needle[2:] in block):
            return pos
        lines = block.split(b"\r\n")
        if len(lines) > _MAX_HEADERS:
            return pos
        headers: dict[str, str] = {}
        for line in lines:
            name, sep, value = line.partition(b":")
            if not line.strip():
                return pos
            if sep:
                headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
        length = _int_header(headers.get("content-length"))
        body = stop + 4
        if length is None or not 4 <= length <= self.max_frame_bytes or body + length > n or (
                not data.startswith(SOI, body)):
            return pos
        jpeg = data[body:body + length]
        end = jpeg_end(jpeg, 0, length)
        if end < 0:
            return pos
        self._headers = headers
        self._emit(jpeg if end == length else jpeg[:end], out)
        self.parts_whole += 1
        self._from = 0
        self._misses = 0
        self._expect = True
        end = body + length
        stop = min(n, end + 4)
        while end < stop and data[end] in (13, 10):  # the line break after the body: blank, not a resync
            end += 1
        return end

    # ---- the states ------------------------------------------------------------------------
    def _window(self) -> int:
        if self._state == _SCAN:
            room = self.max_frame_bytes + self._slack() + 1 - len(self._buf)
            return max(1, min(_STEP, room))
        if self._state == _SEEK and self._misses:
            return _STEP
        return _LOOK

    def _slack(self) -> int:
        """Room past the limit for what follows a body (padding, dashes, the boundary line), so
        that a part is judged by its size, never by where a chunk happened to end."""
        return MAX_PAD + _MAX_DASHES + len(self._needle or b"") + 4 + _MAX_LWSP

    def _step(self, out: list[ParsedFrame]) -> bool:
        """Advance on the buffered bytes; False when more input is needed."""
        state = self._state
        if state == _SEEK:
            return self._seek() if self._needle is not None else self._detect()
        if state == _HEADERS:
            return self._read_headers(out)
        return self._scan(out)

    def _seek(self) -> bool:
        buf, needle = self._buf, self._needle
        assert needle is not None
        found = self._find_boundary(self._from)
        if found is None:
            keep = len(needle) - 1  # could be the start of a boundary
            cut = len(buf) - keep
            if cut > 0:
                self._skipped(0, cut)
                del buf[:cut]
            self._from = 0
            self._misses += 1
            return False
        start, after, closing = found
        if after < 0:  # a boundary whose line end has not arrived yet
            self._skipped(0, start)
            del buf[:start]
            self._from = 0
            return False
        self._skipped(0, start)
        del buf[:after]
        self._from = 0
        self._misses = 0
        if not closing:
            self._begin_part()
        return True

    def _detect(self) -> bool:
        """No boundary declared: take it from the first ``--token`` line."""
        buf = self._buf
        i = self._from
        while True:
            j = buf.find(b"--", i)
            if j < 0:
                cut = len(buf) - 1  # a lone trailing "-" may start the line
                if cut > 0:
                    self._line_start = buf[cut - 1] == 10
                    del buf[:cut]
                self._from = 0
                self._misses += 1
                return False
            if (buf[j - 1] == 10) if j > 0 else self._line_start:
                end = buf.find(b"\n", j)
                if end < 0 and len(buf) - j <= 80:  # wait for the rest of this line
                    if j > 0:
                        self._line_start = True
                        del buf[:j]
                    self._from = 0
                    return False
                if 0 <= end - j <= 80:
                    token = bytes(buf[j:end]).rstrip(b"\r \t").lstrip(b"-")
                    if _BOUNDARY_RE.fullmatch(token) and not token.endswith(b"--"):
                        self._needle = b"--" + token
                        del buf[:end + 1]
                        self._from = 0
                        self._misses = 0
                        self._begin_part()
                        return True
            i = j + 1

    def _find_boundary(self, start: int) -> tuple[int, int, bool] | None:
        """The next boundary line at or after ``start``: (where its dashes start, where the next
        line starts or -1 if its end is not buffered yet, whether it closes the multipart)."""
        buf, needle = self._buf, self._needle
        assert needle is not None
        n = len(buf)
        i = buf.find(needle, start)
        while i >= 0:
            k = i + len(needle)
            closing = False
            if k < n and buf[k] == 45:  # "--" after the boundary closes the multipart
                if k + 1 >= n:
                    return self._dash_start(i), -1, False
                if buf[k + 1] == 45:
                    k += 2
                    closing = True
            limit = k + _MAX_LWSP
            while k < n and k < limit and buf[k] in (32, 9):
                k += 1
            if k >= n or (buf[k] == 13 and k + 1 >= n):
                return self._dash_start(i), -1, closing
            if buf[k] == 10:
                return self._dash_start(i), k + 1, closing
            if buf[k] == 13 and buf[k + 1] == 10:
                return self._dash_start(i), k + 2, closing
            i = buf.find(needle, i + 1)
        return None

    def _dash_start(self, i: int) -> int:
        """Doubled dashes (``----boundary``) belong to the boundary line, not the body before it."""
        buf = self._buf
        lowest = max(0, i - _MAX_DASHES)
        while i > lowest and buf[i - 1] == 45:
            i -= 1
        return i

    def _skipped(self, start: int, end: int) -> None:
        """Bytes thrown away while looking for a boundary: a resync if they were not expected."""
        if self._expect and end > start and bytes(self._buf[start:end]).strip(b" \t\r\n-"):
            self.resyncs += 1
            self._expect = False

    def _begin_part(self) -> None:
        self._state = _HEADERS
        self._hdr_pos = 0
        self._hdr_done = False
        self._headers = {}
        self._expect = True

    def _lose_framing(self) -> None:
        """The part in hand cannot be read: look for the next boundary from here."""
        self.resyncs += 1
        self._to_seek()

    def _to_seek(self) -> None:
        self._state = _SEEK
        self._expect = False
        self._from = 0
        self._misses = 0

    def _read_headers(self, out: list[ParsedFrame]) -> bool:
        buf = self._buf
        pos = self._hdr_pos
        headers = self._headers
        while not self._hdr_done:
            end = buf.find(b"\n", pos)
            if end < 0 or end > HEADER_ALLOWANCE:
                if end > HEADER_ALLOWANCE or len(buf) > HEADER_ALLOWANCE:
                    self._lose_framing()
                    return True
                self._hdr_pos = pos
                return False
            line = bytes(buf[pos:end]).rstrip(b"\r")
            pos = end + 1
            if not line.strip():
                self._hdr_done = True
                break
            if self._needle is not None and line.rstrip(b" \t-").lstrip(b"-") == self._needle[2:]:
                # A boundary where headers should be: the part before it was cut short.
                del buf[:pos]
                self.resyncs += 1
                self._begin_part()
                self._expect = False
                return True
            name, sep, value = line.partition(b":")
            if sep:
                if len(headers) >= _MAX_HEADERS:
                    self._lose_framing()
                    return True
                headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
        self._hdr_pos = pos
        if len(buf) < pos + 2:
            # Wait for the body's first two bytes: a part that is not a JPEG is refused up front.
            length = _int_header(headers.get("content-length"))
            if length is None or length >= 2:
                return False
        del buf[:pos]
        self._start_body(out)
        return True

    def _start_body(self, out: list[ParsedFrame]) -> None:
        buf = self._buf
        length = _int_header(self._headers.get("content-length"))
        if length is not None and length > self.max_frame_bytes:
            self.dropped_oversize += 1  # refused at once: skipped up to the next boundary, never held
            self._to_seek()
            return
        if buf[:2] != SOI:
            self.dropped_not_jpeg += 1
            self._to_seek()
            return
        if length is None:
            self._state = _SCAN
            self._from = 0
            return
        take = min(length, len(buf))
        if take:
            with memoryview(buf) as view:
                self._pieces.append(bytes(view[:take]))
            del buf[:take]
        self._got = take
        self._need = length - take
        self._state = _BODY
        if self._need == 0:
            self._finish_body(out)

    def _finish_body(self, out: list[ParsedFrame]) -> None:
        pieces = self._pieces
        data = pieces[0] if len(pieces) == 1 and isinstance(pieces[0], bytes) else b"".join(pieces)
        pieces.clear()
        self._got = 0
        end = jpeg_end(data, 0, len(data))
        if end < 0:
            # Content-Length was wrong (or the frame is cut): scan this body again for a boundary.
            self._buf[0:0] = data
            self.resyncs += 1
            self._state = _SCAN
            self._from = 0
            return
        if end < len(data):
            data = data[:end]
        self._emit(data, out)
        self._state = _SEEK
        self._from = 0
        self._misses = 0
        self._expect = True

    def _scan(self, out: list[ParsedFrame]) -> bool:
        """A body without (usable) Content-Length: it ends where the next boundary starts."""
        buf = self._buf
        found = self._find_boundary(self._from)
        if found is None or found[1] < 0:
            resume = found[0] if found else max(0, len(buf) - len(self._needle or b"") + 1)
            if len(buf) > self.max_frame_bytes + self._slack():
                self.dropped_oversize += 1
                self._to_seek()
            self._from = resume
            return self._state == _SEEK
        start, after, closing = found
        body_end = start
        end = jpeg_end(buf, 0, body_end)
        if end < 0:
            self.dropped_not_jpeg += 1
        elif end > self.max_frame_bytes:
            self.dropped_oversize += 1
        else:
            with memoryview(buf) as view:
                self._emit(bytes(view[:end]), out)
        del buf[:after]
        self._from = 0
        if closing:
            self._to_seek()
        else:
            self._begin_part()
        return True

    def _emit(self, jpeg: bytes, out: list[ParsedFrame]) -> None:
        headers = self._headers
        frame = ParsedFrame(jpeg, _int_header(headers.get("x-frame-seq")),
                            _float_header(headers.get("x-timestamp")), headers)
        self.frames += 1
        out.append(frame)


def _int_header(value: str | None) -> int | None:
    if value is None:
        return None
    value = value.strip()
    return int(value) if _DIGITS_RE.fullmatch(value) else None


def _float_header(value: str | None) -> float | None:
    if value is None or len(value) > 32:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None
