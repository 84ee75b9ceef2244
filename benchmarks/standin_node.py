"""A stand-in MJPEG source for the fan-out benchmark, for when ``camhub node --sim`` is not there.

It serves what a node serves on ``GET /stream`` (DESIGN.md: ``multipart/x-mixed-replace`` parts with
``Content-Type``, ``Content-Length``, ``X-Frame-Seq`` and ``X-Timestamp``, framed by
``camhub_node.mjpeg``) at a fixed rate, with real JPEG bytes: a set of distinct VGA pictures made
with Pillow at start-up, tuned to about ``--frame-bytes`` each, sent in turn. ``X-Timestamp`` is the
moment a frame is published (its "capture"). ``GET /status`` answers a small JSON document.
Each client gets the latest frame when its previous write has drained (latest frame wins), with the
plain-asyncio client loop the asyncio baseline uses (``baselines/common.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import signal
import time

from baselines.common import NOT_FOUND, Latest, send_parts
from PIL import Image, ImageDraw

SIZES = {"QVGA": (320, 240), "VGA": (640, 480), "SVGA": (800, 600), "XGA": (1024, 768), "HD": (1280, 720)}


def make_jpegs(count: int, size: tuple[int, int], target: int) -> list[bytes]:
    """``count`` distinct JPEGs of about ``target`` bytes: a gradient scene with sensor-like noise."""
    width, height = size
    base = Image.linear_gradient("L").resize(size).convert("RGB")
    draw = ImageDraw.Draw(base)
    for i in range(0, width, 64):
        draw.rectangle((i, height // 3, i + 30, height // 3 + 60), fill=(200, 80 + i % 150, 40))
    sigma = 12.0
    jpegs: list[bytes] = []
    for i in range(count):
        for _ in range(12):  # a few steps of noise level until the size is within 4 %
            noise = Image.effect_noise(size, sigma).convert("RGB")
            img = Image.blend(base, noise, 0.35)
            ImageDraw.Draw(img).text((10 + i * 7 % (width - 60), 10), f"frame {i}", fill=(255, 255, 255))
            out = io.BytesIO()
            img.save(out, "JPEG", quality=80)
            data = out.getvalue()
            if abs(len(data) - target) <= target * 0.04:
                break
            sigma *= (target / len(data)) ** 1.3
        jpegs.append(data)
    return jpegs


async def produce(source: Latest, jpegs: list[bytes], fps: float) -> None:
    start = time.monotonic()
    n = 0
    while True:
        now = time.time()
        seconds = int(now)
        source.publish(jpegs[n % len(jpegs)], n, seconds, int((now - seconds) * 1_000_000))
        n += 1
        await asyncio.sleep(max(0.0, start + n / fps - time.monotonic()))


async def handle(source: Latest, size: tuple[int, int], fps: float,
                 reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        path = head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b""
        if path == b"/status":
            body = json.dumps({"standin": True, "fps": fps, "width": size[0], "height": size[1],
                               "frames": source.seq + 1}).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
            await writer.drain()
            return
        if path != b"/stream":
            writer.write(NOT_FOUND)
            await writer.drain()
            return
        await send_parts(source, writer)
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
        pass
    except asyncio.CancelledError:
        pass  # shutdown: asyncio.run cancels the client tasks; end them quietly
    finally:
        writer.close()


async def main_async(args: argparse.Namespace) -> None:
    size = SIZES[args.frame_size.upper()]
    jpegs = make_jpegs(args.distinct, size, args.frame_bytes)
    source = Latest()
    producer = asyncio.create_task(produce(source, jpegs, args.fps))
    server = await asyncio.start_server(lambda r, w: handle(source, size, args.fps, r, w),
                                        "127.0.0.1", args.http_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"stand-in node on http://127.0.0.1:{args.http_port}/stream: {args.fps} fps, "
          f"{sum(map(len, jpegs)) // len(jpegs)} B mean JPEG", flush=True)
    async with server:
        await stop.wait()
    producer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await producer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--frame-size", default="VGA", type=str.upper, choices=sorted(SIZES))
    parser.add_argument("--frame-bytes", type=int, default=48_000, help="target JPEG size")
    parser.add_argument("--distinct", type=int, default=30, help="distinct pictures to cycle through")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
