"""Baseline: the MJPEG relay a competent engineer writes with aiohttp, the natural aiohttp way.

- One upstream pull with ``aiohttp.ClientSession``: ``GET`` the camera's stream and read parts by
  ``Content-Length`` from ``resp.content`` (``readuntil``/``readexactly``); reconnect after a pause.
- Each frame is encoded once (``camhub_node.mjpeg.encode_part``, the project's framing) into one
  ``bytes`` object shared by every client.
- One ``web.StreamResponse`` per client, latest frame wins: the handler waits for a frame newer than
  the last one it sent, then ``await resp.write(part)``. That is aiohttp's write-and-drain: it hands
  the bytes to the transport and drains once more than 64 KiB went out since the last drain.
  Frames published meanwhile are skipped for that client.
- Waking the handlers: one ``asyncio.Event`` per frame, replaced on publish.
- Defaults kept: aiohttp answers an HTTP/1.1 request whose length is unknown with chunked transfer
  encoding (on this Python it joins chunk size line + part + CRLF into one buffer per write — part of
  aiohttp's cost), kernel send-buffer autotuning, no access log (a stream is logged only at its end).

Run: ``python benchmarks/baselines/aiohttp_relay.py --upstream http://127.0.0.1:8080/stream --port 9000``;
it serves the relayed stream on ``/stream`` (any path ending in ``/stream``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from camhub_node import mjpeg

log = logging.getLogger("aiohttp_relay")
MAX_PART = 4 * 1024 * 1024


class Latest:
    """The newest encoded part and an event that fires when a newer one is published."""

    def __init__(self) -> None:
        self.seq = -1
        self.part = b""
        self.changed = asyncio.Event()

    def publish(self, part: bytes) -> None:
        self.seq += 1
        self.part = part
        self.changed.set()
        self.changed = asyncio.Event()


LATEST = web.AppKey("latest", Latest)
UPSTREAM = web.AppKey("upstream", str)


def parse_part_head(block: bytes) -> tuple[int, int, int, int]:
    """Content-Length, X-Frame-Seq and X-Timestamp (seconds, microseconds) of a part header."""
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
    return length, seq, ts_s, ts_us


async def pull(url: str, latest: Latest) -> None:
    """Read the camera's stream forever, publishing every part; reconnect on any failure."""
    timeout = aiohttp.ClientTimeout(total=None, connect=5, sock_read=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while True:
            try:
                async with session.get(url) as resp:
                    resp.raise_for_status()
                    while True:
                        block = await resp.content.readuntil(b"\r\n\r\n")
                        length, seq, ts_s, ts_us = parse_part_head(block)
                        if not 0 <= length <= MAX_PART:
                            raise ValueError(f"bad part length {length}")
                        jpeg = await resp.content.readexactly(length)
                        latest.publish(bytes(mjpeg.encode_part(jpeg, seq, ts_s, ts_us)))
            except (aiohttp.ClientError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
                log.warning("upstream: %r; reconnecting", exc)
            await asyncio.sleep(0.5)


async def run_puller(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(pull(app[UPSTREAM], app[LATEST]))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def stream(request: web.Request) -> web.StreamResponse:
    latest = request.app[LATEST]
    resp = web.StreamResponse(headers={
        "Content-Type": mjpeg.CONTENT_TYPE,
        "Cache-Control": "no-cache, no-store, must-revalidate",
    })
    await resp.prepare(request)
    last = -1
    try:
        while True:
            if latest.seq == last:
                await latest.changed.wait()
                continue
            last = latest.seq
            await resp.write(latest.part)
    except (ConnectionError, aiohttp.ClientConnectionResetError):
        pass  # the client went away
    return resp


def build_app(upstream: str) -> web.Application:
    app = web.Application()
    app[LATEST] = Latest()
    app[UPSTREAM] = upstream
    app.cleanup_ctx.append(run_puller)
    app.router.add_get("/stream", stream)
    app.router.add_get("/{prefix:.*}/stream", stream)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--upstream", required=True, help="the camera's MJPEG stream URL")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    web.run_app(build_app(args.upstream), host=args.host, port=args.port, access_log=None,
                backlog=512, shutdown_timeout=1.0, print=None)


if __name__ == "__main__":
    main()
