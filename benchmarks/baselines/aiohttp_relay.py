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
it serves the relayed stream on ``/stream`` (any path ending in ``/stream``); with ``--upstream`` given
once per camera, camera k (from 0) on ``/cam/k/stream``, each pulled by its own task. The frame holder and the
part-header parser are in ``common.py``, shared with the asyncio baseline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from common import Latest, camera_index, parse_part_head, relay_args

from camhub_node import mjpeg

log = logging.getLogger("aiohttp_relay")

LATEST = web.AppKey("latest", list[Latest])
UPSTREAM = web.AppKey("upstream", list[str])


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
                        latest.publish(await resp.content.readexactly(length), seq, ts_s, ts_us)
            except (aiohttp.ClientError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
                log.warning("upstream: %r; reconnecting", exc)
            await asyncio.sleep(0.5)


async def run_puller(app: web.Application) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(pull(url, latest)) for url, latest in zip(app[UPSTREAM], app[LATEST], strict=True)]
    yield
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def stream(request: web.Request) -> web.StreamResponse:
    cam = camera_index(request.path, len(request.app[LATEST]))
    if cam is None:
        raise web.HTTPNotFound()
    latest = request.app[LATEST][cam]
    resp = web.StreamResponse(headers={
        "Content-Type": mjpeg.CONTENT_TYPE,
        "Cache-Control": "no-cache, no-store, must-revalidate",
    })
    await resp.prepare(request)
    last = -1
    try:
        while True:
            last = await latest.newer(last)
            await resp.write(latest.part)
    except (ConnectionError, aiohttp.ClientConnectionResetError):
        pass  # the client went away
    return resp


def build_app(upstreams: list[str]) -> web.Application:
    app = web.Application()
    app[LATEST] = [Latest() for _ in upstreams]
    app[UPSTREAM] = upstreams
    app.cleanup_ctx.append(run_puller)
    app.router.add_get("/stream", stream)
    app.router.add_get("/{prefix:.*}/stream", stream)
    return app


def main() -> None:
    args = relay_args(__doc__)
    web.run_app(build_app(args.upstream), host=args.host, port=args.port, access_log=None,
                backlog=512, shutdown_timeout=1.0, print=None)


if __name__ == "__main__":
    main()
