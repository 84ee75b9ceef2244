"""The hub's configuration: settings file + environment + command-line flags, validated once."""

from __future__ import annotations

import argparse
import ipaddress
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path

from camhub.settings import SettingsError, load_settings
from camhub_node.config import ID_RULE, is_valid_id

DEFAULT_STATE_DIR = Path.home() / ".local" / "state" / "camhub"


@dataclass(frozen=True)
class HubConfig:
    """Everything the hub needs to run; see settings.toml.example for what each key means."""

    host: str = "127.0.0.1"
    port: int = 8000
    state_dir: Path = DEFAULT_STATE_DIR
    broker: str = "auto"  # auto | embedded | external
    mqtt_host: str | None = None
    mqtt_port: int = 1883
    mqtt_user: str | None = None
    mqtt_password: str | None = field(default=None, repr=False)
    mqtt_listen: str | None = None
    topic_prefix: str = "camhub"
    auth: str = "auto"  # auto | on | off
    user: str = "admin"
    password: str | None = field(default=None, repr=False)
    allowed_sources: str = "loopback,private"
    sources: str = ""
    max_frame_bytes: int = 2 * 1024 * 1024
    stall_s: float = 5.0
    max_viewers: int = 500
    max_viewers_per_camera: int = 250
    pull: str = "always"  # always | on_demand
    keep_warm_s: float = 30.0
    write_timeout_s: float = 10.0
    keepalive_s: float = 2.0
    state_interval_s: float = 30.0
    max_ingest_fps: float = 60.0  # for cameras that announce no fps (plain MJPEG sources)
    allowed_hosts: str = ""  # Host names the hub answers to besides its own (hostcheck.py)
    max_cameras: int = 128
    # motion detection (motion.py) and recordings (recordings.py)
    motion: str = "on"  # on | off: the default for every camera (each can be switched in the API)
    motion_fps: float = 5.0
    motion_threshold: float = 24.0
    motion_min_area_pct: float = 0.5
    motion_frames: int = 2
    motion_quiet_s: float = 5.0
    record: str = "motion"  # off | motion | always: the default for every camera
    record_dir: Path | None = None  # default: <state_dir>/recordings
    record_preroll_s: float = 5.0
    record_postroll_s: float = 10.0
    record_segment_s: float = 300.0
    record_keep_days: float = 7.0
    record_max_gb: float = 10.0
    record_min_free_gb: float = 1.0
    timelapse_s: float = 0.0
    public_url: str | None = None  # how people (and Home Assistant) reach the hub; default from host:port
    ha_discovery: str = "on"  # on | off
    ha_discovery_prefix: str = "homeassistant"
    ha_snapshot_s: float = 10.0  # 0 = no camera entity in Home Assistant
    # several hubs (docs/cluster.md): hub = one hub, today's contract; origin owns cameras; edge serves viewers
    role: str = "hub"  # hub | origin | edge
    hub_id: str = ""  # a cluster member's name (stable across restarts); default from the host name
    cluster_secret: str | None = field(default=None, repr=False)  # or cluster_secret_file
    cluster_secret_file: Path | None = None
    rebalance_s: float = 0.0  # an origin hands one camera to its preferred owner this often (0 = never)
    trusted_proxies: str = ""  # addresses/networks whose X-Forwarded-For is believed (HAProxy, a reverse proxy)
    stream_redirect: str = "off"  # off | edges: answer viewers' streams with a 307 to an edge (docs/cluster.md)
    stream_redirect_balance: int = 125  # the edges' bounded load, percent of the mean (HAProxy's hash-balance-factor)

    @property
    def clustered(self) -> bool:
        return self.role != "hub"
    diagnostics: str = "off"  # off | on | tracemalloc: GET /api/hub/diagnostics (util/diagnostics.py)

    @property
    def recordings_dir(self) -> Path:
        return self.record_dir or self.state_dir / "recordings"

    @property
    def embedded_broker(self) -> bool:
        return self.broker == "embedded" or (self.broker == "auto" and not self.mqtt_host)

    @property
    def auth_required(self) -> bool:
        if self.auth == "auto":
            return not _is_loopback(self.host)
        return self.auth == "on"

    @property
    def hub_url(self) -> str:
        """The hub's base URL for links handed out (Home Assistant's configuration_url)."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = socket.gethostname() if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_KEYS: dict[str, tuple[str, type]] = {
    "CAMHUB_HUB_HOST": ("host", str),
    "CAMHUB_HUB_PORT": ("port", int),
    "CAMHUB_STATE_DIR": ("state_dir", Path),
    "CAMHUB_HUB_BROKER": ("broker", str),
    "CAMHUB_MQTT_HOST": ("mqtt_host", str),
    "CAMHUB_MQTT_PORT": ("mqtt_port", int),
    "CAMHUB_MQTT_USER": ("mqtt_user", str),
    "CAMHUB_MQTT_PASSWORD": ("mqtt_password", str),
    "CAMHUB_MQTT_LISTEN": ("mqtt_listen", str),
    "CAMHUB_TOPIC_PREFIX": ("topic_prefix", str),
    "CAMHUB_AUTH": ("auth", str),
    "CAMHUB_HUB_USER": ("user", str),
    "CAMHUB_HUB_PASSWORD": ("password", str),
    "CAMHUB_ALLOWED_SOURCES": ("allowed_sources", str),
    "CAMHUB_SOURCES": ("sources", str),
    "CAMHUB_MAX_FRAME_BYTES": ("max_frame_bytes", int),
    "CAMHUB_STALL_S": ("stall_s", float),
    "CAMHUB_MAX_VIEWERS": ("max_viewers", int),
    "CAMHUB_MAX_VIEWERS_PER_CAMERA": ("max_viewers_per_camera", int),
    "CAMHUB_PULL": ("pull", str),
    "CAMHUB_KEEP_WARM_S": ("keep_warm_s", float),
    "CAMHUB_HUB_WRITE_TIMEOUT_S": ("write_timeout_s", float),
    "CAMHUB_KEEPALIVE_S": ("keepalive_s", float),
    "CAMHUB_STATE_INTERVAL_S": ("state_interval_s", float),
    "CAMHUB_MAX_INGEST_FPS": ("max_ingest_fps", float),
    "CAMHUB_ALLOWED_HOSTS": ("allowed_hosts", str),
    "CAMHUB_MAX_CAMERAS": ("max_cameras", int),
    "CAMHUB_MOTION": ("motion", str),
    "CAMHUB_MOTION_FPS": ("motion_fps", float),
    "CAMHUB_MOTION_THRESHOLD": ("motion_threshold", float),
    "CAMHUB_MOTION_MIN_AREA_PCT": ("motion_min_area_pct", float),
    "CAMHUB_MOTION_FRAMES": ("motion_frames", int),
    "CAMHUB_MOTION_QUIET_S": ("motion_quiet_s", float),
    "CAMHUB_RECORD": ("record", str),
    "CAMHUB_RECORD_DIR": ("record_dir", Path),
    "CAMHUB_RECORD_PREROLL_S": ("record_preroll_s", float),
    "CAMHUB_RECORD_POSTROLL_S": ("record_postroll_s", float),
    "CAMHUB_RECORD_SEGMENT_S": ("record_segment_s", float),
    "CAMHUB_RECORD_KEEP_DAYS": ("record_keep_days", float),
    "CAMHUB_RECORD_MAX_GB": ("record_max_gb", float),
    "CAMHUB_RECORD_MIN_FREE_GB": ("record_min_free_gb", float),
    "CAMHUB_TIMELAPSE_S": ("timelapse_s", float),
    "CAMHUB_HUB_URL": ("public_url", str),
    "CAMHUB_HA_DISCOVERY": ("ha_discovery", str),
    "CAMHUB_HA_DISCOVERY_PREFIX": ("ha_discovery_prefix", str),
    "CAMHUB_HA_SNAPSHOT_S": ("ha_snapshot_s", float),
    "CAMHUB_ROLE": ("role", str),
    "CAMHUB_HUB_ID": ("hub_id", str),
    "CAMHUB_CLUSTER_SECRET": ("cluster_secret", str),
    "CAMHUB_CLUSTER_SECRET_FILE": ("cluster_secret_file", Path),
    "CAMHUB_CLUSTER_REBALANCE_S": ("rebalance_s", float),
    "CAMHUB_TRUSTED_PROXIES": ("trusted_proxies", str),
    "CAMHUB_STREAM_REDIRECT": ("stream_redirect", str),
    "CAMHUB_STREAM_REDIRECT_BALANCE": ("stream_redirect_balance", int),
    "CAMHUB_DIAGNOSTICS": ("diagnostics", str),
}
MIN_SECRET_CHARS = 16

_CHOICES = {"broker": ("auto", "embedded", "external"), "auth": ("auto", "on", "off"),
            "pull": ("always", "on_demand"), "motion": ("on", "off"), "record": ("off", "motion", "always"),
            "ha_discovery": ("on", "off"), "role": ("hub", "origin", "edge"),
            "diagnostics": ("off", "on", "tracemalloc"), "stream_redirect": ("off", "edges")}


def config_from(settings: dict[str, str], **overrides: object) -> HubConfig:
    """Build a validated HubConfig from settings strings; ``overrides`` (flags) win when not None."""
    values: dict[str, object] = {}
    for key, (name, kind) in _KEYS.items():
        raw = settings.get(key)
        if raw is None or raw == "":
            continue
        try:
            values[name] = kind(raw.strip()) if kind is not str else raw.strip()
        except ValueError:
            raise SettingsError(f"{key} = {raw!r}: expected {kind.__name__}") from None
    values.update({k: v for k, v in overrides.items() if v is not None})
    for name, choices in _CHOICES.items():
        if name in values and str(values[name]).lower() not in choices:
            raise SettingsError(f"{name} must be one of {', '.join(choices)}, not {values[name]!r}")
        if name in values:
            values[name] = str(values[name]).lower()
    if not values.get("hub_id"):
        values["hub_id"] = default_hub_id()
    config = HubConfig(**values)  # type: ignore[arg-type]
    for name in ("port", "mqtt_port"):
        if not 0 < getattr(config, name) < 65536:
            raise SettingsError(f"{name} must be 1..65535")
    if config.max_frame_bytes < 1024 or config.stall_s <= 0 or config.max_viewers < 1 or config.max_ingest_fps <= 0 \
            or config.max_cameras < 1:
        raise SettingsError("CAMHUB_MAX_FRAME_BYTES, CAMHUB_STALL_S, CAMHUB_MAX_VIEWERS, CAMHUB_MAX_INGEST_FPS and "
                            "CAMHUB_MAX_CAMERAS must be positive")
    if not (0 < config.motion_fps <= 30 and 0 < config.motion_threshold < 256 and 0 < config.motion_min_area_pct <= 100
            and config.motion_frames >= 1 and config.motion_quiet_s >= 0):
        raise SettingsError("CAMHUB_MOTION_FPS must be in (0, 30], CAMHUB_MOTION_THRESHOLD in (0, 256), "
                            "CAMHUB_MOTION_MIN_AREA_PCT in (0, 100], CAMHUB_MOTION_FRAMES >= 1, "
                            "CAMHUB_MOTION_QUIET_S >= 0")
    if min(config.record_preroll_s, config.record_postroll_s, config.record_min_free_gb, config.timelapse_s) < 0 \
            or config.record_segment_s < 1 or config.record_keep_days <= 0 or config.record_max_gb <= 0:
        raise SettingsError("CAMHUB_RECORD_* and CAMHUB_TIMELAPSE_S: durations and sizes must be positive "
                            "(CAMHUB_RECORD_SEGMENT_S at least 1)")
    if config.ha_snapshot_s < 0:
        raise SettingsError("CAMHUB_HA_SNAPSHOT_S must be 0 (no camera entity) or more seconds")
    prefix = config.ha_discovery_prefix
    if not prefix or any(c in prefix for c in "+# ") or prefix.startswith("/") or prefix.endswith("/"):
        raise SettingsError(f"CAMHUB_HA_DISCOVERY_PREFIX must be a plain topic path, not {prefix!r}")
    if config.public_url and not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", config.public_url):
        raise SettingsError("CAMHUB_HUB_URL must be an http:// or https:// URL such as http://hub.local:8000")
    if config.broker == "external" and not config.mqtt_host:
        raise SettingsError("CAMHUB_HUB_BROKER = external needs CAMHUB_MQTT_HOST")
    _check_cluster(config)
    if config.auth_required and not config.password:
        raise SettingsError(
            f"the hub listens on {config.host}, beyond loopback, so viewers and the API need credentials: "
            "set CAMHUB_HUB_PASSWORD (and optionally CAMHUB_HUB_USER), or CAMHUB_AUTH = off to run open")
    return config


def default_hub_id(name: str | None = None) -> str:
    """This machine's host name as a hub id (first label, lower case, other characters as ``-``)."""
    label = (name if name is not None else socket.gethostname()).split(".")[0].lower()
    cleaned = re.sub(r"[^a-z0-9_-]", "-", label).lstrip("-_")[:32]
    return cleaned or "hub"


def cluster_secret(config: HubConfig) -> str | None:
    """The cluster secret: ``CAMHUB_CLUSTER_SECRET``, else the first line of ``CAMHUB_CLUSTER_SECRET_FILE``."""
    if config.cluster_secret:
        return config.cluster_secret
    if config.cluster_secret_file is None:
        return None
    try:
        text = config.cluster_secret_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"CAMHUB_CLUSTER_SECRET_FILE: cannot read {config.cluster_secret_file}: "
                            f"{getattr(exc, 'strerror', None) or exc}") from None
    return (text.strip().splitlines() or [""])[0].strip() or None


def _check_cluster(config: HubConfig) -> None:
    if not is_valid_id(config.hub_id):
        raise SettingsError(f"CAMHUB_HUB_ID must be {ID_RULE}, not {config.hub_id!r}")
    if config.rebalance_s < 0:
        raise SettingsError("CAMHUB_CLUSTER_REBALANCE_S must be 0 (never) or more seconds")
    if config.cluster_secret and config.cluster_secret_file:
        raise SettingsError("set CAMHUB_CLUSTER_SECRET or CAMHUB_CLUSTER_SECRET_FILE, not both")
    if not 100 <= config.stream_redirect_balance <= 1000:
        raise SettingsError("CAMHUB_STREAM_REDIRECT_BALANCE must be 100 to 1000 (percent of the edges' mean load)")
    if not config.clustered:
        if config.stream_redirect != "off":
            raise SettingsError("CAMHUB_STREAM_REDIRECT = edges sends viewers to a cluster's edges: it needs "
                                "CAMHUB_ROLE = origin or edge")
        return
    secret = cluster_secret(config)
    if not secret:
        raise SettingsError(f"CAMHUB_ROLE = {config.role} needs the cluster's shared secret: set "
                            "CAMHUB_CLUSTER_SECRET (or CAMHUB_CLUSTER_SECRET_FILE), the same on every hub")
    if len(secret) < MIN_SECRET_CHARS:
        raise SettingsError(f"the cluster secret must be at least {MIN_SECRET_CHARS} characters "
                            "(e.g. the output of `openssl rand -hex 32`)")
    if config.embedded_broker:
        raise SettingsError(f"CAMHUB_ROLE = {config.role} needs the cluster's MQTT broker: set CAMHUB_MQTT_HOST "
                            "(every hub and board uses the same one)")
    if not config.public_url and config.host in ("0.0.0.0", "::", ""):
        raise SettingsError(f"CAMHUB_ROLE = {config.role}: the other hubs need this hub's address: set "
                            "CAMHUB_HUB_URL (e.g. http://hub1.example.org:8000), or listen on one address")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="HTTP port (default 8000)")
    parser.add_argument("--mqtt-host", help="an external MQTT broker; without one the hub embeds its own")
    parser.add_argument("--mqtt-port", type=int, help="the MQTT broker's port (default 1883)")
    parser.add_argument("--mqtt-listen", help="address the embedded broker listens on (default: --host)")
    parser.add_argument("--settings", type=Path, help="a settings.toml (environment variables override it)")
    parser.add_argument("--state-dir", type=Path, help=f"where known cameras are kept (default {DEFAULT_STATE_DIR})")


def config_from_args(args: argparse.Namespace) -> HubConfig:
    settings = load_settings(args.settings)
    broker = "external" if args.mqtt_host else None
    return config_from(settings, host=args.host, port=args.port, mqtt_host=args.mqtt_host,
                       mqtt_port=args.mqtt_port, mqtt_listen=args.mqtt_listen, state_dir=args.state_dir,
                       broker=broker)
