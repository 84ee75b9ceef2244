"""Many MJPEG viewers in one process that reconnect like players: per-viewer fps and frame age.

For the network-namespace test bed (tests/support/netbed.py runs it inside a viewer host with
``ip netns exec``) and the cluster benchmarks, up to hundreds of viewers per process. Each viewer GETs
its URL and reads parts (``load.Viewer`` parses them: the fan-out benchmark's reader); when its stream
ends, fails or (``--stall-s``) goes silent, it reconnects after ``--retry-s``, as a player would. Per
viewer it reports frames, fps (frames over the time since its first), frame age (receive time minus the
part's ``X-Timestamp``, the capture time: the kernel's receive stamp, and one clock for every namespace
of a machine), the longest time without a frame (what a failover cost it), reconnects and why its
streams ended. A redirect (a hub in redirect mode: 307 to an edge) is followed at once, as a player
does, and counted (``redirects``), not as an error or a reconnect; a reconnect starts again at its URL.

    python benchmarks/viewers.py --url http://198.18.0.5/cameras/cam1/stream --viewers 100 --seconds 30

stdout, JSON lines: with ``--report-every S`` a ``{"event": "progress", "t", "streaming", "fps"}`` line
every S seconds (``streaming``: viewers that had a frame within the last 2 s); at the end one
``{"event": "summary", "seconds", "cpu_s", "viewers": [{"url", "frames", "fps", "first_frame_s", "age_ms":
{"p50", "p95", "max"}, "max_gap_s", "reconnects", "redirects", "errors": {why: count}}, ...]}``. ``--seconds 0``
runs until SIGTERM or SIGINT, then prints the summary; its ``cpu_s`` is this process's own CPU time
(the load generator must not be what limits a benchmark).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import select
import signal
import socket
import sys
import time
from array import array
from urllib.parse import urljoin

import load  # benchmarks/ is this script's directory

STREAMING_WINDOW_S = 2.0
MAX_REDIRECTS = 5  # per connection, as browsers bound them (a loop is an error)


class Slot:
    """One viewer across its connections: the current one (``load.Viewer``) and its statistics."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.conn: load.Viewer | None = None
        self.retry_at = 0.0  # monotonic time of the next connect
        self.last_bytes = 0.0  # monotonic time bytes last arrived (stall detection)
        self.ages = array("d")  # seconds, one per frame
        self.first = 0.0
        self.last = 0.0  # wall-clock receive time of the latest frame
        self.frames = 0
        self.max_gap = 0.0
        self.reconnects = -1  # the first connect is not a reconnect
        self.redirects = 0
        self.follow = ""  # the Location of the redirect just received: the next connect goes there
        self.chain = 0  # redirects followed since the last stream that started
        self.errors: dict[str, int] = {}

    def take_frames(self) -> int:
        """Move the frames the connection completed into the statistics; how many."""
        conn = self.conn
        if conn is None or not conn.recv_times:
            return 0
        for recv, capture_us in zip(conn.recv_times, conn.capture_us, strict=True):
            if self.frames:
                self.max_gap = max(self.max_gap, recv - self.last)
            else:
                self.first = recv
            self.last = recv
            self.frames += 1
            if capture_us:
                self.ages.append(recv - capture_us / 1e6)
        count = len(conn.recv_times)
        self.chain = 0
        for column in (conn.recv_times, conn.capture_us, conn.seqs, conn.lengths):
            column.clear()
        return count

    def summary(self, started: float, ended: float) -> dict:
        ages = sorted(self.ages)

        def pct(q: float) -> float | None:
            return round(ages[min(len(ages) - 1, int(q * len(ages)))] * 1000, 1) if ages else None

        # The time since the last frame counts as a gap too: a viewer that stopped getting frames.
        gap = max(self.max_gap, ended - (self.last or started))
        return {
            "url": self.url, "frames": self.frames,
            "fps": round((self.frames - 1) / (self.last - self.first), 2) if self.frames > 1 else 0.0,
            "first_frame_s": round(self.first - started, 3) if self.frames else None,
            "age_ms": {"p50": pct(0.5), "p95": pct(0.95), "max": pct(1.0)},
            "max_gap_s": round(gap, 3), "reconnects": max(0, self.reconnects), "redirects": self.redirects,
            "errors": self.errors,
        }


def conn_url(conn: load.Viewer) -> str:
    return f"http://{conn.host}:{conn.port}{conn.target}"


def run(args: argparse.Namespace) -> int:
    slots = [Slot(url) for url in args.url for _ in range(args.viewers)]
    ep = select.epoll()
    by_fd: dict[int, Slot] = {}
    buf = bytearray(load.SCRATCH)
    view = memoryview(buf)
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def out(event: dict) -> None:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()

    def drop(slot: Slot, why: str) -> None:
        conn = slot.conn
        if conn is None:
            return
        slot.take_frames()
        why = conn.error or why
        if conn.location and slot.chain < MAX_REDIRECTS:
            slot.follow = urljoin(conn_url(conn), conn.location)
            slot.redirects += 1
            slot.chain += 1
            slot.reconnects -= 1  # following a redirect is not a reconnect
        else:
            slot.errors[why] = slot.errors.get(why, 0) + 1
            slot.chain = 0
        by_fd.pop(conn.fd, None)
        with contextlib.suppress(OSError, ValueError):
            ep.unregister(conn.fd)
        conn.sock.close()
        slot.conn = None
        slot.retry_at = time.monotonic() + (0.0 if slot.follow else args.retry_s)

    def connect(slot: Slot) -> None:
        conn = load.Viewer("viewer", slot.follow or slot.url)
        slot.follow = ""
        conn.sock.setsockopt(socket.SOL_SOCKET, load.SO_TIMESTAMPNS, 1)
        slot.conn = conn
        slot.reconnects += 1
        slot.last_bytes = time.monotonic()
        err = conn.sock.connect_ex((conn.host, conn.port))
        by_fd[conn.fd] = slot
        ep.register(conn.fd, select.EPOLLOUT)
        if err not in (0, errno.EINPROGRESS):
            drop(slot, f"connect: {os.strerror(err)}")

    started_wall = time.time()
    started = time.monotonic()
    end = started + args.seconds if args.seconds > 0 else float("inf")
    next_report = started + args.report_every if args.report_every > 0 else float("inf")
    window_frames = 0
    while not stop and time.monotonic() < end:
        now_m = time.monotonic()
        # (Re)connect a few at a time, so no listen backlog overflows (a SYN retry costs a second).
        connecting = sum(1 for s in slots if s.conn is not None and s.conn.state == load.HEAD)
        for slot in slots:
            if connecting >= args.connect_batch:
                break
            if slot.conn is None and now_m >= slot.retry_at:
                connect(slot)
                connecting += 1
        for fd, mask in ep.poll(0.05):
            slot = by_fd.get(fd)
            if slot is None or slot.conn is None:
                continue
            conn = slot.conn
            if mask & select.EPOLLOUT and not conn.started:
                failed = conn.connected()
                if failed:
                    drop(slot, failed)
                else:
                    ep.modify(fd, select.EPOLLIN)
                continue
            before = conn.bytes
            ended = conn.receive(buf, view, stamped=True)
            if conn.bytes != before:
                slot.last_bytes = time.monotonic()
            if ended:
                drop(slot, ended)
                continue
            window_frames += slot.take_frames()
        now_m = time.monotonic()
        if args.stall_s > 0:
            for slot in slots:
                if slot.conn is not None and now_m - slot.last_bytes > args.stall_s:
                    drop(slot, f"no bytes for {args.stall_s:g} s")
        if now_m >= next_report:
            wall = time.time()
            out({"event": "progress", "t": round(now_m - started, 3),
                 "streaming": sum(1 for s in slots if s.frames and wall - s.last < STREAMING_WINDOW_S),
                 "fps": round(window_frames / args.report_every, 1)})
            window_frames = 0
            next_report += args.report_every
    ended = time.time()
    for slot in slots:
        slot.take_frames()
        if slot.conn is not None:
            slot.conn.sock.close()
    out({"event": "summary", "seconds": round(ended - started_wall, 3), "cpu_s": round(time.process_time(), 3),
         "viewers": [s.summary(started_wall, ended) for s in slots]})
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--url", required=True, action="append", help="an MJPEG stream (repeat for several)")
    parser.add_argument("--viewers", type=int, default=1, help="viewers of each --url (default 1)")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long (0: until SIGTERM/SIGINT)")
    parser.add_argument("--retry-s", type=float, default=0.5, help="wait before a reconnect (default 0.5)")
    parser.add_argument("--stall-s", type=float, default=0.0,
                        help="reconnect after this long without a byte (default 0: never)")
    parser.add_argument("--report-every", type=float, default=0.0, help="a progress line every S seconds")
    parser.add_argument("--connect-batch", type=int, default=32, help="connects in flight at once")
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
