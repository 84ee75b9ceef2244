"""Every settings key camhub knows, and the known key a misspelt one probably meant.

The one list: the node's keys, the hub's, and the board's own Wi-Fi and web-workflow keys
(CircuitPython reads those itself). One ``settings.toml`` serves the hub and every board, so each
reader knows all of them. The node imports this on the board (a warning on the serial console for
an unknown ``CAMHUB_*`` key); the hub, ``camhub node --sim``, ``camhub demo`` and ``camhub deploy``
import it on the PC; ``tests/test_settings_keys.py`` fails when code reads a key missing here, or
the templates document one. Kept to a tuple and a few small functions: it runs on the board.
"""

PREFIX = "CAMHUB_"

KNOWN = (
    # The board's Wi-Fi and web workflow (CircuitPython's settings.toml keys; docs/environment.rst)
    "CIRCUITPY_WIFI_SSID", "CIRCUITPY_WIFI_PASSWORD", "CIRCUITPY_WIFI_HOSTNAME",
    "CIRCUITPY_WEB_API_PASSWORD", "CIRCUITPY_WEB_API_PORT",
    # MQTT: the nodes and the hub
    "CAMHUB_MQTT_HOST", "CAMHUB_MQTT_PORT", "CAMHUB_MQTT_USER", "CAMHUB_MQTT_PASSWORD", "CAMHUB_TOPIC_PREFIX",
    # the node (config.py)
    "CAMHUB_NODE_ID", "CAMHUB_NODE_NAME", "CAMHUB_FRAME_SIZE", "CAMHUB_JPEG_QUALITY", "CAMHUB_FPS",
    "CAMHUB_HTTP_PORT", "CAMHUB_MAX_CLIENTS", "CAMHUB_CAMERA_PINS", "CAMHUB_WRITE_TIMEOUT_S",
    "CAMHUB_STATS_INTERVAL_S", "CAMHUB_MQTT_KEEPALIVE_S", "CAMHUB_MQTT_TIMEOUT_MS", "CAMHUB_HTTP_TIMEOUT_MS",
    "CAMHUB_ADVERTISE_HOST", "CAMHUB_WATCHDOG_S",
    # a simulated node's camera (camhub_node.scene; a board ignores them)
    "CAMHUB_SIM_SCENE", "CAMHUB_SIM_PERIOD_S",
    # the node in snapshot mode: a battery camera (config.py, snapshot.py)
    "CAMHUB_MODE", "CAMHUB_WARMUP_FRAMES", "CAMHUB_SNAPSHOT_INTERVAL_S", "CAMHUB_WAKE_PIN",
    # the PC only: CircuitPython's Unix-port VM for `camhub node --sim --runtime circuitpython` (camhub.sim.vm)
    "CAMHUB_CIRCUITPY_VM",
    # the hub (camhub.hub.config)
    "CAMHUB_HUB_HOST", "CAMHUB_HUB_PORT", "CAMHUB_STATE_DIR", "CAMHUB_HUB_BROKER", "CAMHUB_MQTT_LISTEN",
    "CAMHUB_AUTH", "CAMHUB_HUB_USER", "CAMHUB_HUB_PASSWORD", "CAMHUB_ALLOWED_HOSTS", "CAMHUB_HUB_URL",
    "CAMHUB_SOURCES", "CAMHUB_ALLOWED_SOURCES", "CAMHUB_MAX_CAMERAS", "CAMHUB_MAX_INGEST_FPS",
    "CAMHUB_MAX_FRAME_BYTES", "CAMHUB_STALL_S", "CAMHUB_PULL", "CAMHUB_KEEP_WARM_S", "CAMHUB_MAX_VIEWERS",
    "CAMHUB_MAX_VIEWERS_PER_CAMERA", "CAMHUB_HUB_WRITE_TIMEOUT_S", "CAMHUB_KEEPALIVE_S",
    "CAMHUB_STATE_INTERVAL_S",
    "CAMHUB_MOTION", "CAMHUB_MOTION_FPS", "CAMHUB_MOTION_THRESHOLD", "CAMHUB_MOTION_MIN_AREA_PCT",
    "CAMHUB_MOTION_FRAMES", "CAMHUB_MOTION_QUIET_S",
    "CAMHUB_RECORD", "CAMHUB_RECORD_DIR", "CAMHUB_RECORD_PREROLL_S", "CAMHUB_RECORD_POSTROLL_S",
    "CAMHUB_RECORD_SEGMENT_S", "CAMHUB_RECORD_KEEP_DAYS", "CAMHUB_RECORD_MAX_GB", "CAMHUB_RECORD_MIN_FREE_GB",
    "CAMHUB_TIMELAPSE_S",
    "CAMHUB_HA_DISCOVERY", "CAMHUB_HA_DISCOVERY_PREFIX", "CAMHUB_HA_SNAPSHOT_S",
    # several hubs (docs/cluster.md)
    "CAMHUB_ROLE", "CAMHUB_HUB_ID", "CAMHUB_CLUSTER_SECRET", "CAMHUB_CLUSTER_SECRET_FILE",
    "CAMHUB_CLUSTER_REBALANCE_S", "CAMHUB_TRUSTED_PROXIES", "CAMHUB_STREAM_REDIRECT",
    "CAMHUB_STREAM_REDIRECT_BALANCE",
    "CAMHUB_DIAGNOSTICS",
)

# Said once after the warnings about the environment: why they are warnings there, not errors.
ENVIRONMENT_NOTE = ("other programs' environment variables may start with CAMHUB_ too, so unknown ones are "
                    "ignored with a warning rather than refused")


def _tail(key):
    """A key without its family prefix: CAMHUB_WIFI_SSID and CIRCUITPY_WIFI_SSID share WIFI_SSID."""
    return key[key.find("_") + 1:]


def common(a, b, row):
    """The length of the longest common subsequence of ``a`` and ``b``, in ``row``: integers, at least
    ``len(b) + 1`` of them, reused so that comparing with every known key allocates nothing."""
    for j in range(len(b) + 1):
        row[j] = 0
    for ch in a:
        diag = 0
        for j in range(len(b)):
            up = row[j + 1]
            if ch == b[j]:
                row[j + 1] = diag + 1
            elif row[j] > up:
                row[j + 1] = row[j]
            diag = up
    return row[len(b)]


def nearest(key, known=KNOWN):
    """The known key ``key`` probably meant, or None when none is close.

    Similarity is difflib's ratio on the longest common subsequence, 2 * common / (both lengths),
    in whole thousandths (no floats on the board); close is 0.6 or more, difflib's default cutoff.
    Keys are compared in upper case and without their family prefix, so CAMHUB_WIFI_SSID finds
    CIRCUITPY_WIFI_SSID (5 thousandths less than a match in its own family; the first of equals wins).
    A left-out word still scores high (CAMHUB_QUALITY: CAMHUB_JPEG_QUALITY), unlike a plain edit count.
    """
    key = key.upper()
    tail = _tail(key)
    family = key[:len(key) - len(tail)]
    found, best = None, 599
    row = [0] * (max(len(k) for k in known) + 1)
    for candidate in known:
        other = _tail(candidate)
        size = len(tail) + len(other)
        if 2000 * min(len(tail), len(other)) <= best * size:
            continue  # even a whole match of the shorter one could not beat the best so far
        score = 2000 * common(tail, other, row) // size - (0 if candidate.startswith(family) else 5)
        if score > best:
            found, best = candidate, score
    return found


def unknown(names, known=KNOWN):
    """``[(name, nearest known key or None)]`` for each name that looks like camhub's (``CAMHUB_``, any
    case) and is not a known key; other names (``CIRCUITPY_*``, other programs') are not camhub's to judge."""
    found = []
    for name in names:
        if name[:len(PREFIX)].upper() == PREFIX and name not in known:
            found.append((name, nearest(name, known)))
    return found


def describe(name, near, where=None):
    """``unknown setting CAMHUB_FPSS in settings.toml — did you mean CAMHUB_FPS?``"""
    text = "unknown setting " + name
    if where:
        text += " in " + where
    if near:
        return text + " — did you mean " + near + "?"
    return text + " (no known setting is close: settings.toml.example lists them all)"


def report(names, where, warn, note=None):
    """``warn`` a line for each unknown setting among ``names``, then ``note`` once if there was any;
    the unknown ``[(name, nearest)]``."""
    found = unknown(names)
    for name, near in found:
        warn(describe(name, near, where))
    if found and note:
        warn(note)
    return found


def file_keys(path):
    """The keys of a flat ``settings.toml`` as CircuitPython's ``os.getenv`` reads it: bare keys of
    ``KEY = value`` lines of the root table (keys after a ``[table]`` header cannot be read); [] when
    the file is missing or unreadable. Read whole, then split: line by line costs ten times longer."""
    try:
        with open(path) as f:
            text = f.read()
    except (OSError, ValueError):  # missing; not UTF-8 (CPython)
        return []
    keys = []
    for line in text.split("\n"):
        line = line.strip()
        if line.startswith("["):
            break
        cut = line.find("=")
        if cut > 0 and not line.startswith("#"):
            keys.append(line[:cut].strip())
    return keys
