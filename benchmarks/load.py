"""Viewer load for the fan-out benchmark: many MJPEG viewers in one cheap process.

One epoll loop over non-blocking sockets. Each viewer sends a plain HTTP/1.1 GET, reads the
response head, then parses parts by ``Content-Length`` (de-chunking first when the server uses
chunked transfer encoding, as aiohttp does for a stream of unknown length). Body bytes are received
into one shared scratch buffer and only counted, never copied, so a viewer costs little more than
the kernel's copy. For every completed part it records the part's ``X-Timestamp`` (capture time,
Unix seconds) and its receive-completion time: the kernel's receive timestamp (``SO_TIMESTAMPNS``,
wall clock) of the recv that delivered its last byte, so the time this loop takes to get round to a
socket among hundreds is not counted against the server (``--clock user``: ``time.time()`` after
the recv instead). The throttled viewer always uses ``time.time()`` after the recv: its bytes wait in
its small receive buffer as they would on a slow link, and it has a frame once it has read it.
Same machine, same clock as the capture time.

Viewer kinds: ``fast`` (reads as fast as it can), ``throttled`` (reads at a fixed byte rate with a
small ``SO_RCVBUF``, like a phone on a weak link) and ``direct`` (a fast viewer on the node itself,
the reference for the relay-added latency).

Protocol with ``fanout.py``: once every viewer has its response head, print
``{"event": "connected"}``; read one JSON line ``{"t0", "t1", "stop"}`` from stdin; keep reading
until ``stop``; write the frames of every viewer to ``--out`` and print ``{"event": "done"}``.
Everything is bounded in time; the process exits if stdin closes.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import select
import socket
import struct
import sys
import time
from urllib.parse import urlsplit

# Kernel receive timestamps (socket(7) SO_TIMESTAMPNS; 35 is its value in the generic Linux ABI used by
# x86-64 and arm64, the stdlib does not name it). For TCP the stamp is that of the last segment read,
# so a frame's completion time is when its last byte reached the socket, not when this loop got to it.
SO_TIMESTAMPNS = 35
TIMESPEC = struct.Struct("qq")
ANC_SPACE = socket.CMSG_SPACE(TIMESPEC.size)
MAX_HEAD = 16384  # response head or part header bigger than this: the stream is broken
SCRATCH = 1 << 20

# Parser states
HEAD, PART_HEAD, BODY, DONE = range(4)
CHUNK_SIZE, CHUNK_DATA, CHUNK_CRLF = range(3)


class StreamError(Exception):
    """The server sent something that is not an MJPEG stream."""


class Viewer:
    """One HTTP client of an MJPEG stream and the frames it completed."""

    __slots__ = ("kind", "cam", "host", "port", "target", "sock", "fd", "state", "acc", "cacc", "chunked",
                 "cstate", "cleft", "left", "ts_us", "seq", "status", "error", "rate", "granted",
                 "started", "recv_times", "capture_us", "seqs", "lengths", "length", "bytes", "request",
                 "boundary", "location")

    def __init__(self, kind: str, url: str, rate: float = 0.0, rcvbuf: int = 0, cam: int = 0) -> None:
        parts = urlsplit(url)
        self.kind = kind
        self.cam = cam  # which camera (index of its --url) this viewer watches
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.request = (f"GET {self.target} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                        f"User-Agent: camhub-bench/{kind}\r\nAccept: */*\r\n\r\n").encode()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            # Before connect, so the advertised window is small from the start.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.setblocking(False)
        self.fd = self.sock.fileno()
        self.state = HEAD
        self.acc = bytearray()  # a response head or part header split across receives
        self.cacc = bytearray()  # a chunk-size line split across receives (a part header may be pending too)
        self.chunked = False
        self.cstate = CHUNK_SIZE
        self.cleft = 0
        self.left = 0
        self.ts_us = 0
        self.seq = -1
        self.status = 0
        self.error = ""
        self.boundary = b""
        self.location = ""  # a redirect's Location (the stream then ends: "redirect")
        self.rate = rate
        self.granted = 0.0
        self.started = 0.0
        self.recv_times: list[float] = []
        self.capture_us: list[int] = []
        self.seqs: list[int] = []
        self.lengths: list[int] = []
        self.length = 0
        self.bytes = 0

    def connected(self) -> str | None:
        """The non-blocking connect finished (the socket became writable): send the request; why the
        connect failed, or None."""
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            return f"connect: {os.strerror(err)}"
        self.sock.send(self.request)  # a few dozen bytes into an empty socket buffer
        self.started = time.monotonic()
        return None

    # -- bytes in -----------------------------------------------------------------------------

    def receive(self, buf: bytearray, view: memoryview, stamped: bool) -> str | None:
        """One receive into ``view`` (the start of ``buf``), fed to the parser; why the stream ended, or
        None (also when there was nothing to read). ``stamped``: the kernel's receive time (``recv_stamped``)."""
        try:
            if stamped:
                n, now = recv_stamped(self.sock, view)
            else:
                n = self.sock.recv_into(view)
                now = time.time()
        except BlockingIOError:
            return None
        except OSError as exc:
            return f"recv: {exc.strerror or exc}"
        if not n:
            return "closed by server"
        try:
            self.feed(buf, 0, n, now)
        except (StreamError, ValueError) as exc:
            return str(exc)
        return None

    def feed(self, buf: bytearray, pos: int, end: int, now: float) -> None:
        """Consume ``buf[pos:end]`` received at ``now``."""
        self.bytes += end - pos
        if self.state == HEAD:
            pos = self._head(buf, pos, end)
        if not self.chunked:
            self._parts(buf, pos, end, now)
            return
        while pos < end:
            if self.cstate == CHUNK_DATA:
                take = min(self.cleft, end - pos)
                self._parts(buf, pos, pos + take, now)
                pos += take
                self.cleft -= take
                if not self.cleft:
                    self.cstate = CHUNK_CRLF
                    self.cleft = 2
            elif self.cstate == CHUNK_CRLF:
                take = min(self.cleft, end - pos)
                pos += take
                self.cleft -= take
                if not self.cleft:
                    self.cstate = CHUNK_SIZE
            else:
                line, pos = self._line(buf, pos, end, b"\r\n", self.cacc)
                if line is None:
                    return
                try:
                    size = int(line.split(b";", 1)[0].strip() or b"x", 16)
                except ValueError:
                    raise StreamError(f"bad chunk size line {bytes(line[:40])!r}") from None
                if size == 0:
                    raise StreamError("stream ended (last chunk)")
                self.cstate = CHUNK_DATA
                self.cleft = size

    def _line(self, buf: bytearray, pos: int, end: int, marker: bytes,
              acc: bytearray | None = None) -> tuple[bytes | None, int]:
        """Bytes up to ``marker`` (accumulated across recvs in ``acc``) and the position after it."""
        acc = self.acc if acc is None else acc
        if not acc:
            i = buf.find(marker, pos, end)
            if i >= 0:
                return bytes(buf[pos:i]), i + len(marker)
        take = min(end - pos, 4096)
        before = len(acc)
        acc += buf[pos:pos + take]
        i = acc.find(marker, max(0, before - len(marker) + 1))
        if i < 0:
            if len(acc) > MAX_HEAD:
                raise StreamError("header too long")
            return None, pos + take
        line = bytes(acc[:i])
        used = i + len(marker) - before
        acc.clear()
        return line, pos + used

    def _head(self, buf: bytearray, pos: int, end: int) -> int:
        head, pos = self._line(buf, pos, end, b"\r\n\r\n")
        if head is None:
            return pos
        lines = head.decode("latin-1").split("\r\n")
        try:
            self.status = int(lines[0].split()[1])
        except (IndexError, ValueError):
            raise StreamError(f"bad status line {lines[0][:60]!r}") from None
        headers = {k.strip().lower(): v.strip() for k, v in
                   (line.split(":", 1) for line in lines[1:] if ":" in line)}
        if self.status in (301, 302, 303, 307, 308) and headers.get("location"):
            self.location = headers["location"]
            raise StreamError("redirect")
        if self.status != 200:
            raise StreamError(f"HTTP {self.status}")
        ctype = headers.get("content-type", "")
        if "boundary=" not in ctype:
            raise StreamError(f"not a multipart stream: {ctype!r}")
        self.boundary = b"--" + ctype.split("boundary=", 1)[1].split(";")[0].strip().strip('"').encode()
        self.chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        self.state = PART_HEAD
        return pos

    def _parts(self, buf: bytearray, pos: int, end: int, now: float) -> None:
        while pos < end:
            if self.state == BODY:
                take = min(self.left, end - pos)
                pos += take
                self.left -= take
                if not self.left:
                    self.recv_times.append(now)
                    self.capture_us.append(self.ts_us)
                    self.seqs.append(self.seq)
                    self.lengths.append(self.length)
                    self.state = PART_HEAD
                continue
            block, pos = self._line(buf, pos, end, b"\r\n\r\n")
            if block is None:
                return
            block = block.strip(b"\r\n")
            if not block:
                continue  # CRLFs between parts
            self._part_header(block)

    def _part_header(self, block: bytes) -> None:
        lines = block.split(b"\r\n")
        if lines[0].strip() != self.boundary:
            raise StreamError(f"expected boundary, got {lines[0][:60]!r}")
        length = -1
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"x-timestamp":
                seconds, _, frac = value.strip().partition(b".")
                self.ts_us = int(seconds) * 1_000_000 + int((frac + b"000000")[:6])
            elif name == b"x-frame-seq":
                self.seq = int(value)
        if length < 0:
            raise StreamError("part without Content-Length")
        self.left = self.length = length
        self.state = BODY if length else PART_HEAD


def recv_stamped(sock: socket.socket, view: memoryview) -> tuple[int, float]:
    """``recv_into(view)``: the byte count and the kernel's receive time of the last segment read
    (``SO_TIMESTAMPNS``, set on ``sock``; ``time.time()`` when the kernel gave none)."""
    n, anc, _, _ = sock.recvmsg_into([view], ANC_SPACE)
    now = time.time()
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= TIMESPEC.size:
            sec, nsec = TIMESPEC.unpack_from(data)
            now = sec + nsec / 1e9
    return n, now


def probe(url: str, timeout: float = 10.0, parts: int = 1) -> list[int]:
    """Read ``parts`` complete parts from ``url``; return their JPEG sizes (raises on failure)."""
    viewer = Viewer("probe", url)
    viewer.sock.setblocking(True)
    viewer.sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    buf = bytearray(SCRATCH)
    try:
        viewer.sock.connect((viewer.host, viewer.port))
        viewer.sock.sendall(viewer.request)
        while len(viewer.lengths) < parts:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url}: fewer than {parts} frames within {timeout}s")
            n = viewer.sock.recv_into(buf)
            if not n:
                raise StreamError(f"{url}: closed after {len(viewer.lengths)} parts")
            viewer.feed(buf, 0, n, time.time())
        return viewer.lengths[:parts]
    finally:
        viewer.sock.close()


# -- the load process --------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    if len(args.fast) not in (1, len(args.url)):
        raise SystemExit("give one --fast, or one per --url")
    fast = args.fast * len(args.url) if len(args.fast) == 1 else args.fast
    viewers = [Viewer("fast", url, cam=cam) for cam, (url, count) in enumerate(zip(args.url, fast, strict=True))
               for _ in range(count)]
    if args.throttled_rate > 0:  # on the first camera only
        viewers.append(Viewer("throttled", args.url[0], rate=args.throttled_rate, rcvbuf=args.throttled_rcvbuf))
    viewers += [Viewer("direct", url, cam=cam) for cam, url in enumerate(args.direct)]
    if args.clock == "kernel":
        # Not the throttled viewer: its bytes wait in its small receive buffer like bytes still on a
        # slow link, so it has a frame when it has read it.
        for v in viewers:
            if v.rate:
                continue
            v.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    by_fd = {v.fd: v for v in viewers}
    ep = select.epoll()
    stdin_fd = sys.stdin.fileno()
    os.set_blocking(stdin_fd, False)
    ep.register(stdin_fd, select.EPOLLIN)
    buf = bytearray(SCRATCH)
    mv = memoryview(buf)
    throttled = [v for v in viewers if v.rate > 0]
    waiting = list(viewers)  # not yet connected, in order
    connecting: set[int] = set()  # connect issued, response head not yet complete
    connected = 0
    connect_deadline = time.monotonic() + args.connect_timeout
    announced = False
    plan: dict | None = None
    stdin_acc = b""

    def out(event: dict) -> None:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()

    def fail(v: Viewer, why: str) -> None:
        if not v.error:
            v.error = why
        with contextlib.suppress(OSError, KeyError, ValueError):
            ep.unregister(v.fd)
        connecting.discard(v.fd)
        v.state = DONE
        v.sock.close()

    kernel_clock = args.clock == "kernel"
    views = {}  # limit -> memoryview of the scratch buffer, made once

    def receive(v: Viewer, limit: int) -> None:
        if v.rate:  # the throttled viewer's budget changes every time
            view = mv[:limit]
        elif (view := views.get(limit)) is None:
            view = views[limit] = mv[:limit]
        was_head = v.state == HEAD
        ended = v.receive(buf, view, stamped=kernel_clock and not v.rate)
        if ended:
            fail(v, ended)
        elif was_head and v.state != HEAD:
            connecting.discard(v.fd)

    while True:
        now_m = time.monotonic()
        # Open connections a few at a time so no listen backlog overflows (SYN retries take 1 s).
        while waiting and len(connecting) < args.connect_batch:
            v = waiting.pop(0)
            err = v.sock.connect_ex((v.host, v.port))
            if err not in (0, errno.EINPROGRESS):
                fail(v, f"connect: {os.strerror(err)}")
                continue
            connecting.add(v.fd)
            ep.register(v.fd, select.EPOLLOUT)
        if not announced and not waiting and not connecting:
            connected = sum(1 for v in viewers if v.state not in (HEAD, DONE))
            if connected < len(viewers):
                bad = [v for v in viewers if v.error]
                out({"event": "error", "error": f"{len(bad)} viewers failed: "
                     + "; ".join(sorted({f'{v.kind}: {v.error}' for v in bad}))[:500]})
                return 2
            out({"event": "connected", "viewers": connected})
            announced = True
        if not announced and now_m > connect_deadline:
            out({"event": "error", "error": f"only {connected} of {len(viewers)} viewers connected "
                 f"within {args.connect_timeout}s"})
            return 2
        now = time.time()
        if plan and now >= plan["stop"]:
            break
        if not plan and announced and now_m > connect_deadline + args.plan_timeout:
            out({"event": "error", "error": "no plan on stdin"})
            return 2
        for fd, mask in ep.poll(0.005 if throttled else 0.05):
            if fd == stdin_fd:
                try:
                    data = os.read(stdin_fd, 4096)
                except BlockingIOError:
                    continue
                if not data:
                    return 3  # the orchestrator went away
                stdin_acc += data
                if b"\n" in stdin_acc:
                    plan = json.loads(stdin_acc.split(b"\n", 1)[0])
                continue
            v = by_fd.get(fd)
            if v is None or v.state == DONE:
                continue
            if mask & select.EPOLLOUT and v.state == HEAD and not v.started:
                failed = v.connected()
                if failed:
                    fail(v, failed)
                    continue
                # A throttled viewer is read by the token bucket below, not by readiness.
                if v.rate > 0:
                    ep.unregister(fd)
                else:
                    ep.modify(fd, select.EPOLLIN)
                continue
            if v.rate > 0:
                continue
            receive(v, SCRATCH)
        # Throttled viewers: read whatever the byte budget allows (a 50 ms burst at most).
        now_m = time.monotonic()
        for v in throttled:
            if v.state == DONE or not v.started:
                continue
            if v.granted == 0.0:
                v.granted = now_m
            budget = int((now_m - v.granted) * v.rate)
            if budget <= 0:
                continue
            budget = min(budget, int(v.rate * 0.05) + 1)
            before = v.bytes
            receive(v, budget)
            got = v.bytes - before
            # Bank time for the bytes read; an empty socket does not accumulate credit.
            v.granted = max(v.granted + got / v.rate, now_m - 0.05)
    for v in viewers:
        with contextlib.suppress(OSError):
            v.sock.close()
    result = {
        "plan": plan,
        "viewers": [
            {"kind": v.kind, "cam": v.cam, "error": v.error, "bytes": v.bytes,
             "capture_us": v.capture_us, "recv": [round(t, 6) for t in v.recv_times], "seq": v.seqs}
            for v in viewers
        ],
    }
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(result, fh)
    out({"event": "done"})
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--url", required=True, action="append",
                        help="an MJPEG stream to load (repeat for several cameras)")
    parser.add_argument("--fast", type=int, action="append",
                        help="fast viewers (once for every --url, or once per --url in order; default 1)")
    parser.add_argument("--throttled-rate", type=float, default=0.0, help="bytes/s of the throttled viewer")
    parser.add_argument("--throttled-rcvbuf", type=int, default=16384, help="its SO_RCVBUF")
    parser.add_argument("--direct", action="append", default=[],
                        help="also read this URL (the node) as the reference; one per --url, in order")
    parser.add_argument("--out", required=True, help="where to write the recorded frames (JSON)")
    parser.add_argument("--clock", choices=("kernel", "user"), default="kernel",
                        help="receive time: the kernel's stamp of the last segment, or time.time() after recv")
    parser.add_argument("--connect-batch", type=int, default=32)
    parser.add_argument("--connect-timeout", type=float, default=20.0)
    parser.add_argument("--plan-timeout", type=float, default=30.0)
    args = parser.parse_args()
    args.fast = args.fast or [1]
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
