"""The node firmware on the Unix-port VMs with a board's heap: how little heap, how little garbage.

Four measurements, each on the MicroPython Unix port and on CircuitPython's own VM (``camhub node
--sim --runtime micropython|circuitpython``, ``-X heapsize``; both are 64-bit builds, where objects
are about twice their ESP32 size, so these heaps are upper bounds), side by side:

1. Smallest heap per frame size: the real node (``--heap H``) streams to two viewers for
   ``--seconds``; a heap passes when the node stays up with no ``MemoryError`` in its output, no task
   restart, no capture error, and both viewers get at least ``--min-share`` of the fps. Bisection in
   16 KB steps between ``--low`` and ``--high``.
2. A soak: ``--soak-size`` to two viewers for ``--soak`` seconds in a ``--soak-heap`` heap, the node
   on a local mosquitto (its stats every 5 s, as on a board): ``free_heap`` from ``/status`` every
   ``--soak-sample`` seconds, and per ``--soak-window``: each viewer's fps, the lowest and highest
   free heap, and the collections seen (MicroPython frees memory only by collecting and counts no
   collections itself, so each rise of ``free_heap`` between two samples is at least one collection;
   what the node allocates per second is the sum of the falls between samples). Flat means the free
   heap right after each collection (what the node holds) does not fall over the hour: its slope.
   MemoryErrors, task restarts and capture errors must stay at zero.
3. Bytes allocated per frame in the send path (``gc.mem_alloc()`` deltas, ``vm_side.py alloc``) for
   1, 2 and 4 viewers; per viewer is the slope. Target: at most 512 B per frame per viewer.
4. Idle: CPU and allocation rate of a node with no viewers (camera running, MQTT connected to a
   local mosquitto) beside an asyncio loop that runs only the same sampler.

    .venv/bin/python benchmarks/node_vm.py                      # ≈ 10 min (both VMs)
    .venv/bin/python benchmarks/node_vm.py --only alloc,idle    # ≈ 2 min
    .venv/bin/python benchmarks/node_vm.py --runtime circuitpython
    .venv/bin/python benchmarks/node_vm.py --only soak --soak 3600 --runtime micropython   # issue #26's hour
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from vm import Drain, side_vm  # noqa: E402

from camhub.sim.vm import parse_heap  # noqa: E402
from tests.support.procs import Mosquitto, SimNode, free_port  # noqa: E402
from tests.support.waiting import get_json  # noqa: E402

MARKER = b"Content-Type: image/jpeg"
STEP = 16 * 1024


class Counter(threading.Thread):
    """A viewer that counts parts (by their Content-Type line) until stopped."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.parts, self.stop = url, 0, threading.Event()
        self.start()

    def run(self) -> None:
        try:
            with urllib.request.urlopen(self.url, timeout=10) as resp:
                tail = b""
                while not self.stop.is_set():
                    chunk = resp.read1(262144)
                    if not chunk:
                        return
                    data = tail + chunk
                    self.parts += data.count(MARKER)
                    tail = data[-(len(MARKER) - 1):]
        except OSError:
            pass


LABELS = {"micropython": "MicroPython", "circuitpython": "CircuitPython"}


def stream_trial(runtime: str, heap: int, frame_size: str, fps: int, seconds: float) -> dict:
    """Two viewers of a node in a ``heap``-byte VM for ``seconds``: what happened."""
    node = SimNode("heap", None, fps=fps, frame_size=frame_size, runtime=runtime,
                   extra=["--heap", str(heap), "--scene", "busy"], env={"CAMHUB_WRITE_TIMEOUT_S": "10"})
    viewers: list[Counter] = []
    lowest = None
    status: dict = {}
    try:
        node.wait_ready(timeout=60)
        viewers = [Counter(node.url + "/stream") for _ in range(2)]
        time.sleep(1.0)
        start = [v.parts for v in viewers]
        until = time.monotonic() + seconds
        while time.monotonic() < until and node.alive():
            try:
                status = get_json(node.url + "/status")
                lowest = status["free_heap"] if lowest is None else min(lowest, status["free_heap"])
            except OSError:
                break
            time.sleep(0.5)
        got = [v.parts - s for v, s in zip(viewers, start, strict=True)]
    except (RuntimeError, TimeoutError):
        got = [0, 0]
    finally:
        for v in viewers:
            v.stop.set()
        alive = node.alive()
        node.stop()
    output = node.output()
    errors = len(re.findall(r"MemoryError", output))
    fps_got = [n / seconds for n in got]
    return {"heap": heap, "alive": alive, "memory_errors": errors, "fps": fps_got, "lowest_free": lowest,
            "restarts": status.get("task_restarts", {}), "capture_errors": status.get("capture_errors", 0)}


def soak_trial(runtime: str, heap: int, frame_size: str, fps: int, seconds: float, sample_s: float,
               window_s: float) -> dict:
    """Two viewers of a node (on a mosquitto) in a ``heap``-byte VM for ``seconds``, ``free_heap`` sampled."""
    broker = Mosquitto()
    node = SimNode("soak", broker.port, fps=fps, frame_size=frame_size, runtime=runtime,
                   extra=["--heap", str(heap)], env={"CAMHUB_WRITE_TIMEOUT_S": "10"})
    viewers: list[Counter] = []
    samples: list[tuple[float, int]] = []  # (seconds since the viewers connected, free_heap)
    windows: list[dict] = []
    status: dict = {}
    try:
        node.wait_ready(timeout=60)
        viewers = [Counter(node.url + "/stream") for _ in range(2)]
        time.sleep(1.0)
        t0 = time.monotonic()
        window = {"start": 0.0, "parts": [v.parts for v in viewers], "first": 0}
        while (now := time.monotonic() - t0) < seconds and node.alive():
            try:
                status = get_json(node.url + "/status")
            except OSError:
                break
            samples.append((now, status["free_heap"]))
            if now - window["start"] >= window_s:
                windows.append(_window(window, samples, viewers, now))
                window = {"start": now, "parts": [v.parts for v in viewers], "first": len(samples) - 1}
            time.sleep(sample_s)
        windows.append(_window(window, samples, viewers, time.monotonic() - t0))
    except (RuntimeError, TimeoutError):
        pass
    finally:
        for v in viewers:
            v.stop.set()
        alive = node.alive()
        node.stop()
        broker.stop()
    output = node.output()
    held = [free for (_, before), (t, free) in zip(samples, samples[1:], strict=False) if free > before]
    held_at = [t for (_, before), (t, free) in zip(samples, samples[1:], strict=False) if free > before]
    fell = sum(before - free for (_, before), (_, free) in zip(samples, samples[1:], strict=False) if free < before)
    span = samples[-1][0] - samples[0][0] if len(samples) > 1 else 0.0
    slope = None
    if len(held) >= 3:
        slope = statistics.linear_regression(held_at, held).slope * 3600  # bytes per hour
    return {"heap": heap, "alive": alive, "memory_errors": len(re.findall(r"MemoryError", output)),
            "restarts": status.get("task_restarts", {}), "capture_errors": status.get("capture_errors", 0),
            "windows": windows, "samples": len(samples), "collections": len(held),
            "alloc_per_s": fell / span if span else None, "after_gc_slope_per_h": slope,
            "after_gc_first": held[:3], "after_gc_last": held[-3:], "lowest_free": min((f for _, f in samples),
                                                                                          default=None)}


def _window(window: dict, samples: list[tuple[float, int]], viewers: list[Counter], now: float) -> dict:
    mine = samples[window["first"]:]
    frees = [free for _, free in mine]
    rises = sum(1 for a, b in zip(frees, frees[1:], strict=False) if b > a)
    seconds = max(now - window["start"], 1e-9)
    return {"start": window["start"], "seconds": seconds,
            "fps": [(v.parts - p) / seconds for v, p in zip(viewers, window["parts"], strict=True)],
            "lowest": min(frees, default=None), "highest": max(frees, default=None), "collections": rises}


def passes(trial: dict, fps: int, share: float) -> bool:
    return (trial["alive"] and not trial["memory_errors"] and not trial["restarts"] and not trial["capture_errors"]
            and min(trial["fps"]) >= share * fps)


def smallest_heap(runtime: str, frame_size: str, args: argparse.Namespace) -> tuple[int | None, dict | None]:
    low, high = parse_heap(args.low), parse_heap(args.high)
    best = None
    trial = stream_trial(runtime, high, frame_size, args.fps, args.seconds)
    if not passes(trial, args.fps, args.min_share):
        print(f"  {runtime} {frame_size}: fails even at {high // 1024} KB: {trial}", flush=True)
        return None, trial
    best = trial
    while high - low > STEP:
        mid = (low + high) // 2 // STEP * STEP
        trial = stream_trial(runtime, mid, frame_size, args.fps, args.seconds)
        ok = passes(trial, args.fps, args.min_share)
        print(f"  {runtime} {frame_size} {mid // 1024:>5} KB: {'ok  ' if ok else 'FAIL'} fps {trial['fps'][0]:.1f}/"
              f"{trial['fps'][1]:.1f}, MemoryErrors {trial['memory_errors']}, lowest free "
              f"{trial['lowest_free']}", flush=True)
        if ok:
            high, best = mid, trial
        else:
            low = mid
    return high, best


def heap_part(runtimes: list[str], args: argparse.Namespace) -> None:
    print(f"\nsmallest heap, two viewers, {args.fps} fps, {args.seconds:.0f} s each trial:", flush=True)
    rows = [(runtime, size, *smallest_heap(runtime, size, args))
            for size in args.sizes.split(",") for runtime in runtimes]
    print(f"\n{'frame size':<12}{'VM':<15}{'smallest heap':>15}{'fps (2 viewers)':>18}{'lowest free':>14}")
    for runtime, size, heap, trial in rows:
        fps = f"{trial['fps'][0]:.1f}/{trial['fps'][1]:.1f}" if trial else "-"
        print(f"{size:<12}{LABELS[runtime]:<15}{(f'{heap // 1024} KB' if heap else 'none'):>15}{fps:>18}"
              f"{str(trial['lowest_free'] if trial else '-'):>14}")


def soak_part(runtimes: list[str], args: argparse.Namespace) -> None:
    heap = parse_heap(args.soak_heap)
    for runtime in runtimes:
        print(f"\nsoak, {LABELS[runtime]}: {args.soak_size} at {args.fps} fps to two viewers for {args.soak:.0f} s "
              f"in {heap // 1024} KB, free_heap every {args.soak_sample:g} s:", flush=True)
        trial = soak_trial(runtime, heap, args.soak_size, args.fps, args.soak, args.soak_sample, args.soak_window)
        print(f"{'minutes':<12}{'fps (2 viewers)':>18}{'lowest free':>14}{'highest free':>14}{'collections':>13}")
        for w in trial["windows"]:
            print(f"{w['start'] / 60:>5.0f}-{(w['start'] + w['seconds']) / 60:<6.0f}{w['fps'][0]:>11.1f}/"
                  f"{w['fps'][1]:<6.1f}{str(w['lowest']):>14}{str(w['highest']):>14}{w['collections']:>13}")
        slope = trial["after_gc_slope_per_h"]
        print(f"alive {trial['alive']}, MemoryErrors {trial['memory_errors']}, task restarts {trial['restarts']}, "
              f"capture errors {trial['capture_errors']}; {trial['samples']} samples, {trial['collections']} "
              f"collections seen, {trial['alloc_per_s'] or 0:.0f} B/s allocated; free heap after a collection: "
              f"first {trial['after_gc_first']}, last {trial['after_gc_last']}, slope "
              f"{'-' if slope is None else f'{slope:+.0f} B/h'}")


def alloc_part(runtimes: list[str], args: argparse.Namespace) -> None:
    heap = parse_heap("1M")
    print(f"\nsend path, {args.alloc_size}, {args.frames} frames, 1 MB heap (bytes per frame):")
    print(f"{'VM':<15}{'viewers':<10}{'capture':>10}{'send path':>12}{'worst frame':>13}")
    for runtime in runtimes:
        vm = side_vm(runtime)
        drain = Drain()
        try:
            vm.render(args.alloc_size, args.fps)
            sends = {}
            for viewers in (1, 2, 4):
                r = vm.result(heap, "alloc", "camhub", args.alloc_size, args.frames, drain.port, viewers, vm.frames)
                sends[viewers] = r["send_per_frame"]
                print(f"{LABELS[runtime]:<15}{viewers:<10}{r['capture_per_frame']:>10.0f}{r['send_per_frame']:>12.0f}"
                      f"{r['send_worst']:>13}", flush=True)
            print(f"{LABELS[runtime]}: per extra viewer {(sends[4] - sends[1]) / 3:.0f} B/frame; per viewer at 2 "
                  f"viewers {sends[2] / 2:.0f} B/frame (target <= 512)", flush=True)
        finally:
            drain.close()
            vm.close()


def idle_part(runtimes: list[str], args: argparse.Namespace) -> None:
    heap = parse_heap("1M")
    print(f"\nidle ({args.idle_seconds:.0f} s, 1 MB heap){'':<30}{'CPU %':>8}{'alloc B/s':>12}")
    for runtime in runtimes:
        vm = side_vm(runtime)
        broker = Mosquitto()
        try:
            vm.render("VGA", args.fps, node_id="idle")
            env = {"CAMHUB_NODE_ID": "idle", "CAMHUB_FRAME_SIZE": "VGA", "CAMHUB_FPS": str(args.fps),
                   "CAMHUB_HTTP_PORT": str(free_port()), "CAMHUB_ADVERTISE_HOST": "127.0.0.1",
                   "CAMHUB_MQTT_HOST": "127.0.0.1", "CAMHUB_MQTT_PORT": str(broker.port)}
            node = vm.result(heap, "idle", "node", args.idle_seconds, env=env)
            empty = vm.result(heap, "idle", "empty", args.idle_seconds)
            label = LABELS[runtime]
            print(f"{label + ': node, VGA camera, MQTT, no viewers':<56}{node['cpu_percent']:>8.1f}"
                  f"{node['alloc_per_s']:>12.0f}")
            print(f"{label + ': empty asyncio loop':<56}{empty['cpu_percent']:>8.1f}{empty['alloc_per_s']:>12.0f}",
                  flush=True)
        finally:
            broker.stop()
            vm.close()


PARTS = {"heap": heap_part, "soak": soak_part, "alloc": alloc_part, "idle": idle_part}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="heap,soak,alloc,idle", help="which parts, comma-separated")
    parser.add_argument("--runtime", default="micropython,circuitpython", help="which VMs, comma-separated")
    parser.add_argument("--sizes", default="QVGA,VGA,SVGA,HD")
    parser.add_argument("--fps", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=6.0, help="window of each heap trial")
    parser.add_argument("--min-share", type=float, default=0.8, help="of the fps each viewer must get")
    parser.add_argument("--low", default="128K")
    parser.add_argument("--high", default="4M")
    parser.add_argument("--soak", type=float, default=60.0)
    parser.add_argument("--soak-size", default="VGA")
    parser.add_argument("--soak-heap", default="1M")
    parser.add_argument("--soak-sample", type=float, default=2.0, help="seconds between free_heap samples")
    parser.add_argument("--soak-window", type=float, default=300.0, help="seconds per row of the soak's table")
    parser.add_argument("--alloc-size", default="VGA")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    args = parser.parse_args()
    runtimes = [r for r in LABELS if r in args.runtime.split(",")]
    for runtime in runtimes:
        side_vm(runtime).close()  # exits at once, saying how to get it, when a VM is missing
    print(f"camhub node on {' and '.join(LABELS[r] for r in runtimes)}'s Unix ports, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    for part in args.only.split(","):
        PARTS[part](runtimes, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
