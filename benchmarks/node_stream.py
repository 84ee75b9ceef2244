"""Node streaming benchmark: camhub's node fan-out vs the Adafruit video-stream example's pattern.

Two measurements, each run for both on this machine with the same simulated camera, on CPython and
on the MicroPython Unix port (``--runtime``; the same VM and ``--heap`` for both servers there):

1. Delivered fps to two viewers of one node, one of them throttled (``--slow-rate`` bytes/s), with
   the server's CPU time per frame the fast viewer got (the VM's process under ``camhub node``), and
   to one viewer while other clients keep connecting and saying nothing (what a silent client
   costs a node whose HTTP server handles one request at a time). Both servers run as separate
   processes; the readers count parts by their ``Content-Type: image/jpeg`` line, so the
   example's non-RFC boundary does not matter.
2. Bytes allocated per frame. CPython: in the send path (tracemalloc, in process, two loopback
   viewers drained by threads into preallocated buffers): the transient peak above the level before
   each frame, and the net growth over ``--frames`` frames. MicroPython: ``gc.mem_alloc()`` growth
   per frame in the VM (``vm_side.py alloc``: capture + send path, two drained viewers).

The example's pattern is ``benchmarks/example_pattern.py`` (what the library's
``examples/httpserver_video_stream.py`` does), one implementation run by both interpreters.

    .venv/bin/python benchmarks/node_stream.py [--seconds 8] [--fps 15] [--frame-size VGA]
        [--runtime cpython,micropython] [--heap 1M]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.support: the same allocation measurement as the tests

sys.path.insert(0, str(ROOT / "benchmarks"))  # the example's pattern and the VM helpers

from example_pattern import example_response_class  # noqa: E402
from example_pattern import serve_example as serve_pattern  # noqa: E402
from vm import Drain, cpu_seconds, side_vm, vm_pid  # noqa: E402

from camhub.sim.vm import DEFAULT_HEAP, parse_heap  # noqa: E402
from tests.support.allocations import loopback_pairs, measure  # noqa: E402

MARKER = b"Content-Type: image/jpeg"
LABELS = {"cpython": "CPython", "micropython": "MicroPy"}


# ---- the example's pattern (benchmarks/example_pattern.py, shared with the VM) ------------------

def serve_example(port: int, fps: int, frame_size: str) -> None:
    """The example's server loop, on CPython with the socket module as the pool."""
    from camhub_node.simcam import SimCamera

    serve_pattern(socket, SimCamera("example", frame_size, 12, fps, scene="busy"), port, fps)


# ---- readers ------------------------------------------------------------------------------------

class Reader(threading.Thread):
    """Reads a stream (optionally at ``rate`` bytes/s) and notes when each part starts."""

    def __init__(self, port: int, rate: float | None = None, rcvbuf: int | None = None) -> None:
        super().__init__(daemon=True)
        self.port, self.rate, self.rcvbuf = port, rate, rcvbuf
        self.times: list[float] = []
        self.error: str | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            sock = socket.socket()
            if self.rcvbuf:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
            sock.settimeout(5)
            sock.connect(("127.0.0.1", self.port))
            sock.sendall(b"GET /stream HTTP/1.1\r\nHost: bench\r\n\r\n")
            started, consumed, tail = time.monotonic(), 0, b""
            while not self.stop.is_set():
                if self.rate:
                    delay = started + consumed / self.rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                chunk = sock.recv(4096 if self.rate else 262144)
                if not chunk:
                    if not self.stop.is_set():
                        self.error = "closed by server"
                    break
                consumed += len(chunk)
                data = tail + chunk
                self.times.extend(time.monotonic() for _ in range(data.count(MARKER)))
                tail = data[-(len(MARKER) - 1):]
            sock.close()
        except OSError as error:
            if not self.stop.is_set():
                self.error = f"viewer: {type(error).__name__}"

    def fps(self, since: float, until: float) -> float:
        return sum(since <= t <= until for t in self.times) / (until - since)

    def max_gap(self, since: float, until: float) -> float:
        times = [t for t in self.times if since <= t <= until]
        return max((b - a for a, b in zip(times, times[1:], strict=False)), default=until - since)


def pester(port: int, stop: threading.Event) -> None:
    """Connect, say nothing, wait for the server to hang up; again and again."""
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.recv(10)
        except OSError:
            time.sleep(0.05)


def start_server(kind: str, runtime: str, args: argparse.Namespace) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    heap = str(parse_heap(args.heap))
    env = dict(os.environ)
    if kind == "camhub":
        cmd = [sys.executable, "-m", "camhub", "node", "--sim", "--id", "bench", "--http-port", str(port),
               "--fps", str(args.fps), "--frame-size", args.frame_size, "--scene", "busy"]
        if runtime == "micropython":
            cmd += ["--runtime", "micropython", "--heap", heap]
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAMHUB_")}
    elif runtime == "micropython":
        args.vm.render(args.frame_size, args.fps, node_id="example")
        cmd = args.vm.argv(int(heap), "serve_example", port, args.fps, args.vm.frames, args.frame_size)
    else:
        cmd = [sys.executable, __file__, "--serve-example", str(port), "--fps", str(args.fps),
               "--frame-size", args.frame_size]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:  # a whole request: the example's server hangs on a connection that says nothing
            with socket.create_connection(("127.0.0.1", port), timeout=2) as probe:
                probe.sendall(b"GET /ready HTTP/1.1\r\nHost: bench\r\n\r\n")
                probe.recv(100)
                break
        except OSError:
            time.sleep(0.1)
    return proc, port


def stop_server(proc: subprocess.Popen[bytes]) -> str:
    died = proc.poll()
    if died is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if died is not None:
        last = [line for line in stderr.splitlines() if "Error" in line]
        return f"server exited ({last[-1].strip() if last else died})"
    return ""


def scenario_throttled(kind: str, runtime: str, args: argparse.Namespace) -> dict[str, object]:
    """Two viewers, one throttled; also the server's CPU per frame the fast viewer got."""
    proc, port = start_server(kind, runtime, args)
    fast, slow = Reader(port), Reader(port, rate=args.slow_rate, rcvbuf=8192)
    fast.start()
    slow.start()
    time.sleep(1.0)  # settle
    server = vm_pid(proc.pid) if kind == "camhub" and runtime == "micropython" else proc.pid
    since = time.monotonic()
    cpu0 = cpu_seconds(server)
    time.sleep(args.seconds)
    try:
        cpu = cpu_seconds(server) - cpu0
    except OSError:  # it died
        cpu = float("nan")
    until = time.monotonic()
    fast.stop.set()
    slow.stop.set()
    note = stop_server(proc)
    fast.join(6)
    slow.join(6)
    frames = sum(since <= t <= until for t in fast.times)
    return {"fast": fast.fps(since, until), "slow": slow.fps(since, until), "note": note or fast.error or "",
            "cpu_ms": 1000 * cpu / frames if frames else float("nan")}


def scenario_silent(kind: str, runtime: str, args: argparse.Namespace) -> dict[str, object]:
    proc, port = start_server(kind, runtime, args)
    reader = Reader(port)
    reader.start()
    time.sleep(1.0)
    stop = threading.Event()
    pesterer = threading.Thread(target=pester, args=(port, stop), daemon=True)
    pesterer.start()
    since = time.monotonic()
    time.sleep(args.seconds / 2)
    until = time.monotonic()
    stop.set()
    reader.stop.set()
    note = stop_server(proc)
    reader.join(6)
    pesterer.join(6)
    return {"fps": reader.fps(since, until), "gap": reader.max_gap(since, until), "note": note or ""}


def scenario_probe(kind: str, runtime: str, args: argparse.Namespace) -> dict[str, object]:
    """One client connects and closes without a byte (a port scan, a health check)."""
    proc, port = start_server(kind, runtime, args)
    reader = Reader(port)
    reader.start()
    time.sleep(1.0)
    socket.create_connection(("127.0.0.1", port), timeout=2).close()
    since = time.monotonic()
    time.sleep(2.0)
    until = time.monotonic()
    reader.stop.set()
    note = stop_server(proc)
    reader.join(6)
    return {"fps": reader.fps(since, until), "note": note}


# ---- allocations in the send path ----------------------------------------------------------------

class Drained:
    """Two loopback connections; the far ends are drained by threads into preallocated buffers."""

    def __init__(self) -> None:
        self.far, self.near = loopback_pairs(2)
        self.received = [0, 0]
        self.threads = [threading.Thread(target=self._drain, args=(i,), daemon=True) for i in range(2)]
        for thread in self.threads:
            thread.start()

    def _drain(self, i: int) -> None:
        buf = bytearray(1 << 20)
        sock = self.far[i]
        try:
            while n := sock.recv_into(buf):
                self.received[i] += n
        except OSError:
            pass

    def close(self) -> None:
        for sock in self.near + self.far:
            sock.close()


def alloc_camhub(frame_size: str, frames: int) -> tuple[int, int, int]:
    from adafruit_ticks import ticks_ms

    from camhub_node.config import FRAME_SIZES
    from camhub_node.fanout import Fanout
    from camhub_node.frames import FramePool, jpeg_capacity
    from camhub_node.simcam import SimCamera

    camera = SimCamera("alloc", frame_size, 12, scene="busy")
    pool = FramePool(4, jpeg_capacity(*FRAME_SIZES[frame_size]))
    fanout = Fanout(2, 5000, ticks_ms)
    link = Drained()
    for sock in link.near:
        fanout.add(sock, "127.0.0.1:0", "bench")

    def step() -> None:
        ns = time.time_ns()
        fanout.publish(pool.store(camera.take(), ns // 10**9, (ns // 1000) % 10**6, ticks_ms()))
        while fanout.pump():
            pass

    try:
        peak, growth = measure(step, frames)
        return peak, growth, pool.latest.size
    finally:
        link.close()


def alloc_example(frame_size: str, frames: int) -> tuple[int, int, int]:
    from camhub_node.simcam import SimCamera

    camera = SimCamera("alloc", frame_size, 12, scene="busy")
    stream_class = example_response_class()
    link = Drained()

    class Request:  # what Response needs of a request: the connection
        def __init__(self, sock: socket.socket) -> None:
            self.connection = sock

    viewers = []
    for sock in link.near:
        sock.settimeout(1)  # as Server.poll() leaves the connection
        viewers.append(stream_class(Request(sock)))
    size = len(camera.take())

    def step() -> None:
        frame = camera.take()
        for viewer in viewers:
            viewer.send_frame(frame)

    try:
        peak, growth = measure(step, frames)
        return peak, growth, size
    finally:
        link.close()


# ---- main ---------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def alloc_vm(kind: str, args: argparse.Namespace) -> tuple[int, int, int]:
    """(bytes allocated per frame: capture + send path, send path only, frame size) in the VM, two viewers."""
    args.vm.render(args.frame_size, args.fps)
    drain = Drain()
    try:
        r = args.vm.result(parse_heap(args.heap), "alloc", kind, args.frame_size, min(args.frames, 300), drain.port, 2,
                           args.vm.frames)
    finally:
        drain.close()
    return round(r["capture_per_frame"] + r["send_per_frame"]), round(r["send_per_frame"]), r["frame_bytes"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("--frame-size", default="VGA")
    parser.add_argument("--slow-rate", type=float, default=20_000, help="throttled viewer, bytes/s")
    parser.add_argument("--frames", type=int, default=1000, help="frames for the allocation measurement")
    parser.add_argument("--runtime", default="cpython,micropython", help="cpython, micropython or both (default)")
    parser.add_argument("--heap", default=DEFAULT_HEAP, help=f"the MicroPython heap (default {DEFAULT_HEAP})")
    parser.add_argument("--serve-example", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_example:
        serve_example(args.serve_example, args.fps, args.frame_size)
        return 0
    runtimes = [r for r in ("cpython", "micropython") if r in args.runtime.split(",")]
    args.vm = side_vm() if "micropython" in runtimes else None

    print(f"camhub node vs the Adafruit video-stream example pattern: {args.frame_size} @ {args.fps} fps, "
          f"{args.seconds:.0f} s windows, throttled viewer {args.slow_rate / 1000:.0f} KB/s, {os.cpu_count()} CPUs"
          + (f", MicroPython heap {args.heap}" if args.vm else ""), flush=True)
    columns = []
    try:
        for runtime in runtimes:
            for kind in ("camhub", "example"):
                throttled = scenario_throttled(kind, runtime, args)
                silent = scenario_silent(kind, runtime, args)
                probe = scenario_probe(kind, runtime, args)
                silent["probe_fps"] = probe["fps"]
                throttled["note"] = f"throttled: {throttled['note']}" if throttled["note"] else ""
                silent["note"] = "; ".join(f"{name}: {note}" for name, note in (
                    ("silent", silent["note"]), ("connect+close", probe["note"])) if note)
                if runtime == "micropython":
                    alloc = alloc_vm(kind, args)
                else:
                    alloc = alloc_camhub(args.frame_size, args.frames) if kind == "camhub" else \
                        alloc_example(args.frame_size, args.frames)
                columns.append((f"{kind} {LABELS[runtime]}", runtime, throttled, silent, alloc))
    finally:
        if args.vm:
            args.vm.close()
    print()

    def row(label: str, cell) -> None:
        print(f"{label:<28}" + "".join(f"{cell(*c[1:]):>16}" for c in columns))

    print(f"{'':<28}" + "".join(f"{c[0]:>16}" for c in columns))
    row("server alive after it", lambda r, t, s, a: "yes" if not t["note"] else "no")
    row("fast viewer fps", lambda r, t, s, a: f"{t['fast']:.1f}")
    row("throttled viewer fps", lambda r, t, s, a: f"{t['slow']:.1f}")
    row("CPU ms / frame", lambda r, t, s, a: f"{t['cpu_ms']:.1f}")
    row("fps with silent clients", lambda r, t, s, a: f"{s['fps']:.1f}")
    row("  longest gap (s)", lambda r, t, s, a: f"{s['gap']:.2f}")
    row("fps after connect+close", lambda r, t, s, a: f"{s['probe_fps']:.1f}")
    row("frame size (bytes)", lambda r, t, s, a: f"{a[2]}")
    row("alloc peak / frame (B)", lambda r, t, s, a: f"{a[0]}" if r == "cpython" else "-")
    row(f"net growth {args.frames} fr (B)", lambda r, t, s, a: f"{a[1]}" if r == "cpython" else "-")
    row("VM alloc / frame (B)", lambda r, t, s, a: f"{a[0]}" if r == "micropython" else "-")
    row("  of it send path (B)", lambda r, t, s, a: f"{a[1]}" if r == "micropython" else "-")
    for name, _, t, s, _ in columns:
        for note in (t["note"], s["note"]):
            if note:
                print(f"note: {name}: {note}")
    print("CPython alloc: tracemalloc peak above the level before a frame, two viewers; VM alloc: gc.mem_alloc() "
          "growth per frame (capture + send), two viewers, collector off around each frame")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
