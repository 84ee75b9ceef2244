"""The node: camera -> frame pool -> fan-out, the HTTP front and MQTT presence, as asyncio tasks.

Everything here is the same on the board and on a PC; the platform object (``board.py`` or
``host.py``) supplies sockets, the camera, the clock and the network. Each task runs under a
supervisor: an unexpected exception is logged and that task restarts, so the node never dies of
one bug. ``main()`` picks the platform, reads the settings and runs until stopped. Runs on
CircuitPython and CPython alike (asyncio: create_task, gather, sleep, Event only). ``start.main()`` runs it.

Time is the platform's ``ticks_ms()``: integer milliseconds that wrap at 2**29 (``supervisor.ticks_ms``
on the board), compared with ``adafruit_ticks``. CircuitPython floats are single precision, so
``time.monotonic()`` steps by ~31 ms after a day of uptime and 250 ms after 30 days: coarser than a
frame interval. Only intervals of seconds are measured that way; uptime is folded into a counter.
"""

import asyncio
import sys

from adafruit_ticks import ticks_add, ticks_diff

from camhub_node import __version__, subscriber
from camhub_node.config import CONTROLS, FRAME_SIZES, ConfigError, read_set
from camhub_node.fanout import Fanout
from camhub_node.frames import FramePool, jpeg_capacity
from camhub_node.http import HttpFront
from camhub_node.presence import Presence


class Node:
    """One camera node; ``await run()`` until ``request_stop()``."""

    def __init__(self, platform, cfg):
        self.platform = platform
        self.cfg = cfg
        self.clock = platform.ticks_ms
        now = self.clock()
        self._uptime_s = 0  # whole seconds up to _uptime_mark (see uptime_s)
        self._uptime_mark = now
        self.stopping = False
        self._stop = asyncio.Event()
        self.camera = None
        self.pool = FramePool(cfg.max_clients + 2, jpeg_capacity(cfg.width, cfg.height))
        self.fanout = Fanout(cfg.max_clients, cfg.write_timeout_s * 1000, self.clock, self.log,
                             platform.prepare_viewer, self.uptime_s)
        self.http = HttpFront(self, platform.pool, cfg.http_timeout_s)
        self.presence = Presence(self)
        self.frames = 0
        self.capture_errors = 0
        self.fps = 0.0
        self._fps_frames = 0
        self._fps_since = now
        self._next_capture = now
        self._capture_rem = 0  # carries 1000 % fps between frames (see capture_if_due)
        self.restarts = {}

    # ---- logging ---------------------------------------------------------------------------

    def log(self, message):
        self.platform.log(self.cfg.node_id, message)

    def log_error(self, message, error):
        self.platform.log_exception(self.cfg.node_id, message, error)

    # ---- life cycle ------------------------------------------------------------------------

    def setup(self):
        """Camera and listening socket; errors here are fatal (bad pins, port in use)."""
        self.camera = self.platform.camera(self.cfg)
        self.http.start(self.platform.bind_host(), self.cfg.http_port)
        self.log("serving http://%s:%d/stream (%s %dx%d @ %d fps)" % (
            self.address(), self.cfg.http_port, self.cfg.frame_size, self.cfg.width, self.cfg.height, self.cfg.fps))

    def request_stop(self):
        self.stopping = True
        self._stop.set()

    async def nap(self, ms, slice_ms=200):
        """Sleep ``ms`` milliseconds, waking at least every ``slice_ms`` to see whether the node stops.

        Whole milliseconds on an integer deadline: MicroPython-family asyncio sleeps
        ``int(t * 1000)`` ms, so sleeping "what is left" of a float deadline would spin through the
        sub-millisecond remainders (hundreds of turns per nap, a float allocated in each).
        """
        end = ticks_add(self.clock(), ms)
        while not self.stopping:
            left = ticks_diff(end, self.clock())
            if left <= 0:
                return
            await asyncio.sleep((left if left < slice_ms else slice_ms) / 1000)

    async def _supervise(self, name, factory):
        delay = 500
        while not self.stopping:
            began = self.uptime_s()
            try:
                await factory()
                if self.stopping:
                    return
                self.log("task %s ended; restarting it" % name)
            except Exception as error:
                self.restarts[name] = self.restarts.get(name, 0) + 1
                self.log_error("task %s failed; restarting it" % name, error)
            if self.uptime_s() - began > 60:
                delay = 500
            await self.nap(delay)
            delay = min(delay * 2, 10000)

    async def run(self):
        self.setup()
        self.platform.install_stop(self.request_stop)
        jobs = [("camera", self._camera_task), ("fanout", self._fanout_task), ("http", self._http_task),
                ("platform", self._platform_task)]
        if self.cfg.mqtt_host:
            jobs.append(("mqtt", self.presence.run))
        else:
            self.log("CAMHUB_MQTT_HOST is not set: no MQTT presence (the stream still works)")
        tasks = [asyncio.create_task(self._supervise(name, factory)) for name, factory in jobs]
        await self._stop.wait()
        self.log("stopping")
        await asyncio.gather(*tasks)
        self.shutdown()

    def shutdown(self):
        self.presence.shutdown()
        self.fanout.close_all(subscriber.SERVER_SHUTDOWN)
        self.http.stop()
        self.log("stopped")

    # ---- tasks -----------------------------------------------------------------------------

    async def _camera_task(self):
        while not self.stopping:
            await asyncio.sleep(self.capture_if_due() / 1000)

    def capture_if_due(self):
        """Capture a frame if one is due; return the milliseconds until the next one."""
        now = self.clock()
        left = ticks_diff(self._next_capture, now)
        if left > 0:
            return left
        fps = self.cfg.fps
        # 1000 / fps in whole milliseconds without drift: 30 fps is 33, 33, 34, 33, 33, 34 ms ...
        step = 1000 // fps
        self._capture_rem += 1000 % fps
        if self._capture_rem >= fps:
            self._capture_rem -= fps
            step += 1
        self._next_capture = ticks_add(self._next_capture, step)
        if ticks_diff(self._next_capture, now) < 0:
            self._next_capture = ticks_add(now, step)  # fell behind: skip, never burst
        self.capture_once()
        left = ticks_diff(self._next_capture, self.clock())
        return left if left > 0 else 0

    def service_io(self):
        """Capture and fan-out work, for code that must block a while (a slow HTTP request)."""
        self.capture_if_due()
        self.fanout.pump()

    def capture_once(self):
        """Take one frame, copy it into the pool (the one copy) and publish it."""
        view = self.camera.take(0.25)  # blocks the loop at most this long if the sensor stalls
        if view is None or len(view) == 0:
            self.capture_errors += 1
            return None
        ts_s, ts_us = self.platform.wall_time()
        now = self.clock()
        frame = self.pool.store(view, ts_s, ts_us, now)
        if frame is None:
            self.capture_errors += 1
            return None
        self.frames += 1
        self._fps_frames += 1
        elapsed = ticks_diff(now, self._fps_since)
        if elapsed >= 1000:
            self.fps = self._fps_frames * 1000 / elapsed
            self._fps_frames = 0
            self._fps_since = now
        self.fanout.publish(frame)
        return frame

    async def _fanout_task(self):
        fanout = self.fanout
        while not self.stopping:
            busy = fanout.pump()
            await asyncio.sleep(0.003 if busy else 0.01)

    async def _http_task(self):
        http = self.http
        while not self.stopping:
            handled = http.poll()
            await asyncio.sleep(0 if handled else 0.02)

    async def _platform_task(self):
        while not self.stopping:
            self.platform.tick(self)
            self.uptime_s()  # fold the ticks into the uptime well before they wrap
            await self.nap(1000)

    # ---- settings at run time --------------------------------------------------------------

    def apply_settings(self, request):
        """Apply a ``set`` request (a dict); return None, or why nothing was changed."""
        try:
            fps, quality, size = read_set(request, self.cfg.fps, self.cfg.jpeg_quality, self.cfg.frame_size)
        except ConfigError as error:
            return str(error)
        if size != self.cfg.frame_size or quality != self.cfg.jpeg_quality:
            self.camera.reconfigure(frame_size=size, quality=quality)
            self.pool.resize(jpeg_capacity(FRAME_SIZES[size][0], FRAME_SIZES[size][1]))
        self.cfg.fps = fps
        self._capture_rem = 0
        self.cfg.jpeg_quality = quality
        self.cfg.frame_size = size
        return None

    # ---- reports ---------------------------------------------------------------------------

    def address(self):
        return self.cfg.advertise_host or self.platform.address()

    def uptime_s(self):
        """Whole seconds since the node started, exact over weeks: the ticks wrap every ~6.2 days,
        so elapsed whole seconds are moved into a counter (the platform task does it every second)."""
        step = ticks_diff(self.clock(), self._uptime_mark) // 1000
        if step > 0:
            self._uptime_s += step
            self._uptime_mark = ticks_add(self._uptime_mark, step * 1000)
        return self._uptime_s

    def current_fps(self):
        elapsed = ticks_diff(self.clock(), self._fps_since)
        if elapsed < 0:
            return 0.0  # no frame for days: the ticks wrapped past the window's start
        if elapsed > 2000:
            return self._fps_frames * 1000 / elapsed
        return self.fps

    def announce(self):
        cfg = self.cfg
        base = "http://%s:%d" % (self.address(), cfg.http_port)
        return {
            "id": cfg.node_id, "name": cfg.name,
            "stream_url": base + "/stream", "snapshot_url": base + "/snapshot.jpg", "status_url": base + "/status",
            "board": self.platform.board_name, "sensor": self.camera.sensor_name if self.camera else None,
            "frame_size": cfg.frame_size, "width": cfg.width, "height": cfg.height,
            "fps": cfg.fps, "jpeg_quality": cfg.jpeg_quality, "firmware": __version__, "ip": self.address(),
            "controls": CONTROLS,
        }

    def stats(self):
        return {
            "uptime_s": self.uptime_s(), "frames": self.frames, "fps": round(self.current_fps(), 2),
            "clients": self.fanout.count, "dropped": self.fanout.dropped_total(),
            "free_heap": self.platform.free_heap(), "rssi": self.platform.rssi(),
        }

    def status(self):
        cfg = self.cfg
        info = self.stats()
        info.update({
            "id": cfg.node_id, "name": cfg.name, "firmware": __version__, "board": self.platform.board_name,
            "frame_size": cfg.frame_size, "width": cfg.width, "height": cfg.height,
            "fps_target": cfg.fps, "jpeg_quality": cfg.jpeg_quality, "max_clients": cfg.max_clients,
            "capture_errors": self.capture_errors,
            # captures lost because every buffer was still in flight (should stay 0), and buffer regrowths
            "capture_no_buffer": self.pool.no_buffer, "buffers_regrown": self.pool.regrown,
            "viewers": self.fanout.viewers(),
            "disconnects": self.fanout.disconnects, "connections": self.fanout.connections,
            "http": {"requests": self.http.requests, "rejected": self.http.rejected, "errors": self.http.errors},
            "mqtt": {"connected": self.presence.connected, "connects": self.presence.connects,
                     "failures": self.presence.failures, "set_applied": self.presence.set_applied,
                     "set_rejected": self.presence.set_rejected, "reasserts": self.presence.reasserts},
            "task_restarts": self.restarts,
            "runtime": runtime(), "heap_size": self.platform.heap_size(),
        })
        return info


def runtime():
    """The interpreter this node runs on: name and version (e.g. circuitpython 10.2.1)."""
    impl = sys.implementation
    return {"name": impl.name, "version": "%d.%d.%d" % (impl.version[0], impl.version[1], impl.version[2])}
