"""Home Assistant MQTT discovery: a device per camera (and one for the hub), with its entities.

Configs go to ``<prefix>/<component>/<object_id>/config`` (retained; the per-component form every HA
release since 2023 reads). Each camera gets a ``camera`` entity fed by the JPEG the hub publishes on
``camhub/hub/cameras/<id>/snapshot`` every ``CAMHUB_HA_SNAPSHOT_S`` while it streams, sensors read from
its retained state topic, a motion binary sensor, and — for nodes, which have a ``set`` topic — numbers
and a select whose commands go to the node and whose states follow its announce. A camera's entities
are unavailable when the hub or the camera is offline (availability list, mode ``all``); only its
state and connectivity stay available with the hub, so HA can say *why* the rest is unavailable.

A battery camera (a node in snapshot mode) is ``sleeping`` between its wakes and unavailable only when
missing; it gets battery (where its board reads one), last-wake, next-wake and pending-settings
sensors, and its controls publish to the hub (``<prefix>/hub/cameras/<id>/set``), which queues the
change for the next wake: their names say "(next wake)", and they stay available while the camera
sleeps or is missing. Its picture is published as soon as it arrives (at most every
``CAMHUB_HA_SNAPSHOT_S``).

HA's birth message (``<prefix>/status`` = ``online``, not retained) is answered by re-publishing
every config and state after a short random delay (HA subscribes late; many hubs must not answer at
once). A removed camera's configs are cleared with empty retained payloads, which removes its entities.

In a cluster each hub is its own device (``<base>_hub_<hub_id>``), and a camera's configs, states and
snapshots come from its owner only (``publishes``). Its unique ids are the camera's, whoever owns it,
so its entities survive a change of owner: the new owner publishes the configs again (``camera_gained``;
its own availability and device), and the old one forgets what it sent without clearing anything.

The camhub integration for Home Assistant (``custom_components/camhub``) finds the hub from the
retained ``<prefix>/hub/info`` (and ``/api/hub``), attaches one live camera entity per camera to the
devices defined here (``hub_device`` / ``camera_device``: one implementation, also in the API), and
says it is set up with a retained ``on`` on ``<prefix>/hub/ha_integration``. While it is, the hub
publishes no MQTT camera entity (the integration's replaces it: one camera entity per device); the
sensors and controls stay MQTT. A hub starting while the flag is retained hears it before its camera
entity's config goes out: the flag is subscribed to before the link says it is up (when the configs
are queued), the broker sends it right after subscribing, and the queued config (last of a camera's,
behind the hub's own) is replaced by the clearing one before the sender reaches it (the link keeps
one payload per retained topic). In a cluster every hub has its own ``info`` and flag
(``<prefix>/hubs/<hub_id>/ha_info``, ``.../ha_integration``): one integration entry per hub, showing the cameras
that hub owns.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from camhub import __version__
from camhub.hub.core.camera import SLEEPING, STATES, STREAMING, Camera
from camhub.hub.core.controls import controls_of
from camhub.hub.core.registry import Cameras
from camhub.hub.mqtt.link import MqttLink
from camhub.hub.mqtt.topics import Topics
from camhub.hub.publish.status import StatusPublisher

log = logging.getLogger(__name__)

BIRTH_DELAY_S = (0.5, 2.5)  # re-publish window after HA's birth message
_BATTERY_ENTITIES = (("sensor", "battery"), ("sensor", "last_wake"), ("sensor", "next_wake"),
                     ("sensor", "pending_settings"))
_NOT_OFFLINE = "{{ 'offline' if value_json.state == 'offline' else 'online' }}"
# A Unix time in the state payload as the ISO 8601 (UTC) a timestamp sensor takes; "None": unknown.
_TIMESTAMP = ("{{% if value_json.{0} %}}{{{{ value_json.{0} | int | timestamp_custom('%Y-%m-%dT%H:%M:%S+00:00', "
              "false) }}}}{{% else %}}None{{% endif %}}")
_PENDING = ("{% set p = value_json.pending %}{{ p.items() | map('join', ' ') | join(', ') if p else 'none' }}")


def _slug(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9]+", "_", text).strip("_").lower() or "camhub"


def hub_device_id(topics: Topics, hub_id: str | None) -> str:
    """A hub's Home Assistant device identifier: ``<base>_hub``, in a cluster ``<base>_hub_<hub_id>``."""
    base = _slug(topics.prefix)
    return f"{base}_hub" if hub_id is None else f"{base}_hub_{_slug(hub_id)}"


def hub_device(topics: Topics, hub_url: str) -> dict[str, Any]:
    """This hub's Home Assistant device block (in a cluster, ``topics.hub_id`` names the hub)."""
    base = _slug(topics.prefix)
    name = "camhub" if base == "camhub" else f"camhub {topics.prefix}"
    if topics.hub_id is not None:
        name = f"{name} {topics.hub_id}"
    return {"identifiers": [hub_device_id(topics, topics.hub_id)], "name": name, "manufacturer": "camhub",
            "model": "camhub hub", "sw_version": __version__, "configuration_url": hub_url.rstrip("/") + "/"}


def camera_device(topics: Topics, hub_url: str, camera: Camera, owner: str | None) -> dict[str, Any]:
    """A camera's Home Assistant device block (MQTT discovery's, and the integration's through the API), via
    its owner's hub device (``owner``: the owning hub's id in a cluster, None for a single hub)."""
    announce = camera.announce or {}
    base = _slug(topics.prefix)
    device: dict[str, Any] = {
        "identifiers": [f"{base}_camera_{camera.id}"], "name": camera.name, "manufacturer": "camhub",
        "model": announce.get("board") or ("camhub node" if camera.source == "mqtt" else "MJPEG source"),
        "configuration_url": f"{hub_url.rstrip('/')}/#/camera/{camera.id}", "via_device": hub_device_id(topics, owner)}
    if announce.get("firmware"):
        device["sw_version"] = announce["firmware"]
    if announce.get("sensor"):
        device["hw_version"] = announce["sensor"]
    return device


def integration_info(topics: Topics, hub_url: str, mqtt_discovery: bool) -> dict[str, Any]:
    """What the Home Assistant integration adopts this hub by: retained on ``<prefix>/hub/info``, in /api/hub."""
    return {"url": hub_url.rstrip("/"), "version": __version__, "device": hub_device(topics, hub_url),
            "integration_topic": topics.ha_integration, "mqtt_discovery": mqtt_discovery}


@dataclass(frozen=True)
class DiscoverySettings:
    hub_url: str  # the device's "Visit" link
    snapshot_s: float = 10.0  # the camera entity's picture, at most this often; 0: no camera entity


class Discovery:
    """Publishes (and clears) the discovery configs and the cameras' snapshots."""

    def __init__(self, settings: DiscoverySettings, mqtt: MqttLink, topics: Topics, cameras: Cameras,
                 status: StatusPublisher, publishes: Callable[[str], bool] = lambda camera_id: True) -> None:
        self.settings = settings
        self.publishes = publishes  # whether this hub writes this camera's topics (in a cluster: its owner)
        self.mqtt = mqtt
        self.topics = topics
        self.cameras = cameras
        self.status = status
        self.hub_url = settings.hub_url.rstrip("/")
        self.prefix = topics.prefix
        self.base = _slug(topics.prefix)
        self._sent: dict[str, str] = {}  # config topic -> last payload published
        self._camera_topics: dict[str, set[str]] = {}  # camera id -> its config topics (also those it lacks)
        self._snapshot_seq: dict[str, int] = {}
        self._snapshot_at: dict[str, float] = {}
        self._birth: asyncio.TimerHandle | None = None
        self.integration = False  # the camhub integration in Home Assistant says it is set up

    def sizes(self) -> dict[str, int]:
        return {"configs_sent": len(self._sent), "cameras": len(self._camera_topics),
                "snapshot_cameras": len(self._snapshot_at) + len(self._snapshot_seq)}

    def subscribe(self) -> None:
        """Listen for Home Assistant's birth (it restarted: publish everything again), and for its camhub
        integration saying it is set up."""
        self.mqtt.subscribe(self.topics.ha_status, 1, self.ha_status)
        self.mqtt.subscribe(self.topics.ha_integration, 1, self.integration_status)

    # ---- ids -------------------------------------------------------------------------------
    @property
    def _hub_device_id(self) -> str:
        return hub_device_id(self.topics, self.topics.hub_id)

    # ---- payloads --------------------------------------------------------------------------
    def _origin(self) -> dict[str, str]:
        return {"name": "camhub", "sw_version": __version__}

    def hub_configs(self) -> dict[str, dict[str, Any]]:
        """The hub device's entities: ``{config topic: payload}``."""
        availability = self.topics.hub_availability
        common = {"device": hub_device(self.topics, self.hub_url), "origin": self._origin()}
        entities = {
            ("binary_sensor", "online"): {"name": "Online", "state_topic": availability, "payload_on": "online",
                                          "payload_off": "offline", "device_class": "connectivity"},
            ("sensor", "cameras_online"): {"name": "Cameras online", "state_topic": self.topics.hub_state,
                                           "value_template": "{{ value_json.cameras_online }}",
                                           "state_class": "measurement", "availability_topic": availability},
            ("sensor", "viewers"): {"name": "Viewers", "state_topic": self.topics.hub_state,
                                    "value_template": "{{ value_json.viewers }}", "state_class": "measurement",
                                    "availability_topic": availability},
        }
        configs = {}
        for (component, key), payload in entities.items():
            unique_id = f"{self._hub_device_id}_{key}"
            configs[self.topics.ha_config(component, unique_id)] = {**payload, "unique_id": unique_id, **common}
        return configs

    def camera_configs(self, camera: Camera) -> dict[str, dict[str, Any] | None]:
        """A camera's entities: ``{config topic: payload}``; None clears an entity it does not have."""
        cid = camera.id
        state = self.topics.camera_state(cid)
        hub_available = {"topic": self.topics.hub_availability}
        both = {"availability": [hub_available, {"topic": state, "value_template": _NOT_OFFLINE}],
                "availability_mode": "all"}
        hub_only = {"availability": [hub_available]}
        device = camera_device(self.topics, self.hub_url, camera, self.topics.hub_id)

        def value(key: str) -> str:
            return "{{ value_json." + key + " }}"

        def announced(key: str) -> str:
            # The controls' state is the node's retained announce. A decommissioned node's is cleared (empty)
            # before the hub clears these configs: "None" (HA's reset payload for a number and a select) says
            # unknown, where value_json would be undefined (a warning) and '' an invalid option (an error).
            return "{{ value_json." + key + " if value_json is defined else 'None' }}"

        entities: dict[tuple[str, str], dict[str, Any] | None] = {
            ("sensor", "state"): {"name": "State", "state_topic": state, "value_template": value("state"),
                                  "device_class": "enum", "options": list(STATES),
                                  **hub_only},
            ("binary_sensor", "connected"): {
                "name": "Connected", "state_topic": state, "device_class": "connectivity",
                "value_template": "{{ 'OFF' if value_json.state == 'offline' else 'ON' }}", **hub_only},
            ("binary_sensor", "motion"): {"name": "Motion", "state_topic": self.topics.camera_motion(cid),
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
        battery = camera.mode == "snapshot"
        entities.update(self._battery_entities(camera, state, hub_only) if battery else
                        dict.fromkeys(_BATTERY_ENTITIES))
        if battery:
            entities[("sensor", "fps_in")] = None  # it pushes a picture per wake: no incoming rate to show
        controls = controls_of(camera.announce, camera.source)
        control_entities: dict[tuple[str, str], dict[str, Any] | None] = {
            ("number", "fps"): None, ("number", "jpeg_quality"): None, ("select", "frame_size"): None}
        if controls is not None:
            announce_topic = self.topics.node(cid, "announce")
            # A battery camera's change goes to the hub, which queues it for the next wake, asleep or missing.
            common = ({"command_topic": self.topics.camera(cid, "set"), **hub_only} if battery else
                      {"command_topic": self.topics.node(cid, "set"), **both})
            common.update(state_topic=announce_topic, entity_category="config")
            later = " (next wake)" if battery else ""
            control_entities = {
                ("number", "fps"): {"name": "Frame rate" + later, "command_template": '{"fps": {{ value | int }}}',
                                    "value_template": announced("fps"), "min": controls.fps[0], "max": controls.fps[1],
                                    "step": 1, "mode": "box", "unit_of_measurement": "fps", **common},
                ("number", "jpeg_quality"): {
                    "name": "JPEG quality" + later, "command_template": '{"jpeg_quality": {{ value | int }}}',
                    "value_template": announced("jpeg_quality"), "min": controls.jpeg_quality[0],
                    "max": controls.jpeg_quality[1], "step": 1, "mode": "box", "icon": "mdi:quality-high", **common},
                ("select", "frame_size"): {"name": "Frame size" + later, "options": list(controls.frame_sizes),
                                           "command_template": '{"frame_size": "{{ value }}"}',
                                           "value_template": announced("frame_size"), **common},
            }
        entities.update(control_entities)
        # last: see the module's docstring. A battery camera keeps it with the integration set up: its pushed
        # picture is what there is to show, and the integration leaves it out (a stream only while awake).
        live = self.settings.snapshot_s > 0 and (battery or not self.integration)
        entities["camera", "camera"] = ({"name": None, "topic": self.topics.camera_snapshot(cid), **both}
                                        if live else None)
        configs: dict[str, dict[str, Any] | None] = {}
        for (component, key), payload in entities.items():
            unique_id = f"{self.base}_camera_{cid}_{key}"
            if payload is None and not battery and (component, key) in _BATTERY_ENTITIES \
                    and self.topics.ha_config(component, unique_id) not in self._sent:
                continue  # a streaming camera never had them: nothing to clear, even when re-publishing all
            configs[self.topics.ha_config(component, unique_id)] = None if payload is None else {
                **payload, "unique_id": unique_id, "device": device, "origin": self._origin()}
        return configs

    def _battery_entities(self, camera: Camera, state: str,
                          hub_only: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any] | None]:
        """A battery camera's sensors: what a sleeping or missing camera last said, so the hub's availability."""
        has_battery = (camera.announce or {}).get("battery_v") is not None  # the board reads its battery
        return {
            ("sensor", "battery"): {"name": "Battery", "state_topic": state, "value_template":
                                    "{{ value_json.battery_v if value_json.battery_v is not none else 'None' }}",
                                    "device_class": "voltage", "unit_of_measurement": "V",
                                    "state_class": "measurement", "suggested_display_precision": 2, **hub_only}
            if has_battery else None,
            ("sensor", "last_wake"): {"name": "Last wake", "state_topic": state, "device_class": "timestamp",
                                      "value_template": _TIMESTAMP.format("last_wake"), **hub_only},
            ("sensor", "next_wake"): {"name": "Next wake", "state_topic": state, "device_class": "timestamp",
                                      "value_template": _TIMESTAMP.format("next_wake"), **hub_only},
            ("sensor", "pending_settings"): {"name": "Settings for the next wake", "state_topic": state,
                                             "value_template": _PENDING, "icon": "mdi:timer-sand", **hub_only},
        }

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
        """Publish ``camera``'s configs when they differ from what was sent."""
        if self.cameras.get(camera.id) is not camera:
            return  # removed: a late state change of its stopping pull must not bring its entities back
        if not self.publishes(camera.id):
            return
        configs = self.camera_configs(camera)
        self._camera_topics[camera.id] = set(configs)
        for topic, payload in configs.items():
            self._send(topic, payload, force)

    def camera_removed(self, camera_id: str) -> None:
        """Clear a camera's configs (HA removes the entities) and its retained snapshot."""
        if not self.publishes(camera_id):
            self.camera_lost(camera_id)
            return
        for topic in sorted(self._camera_topics.pop(camera_id, ())):
            if self._sent.pop(topic, ""):  # published (an entity it lacks was sent as "" at most): clear it
                self.mqtt.publish(topic, "", retain=True)
        self.mqtt.publish(self.topics.camera_snapshot(camera_id), "", retain=True)
        self._snapshot_seq.pop(camera_id, None)
        self._snapshot_at.pop(camera_id, None)

    def camera_gained(self, camera: Camera) -> None:
        """This hub owns the camera now: its configs (naming this hub's device and availability) and picture."""
        self.camera_changed(camera, force=True)
        self._publish_snapshot(camera, force=True)

    def camera_lost(self, camera_id: str) -> None:
        """Another hub owns the camera now: forget what was sent, clear nothing (its entities stay)."""
        for topic in self._camera_topics.pop(camera_id, ()):
            self._sent.pop(topic, None)
        self._snapshot_seq.pop(camera_id, None)
        self._snapshot_at.pop(camera_id, None)

    def publish_all(self) -> None:
        """Every config, state (each camera's, the hub's summary) and latest snapshot, whatever was sent before."""
        self.mqtt.publish(self.topics.hub_info, integration_info(self.topics, self.hub_url, True), retain=True)
        for topic, payload in self.hub_configs().items():
            self._send(topic, payload, True)
        for camera in self.cameras:
            self.camera_changed(camera, force=True)
            self._publish_snapshot(camera, force=True)
        self.status.states()
        self.status.hub_state(force=True)

    def ha_status(self, topic: str, payload: bytes) -> None:
        """HA's birth (``online``) or will (``offline``); answer a birth after a short random delay."""
        if payload[:64].strip().lower() != b"online":  # a status word; anything longer is not one
            return
        if self._birth is not None:
            self._birth.cancel()
        self._birth = asyncio.get_running_loop().call_later(random.uniform(*BIRTH_DELAY_S), self._answer_birth)

    def integration_status(self, topic: str, payload: bytes) -> None:
        """The retained ``ha_integration`` flag (``on`` while the camhub integration is set up in Home
        Assistant; empty or anything else: not). The camera entities follow it (only changed configs go out)."""
        live = payload[:64].strip().lower() == b"on"
        if live == self.integration:
            return
        log.info("the camhub Home Assistant integration is %s: %s the MQTT camera entities",
                 "set up" if live else "gone", "removing" if live else "publishing")
        self.integration = live
        for camera in self.cameras:
            self.camera_changed(camera)

    def _answer_birth(self) -> None:
        self._birth = None
        log.info("Home Assistant (re)started: re-publishing discovery for %d cameras", len(self.cameras))
        self.publish_all()

    # ---- snapshots -------------------------------------------------------------------------
    def _publish_snapshot(self, camera: Camera, force: bool = False) -> None:
        latest = camera.feed.latest
        if latest is None or self.settings.snapshot_s <= 0 or not self.publishes(camera.id):
            return
        if not force and self._snapshot_seq.get(camera.id) == latest.seq:
            return
        self._snapshot_seq[camera.id] = latest.seq
        self._snapshot_at[camera.id] = time.monotonic()
        self.mqtt.publish(self.topics.camera_snapshot(camera.id), latest.jpeg, retain=True)

    async def run_snapshots(self) -> None:
        """Until cancelled: each streaming camera's latest JPEG, at most every ``ha_snapshot_s`` seconds
        (a newly streaming camera gets its first picture within a second)."""
        interval = self.settings.snapshot_s
        if interval <= 0:
            return
        while True:
            await asyncio.sleep(min(1.0, interval))
            now = time.monotonic()
            for camera in self.cameras:
                if camera.state in (STREAMING, SLEEPING) \
                        and now - self._snapshot_at.get(camera.id, -interval) >= interval:
                    self._publish_snapshot(camera)
