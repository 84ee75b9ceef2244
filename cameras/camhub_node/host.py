"""The PC platform: the ``socket`` module as the socket pool, a simulated camera, POSIX signals.

Only this module (and ``simcam``) may use PC-only facilities; the node above it is the board's
code. ``camhub node --sim`` exports the settings to the environment before calling
``node.main()``, so the node's ``os.getenv`` sees them as the board sees ``settings.toml``.
"""

import asyncio
import logging
import signal
import socket
import sys
import time

from adafruit_ticks import ticks_ms as _ticks_ms

_LOOPBACK = ("127.0.0.1", "localhost", "::1")
SEND_BUFFER = 32768  # bytes asked for; Linux doubles it


class HostPlatform:
    """What the node needs from its platform, on a PC."""

    board_name = "simulated"

    def __init__(self):
        self.pool = socket
        self.cfg = None
        self._log = logging.getLogger("camhub.node")
        if not logging.getLogger().handlers:
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def defaults(self):
        # Short blocking windows on a PC: a silent HTTP client or an MQTT read costs at most this.
        return {"CAMHUB_NODE_ID": "sim1", "CAMHUB_HTTP_TIMEOUT_MS": "100", "CAMHUB_MQTT_TIMEOUT_MS": "50",
                "CAMHUB_WATCHDOG_S": "0"}

    def start(self, cfg):
        self.cfg = cfg

    def camera(self, cfg):
        from camhub_node.simcam import SimCamera
        return SimCamera(cfg.node_id, cfg.frame_size, cfg.jpeg_quality, cfg.fps)

    def address(self):
        return (self.cfg.advertise_host if self.cfg else None) or "127.0.0.1"

    def bind_host(self):
        """Loopback only unless the node is advertised on another address."""
        return "127.0.0.1" if self.address() in _LOOPBACK else "0.0.0.0"

    def prepare_viewer(self, sock):
        # Linux grows a socket's send buffer to megabytes, where frames would queue for seconds
        # behind a slow viewer; the board's lwIP buffer holds a few KB. Keep the PC close to that
        # so the fan-out, not the kernel, decides what a slow viewer gets.
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        except OSError:
            pass

    def network_ready(self):
        return True

    def ticks_ms(self):
        """Integer milliseconds, wrapping at 2**29 like the board's ``supervisor.ticks_ms()``."""
        return _ticks_ms()

    def wall_time(self):
        ns = time.time_ns()
        return ns // 1000000000, (ns // 1000) % 1000000

    def free_heap(self):
        return None  # no such figure for a PC process

    def rssi(self):
        return None

    def tick(self, node):
        pass  # no watchdog, no Wi-Fi

    def install_stop(self, callback):
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, callback)

    def log(self, node_id, message):
        self._log.info("[%s] %s", node_id, message)

    def log_exception(self, node_id, message, error):
        self._log.error("[%s] %s: %s", node_id, message, error, exc_info=error)

    def bad_settings(self, error):
        print("camhub node: bad settings: %s" % error, file=sys.stderr)
        raise SystemExit(2)

    def fatal(self, error):
        self._log.error("node cannot run: %s", error, exc_info=error)
        print("camhub node: cannot run: %s" % error, file=sys.stderr)
        raise SystemExit(1)

    def finished(self):
        return 0
