"""Untrusted announces: what a node says on ``camhub/nodes/<id>/announce``, checked before it changes anything.

Anything on that topic may come from any MQTT client, so an announce is checked first: size, JSON,
required fields and their types, an id by the one id rule equal to the topic's, and stream URLs the
hub may pull (``sources.check_url``). A battery camera (``"mode": "snapshot"``) has no stream to
pull: it pushes its pictures, so it needs no ``stream_url`` and gives its wake ``interval_s``, why it
woke (``wake``) and its ``battery_v``. A rejection carries a short, machine-readable reason for the
caller to log and count.
"""

from __future__ import annotations

import ipaddress
import json
import unicodedata
from dataclasses import asdict, dataclass
from typing import Any

from camhub.hub.core.controls import ControlError, parse_controls
from camhub.hub.ingest.sources import AllowedSources, AnnounceRejected, check_url
from camhub_node.config import ID_RULE, is_valid_id

# Optional announce fields: strings (clamped to a length), integers and numbers (with a range).
_STRINGS = {"name": 64, "board": 64, "sensor": 32, "frame_size": 16, "firmware": 64, "ip": 45}
_INTS = {"width": (1, 16384), "height": (1, 16384), "jpeg_quality": (0, 100)}
_NUMBERS = {"fps": (0.0, 1000.0)}
_OPTIONAL_URLS = ("snapshot_url", "status_url")
MODES = ("stream", "snapshot")
WAKE_REASONS = ("timer", "pin", "boot")
INTERVAL_MAX_S = 7 * 86400  # the node's own limit (camhub_node.config.INTERVAL_MAX_S)
_SNAPSHOT_ONLY = ("mode", "interval_s", "wake", "wake_pin", "battery_v")


@dataclass(frozen=True)
class Announce:
    """A validated announce (DESIGN.md's fields); absent optional fields are None."""

    id: str
    stream_url: str | None  # None: a battery camera (snapshot mode), which pushes its pictures
    name: str
    snapshot_url: str | None = None
    status_url: str | None = None
    board: str | None = None
    sensor: str | None = None
    frame_size: str | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    jpeg_quality: int | None = None
    firmware: str | None = None
    ip: str | None = None
    controls: dict[str, Any] | None = None  # what the node's ``set`` accepts (camhub.hub.core.controls)
    mode: str = "stream"  # or "snapshot": a battery camera, one pushed picture per wake
    interval_s: int | None = None  # snapshot mode: seconds between timer wakes
    wake: str | None = None  # snapshot mode: why it woke this time (timer, pin, boot)
    wake_pin: bool | None = None  # snapshot mode: a pin (a PIR sensor) wakes it too
    battery_v: float | None = None  # where the board can read it

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict; a streaming camera's without the battery camera's (DESIGN.md's shape)."""
        data = asdict(self)
        if self.mode == "stream":
            for key in _SNAPSHOT_ONLY:
                del data[key]
        return data


def _clean_text(value: str, limit: int) -> str:
    """Printable text only (no terminal escapes or bidi tricks in logs and the dashboard), clamped."""
    text = "".join(c for c in value if unicodedata.category(c)[0] != "C")
    return text.strip()[:limit]


def parse_announce(topic_id: str, payload: bytes, allowed: AllowedSources, max_bytes: int = 4096) -> Announce:
    """Validate an announce received on ``camhub/nodes/<topic_id>/announce``.

    Raises AnnounceRejected with reason ``oversized``, ``bad_json``, ``not_object``,
    ``missing_field:<f>``, ``bad_id``, ``id_mismatch``, ``bad_url``, ``url_not_allowed``,
    ``bad_url:<f>``/``url_not_allowed:<f>`` (snapshot or status URL) or ``bad_field:<f>``.
    A snapshot-mode announce needs ``interval_s`` and no ``stream_url``.
    """
    if len(payload) > max_bytes:
        raise AnnounceRejected("oversized", f"{len(payload)} bytes > {max_bytes}")
    try:
        data = json.loads(payload.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise AnnounceRejected("bad_json") from None
    if not isinstance(data, dict):
        raise AnnounceRejected("not_object")
    mode = data.get("mode", "stream")
    if mode not in MODES:
        raise AnnounceRejected("bad_field:mode", f"not one of {', '.join(MODES)}")
    snapshot = mode == "snapshot"
    for required in ("id", "interval_s") if snapshot else ("id", "stream_url"):
        if data.get(required) is None:
            raise AnnounceRejected(f"missing_field:{required}")
    camera_id = data["id"]
    if not is_valid_id(camera_id):
        raise AnnounceRejected("bad_id", f"ids are {ID_RULE}")
    if camera_id != topic_id:
        raise AnnounceRejected("id_mismatch")
    stream_url = data.get("stream_url")
    # A battery camera sleeps between its pictures: there is no stream to pull, whatever it says.
    values: dict[str, Any] = {"id": camera_id, "mode": mode,
                              "stream_url": None if snapshot or stream_url is None else check_url(stream_url, allowed)}
    if snapshot:
        values.update(_snapshot_fields(data))
    for key in _OPTIONAL_URLS:
        if data.get(key) is not None:
            values[key] = check_url(data[key], allowed, reason=f"bad_url:{key}")
    for key, limit in _STRINGS.items():
        value = data.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise AnnounceRejected(f"bad_field:{key}", "not a string")
        values[key] = _clean_text(value, limit) or None
    for key, (low, high) in _INTS.items():
        value = data.get(key)
        if value is None:
            continue
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise AnnounceRejected(f"bad_field:{key}", f"not an integer in {low}..{high}")
        values[key] = value
    for key, (low_f, high_f) in _NUMBERS.items():
        value = data.get(key)
        if value is None:
            continue
        if not isinstance(value, int | float) or isinstance(value, bool) or not low_f <= value <= high_f:
            raise AnnounceRejected(f"bad_field:{key}", f"not a number in {low_f:g}..{high_f:g}")
        values[key] = float(value)
    if values.get("ip") is not None:
        try:
            values["ip"] = str(ipaddress.ip_address(values["ip"]))
        except ValueError:
            raise AnnounceRejected("bad_field:ip", "not an IP address") from None
    if data.get("controls") is not None:
        try:
            values["controls"] = parse_controls(data["controls"]).to_dict()
        except ControlError as exc:
            raise AnnounceRejected("bad_field:controls", str(exc)) from None
    values["name"] = values.get("name") or camera_id
    return Announce(**values)


def _snapshot_fields(data: dict[str, Any]) -> dict[str, Any]:
    """A battery camera's own fields: its wake interval, why it woke, its wake pin, its battery."""
    interval = data["interval_s"]
    if isinstance(interval, bool) or not isinstance(interval, int) or not 1 <= interval <= INTERVAL_MAX_S:
        raise AnnounceRejected("bad_field:interval_s", f"not a whole number of seconds in 1..{INTERVAL_MAX_S}")
    values: dict[str, Any] = {"interval_s": interval}
    wake = data.get("wake")
    if wake is not None and wake not in WAKE_REASONS:
        raise AnnounceRejected("bad_field:wake", f"not one of {', '.join(WAKE_REASONS)}")
    values["wake"] = wake
    if data.get("wake_pin") is not None:
        if not isinstance(data["wake_pin"], bool):
            raise AnnounceRejected("bad_field:wake_pin", "not true or false")
        values["wake_pin"] = data["wake_pin"]
    battery = data.get("battery_v")
    if battery is not None:
        if isinstance(battery, bool) or not isinstance(battery, int | float) or not 0 <= battery <= 60:
            raise AnnounceRejected("bad_field:battery_v", "not a number of volts in 0..60")
        values["battery_v"] = round(float(battery), 3)
    return values


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")
