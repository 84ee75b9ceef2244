"""The node's frame pool: each captured JPEG is copied once into a preallocated part buffer.

``espcamera.Camera.take()`` returns a memoryview into a driver buffer that the driver takes back on
the next ``take()``, so a frame that viewers are still receiving must live elsewhere. The pool holds
``max_clients + 2`` buffers (one in flight per viewer, the latest, and one to fill), each laid out as
``[header room][JPEG][CRLF]``: the part header is written in place just before the JPEG
(``mjpeg.write_part_header``) and the whole part goes out as one contiguous slice. A buffer is
reused only when no viewer holds it and it is not the latest frame. Buffers are allocated at start
and on reconfigure, never per frame. Runs on CircuitPython and CPython alike.
"""

from camhub_node import mjpeg

_TRAILER_LEN = len(mjpeg.TRAILER)


def jpeg_capacity(width, height):
    """Bytes to reserve for one JPEG of this size.

    esp32-camera sizes its JPEG frame buffers as width * height / 5 (cam_hal.c), so no frame the
    driver hands out is larger.
    """
    return max(width * height // 5, 4096)


class Frame:
    """One pool buffer; ``part()`` is the whole MJPEG part, ``jpeg()`` just the image."""

    def __init__(self, capacity):
        self.capacity = capacity
        self.buf = bytearray(mjpeg.HEADER_ROOM + capacity + _TRAILER_LEN)
        self.view = memoryview(self.buf)
        self.start = mjpeg.HEADER_ROOM
        self.end = mjpeg.HEADER_ROOM
        self.length = 0
        self.seq = -1
        self.ts_s = 0
        self.ts_us = 0
        self.refs = 0  # viewers with this frame in flight

    @property
    def size(self):
        """Bytes of the whole part (header + JPEG + trailer)."""
        return self.end - self.start

    def part(self):
        return self.view[self.start:self.end]

    def jpeg(self):
        return self.view[mjpeg.HEADER_ROOM:mjpeg.HEADER_ROOM + self.length]


class FramePool:
    """A fixed set of ``Frame`` buffers and the latest captured frame."""

    def __init__(self, count, capacity):
        self.capacity = capacity
        self.frames = [Frame(capacity) for _ in range(count)]
        self.latest = None
        self.seq = 0
        self.no_buffer = 0  # captures dropped because every buffer was in use (should stay 0)
        self.regrown = 0  # buffers reallocated (reconfigure, or a frame larger than expected)

    def resize(self, capacity):
        """Use ``capacity`` for JPEGs from now on; buffers are replaced as they become free."""
        self.capacity = capacity

    def _free_frame(self):
        for frame in self.frames:
            if frame.refs == 0 and frame is not self.latest:
                return frame
        return None

    def store(self, jpeg, ts_s, ts_us, now):
        """Copy ``jpeg`` (e.g. the view ``take()`` returned) into a free buffer; return the frame.

        Returns None (and counts it) if no buffer is free or the JPEG is empty.
        """
        n = len(jpeg)
        if n == 0:
            return None
        frame = self._free_frame()
        if frame is None:
            self.no_buffer += 1
            return None
        if frame.capacity != self.capacity or n > frame.capacity:
            # Only after a reconfigure (or a JPEG larger than the driver's own buffer size): one
            # allocation, and the frame keeps its place in the pool.
            index = self.frames.index(frame)
            capacity = self.capacity if n <= self.capacity else n + n // 4
            frame = Frame(capacity)
            self.frames[index] = frame
            self.regrown += 1
        head = mjpeg.HEADER_ROOM
        view = frame.view
        view[head:head + n] = jpeg
        view[head + n:head + n + _TRAILER_LEN] = mjpeg.TRAILER
        self.seq += 1
        frame.start = mjpeg.write_part_header(frame.buf, head, n, self.seq, ts_s, ts_us)
        frame.end = head + n + _TRAILER_LEN
        frame.length = n
        frame.seq = self.seq
        frame.ts_s = ts_s
        frame.ts_us = ts_us
        self.latest = frame
        return frame
