"""Baseline: the MJPEG relay a competent engineer writes with plain asyncio (standard library only).

- One upstream pull: ``asyncio.open_connection`` to the camera, ``GET`` its stream, parts parsed by
  ``Content-Length`` with ``readuntil``/``readexactly``; reconnects after a short pause.
- Each frame is encoded once (``camhub_node.mjpeg.encode_part``, the project's framing) into one
  ``bytes`` object that every client is handed — no per-client copy in Python.
- ``asyncio.start_server``; one task per client, latest frame wins: the task waits for a frame newer
  than the last one it sent, ``writer.write(part)``, ``await writer.drain()``; frames published while
  it drains are skipped for that client, so a slow client never delays the others.
- Waking the clients: one ``asyncio.Event`` per frame, replaced on publish (no lock round trip per
  waiter, unlike ``asyncio.Condition.notify_all``).
- No socket tuning: kernel send-buffer autotuning and asyncio's default write-buffer limits, as the
  natural version leaves them.

Run: ``python benchmarks/baselines/asyncio_relay.py --upstream http://127.0.0.1:8080/stream --port 9000``;
it serves the relayed stream on ``/stream`` (any path ending in ``/stream``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from urllib.parse import urlsplit

from camhub_node import mjpeg

log = logging.getLogger("asyncio_relay")
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
                if not 0 <= length <= MAX_PART:
                    raise ConnectionError(f"bad part length {length}")
                jpeg = await asyncio.wait_for(reader.readexactly(length), 10)
                latest.publish(bytes(mjpeg.encode_part(jpeg, seq, ts_s, ts_us)))
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                ValueError) as exc:
            log.warning("upstream: %s; reconnecting", exc)
        finally:
            if writer is not None:
                writer.close()
        await asyncio.sleep(0.5)


async def serve_client(latest: Latest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        path = head.split(b"\r\n", 1)[0].split(b" ")[1:2]
        if not path or not path[0].split(b"?")[0].endswith(b"/stream"):
            writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
            return
        writer.write(mjpeg.response_head())
        last = -1
        while True:
            if latest.seq == last:
                await latest.changed.wait()
                continue
            last = latest.seq
            writer.write(latest.part)
            await writer.drain()
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
        pass  # the client went away
    finally:
        writer.close()


async def main_async(args: argparse.Namespace) -> None:
    latest = Latest()
    puller = asyncio.create_task(pull(args.upstream, latest))
    server = await asyncio.start_server(lambda r, w: serve_client(latest, r, w), args.host, args.port,
                                        backlog=512)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("relaying %s on http://%s:%d/stream", args.upstream, args.host, args.port)
    async with server:
        await stop.wait()
    puller.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await puller


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--upstream", required=True, help="the camera's MJPEG stream URL")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
