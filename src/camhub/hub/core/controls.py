"""A node's run-time controls (fps, JPEG quality, frame size): what it offers, and checking a change.

A node announces what it accepts on its ``set`` topic (``"controls"`` in the announce); a node whose
firmware predates that is taken to accept what this release's firmware accepts (``camhub_node.config``,
the same checks the node runs). The dashboard's settings endpoint and the Home Assistant entities both
read the ranges from here, so the hub never offers, or forwards, a value the node would refuse.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from camhub_node import config as node_config

SETTABLE = node_config.SETTABLE  # what a node's ``set`` takes: the node's own list
_SIZE_NAME = re.compile(r"[A-Z0-9_]{1,16}")
MAX_SIZES = 64


class ControlError(ValueError):
    """A control value (or an announce's ``controls``) that cannot be used; ``key`` names the field."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


@dataclass(frozen=True)
class Controls:
    """The ranges a node accepts: inclusive ``(low, high)`` pairs and the frame size names, smallest first."""

    fps: tuple[int, int]
    jpeg_quality: tuple[int, int]
    frame_sizes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"fps": list(self.fps), "jpeg_quality": list(self.jpeg_quality), "frame_size": list(self.frame_sizes)}

    def check(self, request: object) -> dict[str, Any]:
        """The ``set`` payload for ``request`` (a dict with some of SETTABLE), or ControlError."""
        if not isinstance(request, dict) or not request:
            raise ControlError("body", "expected a JSON object with fps, jpeg_quality and/or frame_size")
        for key in request:
            if key not in SETTABLE:
                raise ControlError(str(key)[:32], "unknown setting (fps, jpeg_quality, frame_size)")
        checked: dict[str, Any] = {}
        for key, (low, high) in (("fps", self.fps), ("jpeg_quality", self.jpeg_quality)):
            if key not in request:
                continue
            value = request[key]
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ControlError(key, f"must be a whole number from {low} to {high}")
            checked[key] = value
        if "frame_size" in request:
            size = request["frame_size"]
            if not isinstance(size, str) or size.upper() not in self.frame_sizes:
                raise ControlError("frame_size", f"must be one of {', '.join(self.frame_sizes)}")
            checked["frame_size"] = size.upper()
        return checked


def _sorted_sizes(names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    sizes = node_config.FRAME_SIZES
    known = [n for n in names if n in sizes]
    unknown = sorted(n for n in names if n not in sizes)
    return tuple(sorted(known, key=lambda n: (sizes[n][0] * sizes[n][1], n)) + unknown)


def _range(value: object, key: str, low: int, high: int) -> tuple[int, int]:
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            or not low <= value[0] <= value[1] <= high):
        raise ControlError(f"controls.{key}", f"expected [low, high], whole numbers within {low}..{high}")
    return value[0], value[1]


def parse_controls(value: object) -> Controls:
    """Validate an announce's ``controls`` (untrusted: it comes from any MQTT client)."""
    if not isinstance(value, dict):
        raise ControlError("controls", "not an object")
    sizes = value.get("frame_size")
    if (not isinstance(sizes, list) or not 0 < len(sizes) <= MAX_SIZES
            or not all(isinstance(s, str) and _SIZE_NAME.fullmatch(s) for s in sizes)):
        raise ControlError("controls.frame_size", f"expected 1-{MAX_SIZES} frame size names")
    return Controls(_range(value.get("fps"), "fps", 1, 1000), _range(value.get("jpeg_quality"), "jpeg_quality", 0, 100),
                    _sorted_sizes(list(dict.fromkeys(sizes))))


FIRMWARE_DEFAULT = parse_controls(node_config.CONTROLS)


def controls_of(announce: dict[str, Any] | None, source: str = "mqtt") -> Controls | None:
    """What a camera's node accepts; None for a camera without a node (a plain MJPEG source, or a
    camera known from an earlier run that has not announced yet)."""
    if announce is None or source != "mqtt":
        return None
    raw = announce.get("controls")
    return FIRMWARE_DEFAULT if raw is None else parse_controls(raw)


class ChangeRefused(ValueError):
    """A settings change the hub will not forward: an HTTP ``status`` and a countable ``reason``."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


def check_change(announce: dict[str, Any] | None, source: str, online: bool, body: object) -> dict[str, Any]:
    """The ``set`` payload for a settings change asked for over HTTP, or ChangeRefused.

    Only a node has settings (a plain MJPEG source has none); an offline node would never see the
    message (``set`` is not retained); the values must be within what the node announced.
    """
    controls = controls_of(announce, source)
    if controls is None:
        raise ChangeRefused(409, "no_node", "this camera is a plain MJPEG source: it has no settings to change")
    if not online:
        raise ChangeRefused(409, "node_offline", "the camera's node is offline: it cannot take a change now")
    try:
        return controls.check(body)
    except ControlError as exc:
        raise ChangeRefused(400, "bad_value", str(exc)) from None


def current_settings(announce: dict[str, Any] | None) -> dict[str, Any]:
    """What the node last announced for each setting."""
    return {key: (announce or {}).get(key) for key in SETTABLE}


def summary(announce: dict[str, Any] | None, source: str) -> dict[str, Any]:
    """What a camera's summary in the API shows: what its node's settings accept (None: no node)."""
    controls = controls_of(announce, source)
    return {"controls": None if controls is None else controls.to_dict()}
