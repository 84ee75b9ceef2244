"""Settings changes for a node (fps, JPEG quality, frame size), sent on its ``set`` topic.

The change is checked against what the node announced (``core.controls``): only a node has
settings, an offline node would never see it (``set`` is not retained), and without the MQTT link
it cannot be sent. Every refusal is counted by reason (the HTTP side reports the ones it makes
before asking, such as a cross-origin request); the ones found here are also logged, rate-limited.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from typing import Any

from camhub.hub.core.camera import Camera
from camhub.hub.core.controls import ChangeRefused, check_change, current_settings
from camhub.hub.mqtt.link import MqttLink
from camhub.hub.mqtt.topics import Topics
from camhub.hub.util.counters import Family
from camhub.hub.util.ratelimit import LogLimiter

log = logging.getLogger(__name__)


class NodeControl:
    def __init__(self, link: MqttLink, topics: Topics) -> None:
        self.link = link
        self.topics = topics
        self.refusals: Counter[str] = Counter()  # settings changes not forwarded, by reason
        self._warnings = LogLimiter(log)

    def counters(self) -> Iterable[Family]:
        yield Family("camhub_settings_refused", "Camera settings changes refused", "reason", dict(self.refusals))

    def refused(self, reason: str) -> None:
        """A change refused before it got here (e.g. ``cross_origin``, ``not_json``): counted with the rest."""
        self.refusals[reason] += 1

    def change_settings(self, camera: Camera, body: Any) -> dict[str, Any]:
        """Forward a settings change to the camera's node (its ``set`` topic); raises ChangeRefused.

        The node applies it and re-announces; until then the answer's ``current`` is the old announce.
        """
        try:
            change = check_change(camera.announce, camera.source, camera.available, body)
            if not self.link.connected:
                raise ChangeRefused(503, "mqtt_down", "the hub's MQTT link is down: try again shortly")
        except ChangeRefused as exc:
            self.refusals[exc.reason] += 1
            self._warnings.warning(f"settings:{exc.reason}", "settings change for %s refused: %s", camera.id, exc)
            raise
        self.link.publish(self.topics.node(camera.id, "set"), change, qos=1)
        log.info("settings change for %s sent to its node: %s", camera.id, change)
        return {"id": camera.id, "requested": change, "current": current_settings(camera.announce)}
