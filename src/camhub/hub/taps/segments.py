"""Segment files: the JPEGs exactly as the camera sent them, muxed into Matroska by libavformat (PyAV).

Why Matroska through PyAV: Matroska's MJPEG track (``V_MJPEG``) stores each JPEG as one block,
untouched, with its own timestamp (here: milliseconds since the segment's first frame, from the
frames' capture times), and ffprobe, ffmpeg, VLC and mpv open it directly. libavformat is the muxer
everyone maintains; PyAV's wheels carry it, so nothing is built here. Packets are muxed, never
encoded: the codec context exists only to describe the track (size, pixel format).

Crash safety: the muxer closes a cluster every second and flushes every packet, so a killed hub
leaves a file that ends mid-cluster at worst — readable up to its last whole block, which
``probe`` finds — and a closed segment is never opened again. Files are written only by the
recorder's writer thread; everything here blocks and must never run on the event loop.
"""

from __future__ import annotations

import io
import os
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
from PIL import Image

MS = Fraction(1, 1000)
START_TAG = "CAMHUB_START"  # the segment's first capture time (Unix seconds), kept in the file itself


def jpeg_size(jpeg: bytes) -> tuple[int, int]:
    """Width and height from the JPEG's header (nothing is decoded)."""
    with Image.open(io.BytesIO(jpeg)) as image:
        return image.size


class SegmentWriter:
    """One open segment file; ``write`` each JPEG with its capture time, then ``close``."""

    def __init__(self, path: Path, start: float, first_jpeg: bytes, title: str) -> None:
        self.path = path
        self.start = start
        self.frames = 0
        self.bytes = 0
        self.last_ms = -1
        self.size = width, height = jpeg_size(first_jpeg)  # a track has one size (see Store: a new size, a new file)
        path.parent.mkdir(parents=True, exist_ok=True)
        # one cluster per second and a flush per packet: a crash loses at most the last second
        self._out = av.open(str(path), "w", format="matroska", options={"cluster_time_limit": "1000"},
                            container_options={"flush_packets": "1"})
        self._out.metadata["title"] = title
        self._out.metadata[START_TAG] = f"{start:.6f}"
        stream = self._out.add_stream("mjpeg")
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuvj420p"
        stream.time_base = MS
        # Nothing is ever encoded, yet libavcodec opens the track's encoder with a pool of worker threads
        # (as many as cores + 1) for as long as the file is open: one thread, none of its own.
        stream.codec_context.thread_count = 1
        self._stream = stream

    @property
    def end(self) -> float:
        return self.start + max(self.last_ms, 0) / 1000

    def write(self, jpeg: bytes, at: float | None = None, pts_ms: int | None = None) -> None:
        """Add one JPEG, at capture time ``at`` (or at ``pts_ms`` into the segment)."""
        ms = round((at - self.start) * 1000) if pts_ms is None and at is not None else int(pts_ms or 0)
        ms = max(ms, self.last_ms + 1)  # timestamps only go forward (a camera's clock may step back)
        packet = av.Packet(jpeg)
        packet.pts = packet.dts = ms
        packet.time_base = MS
        packet.stream = self._stream
        packet.is_keyframe = True
        self._out.mux(packet)
        self.last_ms = ms
        self.frames += 1
        self.bytes += len(jpeg)

    def close(self) -> None:
        """Finish the file (cues, duration) and make it durable."""
        self._out.close()
        with open(self.path, "rb") as done:
            os.fsync(done.fileno())


@dataclass
class Probe:
    start: float | None  # from the file's tag (None if it has none)
    frames: int
    bytes: int
    duration_s: float


def probe(path: Path) -> Probe:
    """Count what a segment holds, reading up to its last whole block (a crashed file ends early)."""
    frames = size = 0
    last = 0
    with av.open(str(path)) as container:
        tag = container.metadata.get(START_TAG) or container.metadata.get(START_TAG.lower())
        for _pts, jpeg in _packets(container):
            frames += 1
            size += len(jpeg)
            last = _pts
    start = None
    if tag:
        try:
            start = float(tag)
        except ValueError:
            start = None
    return Probe(start, frames, size, last / 1000)


def read(path: Path, from_ms: int = 0) -> Generator[tuple[int, bytes], None, None]:
    """``(pts in ms, JPEG bytes)`` for every frame at or after ``from_ms``, as stored."""
    with av.open(str(path)) as container:
        for pts, jpeg in _packets(container):
            if pts >= from_ms:
                yield pts, jpeg


def _packets(container: av.container.InputContainer) -> Iterator[tuple[int, bytes]]:
    stream = container.streams.video[0]
    scale = float(stream.time_base or MS) * 1000
    try:
        for packet in container.demux(stream):
            if packet.size and packet.pts is not None:
                yield round(packet.pts * scale), bytes(packet)
    except av.error.InvalidDataError:
        return  # a crash-truncated tail: everything before it was read
