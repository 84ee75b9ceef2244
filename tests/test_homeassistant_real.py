"""The hub against a real Home Assistant core (``make test-ha``; HA installed by tests/ha/install.sh).

One story: a two-node hub and a Home Assistant that only knows the MQTT broker. Both cameras appear
as devices with their entities; each camera entity's picture is that camera's JPEG; the fps number
in HA changes the node's fps; a freshly started HA gets every camera back; a SIGKILLed node's
entities and, with a SIGKILLed hub, every camera become unavailable; and HA logged no discovery error.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from PIL import Image

from tests.support.homeassistant import HaWorld, HomeAssistant
from tests.support.procs import HubProcess
from tests.support.waiting import get_json, wait_until

pytestmark = [pytest.mark.ha, pytest.mark.timeout(300)]

CAMERAS = {"garage": ("Garage", "QQVGA", (160, 120)), "porch": ("Porch", "QVGA", (320, 240))}


@dataclass
class World(HaWorld):
    all_ha: list[HomeAssistant] = field(default_factory=list)

    def entity_ids(self) -> dict[str, str]:
        """unique_id -> entity_id, from HA's entity registry."""
        return {e["unique_id"]: e["entity_id"] for e in self.ha.entities() if e["platform"] == "mqtt"}

    def state(self, entity_id: str) -> str | None:
        found = self.ha.states().get(entity_id)
        return None if found is None else found["state"]

    def start_ha(self, name: str) -> HomeAssistant:
        ha = HomeAssistant(self.tmp / name, self.broker.port)
        self.all_ha.append(ha)
        self.stoppable.append(ha)
        self.ha = ha.wait_ready()
        return ha


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[World]:
    with World.running(tmp_path_factory.mktemp("ha"), {cid: (name, size) for cid, (name, size, _) in CAMERAS.items()},
                       4, {"CAMHUB_HA_SNAPSHOT_S": "1"}, ["camhub/#"]) as running:
        running.all_ha.append(running.ha)
        running.stoppable.append(running.ha)
        yield running


def test_both_cameras_appear_as_devices_with_their_entities(world: World) -> None:
    def camera_devices() -> dict[str, dict]:
        return {d["name"]: d for d in world.ha.devices() if d["model"] in ("simulated",)}

    devices = wait_until(lambda: len(camera_devices()) == 2 and camera_devices(), 40, "two camera devices in HA")
    hub_device = next(d for d in world.ha.devices() if d["name"] == "camhub")
    for cid, (name, _, _) in CAMERAS.items():
        device = devices[name]
        assert device["manufacturer"] == "camhub"
        assert device["sw_version"] == get_json(world.nodes[cid].url + "/status")["firmware"]
        assert device["configuration_url"] == f"{world.hub.url}/#/camera/{cid}"
        assert device["via_device_id"] == hub_device["id"]
    ids = wait_until(lambda: len(world.entity_ids()) >= 25 and world.entity_ids(), 20, "every entity registered")
    # Entity ids come from the device and entity names (no object_id).
    assert ids["camhub_camera_garage_camera"] == "camera.garage"
    assert ids["camhub_camera_porch_fps"] == "number.porch_frame_rate"
    assert ids["camhub_camera_garage_frame_size"] == "select.garage_frame_size"
    assert ids["camhub_hub_cameras_online"] == "sensor.camhub_cameras_online"
    wait_until(lambda: world.state("sensor.garage_state") == "streaming"
               and world.state("sensor.porch_state") == "streaming", 20, "both cameras streaming in HA")
    wait_until(lambda: world.state("sensor.camhub_cameras_online") == "2", 10, "2 cameras online on the hub device")
    assert world.state("binary_sensor.garage_connected") == "on"
    assert world.state("binary_sensor.camhub_online") == "on"
    assert float(world.state("number.garage_frame_rate")) == 4
    assert float(world.state("number.porch_jpeg_quality")) == get_json(world.nodes["porch"].url
                                                                       + "/status")["jpeg_quality"]
    assert world.state("select.porch_frame_size") == "QVGA"
    # The hub's motion topic (motion.py) drives the motion binary sensor: no motion in a simulated scene yet.
    wait_until(lambda: world.state("binary_sensor.garage_motion") in ("on", "off"), 10, "a motion state")
    options = world.ha.states()["select.porch_frame_size"]["attributes"]["options"]
    assert "QQVGA" in options and "UXGA" in options


def test_each_camera_entity_shows_that_cameras_jpeg(world: World) -> None:
    for cid, (_, _, size) in CAMERAS.items():
        def picture(cid: str = cid) -> bytes | None:
            status, body, content_type = world.ha.get(f"/api/camera_proxy/camera.{cid}")
            return body if status == 200 and content_type.startswith("image/jpeg") else None

        jpeg = wait_until(picture, 20, f"camera.{cid}'s picture")
        assert Image.open(io.BytesIO(jpeg)).size == size
        # Exactly a frame the hub published for this camera (and not the other camera's).
        published = {m.payload for m in world.observer.on(f"camhub/hub/cameras/{cid}/snapshot")}
        assert jpeg in published


def test_setting_the_fps_number_in_home_assistant_changes_the_node(world: World) -> None:
    world.ha.call("number", "set_value", entity_id="number.garage_frame_rate", value=7)
    announce = world.observer.wait_for("camhub/nodes/garage/announce", lambda m: m.json()["fps"] == 7, timeout=15)
    assert announce.retain is False  # a live re-announce, not the old retained one
    wait_until(lambda: get_json(world.nodes["garage"].url + "/status")["fps_target"] == 7, 10, "the node at 7 fps")
    wait_until(lambda: float(world.state("number.garage_frame_rate")) == 7, 10, "HA's number following the node")
    # The other camera was not touched.
    assert get_json(world.nodes["porch"].url + "/status")["fps_target"] == 4


def test_a_freshly_started_home_assistant_gets_every_camera_back(world: World) -> None:
    world.ha.stop()
    world.start_ha("ha-2")  # an empty HA: nothing but the MQTT config entry
    wait_until(lambda: len({d["name"] for d in world.ha.devices()} & {"Garage", "Porch"}) == 2, 40,
               "both cameras in the new HA")
    for cid in CAMERAS:
        wait_until(lambda cid=cid: world.state(f"sensor.{cid}_state") == "streaming", 20, f"{cid} streaming")
        wait_until(lambda cid=cid: world.ha.get(f"/api/camera_proxy/camera.{cid}")[0] == 200, 20, f"{cid} picture")
    assert float(world.state("number.garage_frame_rate")) == 7


def test_a_killed_nodes_entities_become_unavailable(world: World) -> None:
    world.nodes["porch"].kill()  # SIGKILL: only the broker's last will says it is gone
    wait_until(lambda: world.state("camera.porch") == "unavailable", 30, "camera.porch unavailable")
    for entity in ("sensor.porch_fps_in", "number.porch_frame_rate", "select.porch_frame_size",
                   "binary_sensor.porch_motion", "sensor.porch_viewers"):
        assert world.state(entity) == "unavailable", entity
    # Its state and connectivity still say why; the other camera is untouched.
    assert world.state("sensor.porch_state") == "offline"
    assert world.state("binary_sensor.porch_connected") == "off"
    assert world.state("camera.garage") not in ("unavailable", None)
    assert float(world.state("number.garage_frame_rate")) == 7
    wait_until(lambda: world.state("sensor.camhub_cameras_online") == "1", 10, "1 camera online")


def test_a_killed_hub_makes_every_camera_unavailable(world: World) -> None:
    world.hub.kill()
    wait_until(lambda: world.state("camera.garage") == "unavailable", 30, "camera.garage unavailable")
    for entity in ("camera.porch", "sensor.garage_state", "sensor.garage_fps_in", "number.garage_frame_rate",
                   "binary_sensor.garage_connected", "sensor.camhub_cameras_online"):
        assert world.state(entity) == "unavailable", entity
    assert world.state("binary_sensor.camhub_online") == "off"
    # The hub comes back: the camera still running is live again in HA.
    world.hub = HubProcess(world.broker.port, world.hub.state_dir, env={"CAMHUB_HA_SNAPSHOT_S": "1"}).wait_ready()
    wait_until(lambda: world.state("camera.garage") not in ("unavailable", None), 30, "camera.garage back")
    # The killed node's retained announce makes the new hub try it once ("connecting") before its
    # retained "offline" availability settles it.
    wait_until(lambda: world.state("camera.porch") == "unavailable", 15, "camera.porch unavailable again")


def test_home_assistant_logged_no_mqtt_discovery_error(world: World) -> None:
    for ha in world.all_ha:
        log = ha.ha_log()
        # HA logs a rejected payload as one ERROR line; a bad template or state as a WARNING.
        problems = [line for line in log.splitlines() if re.search(r" (ERROR|WARNING) ", line)
                    and "[homeassistant.bootstrap]" not in line]  # --skip-pip and the Python 3.11 notice
        assert problems == [], "\n".join(problems[:10])
        # ... and every entity went through discovery: the hub's three and eleven per camera.
        assert len(set(re.findall(r"Found new component: (\S+ \S+)", log))) == 3 + 11 * len(CAMERAS)
