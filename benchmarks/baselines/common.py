"""What the relay baselines and the stand-in node share: latest part, part headers, command line, client loop.

Imported as ``common`` by the baselines (their own directory is on ``sys.path`` when run as scripts)
and as ``baselines.common`` by ``benchmarks/standin_node.py``. Only stack-neutral pieces live here:
each baseline keeps its own upstream client and its own HTTP server, which is what the benchmark
compares; ``send_parts`` is the plain-asyncio client loop (asyncio baseline, stand-in node).
"""

from __future__ import annotations

import argparse
import asyncio
import logging

from camhub_node import mjpeg

MAX_PART = 4 * 1024 * 1024
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class Latest:
    """The newest encoded part and an event that fires when a newer one is published."""

    def __init__(self) -> None:
        self.seq = -1
        self.part = b""
        self.changed = asyncio.Event()

    def publish(self, jpeg: bytes, seq: int, ts_s: int, ts_us: int) -> None:
        """Encode a frame once (``camhub_node.mjpeg.encode_part``) into the one part every client is handed."""
        self.seq += 1
        self.part = bytes(mjpeg.encode_part(jpeg, seq, ts_s, ts_us))
        # One Event per frame, replaced on publish: no lock round trip per waiter (asyncio.Condition has one).
        self.changed.set()
        self.changed = asyncio.Event()

    async def newer(self, last: int) -> int:
        """Wait for a part newer than the one numbered ``last``; its number. Parts published meanwhile are skipped."""
        while self.seq == last:
            await self.changed.wait()
        return self.seq


def relay_args(doc: str) -> argparse.Namespace:
    """The command line every relay baseline takes (``benchmarks/fanout.py`` passes it); turns on logging."""
    parser = argparse.ArgumentParser(description=doc.split("\n", 1)[0])
    parser.add_argument("--upstream", required=True, action="append",
                        help="a camera's MJPEG stream URL; repeat for several cameras: camera k (from 0) is "
                             "served on /cam/k/stream, the first also on /stream")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    return args


def parse_part_head(block: bytes) -> tuple[int, int, int, int]:
    """Content-Length, X-Frame-Seq and X-Timestamp (seconds, microseconds) of a part header.

    Raises ``ValueError`` for a malformed header or a length outside 0..``MAX_PART``.
    """
    length, seq, ts_s, ts_us = -1, 0, 0, 0
    for line in block.split(b"\r\n"):
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"x-frame-seq":
            seq = int(value)
        elif name == b"x-timestamp":
            seconds, _, frac = value.strip().partition(b".")
            ts_s, ts_us = int(seconds), int((frac + b"000000")[:6])
    if not 0 <= length <= MAX_PART:
        raise ValueError(f"bad part length {length}")
    return length, seq, ts_s, ts_us


def camera_index(path: str, cameras: int) -> int | None:
    """Which camera a request path asks for: ``/cam/K/stream`` is camera K, any other ``…/stream`` camera 0."""
    path = path.split("?", 1)[0]
    if not path.endswith("/stream"):
        return None
    parts = path.split("/")
    if len(parts) >= 4 and parts[-3] == "cam":
        return int(parts[-2]) if parts[-2].isdigit() and int(parts[-2]) < cameras else None
    return 0


async def send_parts(latest: Latest, writer: asyncio.StreamWriter) -> None:
    """Stream to one client with plain asyncio: the response head, then ``write`` + ``drain`` per newer part.

    Parts published while a client drains are skipped for it, so a slow client never delays the others.
    """
    writer.write(mjpeg.response_head())
    last = -1
    while True:
        last = await latest.newer(last)
        writer.write(latest.part)
        await writer.drain()
