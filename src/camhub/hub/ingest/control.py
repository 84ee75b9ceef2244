"""Settings changes for a node (fps, JPEG quality, frame size), sent on its ``set`` topic.

The change is checked against what the node announced (``core.controls``): only a node has
settings, an offline node would never see it (``set`` is not retained), and without the MQTT link
it cannot be sent. A battery camera is awake for a second per wake: its change is queued for its
next wake (a ``SettingsQueue``: ``battery.wakes.Wakes``, a retained ``set``), whether it sleeps or is
missing. Every refusal is counted by reason (the HTTP side reports the ones it makes before asking,
such as a cross-origin request); the ones found here are also logged, rate-limited. Home Assistant's
controls of a battery camera come through the hub too (``<prefix>/hub/cameras/<id>/set``, ``command``).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections import Counter
from collections.abc import Iterable
from typing import Any, Protocol

from camhub.hub.core.camera import Camera
from camhub.hub.core.controls import ChangeRefused, check_change, current_settings
from camhub.hub.core.registry import Cameras
from camhub.hub.mqtt.link import MqttLink
from camhub.hub.mqtt.topics import Topics
from camhub.hub.util.counters import Family
from camhub.hub.util.ratelimit import LogLimiter

log = logging.getLogger(__name__)

MAX_COMMAND_BYTES = 512  # a settings change is a few dozen bytes (the node's own limit: presence.MAX_SET_PAYLOAD)


class SettingsQueue(Protocol):
    """Keeps the changes of cameras that take them only when they wake (``battery.wakes.Wakes``)."""

    def holds(self, camera: Camera) -> bool:
        """``camera``'s changes wait here for its next wake (asleep or missing is then no refusal)."""
        ...

    def queue(self, camera: Camera, change: dict[str, Any]) -> dict[str, Any]:
        """Keep a checked change for the next wake; all that is pending now."""
        ...

    def next_wake(self, camera: Camera) -> float | None:
        """When ``camera`` is due to wake (Unix time), if known."""
        ...


class NodeControl:
    def __init__(self, link: MqttLink, topics: Topics, cameras: Cameras) -> None:
        self.link = link
        self.topics = topics
        self.cameras = cameras
        self.later: SettingsQueue | None = None  # where a sleeping camera's changes wait (queue_with)
        self.refusals: Counter[str] = Counter()  # settings changes not forwarded, by reason
        self._warnings = LogLimiter(log)

    def counters(self) -> Iterable[Family]:
        yield Family("camhub_settings_refused", "Camera settings changes refused", "reason", dict(self.refusals))

    def queue_with(self, later: SettingsQueue) -> None:
        """Changes for the cameras ``later`` holds are queued there instead of sent."""
        self.later = later

    def refused(self, reason: str) -> None:
        """A change refused before it got here (e.g. ``cross_origin``, ``not_json``): counted with the rest."""
        self.refusals[reason] += 1

    def change_settings(self, camera: Camera, body: Any) -> dict[str, Any]:
        """Forward a settings change to the camera's node (its ``set`` topic); raises ChangeRefused.

        The node applies it and re-announces; until then the answer's ``current`` is the old announce.
        A battery camera's change is queued (``"queued": true``, ``pending``, ``next_wake``).
        """
        later = self.later if self.later is not None and self.later.holds(camera) else None
        try:
            # A battery camera reads its queued change whenever it wakes: asleep or missing is no reason to refuse.
            change = check_change(camera.announce, camera.source, camera.available or later is not None, body)
            if not self.link.connected:
                raise ChangeRefused(503, "mqtt_down", "the hub's MQTT link is down: try again shortly")
        except ChangeRefused as exc:
            self.refusals[exc.reason] += 1
            self._warnings.warning(f"settings:{exc.reason}", "settings change for %s refused: %s", camera.id, exc)
            raise
        answer = {"id": camera.id, "requested": change, "current": current_settings(camera.announce)}
        if later is not None:
            pending = later.queue(camera, change)
            log.info("settings change for %s queued for its next wake: %s", camera.id, change)
            return {**answer, "queued": True, "pending": pending, "next_wake": later.next_wake(camera)}
        self.link.publish(self.topics.node(camera.id, "set"), change, qos=1)
        log.info("settings change for %s sent to its node: %s", camera.id, change)
        return answer

    def subscribe(self) -> None:
        """Home Assistant's controls of a battery camera publish to the hub (``command``), which queues them."""
        self.link.subscribe(self.topics.camera("+", "set"), 1, self.command)

    def command(self, topic: str, payload: bytes) -> None:
        """A settings change on ``<prefix>/hub/cameras/<id>/set`` (JSON, untrusted): as the HTTP API's."""
        parsed = self.topics.parse_camera(topic)
        camera = self.cameras.get(parsed[0]) if parsed is not None else None
        if camera is None:
            self.refused("unknown_camera")
            return
        try:
            body = json.loads(payload[:MAX_COMMAND_BYTES].decode("utf-8")) if len(payload) <= MAX_COMMAND_BYTES \
                else None
        except (UnicodeDecodeError, ValueError):
            body = None
        if body is None:
            self.refused("not_json")
            self._warnings.warning("settings:not_json", "settings change for %s on MQTT refused: not JSON (or over "
                                   "%d bytes)", camera.id, MAX_COMMAND_BYTES)
            return
        with contextlib.suppress(ChangeRefused):  # counted and logged where it is refused
            self.change_settings(camera, body)
