"""Stand-ins for the CircuitPython modules a real board has: ``board``, ``busio``, ``espcamera``,
``microcontroller``, ``wifi``, ``socketpool`` and ``supervisor`` (hardware that cannot exist on a PC).

They follow the documented behaviour the node relies on and record what it asked for:

- ``board``: per board, the pin names and GPIOs of CircuitPython's
  ``ports/espressif/boards/<board_id>/pins.c`` (cited in ``BOARDS``); ``board.I2C()`` is the
  board's default bus (``mpconfigboard.h`` ``DEFAULT_I2C_BUS_SCL``/``SDA``).
- ``espcamera.Camera``: the signature of CircuitPython's ``shared-bindings/espcamera/Camera.c``
  (docs.circuitpython.org, ``espcamera.Camera``): keyword-only arguments, exactly 8 data pins,
  ``jpeg_quality`` 2-55, ``framebuffer_count`` 1-2 -- anything else raises as the real one does.
  Every camera made is recorded with its arguments and whether Wi-Fi was up at that moment.
- ``wifi.radio``: ``connect()``, ``connected``, ``power_management`` (CircuitPython 10,
  ``wifi.PowerManagement.NONE/MIN/MAX``), ``hostname``, ``mac_address``, ``ipv4_address``.
"""

from __future__ import annotations

import sys
import types

import pytest

from camhub_node.config import FRAME_SIZES


class Pin:
    """A ``microcontroller.Pin``: which GPIO it is."""

    def __init__(self, number: int) -> None:
        self.number = number

    def __repr__(self) -> str:
        return f"GPIO{self.number}"


GPIO = {n: Pin(n) for n in range(49)}  # ESP32-S3: GPIO0..GPIO48

# Each board's CircuitPython definition (pins.c), as GPIO numbers; "I2C" is its default bus (scl, sda).
BOARDS: dict[str, dict[str, object]] = {
    # ports/espressif/boards/adafruit_esp32s3_camera/pins.c and mpconfigboard.h (I2C: SCL 33, SDA 34)
    "adafruit_esp32s3_camera": {
        "CAMERA_DATA": (13, 15, 16, 14, 12, 10, 9, 7), "CAMERA_XCLK": 8, "CAMERA_PCLK": 11, "CAMERA_VSYNC": 5,
        "CAMERA_HREF": 6, "CAMERA_PWDN": 21, "CAMERA_RESET": 47, "SDA": 34, "SCL": 33, "I2C": (33, 34),
    },
    # ports/espressif/boards/espressif_esp32s3_eye/pins.c
    "espressif_esp32s3_eye": {
        "CAMERA_DATA": (11, 9, 8, 10, 12, 18, 17, 16), "CAMERA_XCLK": 15, "CAMERA_PCLK": 13, "CAMERA_VSYNC": 6,
        "CAMERA_HREF": 7, "SDA": 4, "SCL": 5, "I2C": (5, 4),
    },
    # ports/espressif/boards/seeed_xiao_esp32_s3_sense/pins.c and mpconfigboard.h (I2C: SCL 6, SDA 5)
    "seeed_xiao_esp32_s3_sense": {
        "CAM_DATA": (15, 17, 18, 16, 14, 12, 11, 48), "CAM_XCLK": 10, "CAM_PCLK": 13, "CAM_VSYNC": 38,
        "CAM_HREF": 47, "CAM_SCL": 39, "CAM_SDA": 40, "SDA": 5, "SCL": 6, "I2C": (6, 5),
    },
    # The generic build a Freenove ESP32-S3-WROOM CAM runs: no camera names at all.
    "espressif_esp32s3_devkitc_1_n8r8": {"SDA": 8, "SCL": 9, "I2C": (9, 8)},
    # Some other camera board flashed with a generic build, for CAMHUB_CAMERA_PINS.
    "espressif_esp32s3_devkitc_1_n16r8": {"SDA": 8, "SCL": 9, "I2C": (9, 8)},
}


class I2C:
    """``busio.I2C`` (and the bus ``board.I2C()`` returns)."""

    def __init__(self, scl: Pin, sda: Pin, *, frequency: int = 100000, timeout: int = 255) -> None:
        if not isinstance(scl, Pin) or not isinstance(sda, Pin):
            raise TypeError("scl and sda must be pins")
        self.scl, self.sda = scl, sda


class Radio:
    def __init__(self) -> None:
        self.connected = False
        self.hostname = "cpy-000000"
        self.mac_address = bytes.fromhex("f412fa5b0c42")
        self.ipv4_address = None
        self.power_management = PowerManagement.MIN  # CircuitPython's default: some power saving
        self.connects: list[str] = []

    def connect(self, ssid: str, password: str = "") -> None:
        self.connects.append(ssid)
        self.connected = True
        self.ipv4_address = "192.168.1.50"


class PowerManagement:
    NONE = "PowerManagement.NONE"
    MIN = "PowerManagement.MIN"
    MAX = "PowerManagement.MAX"


class Camera:
    """``espcamera.Camera`` as CircuitPython documents its constructor."""

    made: list[Camera] = []

    def __init__(self, *, data_pins, pixel_clock_pin, vsync_pin, href_pin, i2c, external_clock_pin=None,
                 external_clock_frequency=20_000_000, powerdown_pin=None, reset_pin=None,
                 pixel_format="PixelFormat.RGB565", frame_size="FrameSize.QQVGA", jpeg_quality=15,
                 framebuffer_count=1, grab_mode="GrabMode.WHEN_EMPTY") -> None:
        if len(data_pins) != 8 or not all(isinstance(p, Pin) for p in data_pins):
            raise ValueError("data_pins must be 8 pins")
        for pin in (pixel_clock_pin, vsync_pin, href_pin):
            if not isinstance(pin, Pin):
                raise TypeError("a camera signal must be a pin")
        for pin in (external_clock_pin, powerdown_pin, reset_pin):
            if pin is not None and not isinstance(pin, Pin):
                raise TypeError("a camera signal must be a pin or None")
        if not isinstance(i2c, I2C):
            raise TypeError("i2c must be a busio.I2C")
        if not 2 <= jpeg_quality <= 55:
            raise ValueError("jpeg_quality must be 2-55")
        if not 1 <= framebuffer_count <= 2:
            raise ValueError("framebuffer_count must be 1-2")
        self.args = {
            "data_pins": data_pins, "pixel_clock_pin": pixel_clock_pin, "vsync_pin": vsync_pin, "href_pin": href_pin,
            "i2c": i2c, "external_clock_pin": external_clock_pin, "external_clock_frequency": external_clock_frequency,
            "powerdown_pin": powerdown_pin, "reset_pin": reset_pin, "pixel_format": pixel_format,
            "frame_size": frame_size, "jpeg_quality": jpeg_quality, "framebuffer_count": framebuffer_count,
            "grab_mode": grab_mode,
        }
        self.wifi_was_up = sys.modules["wifi"].radio.connected
        self.sensor_name = "OV5640"
        Camera.made.append(self)


def _module(name: str, **names: object) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(names)
    return module


def _board(board_id: str) -> types.ModuleType:
    pins = BOARDS[board_id]
    module = _module("board", board_id=board_id)
    for name, value in pins.items():
        if name == "I2C":
            scl, sda = value
            bus = I2C(GPIO[scl], GPIO[sda])
            module.I2C = lambda bus=bus: bus  # a singleton, as board.I2C() is
        elif isinstance(value, tuple):
            setattr(module, name, tuple(GPIO[n] for n in value))
        else:
            setattr(module, name, GPIO[value])
    return module


NODE_MODULES = ("camhub_node.board", "camhub_node.boardcam")


def install(monkeypatch: pytest.MonkeyPatch, board_id: str) -> types.ModuleType:
    """Put this board's stand-in modules in ``sys.modules`` (and forget node modules that imported others)."""
    Camera.made = []
    radio = Radio()
    modules = {
        "board": _board(board_id),
        "busio": _module("busio", I2C=I2C),
        "microcontroller": _module("microcontroller", pin=types.SimpleNamespace(
            **{f"GPIO{n}": pin for n, pin in GPIO.items()})),
        "espcamera": _module(
            "espcamera", Camera=Camera,
            PixelFormat=types.SimpleNamespace(JPEG="PixelFormat.JPEG", RGB565="PixelFormat.RGB565"),
            FrameSize=types.SimpleNamespace(**{name: f"FrameSize.{name}" for name in FRAME_SIZES}),
            GrabMode=types.SimpleNamespace(WHEN_EMPTY="GrabMode.WHEN_EMPTY", LATEST="GrabMode.LATEST")),
        "wifi": _module("wifi", radio=radio, PowerManagement=PowerManagement),
        "socketpool": _module("socketpool", SocketPool=lambda radio: types.SimpleNamespace(radio=radio)),
        "supervisor": _module("supervisor", ticks_ms=lambda: 0),
    }
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    for name in NODE_MODULES:
        monkeypatch.delitem(sys.modules, name, raising=False)
    return modules["wifi"]
