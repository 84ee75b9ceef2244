"""MJPEG framing shared by the node and the hub: one part layout, written without allocation.

A part is ``--BOUNDARY CRLF headers CRLF CRLF jpeg CRLF``. The header is written straight into the
bytes just before the JPEG in a caller-owned buffer, so a frame is sent as one contiguous slice and
no per-frame or per-client copy is made. Runs on CircuitPython and CPython alike.
"""

BOUNDARY = "camhubframe"  # RFC 2046: 1-70 chars, no leading "--" in the parameter
CONTENT_TYPE = "multipart/x-mixed-replace; boundary=" + BOUNDARY
TRAILER = b"\r\n"
# Longest header write_part_header can produce, with room to spare: the JPEG must start at least
# this far into the buffer.
HEADER_ROOM = 160

_START = b"--" + BOUNDARY.encode() + b"\r\nContent-Type: image/jpeg\r\nContent-Length: "
_SEQ = b"\r\nX-Frame-Seq: "
_TS = b"\r\nX-Timestamp: "
_END = b"\r\n\r\n"
_FIXED = len(_START) + len(_SEQ) + len(_TS) + len(_END) + 7  # 7 = "." + six microsecond digits


def response_head(extra=b""):
    """The HTTP/1.1 response head that opens an MJPEG stream (bytes)."""
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: " + CONTENT_TYPE.encode()
        + b"\r\nCache-Control: no-cache, no-store, must-revalidate\r\nPragma: no-cache\r\n"
        + b"Connection: close\r\n" + extra + b"\r\n"
    )


def _digits(n):
    count = 1
    while n >= 10:
        n //= 10
        count += 1
    return count


def _put(buf, pos, data):
    end = pos + len(data)
    buf[pos:end] = data
    return end


def _put_uint(buf, pos, n, width):
    end = pos + width
    i = end
    while i > pos:
        i -= 1
        buf[i] = 48 + n % 10
        n //= 10
    return end


def part_header_length(length, seq, ts_s):
    """Bytes write_part_header will use for these values."""
    return _FIXED + _digits(length) + _digits(seq) + _digits(ts_s)


def write_part_header(buf, end, length, seq, ts_s, ts_us):
    """Write a part header into ``buf`` so that it ends at ``end``; return where it starts.

    ``length`` is the JPEG size, ``seq`` the frame sequence number, ``ts_s``/``ts_us`` the capture
    time as Unix seconds and microseconds (sent as ``X-Timestamp: s.uuuuuu``, as µStreamer does).
    """
    if length < 0 or seq < 0 or ts_s < 0 or not 0 <= ts_us < 1000000:
        raise ValueError("part header values out of range")
    start = end - part_header_length(length, seq, ts_s)
    if start < 0:
        raise ValueError("no room for the part header")
    pos = _put(buf, start, _START)
    pos = _put_uint(buf, pos, length, _digits(length))
    pos = _put(buf, pos, _SEQ)
    pos = _put_uint(buf, pos, seq, _digits(seq))
    pos = _put(buf, pos, _TS)
    pos = _put_uint(buf, pos, ts_s, _digits(ts_s))
    buf[pos] = 46  # "."
    pos = _put_uint(buf, pos + 1, ts_us, 6)
    _put(buf, pos, _END)
    return start


def part_header(length, seq, ts_s, ts_us):
    """The same part header as ``write_part_header``, as new bytes, by %-formatting: for the hub,
    where allocating is fine and formatting is ~15x faster than writing digit by digit (CPython)."""
    if length < 0 or seq < 0 or ts_s < 0 or not 0 <= ts_us < 1000000:
        raise ValueError("part header values out of range")
    return (_START + b"%d" + _SEQ + b"%d" + _TS + b"%d.%06d" + _END) % (length, seq, ts_s, ts_us)


def encode_part(jpeg, seq, ts_s, ts_us):
    """A whole part as a new bytearray (the hub encodes each frame once for all its viewers)."""
    n = len(jpeg)
    buf = bytearray(HEADER_ROOM + n + len(TRAILER))
    start = write_part_header(buf, HEADER_ROOM, n, seq, ts_s, ts_us)
    buf[HEADER_ROOM:HEADER_ROOM + n] = jpeg
    buf[HEADER_ROOM + n:] = TRAILER
    return memoryview(buf)[start:]
