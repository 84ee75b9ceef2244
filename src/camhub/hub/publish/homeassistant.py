"""Home Assistant MQTT discovery: a device per camera (and one for the hub), with its entities.

Configs go to ``<prefix>/<component>/<object_id>/config`` (retained; the per-component form every HA
release since 2023 reads). Each camera gets a ``camera`` entity fed by the JPEG the hub publishes on
``camhub/hub/cameras/<id>/snapshot`` every ``CAMHUB_HA_SNAPSHOT_S`` while it streams, sensors read from
its retained state topic, a motion binary sensor, and — for nodes, which have a ``set`` topic — numbers
and a select whose commands go to the node and whose states follow its announce. A camera's entities
are unavailable when the hub or the camera is offline (availability list, mode ``all``); only its
state and connectivity stay available with the hub, so HA can say *why* the rest is unavailable.

HA's birth message (``<prefix>/status`` = ``online``, not retained) is answered by re-publishing
every config and state after a short random delay (HA subscribes late; many hubs must not answer at
once). A removed camera's configs are cleared with empty retained payloads, which removes its entities.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from camhub import __version__
from camhub.hub.core.cameras import OFFLINE, STREAMING, Camera
from camhub.hub.core.controls import controls_of

if TYPE_CHECKING:
    from camhub.hub.config import HubConfig
    from camhub.hub.mqtt.link import MqttLink

log = logging.getLogger(__name__)

BIRTH_DELAY_S = (0.5, 2.5)  # re-publish window after HA's birth message
_NOT_OFFLINE = "{{ 'offline' if value_json.state == 'offline' else 'online' }}"


def _slug(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9]+", "_", text).strip("_").lower() or "camhub"


class Discovery:
    """Publishes (and clears) the discovery configs, the hub's summary and the cameras' snapshots."""

    def __init__(self, config: HubConfig, mqtt: MqttLink, cameras: Callable[[], list[Camera]],
                 hub_url: str, viewers: Callable[[], int]) -> None:
        self.config = config
        self.mqtt = mqtt
        self._cameras = cameras
        self._viewers = viewers
        self.hub_url = hub_url.rstrip("/")
        self.discovery_prefix = config.ha_discovery_prefix
        self.prefix = config.topic_prefix
        self.base = _slug(config.topic_prefix)
        self._sent: dict[str, str] = {}  # topic -> last payload published (configs and hub state)
        self._camera_topics: dict[str, set[str]] = {}  # camera id -> its config topics
        self._snapshot_seq: dict[str, int] = {}
        self._snapshot_at: dict[str, float] = {}
        self._birth: asyncio.TimerHandle | None = None

    # ---- topics and ids --------------------------------------------------------------------
    @property
    def status_topic(self) -> str:
        return f"{self.discovery_prefix}/status"

    @property
    def hub_state_topic(self) -> str:
        return f"{self.prefix}/hub/state"

    def snapshot_topic(self, camera_id: str) -> str:
        return f"{self.prefix}/hub/cameras/{camera_id}/snapshot"

    def _config_topic(self, component: str, unique_id: str) -> str:
        return f"{self.discovery_prefix}/{component}/{unique_id}/config"

    @property
    def _hub_device_id(self) -> str:
        return f"{self.base}_hub"

    # ---- payloads --------------------------------------------------------------------------
    def _origin(self) -> dict[str, str]:
        return {"name": "camhub", "sw_version": __version__}

    def hub_configs(self) -> dict[str, dict[str, Any]]:
        """The hub device's entities: ``{config topic: payload}``."""
        availability = f"{self.prefix}/hub/availability"
        device = {"identifiers": [self._hub_device_id], "name": "camhub" if self.base == "camhub" else
                  f"camhub {self.prefix}", "manufacturer": "camhub", "model": "camhub hub",
                  "sw_version": __version__, "configuration_url": self.hub_url + "/"}
        common = {"device": device, "origin": self._origin()}
        entities = {
            ("binary_sensor", "online"): {"name": "Online", "state_topic": availability, "payload_on": "online",
                                          "payload_off": "offline", "device_class": "connectivity"},
            ("sensor", "cameras_online"): {"name": "Cameras online", "state_topic": self.hub_state_topic,
                                           "value_template": "{{ value_json.cameras_online }}",
                                           "state_class": "measurement", "availability_topic": availability},
            ("sensor", "viewers"): {"name": "Viewers", "state_topic": self.hub_state_topic,
                                    "value_template": "{{ value_json.viewers }}", "state_class": "measurement",
                                    "availability_topic": availability},
        }
        configs = {}
        for (component, key), payload in entities.items():
            unique_id = f"{self._hub_device_id}_{key}"
            configs[self._config_topic(component, unique_id)] = {**payload, "unique_id": unique_id, **common}
        return configs

    def camera_configs(self, camera: Camera) -> dict[str, dict[str, Any] | None]:
        """A camera's entities: ``{config topic: payload}``; None clears an entity it does not have."""
        cid = camera.id
        announce = camera.announce or {}
        state = f"{self.prefix}/hub/cameras/{cid}/state"
        hub_available = {"topic": f"{self.prefix}/hub/availability"}
        both = {"availability": [hub_available, {"topic": state, "value_template": _NOT_OFFLINE}],
                "availability_mode": "all"}
        hub_only = {"availability": [hub_available]}
        device: dict[str, Any] = {
            "identifiers": [f"{self.base}_camera_{cid}"], "name": camera.name, "manufacturer": "camhub",
            "model": announce.get("board") or ("camhub node" if camera.source == "mqtt" else "MJPEG source"),
            "configuration_url": f"{self.hub_url}/#/camera/{cid}", "via_device": self._hub_device_id}
        if announce.get("firmware"):
            device["sw_version"] = announce["firmware"]
        if announce.get("sensor"):
            device["hw_version"] = announce["sensor"]

        def value(key: str) -> str:
            return "{{ value_json." + key + " }}"

        entities: dict[tuple[str, str], dict[str, Any] | None] = {
            ("camera", "camera"): ({"name": None, "topic": self.snapshot_topic(cid), **both}
                                   if self.config.ha_snapshot_s > 0 else None),
            ("sensor", "state"): {"name": "State", "state_topic": state, "value_template": value("state"),
                                  "device_class": "enum", "options": ["connecting", "streaming", "stalled", OFFLINE],
                                  **hub_only},
            ("binary_sensor", "connected"): {
                "name": "Connected", "state_topic": state, "device_class": "connectivity",
                "value_template": "{{ 'OFF' if value_json.state == 'offline' else 'ON' }}", **hub_only},
            ("binary_sensor", "motion"): {"name": "Motion", "state_topic": f"{self.prefix}/hub/cameras/{cid}/motion",
                                          "device_class": "motion", **both},
            ("sensor", "fps_in"): {"name": "FPS in", "state_topic": state, "value_template": value("fps_in"),
                                   "unit_of_measurement": "fps", "state_class": "measurement",
                                   "suggested_display_precision": 1, **both},
            ("sensor", "viewers"): {"name": "Viewers", "state_topic": state, "value_template": value("clients"),
                                    "state_class": "measurement", **both},
            ("sensor", "frames_dropped"): {"name": "Frames dropped", "state_topic": state,
                                           "value_template": value("dropped_total"), "state_class": "total_increasing",
                                           "entity_category": "diagnostic", **both},
            ("sensor", "last_frame_age"): {"name": "Last frame age", "state_topic": state,
                                           "value_template": value("last_frame_age_ms"), "device_class": "duration",
                                           "unit_of_measurement": "ms", "state_class": "measurement",
                                           "entity_category": "diagnostic", **both},
        }
        controls = controls_of(camera.announce, camera.source)
        node = f"{self.prefix}/nodes/{cid}"
        control_entities: dict[tuple[str, str], dict[str, Any] | None] = {
            ("number", "fps"): None, ("number", "jpeg_quality"): None, ("select", "frame_size"): None}
        if controls is not None:
            set_topic, announce_topic = f"{node}/set", f"{node}/announce"
            common = {"command_topic": set_topic, "state_topic": announce_topic, "entity_category": "config", **both}
            control_entities = {
                ("number", "fps"): {"name": "Frame rate", "command_template": '{"fps": {{ value | int }}}',
                                    "value_template": value("fps"), "min": controls.fps[0], "max": controls.fps[1],
                                    "step": 1, "mode": "box", "unit_of_measurement": "fps", **common},
                ("number", "jpeg_quality"): {
                    "name": "JPEG quality", "command_template": '{"jpeg_quality": {{ value | int }}}',
                    "value_template": value("jpeg_quality"), "min": controls.jpeg_quality[0],
                    "max": controls.jpeg_quality[1], "step": 1, "mode": "box", "icon": "mdi:quality-high", **common},
                ("select", "frame_size"): {"name": "Frame size", "options": list(controls.frame_sizes),
                                           "command_template": '{"frame_size": "{{ value }}"}',
                                           "value_template": value("frame_size"), **common},
            }
        entities.update(control_entities)
        configs: dict[str, dict[str, Any] | None] = {}
        for (component, key), payload in entities.items():
            unique_id = f"{self.base}_camera_{cid}_{key}"
            configs[self._config_topic(component, unique_id)] = None if payload is None else {
                **payload, "unique_id": unique_id, "device": device, "origin": self._origin()}
        return configs

    def hub_state(self) -> dict[str, int]:
        cameras = self._cameras()
        return {"cameras_total": len(cameras), "cameras_online": sum(1 for c in cameras if c.state != OFFLINE),
                "viewers": self._viewers()}

    # ---- publishing ------------------------------------------------------------------------
    def _send(self, topic: str, payload: dict[str, Any] | None, force: bool) -> None:
        data = "" if payload is None else json.dumps(payload, separators=(",", ":"))
        if not force and self._sent.get(topic) == data:
            return
        if payload is None and topic not in self._sent and not force:
            return  # never published: nothing to clear
        self._sent[topic] = data
        self.mqtt.publish(topic, data, retain=True)

    def camera_changed(self, camera: Camera, force: bool = False) -> None:
        """Publish what changed for ``camera`` (its configs only when they differ) and the hub's summary."""
        if all(c is not camera for c in self._cameras()):
            return  # removed: a late state change of its stopping pull must not bring its entities back
        configs = self.camera_configs(camera)
        self._camera_topics[camera.id] = {t for t, p in configs.items() if p is not None}
        for topic, payload in configs.items():
            self._send(topic, payload, force)
        self._send(self.hub_state_topic, self.hub_state(), force)

    def camera_removed(self, camera_id: str) -> None:
        """Clear a camera's configs (HA removes the entities) and its retained snapshot."""
        for topic in sorted(self._camera_topics.pop(camera_id, ())):
            self._sent.pop(topic, None)
            self.mqtt.publish(topic, "", retain=True)
        self.mqtt.publish(self.snapshot_topic(camera_id), "", retain=True)
        self._snapshot_seq.pop(camera_id, None)
        self._snapshot_at.pop(camera_id, None)
        self._send(self.hub_state_topic, self.hub_state(), False)

    def publish_all(self) -> None:
        """Every config and state (the hub's summary, each camera's state and latest snapshot), whatever was
        sent before."""
        for topic, payload in self.hub_configs().items():
            self._send(topic, payload, True)
        now = time.monotonic()
        for camera in self._cameras():
            self.camera_changed(camera, force=True)
            self.mqtt.publish_state(camera.id, camera.state_payload(now))
            self._publish_snapshot(camera, force=True)
        self._send(self.hub_state_topic, self.hub_state(), True)

    def ha_status(self, payload: bytes) -> None:
        """HA's birth (``online``) or will (``offline``); answer a birth after a short random delay."""
        if payload.strip().lower() != b"online":
            return
        if self._birth is not None:
            self._birth.cancel()
        self._birth = asyncio.get_running_loop().call_later(random.uniform(*BIRTH_DELAY_S), self._answer_birth)

    def _answer_birth(self) -> None:
        self._birth = None
        log.info("Home Assistant (re)started: re-publishing discovery for %d cameras", len(self._cameras()))
        self.publish_all()

    # ---- snapshots -------------------------------------------------------------------------
    def _publish_snapshot(self, camera: Camera, force: bool = False) -> None:
        latest = camera.feed.latest
        if latest is None or self.config.ha_snapshot_s <= 0:
            return
        if not force and self._snapshot_seq.get(camera.id) == latest.seq:
            return
        self._snapshot_seq[camera.id] = latest.seq
        self._snapshot_at[camera.id] = time.monotonic()
        self.mqtt.publish(self.snapshot_topic(camera.id), latest.jpeg, retain=True)

    async def run_snapshots(self) -> None:
        """Until cancelled: each streaming camera's latest JPEG, at most every ``ha_snapshot_s`` seconds
        (a newly streaming camera gets its first picture within a second)."""
        interval = self.config.ha_snapshot_s
        if interval <= 0:
            return
        while True:
            await asyncio.sleep(min(1.0, interval))
            now = time.monotonic()
            for camera in self._cameras():
                if camera.state == STREAMING and now - self._snapshot_at.get(camera.id, -interval) >= interval:
                    self._publish_snapshot(camera)
