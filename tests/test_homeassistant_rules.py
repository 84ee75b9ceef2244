"""Home Assistant discovery's rules, in process: which configs go out when, and exactly what they say.

``Discovery`` runs here on the real camera registry and status publisher; the MQTT link is the stand-in
that records what would be published (tests/support/hubhttp.py). What a real broker and a real Home
Assistant make of the same payloads: test_homeassistant_discovery.py and test_homeassistant_real.py.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from camhub import __version__
from camhub.hub.core.broker import Broker, FanoutSettings
from camhub.hub.core.camera import STREAMING, Camera
from camhub.hub.core.registry import Cameras
from camhub.hub.mqtt.topics import Topics
from camhub.hub.publish import homeassistant
from camhub.hub.publish.homeassistant import Discovery, DiscoverySettings
from camhub.hub.publish.status import StatusPublisher
from camhub.hub.taps.motion import Motion, MotionSettings
from camhub.hub.taps.recordings import Recordings, RecordSettings
from tests.support import scenes
from tests.support.hubhttp import MOTION_POOL, StandInLink

GARAGE = {"id": "garage", "name": "Garage", "stream_url": "http://127.0.0.1:9/stream", "board": "esp32s3-eye",
          "firmware": "1.2.3", "sensor": "OV5640", "fps": 10, "jpeg_quality": 12, "frame_size": "VGA",
          "controls": {"fps": [1, 25], "jpeg_quality": [5, 60], "frame_size": ["VGA", "QVGA", "XGA"]}}
NOT_OFFLINE = "{{ 'offline' if value_json.state == 'offline' else 'online' }}"
HUB_UP = {"topic": "camhub/hub/availability"}
BOTH = {"availability": [HUB_UP, {"topic": "camhub/hub/cameras/garage/state", "value_template": NOT_OFFLINE}],
        "availability_mode": "all"}
STATE = "camhub/hub/cameras/garage/state"
CONTROL = {"command_topic": "camhub/nodes/garage/set", "state_topic": "camhub/nodes/garage/announce",
           "entity_category": "config", **BOTH}


def announced(key: str) -> str:
    """A control's state from the node's announce; a cleared (decommissioned) announce reads unknown."""
    return "{{ value_json." + key + " if value_json is defined else 'None' }}"


# What Home Assistant reads for a node's camera: each entity's own fields (device and origin below).
GARAGE_ENTITIES: dict[str, dict[str, Any]] = {
    "camera/camera": {"name": None, "topic": "camhub/hub/cameras/garage/snapshot", **BOTH},
    "sensor/state": {"name": "State", "state_topic": STATE, "value_template": "{{ value_json.state }}",
                     "device_class": "enum", "options": ["connecting", "streaming", "stalled", "sleeping", "offline"],
                     "availability": [HUB_UP]},
    "binary_sensor/connected": {"name": "Connected", "state_topic": STATE, "device_class": "connectivity",
                                "value_template": "{{ 'OFF' if value_json.state == 'offline' else 'ON' }}",
                                "availability": [HUB_UP]},
    "binary_sensor/motion": {"name": "Motion", "state_topic": "camhub/hub/cameras/garage/motion",
                             "device_class": "motion", **BOTH},
    "sensor/fps_in": {"name": "FPS in", "state_topic": STATE, "value_template": "{{ value_json.fps_in }}",
                      "unit_of_measurement": "fps", "state_class": "measurement", "suggested_display_precision": 1,
                      **BOTH},
    "sensor/viewers": {"name": "Viewers", "state_topic": STATE, "value_template": "{{ value_json.clients }}",
                       "state_class": "measurement", **BOTH},
    "sensor/frames_dropped": {"name": "Frames dropped", "state_topic": STATE,
                              "value_template": "{{ value_json.dropped_total }}", "state_class": "total_increasing",
                              "entity_category": "diagnostic", **BOTH},
    "sensor/last_frame_age": {"name": "Last frame age", "state_topic": STATE,
                              "value_template": "{{ value_json.last_frame_age_ms }}", "device_class": "duration",
                              "unit_of_measurement": "ms", "state_class": "measurement",
                              "entity_category": "diagnostic", **BOTH},
    "number/fps": {"name": "Frame rate", "command_template": '{"fps": {{ value | int }}}',
                   "value_template": announced("fps"), "min": 1, "max": 25, "step": 1, "mode": "box",
                   "unit_of_measurement": "fps", **CONTROL},
    "number/jpeg_quality": {"name": "JPEG quality", "command_template": '{"jpeg_quality": {{ value | int }}}',
                            "value_template": announced("jpeg_quality"), "min": 5, "max": 60, "step": 1,
                            "mode": "box", "icon": "mdi:quality-high", **CONTROL},
    "select/frame_size": {"name": "Frame size", "options": ["QVGA", "VGA", "XGA"],  # smallest first
                          "command_template": '{"frame_size": "{{ value }}"}',
                          "value_template": announced("frame_size"), **CONTROL},
}
GARAGE_DEVICE = {"identifiers": ["camhub_camera_garage"], "name": "Garage", "manufacturer": "camhub",
                 "model": "esp32s3-eye", "configuration_url": "http://hub.example:8000/#/camera/garage",
                 "via_device": "camhub_hub", "sw_version": "1.2.3", "hw_version": "OV5640"}
ORIGIN = {"name": "camhub", "sw_version": __version__}


@dataclass
class World:
    link: StandInLink
    cameras: Cameras
    discovery: Discovery

    def add(self, camera_id: str = "garage", announce: dict[str, Any] | None = None, source: str = "mqtt",
            name: str = "Garage") -> Camera:
        camera = self.cameras.add(camera_id, name, source, "http://127.0.0.1:9/stream",
                                  dict(GARAGE if announce is None else announce))
        self.discovery.camera_changed(camera)
        return camera

    def configs(self) -> dict[str, Any]:
        """What a Home Assistant subscribing now would get: the newest payload per config topic, decoded."""
        newest: dict[str, Any] = {}
        for topic, payload, _ in self.link.published:
            if topic.endswith("/config"):
                newest[topic] = json.loads(payload) if payload else None
        return {t: p for t, p in newest.items() if p is not None}

    def sent(self) -> list[tuple[str, Any, bool]]:
        """What was published since the last call: ``(topic, payload, retained)``."""
        out = [(t, p, r) for (t, p, _), r in zip(self.link.published, self.link.retained, strict=True)]
        self.link.published.clear()
        self.link.retained.clear()
        return out


async def make(tmp_path: Path, prefix: str = "camhub", discovery_prefix: str = "homeassistant",
               snapshot_s: float = 10.0) -> World:
    link = StandInLink()
    topics = Topics(prefix, discovery_prefix)
    cameras = Cameras(Broker(FanoutSettings()), max_cameras=8)
    recordings = Recordings(RecordSettings(root=tmp_path, preroll_s=0, postroll_s=0, segment_s=60, keep_days=1,
                                           max_gb=1, min_free_gb=0, timelapse_s=0))
    status = StatusPublisher(link, topics, cameras, Motion(MotionSettings(), True, MOTION_POOL), recordings)  # type: ignore[arg-type]
    discovery = Discovery(DiscoverySettings(hub_url="http://hub.example:8000/", snapshot_s=snapshot_s), link,  # type: ignore[arg-type]
                          topics, cameras, status)
    return World(link, cameras, discovery)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    yield await make(tmp_path)


def entity(topic: str) -> str:
    """``homeassistant/sensor/camhub_camera_garage_fps_in/config`` -> ``sensor/fps_in``."""
    _, component, unique_id, _ = topic.split("/")
    return f"{component}/{unique_id.removeprefix('camhub_camera_garage_').removeprefix('camhub_hub_')}"


# ---- what is published ---------------------------------------------------------------------------
async def test_a_node_camera_is_a_device_with_these_entities(world: World) -> None:
    world.add()
    configs = world.configs()
    assert {entity(t) for t in configs} == set(GARAGE_ENTITIES)
    for topic, payload in configs.items():
        key = entity(topic)
        unique_id = f"camhub_camera_garage_{key.split('/')[1]}"
        assert topic == f"homeassistant/{key.split('/')[0]}/{unique_id}/config"
        assert payload == {**GARAGE_ENTITIES[key], "unique_id": unique_id, "device": GARAGE_DEVICE,
                           "origin": ORIGIN}, key
    assert all(world.link.retained)  # every config is retained


async def test_the_hub_is_a_device_with_its_own_entities(world: World) -> None:
    device = {"identifiers": ["camhub_hub"], "name": "camhub", "manufacturer": "camhub", "model": "camhub hub",
              "sw_version": __version__, "configuration_url": "http://hub.example:8000/"}
    configs = world.discovery.hub_configs()
    assert configs == {
        "homeassistant/binary_sensor/camhub_hub_online/config": {
            "name": "Online", "state_topic": "camhub/hub/availability", "payload_on": "online",
            "payload_off": "offline", "device_class": "connectivity", "unique_id": "camhub_hub_online",
            "device": device, "origin": ORIGIN},
        "homeassistant/sensor/camhub_hub_cameras_online/config": {
            "name": "Cameras online", "state_topic": "camhub/hub/state",
            "value_template": "{{ value_json.cameras_online }}", "state_class": "measurement",
            "availability_topic": "camhub/hub/availability", "unique_id": "camhub_hub_cameras_online",
            "device": device, "origin": ORIGIN},
        "homeassistant/sensor/camhub_hub_viewers/config": {
            "name": "Viewers", "state_topic": "camhub/hub/state", "value_template": "{{ value_json.viewers }}",
            "state_class": "measurement", "availability_topic": "camhub/hub/availability",
            "unique_id": "camhub_hub_viewers", "device": device, "origin": ORIGIN},
    }


async def test_another_topic_prefix_is_another_hub_with_its_own_ids(tmp_path: Path) -> None:
    """Two hubs on one broker (prefixes ``camhub`` and ``home/cams``) must not share a device or an entity."""
    world = await make(tmp_path, prefix="home/cams", discovery_prefix="ha")
    world.add()
    hub = world.discovery.hub_configs()
    assert sorted(hub) == ["ha/binary_sensor/home_cams_hub_online/config",
                           "ha/sensor/home_cams_hub_cameras_online/config", "ha/sensor/home_cams_hub_viewers/config"]
    online = hub["ha/binary_sensor/home_cams_hub_online/config"]
    assert online["device"]["name"] == "camhub home/cams" and online["device"]["identifiers"] == ["home_cams_hub"]
    assert online["state_topic"] == "home/cams/hub/availability"
    motion = world.configs()["ha/binary_sensor/home_cams_camera_garage_motion/config"]
    assert motion["device"]["identifiers"] == ["home_cams_camera_garage"]
    assert motion["device"]["via_device"] == "home_cams_hub"
    assert motion["state_topic"] == "home/cams/hub/cameras/garage/motion"
    assert all(t.startswith("ha/") for t in world.configs())
    assert homeassistant._slug("//") == "camhub" and homeassistant._slug("Site-1/Cams") == "site_1_cams"


async def test_a_plain_mjpeg_source_has_no_settings_entities_and_no_node_details(world: World) -> None:
    world.add("door", {}, source="static", name="Front door")
    configs = world.configs()
    assert {entity(t).replace("camhub_camera_door_", "") for t in configs} == {
        "camera/camera", "sensor/state", "binary_sensor/connected", "binary_sensor/motion", "sensor/fps_in",
        "sensor/viewers", "sensor/frames_dropped", "sensor/last_frame_age"}
    device = next(iter(configs.values()))["device"]
    assert device == {"identifiers": ["camhub_camera_door"], "name": "Front door", "manufacturer": "camhub",
                      "model": "MJPEG source", "configuration_url": "http://hub.example:8000/#/camera/door",
                      "via_device": "camhub_hub"}
    assert all(p for _, p, _ in world.sent())  # nothing cleared: it never had them
    world.add("attic", {"id": "attic", "name": "Attic"})  # a node that says nothing about its board
    assert world.configs()["homeassistant/sensor/camhub_camera_attic_state/config"]["device"]["model"] == "camhub node"


async def test_without_snapshots_there_is_no_camera_entity(tmp_path: Path) -> None:
    world = await make(tmp_path, snapshot_s=0)
    world.add()
    assert "camera/camera" not in {entity(t) for t in world.configs()}
    assert all(p for _, p, _ in world.sent())


# ---- when it is published ------------------------------------------------------------------------
async def test_configs_go_out_only_when_they_change(world: World) -> None:
    camera = world.add()
    assert len(world.sent()) == 11
    world.cameras.set_state(camera, STREAMING)
    world.discovery.camera_changed(camera)  # the state is not in a config: nothing to send
    assert world.sent() == []
    camera.announce = {**GARAGE, "controls": {**GARAGE["controls"], "fps": [1, 15]}}
    world.discovery.camera_changed(camera)
    assert [entity(t) for t, _, _ in world.sent()] == ["number/fps"]  # only the entity that changed
    camera.name = "Garage door"
    world.discovery.camera_changed(camera)
    assert len(world.sent()) == 11  # the device's name is in every config


async def test_entities_a_camera_no_longer_has_are_cleared(world: World) -> None:
    camera = world.add()
    world.sent()
    camera.announce = None  # no node's announce (say, known from an earlier run): no settings to offer
    world.discovery.camera_changed(camera)
    sent = world.sent()
    cleared = sorted(entity(t) for t, p, _ in sent if p == "")
    assert cleared == ["number/fps", "number/jpeg_quality", "select/frame_size"]
    assert all(retained for _, _, retained in sent) and len(sent) == 11  # the rest: the device says "camhub node"
    world.discovery.camera_changed(camera)
    assert world.sent() == []  # cleared once


async def test_a_removed_camera_is_cleared_and_comes_back_when_it_returns(world: World) -> None:
    camera = world.add()
    published = {t for t, _, _ in world.sent()}
    world.cameras.pop("garage")
    world.discovery.camera_removed("garage")
    cleared = world.sent()
    assert {t for t, _, _ in cleared} == published | {"camhub/hub/cameras/garage/snapshot"}
    assert all(p == "" and retained for _, p, retained in cleared)  # an empty retained config removes the entity
    world.discovery.camera_changed(camera)  # a late state change of its stopping pull
    assert world.sent() == []  # does not bring it back
    world.add()  # the same node announces again
    assert {t for t, p, _ in world.sent() if p} == published  # every entity is back in Home Assistant


async def test_home_assistants_birth_gets_everything_again_after_a_short_delay(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(homeassistant, "BIRTH_DELAY_S", (0.1, 0.1))
    world.discovery.subscribe()
    birth = world.link.handlers["homeassistant/status"]
    camera = world.add()
    world.cameras.set_state(camera, STREAMING)
    camera.feed.publish(scenes.still(count=1, size=(160, 120))[0], time.time())
    world.sent()
    for payload in (b"offline", b"online " + b"x" * 100, b"onlinex"):
        birth("homeassistant/status", payload)
    await asyncio.sleep(0.3)
    assert world.sent() == []  # not a birth
    birth("homeassistant/status", b"online")
    birth("homeassistant/status", b" ONLINE\n")  # twice in a row: answered once
    assert world.sent() == []  # not at once: many hubs must not answer together
    await asyncio.sleep(0.3)
    topics = [t for t, _, _ in world.sent()]
    configs = [t for t in topics if t.endswith("/config")]
    assert len(configs) == len(set(configs)) == 14  # every config, once, although none changed
    assert {"camhub/hub/cameras/garage/state", "camhub/hub/state", "camhub/hub/cameras/garage/snapshot"} <= set(topics)
    assert topics.count("camhub/hub/cameras/garage/snapshot") == 1


# ---- the camera entity's picture -----------------------------------------------------------------
async def test_a_streaming_cameras_newest_picture_is_published_at_most_every_snapshot_s(tmp_path: Path) -> None:
    world = await make(tmp_path, snapshot_s=0.3)
    garage, door = world.add(), world.add("door", {}, source="static", name="Door")
    jpegs = scenes.still(count=2, size=(160, 120))
    garage.feed.publish(jpegs[0], time.time())
    door.feed.publish(jpegs[0], time.time())
    world.cameras.set_state(garage, STREAMING)  # the door is not streaming (its last frame is old news)
    world.sent()

    async def snapshots_for(seconds: float) -> list[tuple[str, Any, bool]]:
        task = asyncio.create_task(world.discovery.run_snapshots())
        await asyncio.sleep(seconds)
        task.cancel()
        return world.sent()

    garage_snapshot = "camhub/hub/cameras/garage/snapshot"
    assert await snapshots_for(0.45) == [(garage_snapshot, jpegs[0], True)]  # retained: HA's camera shows it
    assert await snapshots_for(0.5) == []  # the same frame: not again
    garage.feed.publish(jpegs[1], time.time())
    assert await snapshots_for(0.45) == [(garage_snapshot, jpegs[1], True)]
    world.cameras.pop("garage")
    world.discovery.camera_removed("garage")
    assert (garage_snapshot, "", True) in world.sent()  # its picture cleared too
    back = world.add()  # back, with the same frame as before: it gets its picture again
    world.cameras.set_state(back, STREAMING)
    world.sent()
    assert await snapshots_for(0.45) == [(garage_snapshot, jpegs[1], True)]


async def test_no_snapshots_are_sent_when_the_period_is_zero(tmp_path: Path) -> None:
    world = await make(tmp_path, snapshot_s=0)
    garage = world.add()
    garage.feed.publish(scenes.still(count=1, size=(160, 120))[0], time.time())
    world.cameras.set_state(garage, STREAMING)
    world.sent()
    await asyncio.wait_for(world.discovery.run_snapshots(), 1)  # returns at once
    world.discovery.publish_all()
    assert not [t for t, _, _ in world.sent() if "snapshot" in t]


async def test_with_the_integration_set_up_a_battery_camera_keeps_its_mqtt_picture(world: World) -> None:
    """The camhub integration's live entity replaces a streaming camera's MQTT camera entity; a battery camera's
    stays (its pushed picture is what there is to show: a stream would answer only while it is awake)."""
    world.add()
    world.add("nestbox", {"id": "nestbox", "name": "Nest box", "mode": "snapshot", "interval_s": 300,
                          "wake": "timer", "frame_size": "VGA", "jpeg_quality": 12, "fps": 10}, name="Nest box")
    world.discovery.integration_status(world.discovery.topics.ha_integration, b"on")
    cameras = {t for t in world.configs() if t.startswith("homeassistant/camera/")}
    assert cameras == {"homeassistant/camera/camhub_camera_nestbox_camera/config"}


# ---- battery cameras -----------------------------------------------------------------------------
NESTBOX = {**GARAGE, "id": "nestbox", "name": "Nest box", "mode": "snapshot", "interval_s": 300, "wake": "timer",
           "battery_v": 3.9}
NESTBOX_STATE = "camhub/hub/cameras/nestbox/state"


def timestamp(key: str) -> str:
    """A timestamp sensor's template: the state's Unix time as ISO 8601 (UTC), "None" (unknown) when absent."""
    return ("{% if value_json." + key + " %}{{ value_json." + key + " | int | timestamp_custom("
            "'%Y-%m-%dT%H:%M:%S+00:00', false) }}{% else %}None{% endif %}")


def battery_entities() -> dict[str, dict[str, Any]]:
    """What Home Assistant reads for a battery camera (the nest box): what it last said, available with the hub
    while it sleeps; its controls queue a change at the hub for the next wake; no incoming frame rate."""
    hub_only = {"availability": [HUB_UP]}
    both = {"availability": [HUB_UP, {"topic": NESTBOX_STATE, "value_template": NOT_OFFLINE}],
            "availability_mode": "all"}

    def streaming(key: str) -> dict[str, Any]:  # the same entity as a streaming camera's, on the nest box's topics
        payload = json.loads(json.dumps(GARAGE_ENTITIES[key]).replace("/garage/", "/nestbox/"))
        return {**payload, **(both if "availability_mode" in payload else hub_only)}

    def control(key: str) -> dict[str, Any]:
        payload = {k: v for k, v in GARAGE_ENTITIES[key].items() if k not in ("availability", "availability_mode")}
        return {**payload, "name": payload["name"] + " (next wake)", "command_topic": "camhub/hub/cameras/nestbox/set",
                "state_topic": "camhub/nodes/nestbox/announce", **hub_only}

    return {
        **{key: streaming(key) for key in ("camera/camera", "sensor/state", "binary_sensor/connected",
                                           "binary_sensor/motion", "sensor/viewers", "sensor/frames_dropped",
                                           "sensor/last_frame_age")},
        **{key: control(key) for key in ("number/fps", "number/jpeg_quality", "select/frame_size")},
        "sensor/battery": {"name": "Battery", "state_topic": NESTBOX_STATE, "value_template":
                           "{{ value_json.battery_v if value_json.battery_v is not none else 'None' }}",
                           "device_class": "voltage", "unit_of_measurement": "V", "state_class": "measurement",
                           "suggested_display_precision": 2, **hub_only},
        "sensor/last_wake": {"name": "Last wake", "state_topic": NESTBOX_STATE, "device_class": "timestamp",
                             "value_template": timestamp("last_wake"), **hub_only},
        "sensor/next_wake": {"name": "Next wake", "state_topic": NESTBOX_STATE, "device_class": "timestamp",
                             "value_template": timestamp("next_wake"), **hub_only},
        "sensor/pending_settings": {
            "name": "Settings for the next wake", "state_topic": NESTBOX_STATE, "icon": "mdi:timer-sand",
            "value_template": "{% set p = value_json.pending %}{{ p.items() | map('join', ' ') | join(', ') "
                              "if p else 'none' }}", **hub_only},
    }


def nestbox_entity(topic: str) -> str:
    _, component, unique_id, _ = topic.split("/")
    return f"{component}/{unique_id.removeprefix('camhub_camera_nestbox_')}"


async def test_a_battery_camera_is_a_device_with_its_wake_sensors_and_next_wake_controls(world: World) -> None:
    world.add("nestbox", NESTBOX, name="Nest box")
    configs = {nestbox_entity(t): p for t, p in world.configs().items()}
    expected = battery_entities()
    assert set(configs) == set(expected)  # no "FPS in": it pushes a picture per wake
    device = {**GARAGE_DEVICE, "identifiers": ["camhub_camera_nestbox"], "name": "Nest box",
              "configuration_url": "http://hub.example:8000/#/camera/nestbox"}
    for key, payload in configs.items():
        unique_id = f"camhub_camera_nestbox_{key.split('/')[1]}"
        assert payload == {**expected[key], "unique_id": unique_id, "device": device, "origin": ORIGIN}, key


async def test_a_camera_that_stops_being_a_battery_camera_loses_its_wake_sensors(world: World) -> None:
    nestbox = world.add("nestbox", NESTBOX, name="Nest box")
    world.sent()
    nestbox.announce = {k: v for k, v in NESTBOX.items() if k != "battery_v"}  # a board that reads no battery
    world.discovery.camera_changed(nestbox)
    assert [(nestbox_entity(t), p) for t, p, _ in world.sent()] == [("sensor/battery", "")]
    nestbox.announce = {**GARAGE, "id": "nestbox", "name": "Nest box"}  # streaming now
    world.discovery.camera_changed(nestbox)
    sent = {nestbox_entity(t): p for t, p, _ in world.sent()}
    assert {k for k, p in sent.items() if p == ""} == {"sensor/last_wake", "sensor/next_wake",
                                                        "sensor/pending_settings"}
    assert json.loads(sent["sensor/fps_in"])["name"] == "FPS in"  # its frame rate in is back
    assert json.loads(sent["number/fps"])["command_topic"] == "camhub/nodes/nestbox/set"  # controls: to the node
    assert json.loads(sent["number/fps"])["name"] == "Frame rate"


# ---- the hub's info, Home Assistant's birth, the integration's flag -------------------------------
async def test_everything_published_again_includes_the_hubs_info_for_the_integration(world: World) -> None:
    """``publish_all`` (HA's birth, MQTT reconnects): the retained info the camhub integration adopts the hub by,
    every config, each camera's newest picture and state and the hub's summary, even when nothing changed."""
    garage = world.add()
    world.cameras.set_state(garage, STREAMING)
    garage.feed.publish(scenes.still(count=1, size=(160, 120))[0], time.time())
    for _ in range(2):  # the second time too: a birth answers whatever was sent before
        world.discovery.publish_all()
        sent = world.sent()
        info = [(p, r) for t, p, r in sent if t == "camhub/hub/info"]
        assert info == [({"url": "http://hub.example:8000", "version": __version__,
                          "device": world.discovery.hub_configs()["homeassistant/binary_sensor/camhub_hub_online/"
                                                                  "config"]["device"],
                          "integration_topic": "camhub/hub/ha_integration", "mqtt_discovery": True}, True)]
        configs = {t: p for t, p, _ in sent if t.endswith("/config")}
        assert len(configs) == 14 and all(configs.values())
        assert {t: json.loads(configs[t]) for t in world.discovery.hub_configs()} == world.discovery.hub_configs()
        topics = [t for t, _, _ in sent]
        assert topics.count("camhub/hub/cameras/garage/snapshot") == 1
        assert topics.count("camhub/hub/cameras/garage/state") == 1 and topics.count("camhub/hub/state") == 1


async def test_each_birth_of_home_assistant_is_answered_and_logged(
        world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(homeassistant, "BIRTH_DELAY_S", (0.05, 0.05))
    world.discovery.subscribe()
    world.add()
    caplog.set_level("INFO", logger="camhub.hub.publish.homeassistant")
    for _ in range(2):  # it restarts twice: answered twice
        world.sent()
        world.link.handlers["homeassistant/status"]("homeassistant/status", b"online")
        await asyncio.sleep(0.2)
        assert len([t for t, _, _ in world.sent() if t.endswith("/config")]) == 14
    assert [r.getMessage() for r in caplog.records] == [
        "Home Assistant (re)started: re-publishing discovery for 1 cameras"] * 2


async def test_the_integrations_flag_replaces_the_camera_entity_and_gives_it_back(
        world: World, caplog: pytest.LogCaptureFixture) -> None:
    world.discovery.subscribe()
    flag = world.link.handlers["camhub/hub/ha_integration"]
    world.add()
    camera_config = "homeassistant/camera/camhub_camera_garage_camera/config"
    caplog.set_level("INFO", logger="camhub.hub.publish.homeassistant")
    flag("camhub/hub/ha_integration", b"")  # no integration (a cleared flag): nothing changes, nothing said
    assert camera_config in world.configs() and caplog.records == []
    world.sent()
    flag("camhub/hub/ha_integration", b" ON\n")
    assert world.sent() == [(camera_config, "", True)]  # its own live entity replaces it
    flag("camhub/hub/ha_integration", b"off")
    ((topic, payload, _),) = world.sent()
    assert topic == camera_config and json.loads(payload)["topic"] == "camhub/hub/cameras/garage/snapshot"
    assert [r.getMessage() for r in caplog.records] == [
        "the camhub Home Assistant integration is set up: removing the MQTT camera entities",
        "the camhub Home Assistant integration is gone: publishing the MQTT camera entities"]


# ---- in a cluster: the owner publishes ---------------------------------------------------------
async def test_in_a_cluster_a_camera_is_published_by_its_owner_via_that_hubs_device(tmp_path: Path) -> None:
    world = await make(tmp_path)
    owned = {"garage"}
    discovery = world.discovery
    world.discovery = Discovery(discovery.settings, world.link, Topics("camhub", "homeassistant", hub_id="o1"),  # type: ignore[arg-type]
                                world.cameras, discovery.status, publishes=lambda camera_id: camera_id in owned)
    hub = world.discovery.hub_configs()
    assert {p["device"]["identifiers"][0] for p in hub.values()} == {"camhub_hub_o1"}
    assert {p["device"]["name"] for p in hub.values()} == {"camhub o1"}
    assert {p["unique_id"] for p in hub.values()} == {"camhub_hub_o1_online", "camhub_hub_o1_cameras_online",
                                                      "camhub_hub_o1_viewers"}
    garage, door = world.add(), world.add("door", {}, source="static", name="Door")
    jpeg = scenes.still(count=1, size=(160, 120))[0]
    for camera in (garage, door):
        camera.feed.publish(jpeg, time.time())
    configs = world.configs()
    assert {p["device"]["via_device"] for p in configs.values()} == {"camhub_hub_o1"}
    assert all("/camhub_camera_garage_" in t for t in configs)  # the door is another hub's
    assert configs["homeassistant/sensor/camhub_camera_garage_state/config"]["availability"] == [
        {"topic": "camhub/hubs/o1/availability"}]
    world.discovery.publish_all()
    assert "camhub/hub/cameras/door/snapshot" not in [t for t, _, _ in world.sent()]
    # the door moves here: its configs and picture go out at once, the same unique ids
    owned.add("door")
    world.discovery.camera_gained(door)
    sent = world.sent()
    assert ("camhub/hub/cameras/door/snapshot", jpeg, True) in sent
    assert {t for t, p, _ in sent if t.endswith("/config") and p} == {
        f"homeassistant/{key.split('/')[0]}/camhub_camera_door_{key.split('/')[1]}/config"
        for key in ("camera/camera", "sensor/state", "binary_sensor/connected", "binary_sensor/motion",
                    "sensor/fps_in", "sensor/viewers", "sensor/frames_dropped", "sensor/last_frame_age")}
    # the garage moves away: nothing is cleared (its entities stay, the new owner publishes them)
    owned.discard("garage")
    world.discovery.camera_lost("garage")
    world.cameras.pop("garage")
    world.discovery.camera_removed("garage")
    assert world.sent() == []
    assert world.discovery.sizes() == {"configs_sent": 14, "cameras": 1, "snapshot_cameras": 2}  # the hub and the door
    # it comes back here later: every config again, though this hub once sent the same
    world.add()
    assert world.sent() == []  # not while another hub owns it
    owned.add("garage")
    world.discovery.camera_gained(world.cameras.get("garage"))  # type: ignore[arg-type]
    assert len([t for t, p, _ in world.sent() if t.endswith("/config") and p]) == 11


async def test_a_removed_camera_clears_only_what_was_published_and_leaves_nothing_behind(world: World) -> None:
    world.add("door", {}, source="static", name="Door")
    published = {t for t, _, _ in world.sent()}
    world.cameras.pop("door")
    world.discovery.camera_removed("door")
    cleared = world.sent()
    assert {t for t, _, _ in cleared} == published | {"camhub/hub/cameras/door/snapshot"}  # not its missing controls
    world.discovery.camera_removed("attic")  # never published (removed before it was ever announced)
    assert world.sent() == [("camhub/hub/cameras/attic/snapshot", "", True)]
    yard = world.add("yard", {}, source="static", name="Yard")
    yard.feed.publish(scenes.still(count=1, size=(160, 120))[0], time.time())
    world.discovery.publish_all()  # its picture too
    world.cameras.pop("yard")
    world.discovery.camera_removed("yard")
    assert world.discovery.sizes() == {"configs_sent": 3, "cameras": 0, "snapshot_cameras": 0}  # the hub's configs


async def test_a_camera_entity_exists_for_any_snapshot_period_above_zero(tmp_path: Path) -> None:
    world = await make(tmp_path, snapshot_s=0.5)
    world.add()
    assert "camera/camera" in {entity(t) for t in world.configs()}


async def test_a_new_picture_goes_out_within_a_second_then_at_most_every_snapshot_s(tmp_path: Path) -> None:
    world = await make(tmp_path, snapshot_s=2.5)
    garage = world.add()
    world.cameras.set_state(garage, STREAMING)
    jpegs = scenes.still(count=4, size=(160, 120))
    garage.feed.publish(jpegs[0], time.time())
    world.sent()
    task = asyncio.create_task(world.discovery.run_snapshots())
    try:
        await asyncio.sleep(1.3)
        assert [p for t, p, _ in world.sent() if t.endswith("/snapshot")] == [jpegs[0]]  # a newly streaming camera
        for jpeg in jpegs[1:]:  # a new frame every 0.5 s: none of them until 2.5 s after the first picture
            garage.feed.publish(jpeg, time.time())
            await asyncio.sleep(0.5)
        assert world.sent() == []
    finally:
        task.cancel()


def test_every_letter_and_digit_of_a_name_is_kept_in_its_ids() -> None:
    assert homeassistant._slug("Site X") == "site_x" and homeassistant._slug("X-1") == "x_1"


async def test_the_hub_url_is_linked_as_given(tmp_path: Path) -> None:
    """A hub behind a proxy path (``CAMHUB_PUBLIC_URL``) is linked there, to the last letter."""
    world = await make(tmp_path)
    world.discovery = Discovery(DiscoverySettings(hub_url="https://example.net/camX"), world.link,  # type: ignore[arg-type]
                                world.discovery.topics, world.cameras, world.discovery.status)
    world.add()
    world.discovery.publish_all()
    assert world.configs()["homeassistant/sensor/camhub_camera_garage_state/config"]["device"][
        "configuration_url"] == "https://example.net/camX/#/camera/garage"
    info = next(p for t, p, _ in world.sent() if t == "camhub/hub/info")
    assert info["url"] == "https://example.net/camX"
    assert info["device"]["configuration_url"] == "https://example.net/camX/"


async def test_in_a_cluster_the_owner_clears_a_removed_camera_and_re_asserts_what_it_owns(tmp_path: Path) -> None:
    world = await make(tmp_path)
    owned = {"garage", "door"}
    discovery = world.discovery
    world.discovery = Discovery(discovery.settings, world.link, Topics("camhub", "homeassistant", hub_id="o1"),  # type: ignore[arg-type]
                                world.cameras, discovery.status, publishes=lambda camera_id: camera_id in owned)
    garage, door = world.add(), world.add("door", {}, source="static", name="Door")
    jpeg = scenes.still(count=1, size=(160, 120))[0]
    garage.feed.publish(jpeg, time.time())
    world.discovery.camera_gained(garage)
    world.sent()
    world.discovery.camera_gained(garage)  # the link came back (the broker may have restarted empty): all again
    assert ("camhub/hub/cameras/garage/snapshot", jpeg, True) in world.sent()
    owned.discard("door")  # another hub took the door: this one forgets it (it never sent its controls)
    world.discovery.camera_lost("door")
    world.cameras.pop("garage")  # removed while this hub owns it: cleared
    world.discovery.camera_removed("garage")
    cleared = world.sent()
    assert len([t for t, p, _ in cleared if t.endswith("/config") and p == ""]) == 11
    assert ("camhub/hub/cameras/garage/snapshot", "", True) in cleared
    world.discovery.camera_changed(door)
    owned.add("door")
    world.discovery.camera_changed(door)
    owned.discard("door")
    world.cameras.pop("door")  # removed, owned by another hub: nothing cleared, nothing kept
    world.discovery.camera_removed("door")
    assert [p for t, p, _ in world.sent() if p == ""] == []
    assert world.discovery.sizes() == {"configs_sent": 0, "cameras": 0, "snapshot_cameras": 0}
