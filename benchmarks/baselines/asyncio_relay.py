"""Baseline: the MJPEG relay a competent engineer writes with plain asyncio (standard library only).

- One upstream pull: ``asyncio.open_connection`` to the camera, ``GET`` its stream, parts parsed by
  ``Content-Length`` with ``readuntil``/``readexactly``; reconnects after a short pause.
- Each frame is encoded once (``camhub_node.mjpeg.encode_part``, the project's framing) into one
  ``bytes`` object that every client is handed — no per-client copy in Python.
- ``asyncio.start_server``; one task per client, latest frame wins (``common.send_parts``): the task
  waits for a frame newer than the last one it sent, ``writer.write(part)``, ``await writer.drain()``;
  frames published while it drains are skipped for that client, so a slow client never delays the others.
- Waking the clients: one ``asyncio.Event`` per frame, replaced on publish (no lock round trip per
  waiter, unlike ``asyncio.Condition.notify_all``).
- No socket tuning: kernel send-buffer autotuning and asyncio's default write-buffer limits, as the
  natural version leaves them.

Run: ``python benchmarks/baselines/asyncio_relay.py --upstream http://127.0.0.1:8080/stream --port 9000``;
it serves the relayed stream on ``/stream`` (any path ending in ``/stream``); with ``--upstream`` given
once per camera, camera k (from 0) on ``/cam/k/stream``, each pulled by its own task. The frame holder, the
part-header parser and the client loop are in ``common.py``, shared with the stand-in node.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from urllib.parse import urlsplit

from common import NOT_FOUND, Latest, camera_index, parse_part_head, relay_args, send_parts

log = logging.getLogger("asyncio_relay")


async def pull(url: str, latest: Latest) -> None:
    """Read the camera's stream forever, publishing every part; reconnect on any failure."""
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    while True:
        writer = None
        try:
            reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
            writer.write(f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            if b" 200 " not in head.split(b"\r\n", 1)[0] + b" ":
                raise ConnectionError(f"upstream answered {head[:40]!r}")
            while True:
                block = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                length, seq, ts_s, ts_us = parse_part_head(block)
                latest.publish(await asyncio.wait_for(reader.readexactly(length), 10), seq, ts_s, ts_us)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                ValueError) as exc:
            log.warning("upstream: %s; reconnecting", exc)
        finally:
            if writer is not None:
                writer.close()
        await asyncio.sleep(0.5)


async def serve_client(latests: list[Latest], reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        path = head.split(b"\r\n", 1)[0].split(b" ")[1:2]
        cam = camera_index(path[0].decode("latin-1"), len(latests)) if path else None
        if cam is None:
            writer.write(NOT_FOUND)
            await writer.drain()
            return
        await send_parts(latests[cam], writer)
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
        pass  # the client went away
    finally:
        writer.close()


async def main_async(args: argparse.Namespace) -> None:
    latests = [Latest() for _ in args.upstream]
    pullers = [asyncio.create_task(pull(url, latest)) for url, latest in zip(args.upstream, latests, strict=True)]
    server = await asyncio.start_server(lambda r, w: serve_client(latests, r, w), args.host, args.port,
                                        backlog=512)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("relaying %s on http://%s:%d/stream", args.upstream, args.host, args.port)
    async with server:
        await stop.wait()
    for puller in pullers:
        puller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await puller


def main() -> None:
    asyncio.run(main_async(relay_args(__doc__)))


if __name__ == "__main__":
    main()
