"""Untrusted announces: what a node says on ``camhub/nodes/<id>/announce``, checked before it changes anything.

Anything on that topic may come from any MQTT client, so an announce is checked first: size, JSON,
required fields and their types, an id by the one id rule equal to the topic's, and stream URLs the
hub may pull (``sources.check_url``). A rejection carries a short, machine-readable reason for the
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


@dataclass(frozen=True)
class Announce:
    """A validated announce (DESIGN.md's fields); absent optional fields are None."""

    id: str
    stream_url: str
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _clean_text(value: str, limit: int) -> str:
    """Printable text only (no terminal escapes or bidi tricks in logs and the dashboard), clamped."""
    text = "".join(c for c in value if unicodedata.category(c)[0] != "C")
    return text.strip()[:limit]


def parse_announce(topic_id: str, payload: bytes, allowed: AllowedSources, max_bytes: int = 4096) -> Announce:
    """Validate an announce received on ``camhub/nodes/<topic_id>/announce``.

    Raises AnnounceRejected with reason ``oversized``, ``bad_json``, ``not_object``,
    ``missing_field:<f>``, ``bad_id``, ``id_mismatch``, ``bad_url``, ``url_not_allowed``,
    ``bad_url:<f>``/``url_not_allowed:<f>`` (snapshot or status URL) or ``bad_field:<f>``.
    """
    if len(payload) > max_bytes:
        raise AnnounceRejected("oversized", f"{len(payload)} bytes > {max_bytes}")
    try:
        data = json.loads(payload.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise AnnounceRejected("bad_json") from None
    if not isinstance(data, dict):
        raise AnnounceRejected("not_object")
    for required in ("id", "stream_url"):
        if data.get(required) is None:
            raise AnnounceRejected(f"missing_field:{required}")
    camera_id = data["id"]
    if not is_valid_id(camera_id):
        raise AnnounceRejected("bad_id", f"ids are {ID_RULE}")
    if camera_id != topic_id:
        raise AnnounceRejected("id_mismatch")
    values: dict[str, Any] = {"id": camera_id, "stream_url": check_url(data["stream_url"], allowed)}
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


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")
