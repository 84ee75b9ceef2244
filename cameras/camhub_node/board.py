"""The board platform: Wi-Fi, socketpool, the camera (``boardcam``), the watchdog and mDNS.

CircuitPython only (ESP32-S3 with PSRAM). Before anything starts, the settings are checked against
the board: a camera pin map must exist and the sockets must fit (``check_settings``). Wi-Fi comes
up first, without power saving, and only then the camera (circuitpython#9241).
"""

import gc
import os
import time

import board
import microcontroller
import socketpool
import supervisor
import wifi
from adafruit_ticks import ticks_add, ticks_less

from camhub_node.boardcam import BoardCamera, board_pin, pin_map
from camhub_node.config import check_socket_budget

WIFI_BACKOFF_MAX_S = 60
WAKE_WIFI_TRIES = 3  # snapshot mode: attempts to join Wi-Fi before a wake gives up and sleeps
BATTERY_PINS = ("BATTERY_MONITOR", "VOLTAGE_MONITOR", "BATTERY")  # board names of a battery divider
SETTINGS_FILE = "/settings.toml"  # what os.getenv reads: the drive's root


def _mac_suffix():
    return "".join("%02x" % b for b in wifi.radio.mac_address[-3:])


def _no_power_saving():
    """Wi-Fi power saving costs streaming throughput; CircuitPython 10 lets it be turned off."""
    modes = getattr(wifi, "PowerManagement", None)
    if modes is not None:
        try:
            wifi.radio.power_management = modes.NONE
        except (AttributeError, ValueError, RuntimeError) as error:
            print("camhub: cannot turn Wi-Fi power saving off: %s" % error)


class BoardPlatform:
    """What the node needs from its platform, on an ESP32-S3 board."""

    settings_where = "settings.toml"
    settings_note = None

    def __init__(self):
        self.board_name = board.board_id
        self.pool = None
        self.cfg = None
        self._mdns = None
        self._watchdog = None
        self._wifi_backoff = 1
        self._wifi_retry_at = None  # ticks_ms of the next reconnect attempt, None: at once

    def defaults(self):
        return {"CAMHUB_NODE_ID": "cam-" + _mac_suffix()}

    def setting_names(self):
        """The keys of settings.toml: os.getenv reads them but cannot list them, so read the file."""
        from camhub_node.keys import file_keys

        return file_keys(SETTINGS_FILE)

    def check_settings(self, cfg):
        """ConfigError unless the settings fit this board: a camera pin map, sockets, the wake pin."""
        pin_map(cfg)
        check_socket_budget(cfg, web_workflow=bool(os.getenv("CIRCUITPY_WEB_API_PASSWORD")))
        if cfg.wake_pin is not None:
            self.wake_pin(cfg)

    # ---- snapshot mode: deep sleep, the wake pin, the battery ----------------------------------

    def alarm(self):
        import alarm

        return alarm

    def wake_pin(self, cfg):
        """The ``microcontroller.Pin`` of CAMHUB_WAKE_PIN; ConfigError if this build has no such pin."""
        return board_pin(cfg.wake_pin, "CAMHUB_WAKE_PIN", "give its GPIO number (an RTC GPIO, 0 to 21)")

    def pin_level(self, pin):
        import digitalio

        with digitalio.DigitalInOut(pin) as io:
            return io.value

    def battery_v(self):
        """The battery's voltage, where the board names a battery divider (``board.BATTERY_MONITOR`` on
        the MEMENTO, ``VOLTAGE_MONITOR`` or ``BATTERY`` on others): the ADC reading times two, the 1:2
        divider Adafruit boards use (adafruit_pycamera-based code reads the MEMENTO's the same way).
        None where the board names none."""
        for name in BATTERY_PINS:
            pin = getattr(board, name, None)
            if pin is not None:
                import analogio

                with analogio.AnalogIn(pin) as adc:
                    return round(adc.value / 65535 * adc.reference_voltage * 2, 2)
        return None

    def before_deep_sleep(self, camera):
        """Power the sensor down for the sleep: ``deinit`` the camera and hold its power-down line
        high through the deep sleep (``preserve_dios``), where the board wires one."""
        if camera is None:
            return ()
        return camera.power_down()

    # ---- network ---------------------------------------------------------------------------

    def _connect_wifi(self):
        ssid = os.getenv("CIRCUITPY_WIFI_SSID")
        if not ssid:
            raise RuntimeError("CIRCUITPY_WIFI_SSID is not set in settings.toml")
        wifi.radio.connect(ssid, os.getenv("CIRCUITPY_WIFI_PASSWORD") or "")

    def start(self, cfg):
        """Join Wi-Fi (retrying with backoff), then the socket pool, mDNS and the watchdog.

        In snapshot mode the join is bounded (WAKE_WIFI_TRIES) and raises: a battery camera that
        cannot join goes back to sleep rather than drain its battery retrying; it needs no mDNS.
        """
        self.cfg = cfg
        snapshot = cfg.mode == "snapshot"
        hostname = os.getenv("CIRCUITPY_WIFI_HOSTNAME") or ("camhub-" + cfg.node_id)
        try:
            wifi.radio.hostname = hostname
        except (ValueError, RuntimeError):
            pass
        delay = 1
        tries = 0
        while not wifi.radio.connected:  # the web workflow may have connected already
            try:
                self._connect_wifi()
            except (ConnectionError, OSError) as error:
                tries += 1
                if snapshot and tries >= WAKE_WIFI_TRIES:
                    raise
                print("camhub: Wi-Fi connect failed (%s); retrying in %d s" % (error, delay))
                time.sleep(delay)
                delay = min(delay * 2, WIFI_BACKOFF_MAX_S)
        if not snapshot:
            _no_power_saving()  # a stream wants throughput; a wake sends one picture and sleeps
        self.pool = socketpool.SocketPool(wifi.radio)
        if snapshot:
            self._start_watchdog(cfg)
            return
        try:
            import mdns

            self._mdns = mdns.Server(wifi.radio)
            self._mdns.hostname = hostname
            self._mdns.advertise_service(service_type="_http", protocol="_tcp", port=cfg.http_port)
        except Exception as error:  # e.g. the web workflow already runs the one mDNS server
            print("camhub: mDNS not available: %s" % error)
        self._start_watchdog(cfg)

    def _start_watchdog(self, cfg):
        if cfg.watchdog_s:
            from watchdog import WatchDogMode

            self._watchdog = microcontroller.watchdog
            self._watchdog.timeout = cfg.watchdog_s
            self._watchdog.mode = WatchDogMode.RESET
            self._watchdog.feed()

    def network_ready(self):
        return wifi.radio.connected

    def address(self):
        ip = wifi.radio.ipv4_address
        return str(ip) if ip else "0.0.0.0"

    def bind_host(self):
        return "0.0.0.0"

    def prepare_viewer(self, sock):
        pass  # lwIP's send buffer is already small

    def camera(self, cfg):
        # Only once Wi-Fi is up (start() waits for it): on the MEMENTO a camera created before
        # Wi-Fi breaks Wi-Fi (circuitpython#9241).
        if not wifi.radio.connected:
            raise RuntimeError("the camera must be created after Wi-Fi is up (circuitpython#9241)")
        return BoardCamera(cfg)

    def tick(self, node):
        """Once a second from the main loop: feed the watchdog, rejoin Wi-Fi with backoff."""
        if self._watchdog is not None:
            self._watchdog.feed()
        if wifi.radio.connected:
            self._wifi_backoff = 1
            self._wifi_retry_at = None
            return
        now = supervisor.ticks_ms()
        if self._wifi_retry_at is not None and ticks_less(now, self._wifi_retry_at):
            return
        try:
            self._connect_wifi()
            node.log("Wi-Fi back, address %s" % self.address())
            self._wifi_backoff = 1
            self._wifi_retry_at = None
        except (ConnectionError, OSError, RuntimeError) as error:
            node.log("Wi-Fi reconnect failed (%s); next try in %d s" % (error, self._wifi_backoff))
            self._wifi_retry_at = ticks_add(now, self._wifi_backoff * 1000)
            self._wifi_backoff = min(self._wifi_backoff * 2, WIFI_BACKOFF_MAX_S)

    # ---- clocks and figures ----------------------------------------------------------------

    def ticks_ms(self):
        # Integer ms wrapping at 2**29: time.monotonic() is a single-precision float here and
        # steps by 250 ms after 30 days of uptime.
        return supervisor.ticks_ms()

    def wall_time(self):
        # Without NTP the board's clock starts at 2000-01-01; the hub then uses arrival time.
        return time.time(), 0

    def free_heap(self):
        return gc.mem_free()

    def heap_size(self):
        return gc.mem_free() + gc.mem_alloc()

    def rssi(self):
        try:
            return wifi.radio.ap_info.rssi
        except AttributeError:  # not connected: ap_info is None
            return None

    # ---- life cycle ------------------------------------------------------------------------

    def install_stop(self, callback):
        pass  # a board runs until reset; Ctrl-C ends it with KeyboardInterrupt

    def log(self, node_id, message):
        # A stamp to read, not an interval: seconds of uptime are precise enough here.
        print("%d camhub[%s] %s" % (time.monotonic(), node_id, message))

    def log_exception(self, node_id, message, error):
        import traceback

        print("%d camhub[%s] %s:" % (time.monotonic(), node_id, message))
        traceback.print_exception(error)

    def warn(self, message):
        print("camhub: warning: %s" % message)

    def bad_settings(self, error):
        # Nothing to run until settings.toml is fixed (saving it reloads code.py); stay reachable
        # through the web workflow meanwhile.
        while True:
            print("camhub: bad settings: %s -- fix settings.toml" % error)
            time.sleep(30)

    def fatal(self, error):
        import traceback

        traceback.print_exception(error)
        print("camhub: fatal error; resetting in 10 s")
        time.sleep(10)
        microcontroller.reset()

    def finished(self):
        return 0
