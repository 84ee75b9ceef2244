"""The hub's status topics are the hub's, not Home Assistant's: ``camhub/hub/state`` is published with
discovery off too (README, "What the hub publishes"). Before, only the discovery code published it."""

from __future__ import annotations

import time
from pathlib import Path

from tests.support.mjpeg_client import StreamReader
from tests.support.mqtt import Observer
from tests.support.procs import HubProcess, Mosquitto, SimNode, running


def test_the_hub_state_is_published_with_home_assistant_discovery_off(
        mosquitto: Mosquitto, observer: Observer, tmp_path: Path) -> None:
    with running(SimNode("porch", mosquitto.port, fps=5, frame_size="QQVGA")) as node, \
            running(HubProcess(mosquitto.port, tmp_path, env={"CAMHUB_HA_DISCOVERY": "off"})) as hub:
        node.wait_ready()
        hub.wait_ready()
        state = observer.wait_for("camhub/hub/state", lambda m: m.json()["cameras_online"] == 1, timeout=30)
        assert state.json() == {"cameras_total": 1, "cameras_online": 1, "viewers": 0}
        later = Observer(mosquitto.port, ["camhub/hub/state", "homeassistant/#"])  # what a newcomer gets
        try:
            retained = later.wait_for("camhub/hub/state", timeout=10)
            assert retained.retain and retained.json()["cameras_total"] == 1
            assert not later.on("homeassistant/#")  # and discovery stayed off
        finally:
            later.close()


def test_a_camera_seen_after_the_link_is_up_gets_its_motion_state_at_once(
        mosquitto: Mosquitto, observer: Observer, tmp_path: Path) -> None:
    # Home Assistant's motion sensor reads this retained topic; without a first OFF it says "unknown" until
    # the first motion, minutes away in a still scene. The node starts after the hub's link is up, so the
    # reconnect republish cannot be what sends it.
    with running(HubProcess(mosquitto.port, tmp_path)) as hub:
        hub.wait_ready()
        observer.wait_for("camhub/hub/state", timeout=30)
        with running(SimNode("porch", mosquitto.port, fps=5, frame_size="QQVGA")) as node:
            node.wait_ready()
            assert observer.wait_for("camhub/hub/cameras/porch/motion", timeout=20).text == "OFF"
            later = Observer(mosquitto.port, ["camhub/hub/cameras/porch/motion"])  # Home Assistant restarting
            try:
                retained = later.wait_for("camhub/hub/cameras/porch/motion", timeout=10)
                assert retained.retain and retained.text == "OFF"
            finally:
                later.close()


def test_the_hub_state_does_not_follow_every_viewer_but_ends_with_the_right_count(
        mosquitto: Mosquitto, observer: Observer, tmp_path: Path) -> None:
    # Issue #22: in a cluster an edge serves thousands of viewers; a retained hub state for each one that
    # comes or goes would make the MQTT rate grow with them. The count goes out at most every 2 s, and the
    # last one held back still goes out.
    with running(SimNode("porch", mosquitto.port, fps=5, frame_size="QQVGA")) as node, \
            running(HubProcess(mosquitto.port, tmp_path, env={"CAMHUB_HA_DISCOVERY": "off"})) as hub:
        node.wait_ready()
        hub.wait_ready()
        observer.wait_for("camhub/hub/state", lambda m: m.json()["cameras_online"] == 1, timeout=30)
        time.sleep(2.5)  # past the hold-back of any earlier state
        before = len(observer.on("camhub/hub/state"))
        started = time.monotonic()
        readers = [StreamReader(hub.url + "/cameras/porch/stream") for _ in range(20)]
        try:
            assert all(r.status == 200 for r in readers)
            observer.wait_for("camhub/hub/state", lambda m: m.json()["viewers"] == 20, timeout=10)
        finally:
            for reader in readers:
                reader.close()
        closed = time.time()
        observer.wait_for("camhub/hub/state", lambda m: m.json()["viewers"] == 0, timeout=10, after=closed)
        took = time.monotonic() - started
        sent = len(observer.on("camhub/hub/state")) - before
        # 40 viewer changes: without the hold-back, about 40 messages; with it one at once and one per 2 s, and
        # on the way down each fall to half at once (20 -> 10, 5, 2, 1, 0: at most 5 more)
        assert sent <= 2 + took / 2 + 5, (sent, took)
