"""Motion detection in the real hub: a camera whose still scene gets a moving object, watched over MQTT."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

from tests.support import scenes
from tests.support.mqtt import Observer
from tests.support.procs import HubProcess, Mosquitto, running
from tests.support.quirky_camera import Quirks, serve_in_thread
from tests.support.waiting import get_json, wait_until


def _camera_motion(hub: HubProcess, camera_id: str = "yard") -> dict:
    return get_json(f"{hub.url}/api/cameras/{camera_id}")["motion"]


def test_motion_on_within_a_second_of_an_object_and_off_after_the_quiet_period(
        mosquitto: Mosquitto, observer: Observer, tmp_path: Path) -> None:
    still, moving = scenes.still(30), scenes.moving(30)
    with serve_in_thread(Quirks(fps=10)) as camera:
        camera.jpegs = still
        env = {"CAMHUB_SOURCES": f"yard={camera.url}", "CAMHUB_MOTION_QUIET_S": "1.5"}
        with running(HubProcess(mosquitto.port, tmp_path, env=env)) as hub:
            hub.wait_ready()
            topic = "camhub/hub/cameras/yard/motion"
            observer.wait_for(topic, lambda m: m.text == "OFF", timeout=10)
            # a still scene (fresh sensor noise and JPEG artefacts in every frame) is not motion
            wait_until(lambda: _camera_motion(hub)["frames_analysed"] >= 1, what="a first analysed frame")
            window_opened = time.monotonic()
            first = _camera_motion(hub)["frames_analysed"]
            wait_until(lambda: _camera_motion(hub)["frames_analysed"] >= first + 20, what="20 analysed still frames")
            assert not [m for m in observer.on(topic) if m.text == "ON"]
            camera_now = get_json(f"{hub.url}/api/cameras/yard")
            window_s = time.monotonic() - window_opened  # at least as long as the hub's window between the reads
            assert camera_now["motion"]["active"] is False
            # at most CAMHUB_MOTION_FPS (5) of the camera's 10 frames a second are analysed: a bound in time (on
            # a loaded machine the camera may send fewer than 10 a second, and the hub then analyses most)
            assert camera_now["motion"]["frames_analysed"] - first <= 5 * window_s + 3

            appeared = time.time()
            camera.jpegs = moving
            on = observer.wait_for(topic, lambda m: m.text == "ON", timeout=5, after=appeared)
            assert on.at - appeared < 1.0, f"motion reported {on.at - appeared:.2f} s after the object appeared"
            start = observer.wait_for("camhub/hub/cameras/yard/events",
                                      lambda m: m.json().get("event") == "motion", after=appeared).json()
            assert start["phase"] == "start" and start["peak"] > 0 and abs(start["start"] - appeared) < 1.5
            assert _camera_motion(hub)["active"] is True

            time.sleep(2)  # motion goes on while the object moves
            assert not [m for m in observer.on(topic) if m.text == "OFF" and m.at > on.at]
            stopped = time.time()
            camera.jpegs = still
            off = observer.wait_for(topic, lambda m: m.text == "OFF", timeout=6, after=stopped)
            assert 1.0 < off.at - stopped < 4.0, f"OFF {off.at - stopped:.2f} s after the scene went still"
            end = observer.wait_for("camhub/hub/cameras/yard/events",
                                    lambda m: m.json().get("phase") == "end", after=stopped).json()
            assert end["end"] - end["start"] > 2 and end["peak"] >= start["peak"]
            events = get_json(f"{hub.url}/api/cameras/yard/motion?since={appeared - 5}")
            assert len(events) == 1 and events[0]["peak"] == end["peak"]
            with urllib.request.urlopen(f"{hub.url}/metrics", timeout=5) as resp:
                metrics = resp.read().decode()
            assert 'camhub_motion_events_total{camera="yard"} 1.0' in metrics
            late = Observer(mosquitto.port, [topic])  # retained: a late subscriber learns the state
            try:
                assert late.wait_for(topic, timeout=5).text == "OFF"
                assert late.on(topic)[0].retain
            finally:
                late.close()


def test_motion_can_be_switched_off_per_camera_and_stays_off_after_a_restart(
        mosquitto: Mosquitto, observer: Observer, tmp_path: Path) -> None:
    with serve_in_thread(Quirks(fps=10)) as camera:
        camera.jpegs = scenes.still(10)
        env = {"CAMHUB_SOURCES": f"yard={camera.url}"}
        with running(HubProcess(mosquitto.port, tmp_path, env=env)) as hub:
            hub.wait_ready()
            request = urllib.request.Request(f"{hub.url}/api/cameras/yard/options", method="POST",
                                             data=json.dumps({"motion": "off"}).encode(),
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=5) as resp:
                assert json.loads(resp.read())["motion"] == "off"
            bad = urllib.request.Request(f"{hub.url}/api/cameras/yard/options", method="POST",
                                         data=b'{"motion": "maybe"}', headers={"Content-Type": "application/json"})
            try:
                urllib.request.urlopen(bad, timeout=5)
                raise AssertionError("a bad option value was accepted")
            except urllib.error.HTTPError as exc:
                assert exc.code == 400 and "motion must be one of" in json.loads(exc.read())["error"]
        camera.jpegs = scenes.moving(30)
        with running(HubProcess(mosquitto.port, tmp_path, env=env)) as hub:
            hub.wait_ready()
            wait_until(lambda: get_json(f"{hub.url}/api/cameras/yard")["frames_in"] >= 20, what="frames")
            motion = _camera_motion(hub)
            assert motion["enabled"] is False and motion["active"] is False and motion["frames_analysed"] == 0
            assert not [m for m in observer.on("camhub/hub/cameras/yard/motion") if m.text == "ON"]
