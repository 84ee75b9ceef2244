"""The node's settings: every key read with ``os.getenv``, given a default, and validated.

On the board ``os.getenv`` reads ``settings.toml`` (flat ``KEY = value``; CircuitPython has no TOML
floats, so sub-second times are whole milliseconds). On a PC ``camhub node --sim`` exports the same
keys to the environment first. A bad value raises ``ConfigError`` naming the key; secrets are never
echoed. Runs on CircuitPython and CPython alike.
"""

import os

from camhub_node.pins import PIN_MAPS, REQUIRED, SIGNALS

# espcamera.FrameSize names and their pixel sizes (esp32-camera's resolution table).
FRAME_SIZES = {
    "R96X96": (96, 96), "QQVGA": (160, 120), "QCIF": (176, 144), "HQVGA": (240, 176),
    "R240X240": (240, 240), "QVGA": (320, 240), "CIF": (400, 296), "HVGA": (480, 320),
    "VGA": (640, 480), "SVGA": (800, 600), "XGA": (1024, 768), "HD": (1280, 720),
    "SXGA": (1280, 1024), "UXGA": (1600, 1200), "FHD": (1920, 1080), "P_HD": (720, 1280),
    "P_3MP": (864, 1536), "QXGA": (2048, 1536), "QHD": (2560, 1440), "WQXGA": (2560, 1600),
    "P_FHD": (1080, 1920), "QSXGA": (2560, 1920),
}

FPS_MAX = 30
# espcamera.Camera accepts jpeg_quality 2 (best) to 55 (smallest files) (CircuitPython
# shared-bindings/espcamera/Camera.c; docs.circuitpython.org, espcamera.Camera).
QUALITY_MIN = 2
QUALITY_MAX = 55
MAX_CLIENTS_MAX = 8  # the board has 8 sockets in all (CONFIG_LWIP_MAX_SOCKETS)
BOARD_SOCKETS = 8  # CircuitPython 10's Espressif network stack: 8 sockets system-wide
WEB_WORKFLOW_SOCKETS = 3  # what the web workflow may hold (CircuitPython 10), when it runs
GPIO_MAX = 48  # ESP32-S3: GPIO0..GPIO48
# Only RTC GPIOs can wake an ESP32-S3 from deep sleep (CircuitPython ports/espressif/common-hal/alarm/pin/
# PinAlarm.c: "Can only alarm on RTC IO from deep sleep."); on the ESP32-S3 those are GPIO0..GPIO21.
RTC_GPIO_MAX = 21
MODES = ("stream", "snapshot")
INTERVAL_MAX_S = 7 * 86400

# What ``set`` accepts, announced so the hub (dashboard, Home Assistant) offers exactly this; built once.
CONTROLS = {
    "fps": [1, FPS_MAX],
    "jpeg_quality": [QUALITY_MIN, QUALITY_MAX],
    "frame_size": sorted(FRAME_SIZES, key=lambda n: (FRAME_SIZES[n][0] * FRAME_SIZES[n][1], n)),
}

# What ``set`` accepts (the keys of CONTROLS, in this order): the node's handler and the hub's check.
SETTABLE = ("fps", "jpeg_quality", "frame_size")

# The one id rule for a camera (a node's CAMHUB_NODE_ID, a CAMHUB_SOURCES entry, a fleet board): the
# node refuses to start with any other id, the hub refuses any other announce, the API any other path,
# deploy any other board. It is a topic level, a URL path segment and a file name.
ID_MAX_LEN = 32
_ID_FIRST = "abcdefghijklmnopqrstuvwxyz0123456789"
_ID_CHARS = _ID_FIRST + "-_"
ID_RULE = "1 to 32 of a-z 0-9 _ -, starting with a letter or digit"
_SECRET_KEYS = ("CAMHUB_MQTT_PASSWORD", "CIRCUITPY_WIFI_PASSWORD", "CIRCUITPY_WEB_API_PASSWORD")


class ConfigError(ValueError):
    """A setting that cannot be used; the message names the key."""


def _shown(key, raw):
    return "(hidden)" if key in _SECRET_KEYS else repr(raw)


def _raw(getenv, key, default):
    value = getenv(key)
    if value is None:
        return default
    if isinstance(value, str):
        value = value.strip()
        if value == "":
            return default
    return value


def _int(getenv, key, default, low, high):
    raw = _raw(getenv, key, default)
    try:
        value = int(raw)
        if isinstance(raw, float) or (isinstance(raw, str) and "." in raw):
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError("%s must be a whole number from %d to %d, not %s"
                          % (key, low, high, _shown(key, raw))) from None
    if not low <= value <= high:
        raise ConfigError("%s must be from %d to %d, not %d" % (key, low, high, value))
    return value


def _text(getenv, key, default, max_len=128):
    raw = _raw(getenv, key, default)
    if raw is None:
        return None
    value = str(raw)
    if len(value) > max_len:
        raise ConfigError("%s is longer than %d characters" % (key, max_len))
    for ch in value:
        if ord(ch) < 32:
            raise ConfigError("%s contains a control character" % key)
    return value


def is_valid_id(value):
    """Whether ``value`` is a camera id by the one rule (ID_RULE)."""
    if not isinstance(value, str) or not 0 < len(value) <= ID_MAX_LEN or value[0] not in _ID_FIRST:
        return False
    return all(ch in _ID_CHARS for ch in value)


def check_node_id(value, key="CAMHUB_NODE_ID"):
    """The node's id, or ConfigError: the hub would refuse every announce of a node with another."""
    if not is_valid_id(value):
        raise ConfigError("%s must be %s (the hub refuses any other), not %r" % (key, ID_RULE, value))
    return value


def check_frame_size(value, key="CAMHUB_FRAME_SIZE"):
    """A known espcamera frame size name (any case); returns the upper-case name."""
    name = str(value).strip().upper()
    if name not in FRAME_SIZES:
        raise ConfigError("%s must be one of %s, not %r" % (key, ", ".join(sorted(FRAME_SIZES)), value))
    return name


def check_fps(value, key="CAMHUB_FPS"):
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= FPS_MAX:
        raise ConfigError("%s must be a whole number from 1 to %d, not %r" % (key, FPS_MAX, value))
    return value


def check_quality(value, key="CAMHUB_JPEG_QUALITY"):
    if isinstance(value, bool) or not isinstance(value, int) or not QUALITY_MIN <= value <= QUALITY_MAX:
        raise ConfigError("%s must be a whole number from %d (best) to %d, not %r"
                          % (key, QUALITY_MIN, QUALITY_MAX, value))
    return value


def parse_wake_pin(text, key="CAMHUB_WAKE_PIN"):
    """``(pin, value)`` from ``"A0"``, ``"17"`` or ``"17:low"``: a board pin name or a GPIO number,
    waking on high (a PIR sensor's output) unless ``:low`` (a button to ground, with the pull-up on).
    A GPIO number must be an RTC GPIO (0 to 21), the only ones that wake an ESP32-S3 from deep sleep."""
    name, _, level = text.strip().partition(":")
    level = level.strip().lower()
    if level not in ("", "high", "low"):
        raise ConfigError("%s: the level after ':' must be high or low, not %r" % (key, level))
    pin = _pin_value(key, "wake", name.strip())
    if pin is None:
        raise ConfigError("%s: -1 is no pin; leave the setting empty for no wake pin" % key)
    if isinstance(pin, int) and pin > RTC_GPIO_MAX:
        raise ConfigError("%s: GPIO%d cannot wake an ESP32-S3 from deep sleep: only RTC GPIOs 0 to %d can"
                          % (key, pin, RTC_GPIO_MAX))
    return pin, level != "low"


def read_set(request, fps, quality, frame_size):
    """A ``set`` request (a dict, untrusted) checked against the current ``fps``, ``quality`` and
    ``frame_size``: the new ``(fps, quality, frame_size)``, or ConfigError saying why nothing changes."""
    if not isinstance(request, dict) or not request:
        raise ConfigError("expected a JSON object with fps, jpeg_quality and/or frame_size")
    for key in request:
        if key not in SETTABLE:
            raise ConfigError("unknown key %r" % (key,))
    if "fps" in request:
        fps = check_fps(request["fps"], "fps")
    if "jpeg_quality" in request:
        quality = check_quality(request["jpeg_quality"], "jpeg_quality")
    if "frame_size" in request:
        if not isinstance(request["frame_size"], str):
            raise ConfigError("frame_size must be a string")
        frame_size = check_frame_size(request["frame_size"], "frame_size")
    return fps, quality, frame_size


def _pin_value(key, name, raw):
    if raw == "-1":
        return None  # not wired, as esp32-camera's board tables write it
    if raw.isdigit():
        gpio = int(raw)
        if gpio > GPIO_MAX:
            raise ConfigError("%s: %s=%s is not an ESP32-S3 GPIO (0 to %d)" % (key, name, raw, GPIO_MAX))
        return gpio
    if raw and not raw[0].isdigit() and all(c.isalpha() or c.isdigit() or c == "_" for c in raw):
        return raw  # a board attribute, e.g. CAMERA_XCLK
    raise ConfigError("%s: %s=%r is neither a GPIO number nor a board pin name" % (key, name, raw))


def parse_camera_pins(text, key="CAMHUB_CAMERA_PINS"):
    """A pin map (see ``pins.py``) from a known board's name or from explicit pins.

    ``"data=11,9,8,10,12,18,17,16 xclk=15 pclk=13 vsync=6 href=7 sda=4 scl=5 pwdn=-1 reset=-1"``:
    GPIO numbers (D0..D7 for data), board pin names (``data=CAMERA_DATA``), -1 for "not wired",
    and optionally ``xclk_hz=``. Without sda/scl the sensor is on ``board.I2C()``.
    """
    text = text.strip()
    if text in PIN_MAPS:
        return PIN_MAPS[text]
    if "=" not in text:
        raise ConfigError("%s must name a known board (%s) or list pins like 'data=11,9,8,10,12,18,17,16 "
                          "xclk=15 pclk=13 vsync=6 href=7 sda=4 scl=5', not %r"
                          % (key, ", ".join(sorted(PIN_MAPS)), text))
    pins = {"name": "CAMHUB_CAMERA_PINS", "sensor": None}
    for field in text.replace(";", " ").split():
        name, raw = (field.split("=", 1) + [""])[:2]
        name = name.lower()
        if name in pins:
            raise ConfigError("%s names %s twice" % (key, name))
        if name == "xclk_hz":
            if not raw.isdigit() or not 1000000 <= int(raw) <= 40000000:
                raise ConfigError("%s: xclk_hz must be from 1000000 to 40000000, not %r" % (key, raw))
            pins[name] = int(raw)
        elif name == "data" and "," in raw:
            data = tuple(_pin_value(key, name, part.strip()) for part in raw.split(","))
            if len(data) != 8 or None in data:
                raise ConfigError("%s: data needs exactly 8 pins, D0 to D7 (espcamera takes 8), not %r" % (key, raw))
            pins[name] = data
        elif name in SIGNALS:
            pins[name] = _pin_value(key, name, raw.strip())
        else:
            raise ConfigError("%s: unknown pin %r (known: %s, xclk_hz)" % (key, name, ", ".join(SIGNALS)))
    for name in REQUIRED:
        if pins.get(name) is None:
            raise ConfigError("%s needs %s= (required: %s)" % (key, name, ", ".join(REQUIRED)))
    if (pins.get("sda") is None) != (pins.get("scl") is None):
        raise ConfigError("%s: give both sda= and scl=, or neither (then board.I2C() is used)" % key)
    gpios = list(pins["data"]) if isinstance(pins["data"], tuple) else []
    for name in SIGNALS[1:]:
        if isinstance(pins.get(name), int):
            gpios.append(pins[name])
    for gpio in gpios:
        if gpios.count(gpio) > 1:
            raise ConfigError("%s uses GPIO%d for two signals" % (key, gpio))
    return pins


def check_socket_budget(cfg, web_workflow, total=BOARD_SOCKETS):
    """Raise ConfigError unless the node's sockets fit the board's: the stream listener, MQTT,
    CAMHUB_MAX_CLIENTS viewers and what the web workflow may hold (when it runs)."""
    mqtt = 1 if cfg.mqtt_host else 0
    web = WEB_WORKFLOW_SOCKETS if web_workflow else 0
    need = 1 + mqtt + cfg.max_clients + web
    if need > total:
        parts = ["the stream listener 1"]
        if mqtt:
            parts.append("MQTT 1")
        if web:
            parts.append("the web workflow up to %d (CIRCUITPY_WEB_API_PASSWORD is set)" % web)
        raise ConfigError("CAMHUB_MAX_CLIENTS = %d does not fit this board's %d sockets: %s leave room for at "
                          "most %d viewers" % (cfg.max_clients, total, ", ".join(parts), total - 1 - mqtt - web))


class Config:
    """Validated settings as attributes (names follow the keys, lower case, without the prefix)."""

    def __init__(self, getenv=None, defaults=None):
        defaults = defaults or {}

        def env(key):
            value = (getenv or os.getenv)(key)
            if value is None or (isinstance(value, str) and value.strip() == ""):
                return defaults.get(key)
            return value

        self.node_id = check_node_id(_text(env, "CAMHUB_NODE_ID", "cam1", 32))
        self.name = _text(env, "CAMHUB_NODE_NAME", self.node_id, 64)
        self.mqtt_host = _text(env, "CAMHUB_MQTT_HOST", None, 253)
        self.mqtt_port = _int(env, "CAMHUB_MQTT_PORT", 1883, 1, 65535)
        self.mqtt_user = _text(env, "CAMHUB_MQTT_USER", None, 128)
        self.mqtt_password = _text(env, "CAMHUB_MQTT_PASSWORD", None, 128)
        self.mqtt_keepalive_s = _int(env, "CAMHUB_MQTT_KEEPALIVE_S", 60, 2, 3600)
        self.mqtt_timeout_s = _int(env, "CAMHUB_MQTT_TIMEOUT_MS", 250, 10, 5000) / 1000
        prefix = _text(env, "CAMHUB_TOPIC_PREFIX", "camhub", 64)
        if "+" in prefix or "#" in prefix or prefix.startswith("/") or prefix.endswith("/"):
            raise ConfigError("CAMHUB_TOPIC_PREFIX must be a plain topic path without wildcards or "
                              "leading/trailing '/', not %r" % prefix)
        self.topic_prefix = prefix
        self.frame_size = check_frame_size(_raw(env, "CAMHUB_FRAME_SIZE", "VGA"))
        self.jpeg_quality = check_quality(_int(env, "CAMHUB_JPEG_QUALITY", 12, QUALITY_MIN, QUALITY_MAX))
        self.fps = check_fps(_int(env, "CAMHUB_FPS", 10, 1, FPS_MAX))
        self.http_port = _int(env, "CAMHUB_HTTP_PORT", 8080, 1, 65535)
        self.http_timeout_s = _int(env, "CAMHUB_HTTP_TIMEOUT_MS", 250, 10, 5000) / 1000
        self.max_clients = _int(env, "CAMHUB_MAX_CLIENTS", 2, 1, MAX_CLIENTS_MAX)
        self.write_timeout_s = _int(env, "CAMHUB_WRITE_TIMEOUT_S", 5, 1, 300)
        self.stats_interval_s = _int(env, "CAMHUB_STATS_INTERVAL_S", 5, 1, 3600)
        self.advertise_host = _text(env, "CAMHUB_ADVERTISE_HOST", None, 253)
        self.watchdog_s = _int(env, "CAMHUB_WATCHDOG_S", 30, 0, 3600)
        if 0 < self.watchdog_s < 5:
            raise ConfigError("CAMHUB_WATCHDOG_S must be 0 (off) or at least 5, not %d" % self.watchdog_s)
        pins = _text(env, "CAMHUB_CAMERA_PINS", None, 256)
        self.camera_pins = parse_camera_pins(pins) if pins else None  # None: the board's own map
        # Battery cameras (README "Battery cameras"): one picture per wake, deep sleep in between.
        self.mode = str(_raw(env, "CAMHUB_MODE", "stream")).strip().lower()
        if self.mode not in MODES:
            raise ConfigError("CAMHUB_MODE must be stream or snapshot, not %r" % self.mode)
        self.warmup_frames = _int(env, "CAMHUB_WARMUP_FRAMES", 4, 0, 60)
        self.snapshot_interval_s = _int(env, "CAMHUB_SNAPSHOT_INTERVAL_S", 300, 1, INTERVAL_MAX_S)
        wake_pin = _text(env, "CAMHUB_WAKE_PIN", None, 32)
        self.wake_pin, self.wake_value = parse_wake_pin(wake_pin) if wake_pin else (None, True)

    @property
    def width(self):
        return FRAME_SIZES[self.frame_size][0]

    @property
    def height(self):
        return FRAME_SIZES[self.frame_size][1]

    def topic(self, leaf):
        """``<prefix>/nodes/<id>/<leaf>``."""
        return self.topic_prefix + "/nodes/" + self.node_id + "/" + leaf
