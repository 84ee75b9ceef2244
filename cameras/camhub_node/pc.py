"""What the two PC platforms share (``host.py`` on CPython, ``unixport.py`` on MicroPython's Unix port).

Both stand in for a board on this PC: loopback unless advertised elsewhere, short blocking windows,
no watchdog, no Wi-Fi. Plain code that runs on either interpreter.
"""

import os
import sys
import time

from camhub_node import scene
from camhub_node.keys import ENVIRONMENT_NOTE

# How ``camhub.sim`` talks to the PC platforms: environment variables, never settings (not in keys.py).
# The frames, stop file and quiet flag of the MicroPython VM; the deep-sleep runner's folder (simalarm);
# a battery voltage for the stand-in battery monitor.
VM_KEYS = ("CAMHUB_VM_FRAMES", "CAMHUB_VM_STOP", "CAMHUB_VM_QUIET", "CAMHUB_VM_ALARM", "CAMHUB_VM_BATTERY_MV")

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

    def resume_scene(self, camera, cfg):
        """``camera``; in snapshot mode, each wake (a fresh start) goes on where a sensor running since
        the epoch at ``cfg.fps`` would be, so consecutive wakes film different moments of the scene."""
        if cfg.mode == "snapshot":
            camera.skip_to(time.time_ns() // 1000000 * cfg.fps // 1000)
        return camera

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

    # ---- snapshot mode: deep sleep, the wake pin, the battery ------------------------------------

    def alarm(self):
        """CircuitPython's ``alarm`` module, as the stand-in ``simalarm`` (a PC cannot deep-sleep)."""
        from camhub_node import simalarm

        return simalarm

    def wake_pin(self, cfg):
        return str(cfg.wake_pin)  # a name only: camhub.sim.sleep fires it on SIGUSR1

    def pin_level(self, pin):
        return None  # no pins on a PC: never at the wake level when the node goes to sleep

    def battery_v(self):
        """A stand-in for a board's battery monitor: CAMHUB_VM_BATTERY_MV if the runner gives one."""
        raw = os.getenv("CAMHUB_VM_BATTERY_MV")
        try:
            return round(int(raw) / 1000, 2) if raw else None
        except ValueError:
            return None

    def before_deep_sleep(self, camera):
        return ()  # no pins to hold low or high through the sleep

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
