"""The node's settings: every key read with ``os.getenv``, given a default, and validated.

On the board ``os.getenv`` reads ``settings.toml`` (flat ``KEY = value``; CircuitPython has no TOML
floats, so sub-second times are whole milliseconds). On a PC ``camhub node --sim`` exports the same
keys to the environment first. A bad value raises ``ConfigError`` naming the key; secrets are never
echoed. Runs on CircuitPython and CPython alike.
"""

import os

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
QUALITY_MIN = 2  # espcamera: 2 is the best quality, 63 the smallest files
QUALITY_MAX = 63
MAX_CLIENTS_MAX = 8  # the board has 8 sockets in all (CONFIG_LWIP_MAX_SOCKETS)

_SLUG = "abcdefghijklmnopqrstuvwxyz0123456789-_"
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


def check_node_id(value, key="CAMHUB_NODE_ID"):
    """The id must be a slug: it is a topic level and part of URLs."""
    if not value or len(value) > 32:
        raise ConfigError("%s must be 1 to 32 characters, not %r" % (key, value))
    for ch in value:
        if ch not in _SLUG:
            raise ConfigError("%s may hold only lower-case letters, digits, '-' and '_', not %r" % (key, value))
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

    @property
    def width(self):
        return FRAME_SIZES[self.frame_size][0]

    @property
    def height(self):
        return FRAME_SIZES[self.frame_size][1]

    def topic(self, leaf):
        """``<prefix>/nodes/<id>/<leaf>``."""
        return self.topic_prefix + "/nodes/" + self.node_id + "/" + leaf
