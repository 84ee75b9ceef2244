"""The one rule for "this is a whole JPEG": the start marker first, the end marker last (padding after
it trimmed). The MJPEG parser and a battery camera's pushed pictures both judge by it."""

from __future__ import annotations

SOI = b"\xff\xd8"  # JPEG start-of-image marker
_PAD = frozenset(b"\x00\t\n\r ")  # tolerated after the end marker (some encoders pad with zeros)
MAX_PAD = 64


def jpeg_end(data: bytes | bytearray, start: int, end: int) -> int:
    """Where the JPEG in ``data[start:end]`` ends (after EOI, padding trimmed), or -1 if it is none."""
    lowest = max(start + 2, end - MAX_PAD)
    while end > lowest and data[end - 1] in _PAD:
        end -= 1
    if end - start >= 4 and data[end - 2] == 0xFF and data[end - 1] == 0xD9:
        return end
    return -1
