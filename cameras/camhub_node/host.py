"""The PC platform: the ``socket`` module as the socket pool, a simulated camera, POSIX signals.

Only this module (and ``simcam``) may use PC-only facilities; the node above it is the board's
code. ``camhub node --sim`` exports the settings to the environment before calling
``start.main()``, so the node's ``os.getenv`` sees them as the board sees ``settings.toml``.
"""

import asyncio
import logging
import os
import signal
import socket
import sys
import time

from adafruit_ticks import ticks_ms as _ticks_ms

from camhub_node.pc import VM_KEYS, PcPlatform


class HostPlatform(PcPlatform):
    """What the node needs from its platform, on a PC."""

    def __init__(self):
        self.pool = socket
        self.cfg = None
        self._log = logging.getLogger("camhub.node")
        if not logging.getLogger().handlers:
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def setting_names(self):
        return [name for name in os.environ if name not in VM_KEYS]

    def camera(self, cfg):
        from camhub_node.simcam import SimCamera

        return self.resume_scene(
            SimCamera(cfg.node_id, cfg.frame_size, cfg.jpeg_quality, cfg.fps, self.scene_kind, self.period_ms), cfg)

    def ticks_ms(self):
        """Integer milliseconds, wrapping at 2**29 like the board's ``supervisor.ticks_ms()``."""
        return _ticks_ms()

    def wall_time(self):
        ns = time.time_ns()
        return ns // 1000000000, (ns // 1000) % 1000000

    def free_heap(self):
        return None  # no such figure for a PC process

    def heap_size(self):
        return None

    def install_stop(self, callback):
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, callback)

    def log(self, node_id, message):
        self._log.info("[%s] %s", node_id, message)

    def warn(self, message):
        self._log.warning(message)

    def log_exception(self, node_id, message, error):
        self._log.error("[%s] %s: %s", node_id, message, error, exc_info=error)

    def fatal(self, error):
        self._log.error("node cannot run: %s", error, exc_info=error)
        print("camhub node: cannot run: %s" % error, file=sys.stderr)
        raise SystemExit(1)
