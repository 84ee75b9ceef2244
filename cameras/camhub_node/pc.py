"""What the two PC platforms share (``host.py`` on CPython, ``unixport.py`` on MicroPython's Unix port).

Both stand in for a board on this PC: loopback unless advertised elsewhere, short blocking windows,
no watchdog, no Wi-Fi. Plain code that runs on either interpreter.
"""

import os
import sys

from camhub_node import scene
from camhub_node.keys import ENVIRONMENT_NOTE

_LOOPBACK = ("127.0.0.1", "localhost", "::1")
SEND_BUFFER = 32768  # bytes asked for; Linux doubles it


class PcPlatform:
    """The board-less parts of a PC platform; subclasses add sockets, camera, clocks and logging."""

    board_name = "simulated"
    cfg = None
    pool = None  # the socket pool: needs SOL_SOCKET and SO_SNDBUF
    scene_kind = scene.DEFAULT_SCENE  # what the simulated camera shows (scene.py)
    period_ms = scene.PERIOD_S * 1000
    # `camhub node --sim` hands the node its settings in the environment, where os.getenv reads them;
    # subclasses list the names there (setting_names).
    settings_where = "the environment"
    settings_note = ENVIRONMENT_NOTE

    def defaults(self):
        # Short blocking windows on a PC: a silent HTTP client or an MQTT read costs at most this.
        return {"CAMHUB_NODE_ID": "sim1", "CAMHUB_HTTP_TIMEOUT_MS": "100", "CAMHUB_MQTT_TIMEOUT_MS": "50",
                "CAMHUB_WATCHDOG_S": "0"}

    def check_settings(self, cfg):
        """The simulated camera's scene: ``CAMHUB_SIM_SCENE``, ``CAMHUB_SIM_PERIOD_S`` (ConfigError if bad)."""
        self.scene_kind, self.period_ms = scene.settings(os.getenv)

    def start(self, cfg):
        self.cfg = cfg

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
            sock.setsockopt(self.pool.SOL_SOCKET, self.pool.SO_SNDBUF, SEND_BUFFER)
        except OSError:
            pass

    def network_ready(self):
        return True

    def rssi(self):
        return None

    def tick(self, node):
        pass  # no watchdog, no Wi-Fi

    def warn(self, message):
        print("camhub node: warning: %s" % message, file=sys.stderr)

    def bad_settings(self, error):
        print("camhub node: bad settings: %s" % error, file=sys.stderr)
        raise SystemExit(2)

    def finished(self):
        return 0
