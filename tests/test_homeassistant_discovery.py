"""Home Assistant discovery as the hub publishes it (real mosquitto, hub and simulated node; no HA).

What a Home Assistant would read: retained configs for a device per camera and one for the hub, the
snapshot JPEG on the camera entity's topic, every config again after HA's birth message, configs
cleared when a camera is removed, and none of it when discovery is turned off. The same payloads
are proven against a real Home Assistant in test_homeassistant_real.py (``make test-ha``).
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from camhub_node.config import FPS_MAX, FRAME_SIZES, QUALITY_MAX, QUALITY_MIN
from tests.support.mqtt import Message, Observer
from tests.support.procs import HubProcess, Mosquitto, SimNode, free_port
from tests.support.waiting import get_json, wait_until

PREFIX = "homeassistant"


def configs(observer: Observer, camera: str | None = None) -> dict[str, dict]:
    """The newest non-empty config per discovery topic (optionally only ``camera``'s)."""
    newest: dict[str, Message] = {}
    for m in observer.on(f"{PREFIX}/+/+/config"):
        newest[m.topic] = m
    found = {t: json.loads(m.payload) for t, m in newest.items() if m.payload}
    if camera is not None:
        found = {t: c for t, c in found.items() if c["device"]["identifiers"] == [f"camhub_camera_{camera}"]}
    return found


def by_component(found: dict[str, dict]) -> dict[str, dict]:
    """``{"<component>/<name>": config}``."""
    return {f"{t.split('/')[1]}/{c['name']}": c for t, c in found.items()}


@dataclass
class World:
    broker: Mosquitto
    observer: Observer
    node: SimNode
    hub: HubProcess


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[World]:
    """One hub and node for the tests that read what a default hub publishes (the last one removes the node)."""
    broker = Mosquitto()
    observer = Observer(broker.port, [f"{PREFIX}/#", "camhub/#"])
    node = SimNode("garage", broker.port, fps=5, frame_size="QQVGA", env={"CAMHUB_NODE_NAME": "Garage"})
    hub = HubProcess(broker.port, tmp_path_factory.mktemp("state"), env={"CAMHUB_HA_SNAPSHOT_S": "1"})
    try:
        node.wait_ready()
        hub.wait_ready()
        yield World(broker, observer, node, hub)
    finally:
        node.stop()
        hub.stop()
        observer.close()
        broker.stop()


@pytest.fixture
def node(mosquitto: Mosquitto) -> Iterator[SimNode]:
    sim = SimNode("garage", mosquitto.port, fps=5, frame_size="QQVGA", env={"CAMHUB_NODE_NAME": "Garage"})
    yield sim
    sim.stop()


def start_hub(mosquitto: Mosquitto, tmp_path: Path, **env: str) -> HubProcess:
    return HubProcess(mosquitto.port, tmp_path / "state", env={"CAMHUB_HA_SNAPSHOT_S": "1", **env}).wait_ready()


def test_a_camera_and_the_hub_are_devices_with_their_entities(world: World) -> None:
    observer, hub, node = world.observer, world.hub, world.node
    wait_until(lambda: len(configs(observer, "garage")) == 11, 15, "the camera's eleven entities")
    cam = by_component(configs(observer, "garage"))
    assert sorted(cam) == sorted([
        "camera/None", "sensor/State", "sensor/FPS in", "sensor/Viewers", "sensor/Frames dropped",
        "sensor/Last frame age", "binary_sensor/Connected", "binary_sensor/Motion", "number/Frame rate",
        "number/JPEG quality", "select/Frame size"])
    everything = configs(observer)
    assert len({c["unique_id"] for c in everything.values()}) == len(everything)  # unique ids, all of them
    assert all("object_id" not in c for c in everything.values())  # entity ids come from the names
    for topic, config in everything.items():
        assert topic == f"{PREFIX}/{topic.split('/')[1]}/{config['unique_id']}/config"
    device = cam["camera/None"]["device"]
    assert device["name"] == "Garage"
    assert device["model"] == "simulated"  # the board the node announced
    assert device["sw_version"] == get_json(node.url + "/status")["firmware"]
    assert device["configuration_url"] == f"{hub.url}/#/camera/garage"
    hub_entities = {c["name"]: c for c in everything.values() if c["device"]["identifiers"] == ["camhub_hub"]}
    assert sorted(hub_entities) == ["Cameras online", "Online", "Viewers"]
    assert device["via_device"] == "camhub_hub"
    # Unavailable when the hub is offline OR the camera is: a crashed hub never leaves a camera looking live.
    for name in ("camera/None", "sensor/FPS in", "number/Frame rate", "binary_sensor/Motion"):
        assert cam[name]["availability_mode"] == "all"
        assert [a["topic"] for a in cam[name]["availability"]] == [
            "camhub/hub/availability", "camhub/hub/cameras/garage/state"]
    assert cam["binary_sensor/Motion"]["state_topic"] == "camhub/hub/cameras/garage/motion"
    assert cam["binary_sensor/Motion"]["device_class"] == "motion"
    # The node's controls, with the node's own ranges; commands go to its set topic, states follow its announce.
    fps, quality, size = cam["number/Frame rate"], cam["number/JPEG quality"], cam["select/Frame size"]
    assert (fps["min"], fps["max"], quality["min"], quality["max"]) == (1, FPS_MAX, QUALITY_MIN, QUALITY_MAX)
    assert sorted(size["options"]) == sorted(FRAME_SIZES)
    assert size["options"][:3] == ["R96X96", "QQVGA", "QCIF"]  # smallest first
    for control in (fps, quality, size):
        assert control["command_topic"] == "camhub/nodes/garage/set"
        assert control["state_topic"] == "camhub/nodes/garage/announce"


def test_the_camera_entity_gets_the_latest_jpeg_retained(world: World) -> None:
    world.observer.wait_for("camhub/hub/cameras/garage/snapshot", timeout=15)
    late = Observer(world.broker.port, ["camhub/hub/cameras/garage/snapshot"])  # joins later: retained
    try:
        first = late.wait_for("camhub/hub/cameras/garage/snapshot", lambda m: m.retain, timeout=5)
        assert Image.open(io.BytesIO(first.payload)).size == (160, 120)
        # Refreshed while streaming (every CAMHUB_HA_SNAPSHOT_S = 1 s here), with a newer frame.
        later = late.wait_for("camhub/hub/cameras/garage/snapshot", lambda m: m.payload != first.payload,
                              timeout=5, after=first.at + 0.01)
        assert later.payload[:2] == b"\xff\xd8"
    finally:
        late.close()


def test_home_assistant_birth_gets_every_config_and_state_again(world: World) -> None:
    observer = world.observer
    wait_until(lambda: len(configs(observer)) == 14, 15, "every config")
    topics = set(configs(observer)) | {"camhub/hub/state", "camhub/hub/cameras/garage/state",
                                       "camhub/hub/cameras/garage/snapshot"}
    birth = time.time()
    observer.publish(f"{PREFIX}/status", "online")  # not retained, as Home Assistant sends it
    wait_until(lambda: {m.topic for m in observer.messages if m.at >= birth} >= topics,
               10, "every config and state re-published after the birth message")


def test_a_removed_camera_has_its_configs_cleared(world: World) -> None:
    observer = world.observer
    # A camera that announced but never streamed (its node went away at once): clearing its retained
    # announce removes it from the hub (cameras.py keeps a camera whose node is still alive).
    ghost = {"id": "ghost", "name": "Ghost", "stream_url": f"http://127.0.0.1:{free_port()}/stream"}
    observer.publish("camhub/nodes/ghost/announce", json.dumps(ghost), retain=True)
    wait_until(lambda: len(configs(observer, "ghost")) == 11, 15, "the new camera's configs")
    topics = set(configs(observer, "ghost"))
    observer.publish("camhub/nodes/ghost/announce", b"", retain=True)  # decommissioned
    wait_until(lambda: not configs(observer, "ghost"), 10, "the camera's configs cleared")
    late = Observer(world.broker.port, [f"{PREFIX}/#"])  # what a Home Assistant starting now would get
    try:
        time.sleep(0.5)
        assert not topics & {m.topic for m in late.messages if m.payload}
        assert len(configs(late)) == 3 + 11  # the hub's own and the camera still there
    finally:
        late.close()


def test_discovery_off_publishes_nothing_for_home_assistant(mosquitto, tmp_path, node) -> None:
    observer = Observer(mosquitto.port, [f"{PREFIX}/#", "camhub/hub/#"])
    hub = start_hub(mosquitto, tmp_path, CAMHUB_HA_DISCOVERY="off")
    try:
        node.wait_ready()
        observer.wait_for("camhub/hub/cameras/garage/state", lambda m: m.json()["state"] == "streaming", timeout=15)
        time.sleep(1.5)  # a snapshot period
        assert observer.on(f"{PREFIX}/#") == []
        assert observer.on("camhub/hub/cameras/+/snapshot") == []
    finally:
        observer.close()
        hub.stop()


def test_snapshot_period_zero_means_no_camera_entity(mosquitto, tmp_path, node) -> None:
    observer = Observer(mosquitto.port, [f"{PREFIX}/#", "ha-test/#", "camhub/hub/#"])
    hub = start_hub(mosquitto, tmp_path, CAMHUB_HA_SNAPSHOT_S="0", CAMHUB_HA_DISCOVERY_PREFIX="ha-test")
    try:
        node.wait_ready()
        observer.wait_for("camhub/hub/cameras/garage/state", lambda m: m.json()["state"] == "streaming", timeout=15)
        wait_until(lambda: len(observer.on("ha-test/+/+/config")) >= 10, 10, "configs under the configured prefix")
        time.sleep(1.5)
        assert not [m for m in observer.on("ha-test/camera/+/config") if m.payload]
        assert observer.on("camhub/hub/cameras/+/snapshot") == []
        assert observer.on(f"{PREFIX}/#") == []
    finally:
        observer.close()
        hub.stop()


CAMERA_CONFIG = f"{PREFIX}/camera/camhub_camera_garage_camera/config"


def test_the_home_assistant_integration_flag_takes_the_mqtt_camera_entity_away(mosquitto, tmp_path, node) -> None:
    """The camhub integration (custom_components/camhub) says it is set up with a retained ``on`` on
    ``camhub/hub/ha_integration``: the hub then publishes no MQTT camera entity (the integration's live one
    replaces it on the same device); the sensors and controls stay. A hub started while the flag is retained
    never publishes the camera entity at all (HA would create ``camera.garage_2`` beside the live one)."""
    observer = Observer(mosquitto.port, [f"{PREFIX}/#", "camhub/hub/#"])
    hub = start_hub(mosquitto, tmp_path)
    second = None
    try:
        node.wait_ready()
        wait_until(lambda: len(configs(observer, "garage")) == 11, 15, "the camera's eleven entities, camera included")
        # What the integration finds the hub by: retained info, and the same in /api/hub.
        info = observer.wait_for("camhub/hub/info").json()
        assert info["url"] == hub.url and info["integration_topic"] == "camhub/hub/ha_integration"
        assert info["device"]["identifiers"] == ["camhub_hub"] and info["mqtt_discovery"] is True
        assert {k: v for k, v in get_json(hub.url + "/api/hub")["home_assistant"].items() if k != "integration"} == info
        assert get_json(hub.url + "/api/hub")["home_assistant"]["integration"] is False
        # Each camera's device block in the API is exactly the one MQTT discovery uses.
        camera = wait_until(lambda: get_json(hub.url + "/api/cameras"), 5, "the camera in the API")[0]
        assert camera["ha_device"] == configs(observer, "garage")[CAMERA_CONFIG]["device"]

        flagged = time.time()
        observer.publish("camhub/hub/ha_integration", "on", retain=True)
        observer.wait_for(CAMERA_CONFIG, lambda m: m.payload == b"", timeout=10, after=flagged)
        assert wait_until(lambda: get_json(hub.url + "/api/hub")["home_assistant"]["integration"], 5, "flag seen")
        remaining = by_component(configs(observer, "garage"))
        assert len(remaining) == 10 and "camera/None" not in remaining
        birth = time.time()
        observer.publish(f"{PREFIX}/status", "online")  # HA restarts: everything again, but not the camera entity
        observer.wait_for(f"{PREFIX}/sensor/camhub_camera_garage_state/config", timeout=10, after=birth)
        time.sleep(0.5)
        assert not [m for m in observer.on(CAMERA_CONFIG) if m.at >= flagged and m.payload]

        hub.stop()
        restarted = time.time()
        second = start_hub(mosquitto, tmp_path)  # the flag is still retained: no camera entity, not even briefly
        observer.wait_for(f"{PREFIX}/sensor/camhub_camera_garage_state/config", timeout=15, after=restarted)
        time.sleep(2.5)  # beyond the hub's wait for the flag
        assert not [m for m in observer.on(CAMERA_CONFIG) if m.at >= restarted and m.payload]

        removed = time.time()
        observer.publish("camhub/hub/ha_integration", b"", retain=True)  # the integration was removed from HA
        back = observer.wait_for(CAMERA_CONFIG, lambda m: m.payload != b"", timeout=10, after=removed)
        assert back.retain is False and back.json()["topic"] == "camhub/hub/cameras/garage/snapshot"
    finally:
        observer.close()
        hub.stop()
        if second is not None:
            second.stop()
