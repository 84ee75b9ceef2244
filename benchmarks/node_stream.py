"""Node streaming benchmark: camhub's node fan-out vs the Adafruit video-stream example's pattern.

Two measurements, each run for both on this machine with the same simulated camera:

1. Delivered fps to two viewers of one node, one of them throttled (``--slow-rate`` bytes/s), and
   to one viewer while other clients keep connecting and saying nothing (what a silent client
   costs a node whose HTTP server handles one request at a time). Both servers run as separate
   processes; the readers count parts by their ``Content-Type: image/jpeg`` line, so the
   example's non-RFC boundary does not matter.
2. Bytes allocated per frame in the send path (tracemalloc, in process, two loopback viewers
   drained by threads into preallocated buffers): the transient peak above the level before each
   frame, and the net growth over ``--frames`` frames.

The "example pattern" is a re-implementation, written for this benchmark, of what
``examples/httpserver_video_stream.py`` in Adafruit_CircuitPython_HTTPServer does: a
``multipart/x-mixed-replace`` ``Response`` subclass per viewer kept in a list; a task that sleeps,
takes a frame and, for each viewer in turn, sends ``bytes(frame)`` (a copy per viewer) with the
library's blocking ``_send_bytes`` (boundary line, part header, JPEG, CRLF), catching only
``BrokenPipeError``; and a task that calls ``server.poll()`` (default 1 s socket timeout).

    .venv/bin/python benchmarks/node_stream.py [--seconds 8] [--fps 15] [--frame-size VGA]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.support: the same allocation measurement as the tests

from tests.support.allocations import loopback_pairs, measure  # noqa: E402

MARKER = b"Content-Type: image/jpeg"


# ---- the example's pattern, re-implemented ------------------------------------------------------

def example_response_class():
    from adafruit_httpserver import Response

    class ExampleStyleStream(Response):
        """One viewer, as the example keeps it: headers on _send, then send_frame per frame."""

        def __init__(self, request) -> None:
            super().__init__(request)
            letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
            # The example puts "--" inside the boundary parameter and writes the parameter as the
            # delimiter line (RFC 2046 wants "--" + parameter): kept, it is part of the pattern.
            self.boundary = "--" + "".join(random.choice(letters) for _ in range(16))
            self._headers.setdefault("Content-Type", f"multipart/x-mixed-replace; boundary={self.boundary}")

        def _send(self) -> None:
            self._send_headers()

        def send_frame(self, frame) -> None:
            data = bytes(frame)  # the per-viewer copy
            conn = self._request.connection
            self._send_bytes(conn, f"{self.boundary}\r\n".encode())
            self._send_bytes(conn, b"Content-Type: image/jpeg\r\n\r\n")
            self._send_bytes(conn, data)
            self._send_bytes(conn, b"\r\n")

        def close(self) -> None:
            self._close_connection()

    return ExampleStyleStream


def serve_example(port: int, fps: int, frame_size: str) -> None:
    """The example's server loop, on CPython with the socket module as the pool."""
    from adafruit_httpserver import Server

    from camhub_node.simcam import SimCamera

    stream_class = example_response_class()
    camera = SimCamera("example", frame_size, 12, fps)
    server = Server(socket)
    viewers = []

    @server.route("/stream")
    def stream(request):
        response = stream_class(request)
        viewers.append(response)
        return response

    async def send_frames() -> None:
        while True:
            await asyncio.sleep(1 / fps)
            frame = camera.take()
            for viewer in list(viewers):
                try:
                    viewer.send_frame(frame)
                except BrokenPipeError:
                    viewer.close()
                    viewers.remove(viewer)

    async def handle_requests() -> None:
        server.start("127.0.0.1", port)
        while True:
            await asyncio.sleep(0)
            server.poll()

    async def main() -> None:
        await asyncio.gather(asyncio.create_task(send_frames()), asyncio.create_task(handle_requests()))

    asyncio.run(main())


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


def start_server(kind: str, args: argparse.Namespace) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    if kind == "camhub":
        cmd = [sys.executable, "-m", "camhub", "node", "--sim", "--id", "bench", "--http-port", str(port),
               "--fps", str(args.fps), "--frame-size", args.frame_size]
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAMHUB_")}
    else:
        cmd = [sys.executable, __file__, "--serve-example", str(port), "--fps", str(args.fps),
               "--frame-size", args.frame_size]
        env = dict(os.environ)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    deadline = time.monotonic() + 20
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


def scenario_throttled(kind: str, args: argparse.Namespace) -> dict[str, object]:
    proc, port = start_server(kind, args)
    fast, slow = Reader(port), Reader(port, rate=args.slow_rate, rcvbuf=8192)
    fast.start()
    slow.start()
    time.sleep(1.0)  # settle
    since = time.monotonic()
    time.sleep(args.seconds)
    until = time.monotonic()
    fast.stop.set()
    slow.stop.set()
    note = stop_server(proc)
    fast.join(6)
    slow.join(6)
    return {"fast": fast.fps(since, until), "slow": slow.fps(since, until), "note": note or fast.error or ""}


def scenario_silent(kind: str, args: argparse.Namespace) -> dict[str, object]:
    proc, port = start_server(kind, args)
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


def scenario_probe(kind: str, args: argparse.Namespace) -> dict[str, object]:
    """One client connects and closes without a byte (a port scan, a health check)."""
    proc, port = start_server(kind, args)
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

    camera = SimCamera("alloc", frame_size, 12)
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

    camera = SimCamera("alloc", frame_size, 12)
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("--frame-size", default="VGA")
    parser.add_argument("--slow-rate", type=float, default=20_000, help="throttled viewer, bytes/s")
    parser.add_argument("--frames", type=int, default=1000, help="frames for the allocation measurement")
    parser.add_argument("--serve-example", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_example:
        serve_example(args.serve_example, args.fps, args.frame_size)
        return 0

    print(f"camhub node vs the Adafruit video-stream example pattern: {args.frame_size} @ {args.fps} fps, "
          f"{args.seconds:.0f} s windows, throttled viewer {args.slow_rate / 1000:.0f} KB/s, {os.cpu_count()} CPUs")
    rows = []
    for kind in ("camhub", "example"):
        throttled = scenario_throttled(kind, args)
        silent = scenario_silent(kind, args)
        probe = scenario_probe(kind, args)
        silent["probe_fps"] = probe["fps"]
        throttled["note"] = f"throttled: {throttled['note']}" if throttled["note"] else ""
        silent["note"] = "; ".join(f"{name}: {note}" for name, note in (("silent", silent["note"]),
                                                                      ("connect+close", probe["note"])) if note)
        alloc = alloc_camhub(args.frame_size, args.frames) if kind == "camhub" else \
            alloc_example(args.frame_size, args.frames)
        rows.append((kind, throttled, silent, alloc))
    print()
    print(f"{'beside a throttled viewer':<26}{'camhub node':>16}{'example pattern':>18}")
    (_, t1, s1, a1), (_, t2, s2, a2) = rows
    table = [
        ("server alive after it", "yes" if not t1["note"] else "no", "yes" if not t2["note"] else "no"),
        ("fast viewer fps", f"{t1['fast']:.1f}", f"{t2['fast']:.1f}"),
        ("throttled viewer fps", f"{t1['slow']:.1f}", f"{t2['slow']:.1f}"),
        ("fps with silent clients", f"{s1['fps']:.1f}", f"{s2['fps']:.1f}"),
        ("  longest gap (s)", f"{s1['gap']:.2f}", f"{s2['gap']:.2f}"),
        ("fps after connect+close", f"{s1['probe_fps']:.1f}", f"{s2['probe_fps']:.1f}"),
        ("frame size (bytes)", f"{a1[2]}", f"{a2[2]}"),
        ("alloc peak / frame (B)", f"{a1[0]}", f"{a2[0]}"),
        (f"net growth {args.frames} fr (B)", f"{a1[1]}", f"{a2[1]}"),
    ]
    for label, left, right in table:
        print(f"{label:<26}{left:>16}{right:>18}")
    notes = [f"{kind}: {note}" for kind, t, s, _ in rows for note in (t["note"], s["note"]) if note]
    for note in notes:
        print("note:", note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
