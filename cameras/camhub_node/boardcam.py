"""The camera on a real board: its pin map (``pins.py`` or CAMHUB_CAMERA_PINS) and ``espcamera``.

CircuitPython only (ESP32-S3 with PSRAM). The camera is the built-in ``espcamera`` module:
``adafruit_ov5640`` needs ``imagecapture``, which CircuitPython never enabled on ESP32-S3 (and
dropped for Espressif in 9.0). ``espcamera.Camera`` takes keyword arguments only (CircuitPython
``shared-bindings/espcamera/Camera.c``; docs.circuitpython.org, ``espcamera.Camera``):
``data_pins`` (exactly 8), ``pixel_clock_pin``, ``vsync_pin``, ``href_pin``, ``i2c``,
``external_clock_pin=None``, ``external_clock_frequency=20_000_000``, ``powerdown_pin=None``,
``reset_pin=None``, ``pixel_format``, ``frame_size``, ``jpeg_quality`` (2-55), ``framebuffer_count``
(1-2) and ``grab_mode``. Create it only once Wi-Fi is up: on the MEMENTO a camera created first
breaks Wi-Fi (circuitpython#9241).
"""

import board
import busio
import espcamera
import microcontroller

from camhub_node.config import ConfigError
from camhub_node.pins import PIN_MAPS, SIGNALS, XCLK_HZ


def pin_map(cfg):
    """This board's camera pins: CAMHUB_CAMERA_PINS if set, else the map for ``board.board_id``.

    ConfigError if there is none, or if the CircuitPython build lacks one of its pins: found at
    start, before Wi-Fi, so the board reports bad settings instead of failing later.
    """
    pins = cfg.camera_pins
    if pins is None:
        pins = PIN_MAPS.get(board.board_id)
    if pins is None:
        raise ConfigError("camhub has no camera pin map for board %r: set CAMHUB_CAMERA_PINS in settings.toml "
                          "(README: 'Adding a board')" % board.board_id)
    for name in SIGNALS:
        value = pins.get(name)
        for one in value if isinstance(value, tuple) else (value,):
            _pin({name: one}, name)
    return pins


def _pin(pins, name):
    return board_pin(pins.get(name), "the camera's %s pin" % name, "set CAMHUB_CAMERA_PINS with GPIO numbers")


def board_pin(value, what, fix):
    """The pin for a GPIO number or a ``board`` name (None: not wired); ConfigError if the build lacks it."""
    if value is None:
        return None
    try:
        if isinstance(value, int):
            return getattr(microcontroller.pin, "GPIO%d" % value)
        return getattr(board, value)
    except AttributeError:
        where = "microcontroller.pin.GPIO%d" % value if isinstance(value, int) else "board." + value
        raise ConfigError("%s is %s, which this CircuitPython build for %r does not have: %s"
                          % (what, where, board.board_id, fix)) from None


def camera_arguments(cfg, pins):
    """The keyword arguments for ``espcamera.Camera`` (JPEG, two buffers, newest frame first)."""
    data = pins["data"]  # one tuple attribute of the board, or eight GPIO numbers
    data_pins = _pin(pins, "data") if isinstance(data, str) else tuple(_pin({"data": n}, "data") for n in data)
    # The sensor's own SCCB pins, or the board's I2C bus (which the MEMENTO's sensor shares).
    i2c = busio.I2C(_pin(pins, "scl"), _pin(pins, "sda")) if pins.get("sda") is not None else board.I2C()
    return {
        "data_pins": data_pins, "pixel_clock_pin": _pin(pins, "pclk"), "vsync_pin": _pin(pins, "vsync"),
        "href_pin": _pin(pins, "href"), "i2c": i2c,
        "external_clock_pin": _pin(pins, "xclk"), "external_clock_frequency": pins.get("xclk_hz", XCLK_HZ),
        # The driver pulses power-down and reset before probing the sensor (esp32-camera camera_probe).
        "powerdown_pin": _pin(pins, "pwdn"), "reset_pin": _pin(pins, "reset"),
        "pixel_format": espcamera.PixelFormat.JPEG,
        "frame_size": getattr(espcamera.FrameSize, cfg.frame_size),
        "jpeg_quality": cfg.jpeg_quality,
        "framebuffer_count": 2,
        # LATEST: take() returns the newest frame instead of one that waited in a buffer.
        "grab_mode": espcamera.GrabMode.LATEST,
    }


class BoardCamera:
    """``espcamera.Camera`` in JPEG mode, with the little the node needs on top."""

    def __init__(self, cfg):
        self.pins = pin_map(cfg)
        self.cam = espcamera.Camera(**camera_arguments(cfg, self.pins))
        self.sensor_name = self.cam.sensor_name
        self.frame_size = cfg.frame_size
        self.quality = cfg.jpeg_quality

    def take(self, timeout=1.0):
        """A read-only memoryview into the driver's buffer, valid until the next take()."""
        return self.cam.take(timeout)

    def power_down(self):
        """Release the camera and hold the sensor's power-down line high (powered down): the
        ``DigitalInOut`` to pass to ``alarm.exit_and_deep_sleep_until_alarms(preserve_dios=...)``."""
        self.cam.deinit()
        pwdn = _pin(self.pins, "pwdn")
        if pwdn is None:
            return ()
        import digitalio

        line = digitalio.DigitalInOut(pwdn)
        line.switch_to_output(value=True)
        return (line,)

    def reconfigure(self, frame_size=None, quality=None):
        if frame_size and frame_size != self.frame_size:
            self.cam.reconfigure(frame_size=getattr(espcamera.FrameSize, frame_size))
            self.frame_size = frame_size
        if quality is not None and quality != self.quality:
            self.cam.quality = quality
            self.quality = quality
