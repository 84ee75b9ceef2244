"""Motion detection and recording costs, in process: CPU per analysed frame, per recorded frame, and delay.

1. CPU per analysed frame (``motion.Detector.score``: 1/8-scale DCT decode + background compare) at
   VGA and HD, on scene frames with sensor noise (``tests/support/scenes.py``), thread CPU time;
   the full-decode cost of the same frames beside it, for scale;
2. CPU per recorded frame (``segments.SegmentWriter.write``: one MJPEG packet muxed into Matroska and
   flushed) at VGA and HD;
3. detection delay: a ``Motion`` on a real event loop with its worker thread, fed 10 fps (still
   scene, then an object appears); time from the first frame with the object to the ``start`` event,
   over several repetitions, with the default settings (5 fps analysed, 2 changed frames to start).

The fan-out's latency with motion and recordings on vs off is measured by
``fanout.py --home --servers hub,hub-motion`` (8 cameras, real processes). Prints a table; targets
from issue #13: ≤ 1 ms per analysed VGA frame.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from camhub.hub.core.broker import Frame  # noqa: E402
from camhub.hub.taps import segments  # noqa: E402
from camhub.hub.taps.motion import Detector, Motion, MotionSettings  # noqa: E402
from tests.support import scenes  # noqa: E402

SIZES = {"VGA": (640, 480), "HD": (1280, 720)}


def thread_ms(fn, items: list[bytes], repeat: int) -> float:
    """Median thread CPU ms per item over ``repeat`` passes."""
    per = []
    for _ in range(repeat):
        start = time.thread_time()
        for item in items:
            fn(item)
        per.append((time.thread_time() - start) * 1000 / len(items))
    return statistics.median(per)


def full_decode(jpeg: bytes) -> None:
    with Image.open(io.BytesIO(jpeg)) as image:
        image.load()


def cpu_table(frames: int, repeat: int, quality: int) -> list[tuple[str, str, float, int]]:
    rows = []
    for name, size in SIZES.items():
        jpegs = scenes.still(frames // 2, size=size, quality=quality) + scenes.moving(frames // 2, size=size,
                                                                                     quality=quality)
        average = sum(map(len, jpegs)) // len(jpegs)
        detector = Detector(MotionSettings())
        detector.score(jpegs[0])
        rows.append((name, "motion: analyse one frame", thread_ms(detector.score, jpegs, repeat), average))
        rows.append((name, "(a full decode, for scale)", thread_ms(full_decode, jpegs, repeat), average))
        with tempfile.TemporaryDirectory() as tmp:
            writer = segments.SegmentWriter(Path(tmp) / "bench.mkv", time.time(), jpegs[0], "bench")

            def record(jpeg: bytes, writer: segments.SegmentWriter = writer) -> None:
                writer.write(jpeg, pts_ms=(writer.last_ms + 100))

            rows.append((name, "recording: mux + flush one frame", thread_ms(record, jpegs, repeat), average))
            writer.close()
    return rows


async def detection_delays(runs: int) -> list[float]:
    still, moving = scenes.still(30), scenes.moving(30)
    delays = []
    with ThreadPoolExecutor(1) as pool:
        for run in range(runs):
            started: list[float] = []

            def on_event(camera_id: str, event: dict, started: list[float] = started) -> None:
                if event["phase"] == "start":
                    started.append(time.monotonic())

            motion = Motion(MotionSettings(), True, pool)
            motion.emitted.connect(on_event)
            tap = motion.tap(f"cam{run}")
            seq = 0
            for jpeg in still:  # 3 s of a still scene: the background is learnt
                seq += 1
                tap(Frame(jpeg, seq, time.time(), 0))
                await asyncio.sleep(0.1)
            appeared = time.monotonic()
            for jpeg in moving:
                seq += 1
                tap(Frame(jpeg, seq, time.time(), 0))
                await asyncio.sleep(0.1)
                if started:
                    break
            delays.append((started[0] - appeared) * 1000 if started else float("inf"))
    return delays


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--frames", type=int, default=40, help="distinct frames per size")
    parser.add_argument("--repeat", type=int, default=5, help="passes over them; the median pass is reported")
    parser.add_argument("--quality", type=int, default=80, help="JPEG quality of the test frames (Pillow's scale)")
    parser.add_argument("--runs", type=int, default=5, help="detection-delay repetitions")
    args = parser.parse_args(argv)

    print(f"Thread CPU per frame (median of {args.repeat} passes over {args.frames} frames, quality {args.quality})")
    print(f"{'size':5} {'what':34} {'ms/frame':>9} {'JPEG bytes':>11}")
    rows = cpu_table(args.frames, args.repeat, args.quality)
    for size, what, ms, average in rows:
        print(f"{size:5} {what:34} {ms:9.3f} {average:11d}")
    delays = asyncio.run(detection_delays(args.runs))
    print(f"\nDetection delay, 10 fps camera, defaults (5 fps analysed, 2 changed frames): "
          f"median {statistics.median(delays):.0f} ms, max {max(delays):.0f} ms over {len(delays)} runs")
    vga = next(ms for size, what, ms, _ in rows if size == "VGA" and what.startswith("motion"))
    print(f"\ntarget: ≤ 1 ms per analysed VGA frame: {'PASS' if vga <= 1.0 else 'FAIL'} ({vga:.3f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
