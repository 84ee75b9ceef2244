"""Battery cameras in the hub: real mosquitto (and the hub's embedded broker), the real hub, the real
firmware in snapshot mode on CPython (owl) and on the MicroPython Unix port (wren), and a streaming
node (heron) beside them.

A pushed picture is a frame: the snapshot URL, the MJPEG stream across wakes (decoded by ffmpeg),
motion between consecutive pictures. The camera sleeps between wakes without flapping to offline;
a missed wake makes it missing after the stated time, a late one brings it back. Settings queue for
the next wake. Whatever arrives on a snapshot topic is untrusted: refused, counted, logged once.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.battery import BatteryNode, jpeg_size
from tests.support.integration import integration_module
from tests.support.mqtt import Observer
from tests.support.procs import HubProcess, Mosquitto, SimNode, free_port, running
from tests.support.waiting import get_json, wait_until

INTERVAL = 3
# What the hub waits before it calls a battery camera missing (camhub.hub.battery.wakes): 2.5 intervals + 10 s.
MISSING_AFTER = 2.5 * INTERVAL + 10


@dataclass
class World:
    broker: Mosquitto
    observer: Observer
    hub: HubProcess
    nodes: dict[str, BatteryNode]
    heron: SimNode

    def camera(self, camera_id: str) -> dict[str, Any]:
        return get_json(f"{self.hub.url}/api/cameras/{camera_id}")

    def post(self, camera_id: str, body: Any) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(f"{self.hub.url}/api/cameras/{camera_id}/settings", method="POST",
                                         data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=5) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def snapshot(self, camera_id: str) -> bytes:
        with urllib.request.urlopen(f"{self.hub.url}/cameras/{camera_id}/snapshot.jpg", timeout=5) as resp:
            return resp.read()


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[World]:
    broker = Mosquitto()
    observer = Observer(broker.port, ["camhub/#"])
    hub = HubProcess(broker.port, tmp_path_factory.mktemp("hub-state"),
                     env={"CAMHUB_MAX_FRAME_BYTES": "200000", "CAMHUB_MOTION_FPS": "5", "CAMHUB_TIMELAPSE_S": "1"})
    # The busy scene: every wake's picture differs from the last (motion between pictures; ffmpeg's frames).
    nodes = {"owl": BatteryNode("owl", broker.port, interval=INTERVAL, runtime="cpython", scene="busy"),
             "wren": BatteryNode("wren", broker.port, interval=INTERVAL, runtime="micropython", battery_mv=3870,
                                 scene="busy")}
    heron = SimNode("heron", broker.port, fps=2, frame_size="QQVGA")
    try:
        hub.wait_ready()
        heron.wait_ready()
        wait_until(lambda: all((c := world_camera(hub, i)) and c["state"] == "sleeping" and c["sleep"]["last_wake"]
                               for i in nodes), 60, "both battery cameras heard waking by the hub")
        yield World(broker, observer, hub, nodes, heron)
    finally:
        for proc in (*nodes.values(), heron, hub):
            proc.stop()
        observer.close()
        broker.stop()


def world_camera(hub: HubProcess, camera_id: str) -> dict[str, Any]:
    try:
        return get_json(f"{hub.url}/api/cameras/{camera_id}")
    except urllib.error.HTTPError:
        return {}


def pictures(world: World, camera_id: str) -> list[bytes]:
    return [m.payload for m in world.observer.on(f"camhub/nodes/{camera_id}/snapshot") if m.payload]


@pytest.mark.parametrize("camera_id", ["owl", "wren"])
def test_each_pushed_picture_becomes_the_cameras_latest_frame(world: World, camera_id: str) -> None:
    camera = world.camera(camera_id)
    assert camera["mode"] == "snapshot" and camera["state"] == "sleeping" and camera["pulling"] is False
    sleep = camera["sleep"]
    assert sleep["interval_s"] == INTERVAL and sleep["missing"] is False and sleep["wake_reason"] in ("boot", "timer")
    assert sleep["last_wake"] <= time.time()
    assert sleep["next_wake"] == pytest.approx(sleep["last_wake"], abs=INTERVAL + 2)
    assert sleep["missing_at"] == pytest.approx(sleep["last_wake"] + MISSING_AFTER, abs=0.01)
    # The hub's picture is exactly one the node pushed, and a newer one replaces it at the next wake.
    first = wait_until(lambda: (shot := world.snapshot(camera_id)) in pictures(world, camera_id) and shot, 15,
                       "the hub's snapshot is the node's picture")
    assert jpeg_size(first) == (320, 240)
    # (the hub may have the new picture a moment before this test's own subscriber: wait for both)
    wait_until(lambda: (shot := world.snapshot(camera_id)) != first and shot in pictures(world, camera_id), 20,
               "the next wake's picture, as the node pushed it")
    # The retained state topic says the same, with what Home Assistant shows.
    state = world.observer.wait_for(f"camhub/hub/cameras/{camera_id}/state", after=time.time() - 1, timeout=10).json()
    assert state["state"] == "sleeping" and state["mode"] == "snapshot" and state["interval_s"] == INTERVAL
    assert state["battery_v"] == (3.87 if camera_id == "wren" else None)


def test_a_sleeping_camera_does_not_flap_to_offline(world: World) -> None:
    since = time.time()
    for node in world.nodes.values():  # two more wakes each
        node.next_wake(world.observer, node.next_wake(world.observer, since).at + 1)
    for camera_id in world.nodes:
        states = {m.json()["state"] for m in world.observer.on(f"camhub/hub/cameras/{camera_id}/state")
                  if m.at >= since}
        assert states == {"sleeping"}, (camera_id, states)
        availability = {m.text for m in world.observer.on(f"camhub/nodes/{camera_id}/availability")}
        assert availability == {"online"}


def test_the_stream_of_a_battery_camera_decodes_in_ffmpeg_across_wakes(world: World) -> None:
    """One MJPEG connection for about three wakes: ffmpeg decodes every part; each wake's picture is a new
    frame, and between wakes the hub's keep-alive re-sends the last one (so players never time out)."""
    done = subprocess.run(["ffmpeg", "-v", "error", "-i", f"{world.hub.url}/cameras/wren/stream", "-frames:v", "8",
                           "-f", "framemd5", "-"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    rows = [line.split(",") for line in done.stdout.splitlines() if not line.startswith("#")]
    assert len(rows) == 8
    assert {row[4].strip() for row in rows} == {str(320 * 240 * 3 // 2)}  # every frame whole, 320x240 (yuvj420p)
    assert len({row[5].strip() for row in rows}) >= 2  # at least two wakes' pictures


def test_its_pictures_are_recorded_and_go_into_the_time_lapse(world: World, tmp_path: Path) -> None:
    """No special case beyond the source: recordings and the time-lapse take each pushed picture as a frame."""
    def record(mode: str) -> None:
        request = urllib.request.Request(f"{world.hub.url}/api/cameras/wren/options", method="POST",
                                         data=json.dumps({"record": mode}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as resp:
            assert resp.status == 200

    def recordings() -> list[dict[str, Any]]:
        return get_json(f"{world.hub.url}/api/cameras/wren/recordings")

    record("always")
    wait_until(lambda: {r["kind"] for r in recordings() if r["frames"] >= 2} >= {"always", "timelapse"}, 30,
               "two wakes' pictures recorded and in the time-lapse")
    record("off")
    (done,) = wait_until(lambda: [r for r in recordings() if r["kind"] == "always" and not r["open"]], 15,
                         "the recording closed")
    out = tmp_path / "jpegs"
    out.mkdir()
    video = world.hub.state_dir / "recordings" / "wren" / f"{done['id']}.mkv"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(video), "-c", "copy", "-f", "image2", str(out / "%05d.jpg")],
                   check=True, timeout=60)
    stored = [path.read_bytes() for path in sorted(out.glob("*.jpg"))]
    pushed = pictures(world, "wren")
    assert len(stored) == done["frames"] and len(set(stored)) >= 2  # as stored: each wake's picture, whole
    assert all(jpeg in pushed for jpeg in stored)


def test_motion_is_detected_between_consecutive_pictures(world: World) -> None:
    # The simulated scene moves between wakes (the node films it as it is when it wakes).
    wait_until(lambda: get_json(f"{world.hub.url}/api/cameras/owl/motion"), 30, "a motion event between two pictures")


def test_a_setting_queued_over_the_api_applies_at_the_next_wake(world: World) -> None:
    # Right after a wake's picture (its last message), so the wake that follows is the one that reads it.
    world.nodes["owl"].picture_after(world.observer, time.time())
    status, answer = world.post("owl", {"jpeg_quality": 25, "frame_size": "qqvga"})
    assert status == 202, answer
    assert answer["queued"] is True and answer["pending"] == {"jpeg_quality": 25, "frame_size": "QQVGA"}
    assert answer["next_wake"] is not None and answer["current"]["frame_size"] == "QVGA"
    queued_at = time.time()
    assert world.camera("owl")["sleep"]["pending"] == {"jpeg_quality": 25, "frame_size": "QQVGA"}
    # It waits on the broker, retained, for a node that is asleep.
    world.observer.wait_for("camhub/nodes/owl/set", lambda m: m.json() == {"jpeg_quality": 25, "frame_size": "QQVGA"},
                            after=queued_at - 1)
    announce = world.nodes["owl"].next_wake(world.observer, queued_at).json()
    assert (announce["jpeg_quality"], announce["frame_size"]) == (25, "QQVGA")
    wait_until(lambda: world.camera("owl")["sleep"]["pending"] == {}, 10, "nothing pending any more")
    wait_until(lambda: jpeg_size(world.snapshot("owl")) == (160, 120), 15, "a QQVGA picture in the hub")
    # A streaming node is sent its change at once, as before (not queued).
    status, answer = world.post("heron", {"fps": 3})
    assert status == 202 and "queued" not in answer


def test_untrusted_pictures_are_refused_and_counted(world: World) -> None:
    publish = world.observer.publish
    publish("camhub/nodes/wren/snapshot", b"<html>not a picture</html>")  # not a JPEG
    publish("camhub/nodes/wren/snapshot", b"\xff\xd8" + b"\0" * 300_000 + b"\xff\xd9")  # over 200 KB
    publish("camhub/nodes/heron/snapshot", pictures(world, "wren")[-1])  # into a streaming camera's feed
    publish("camhub/nodes/nobody/snapshot", pictures(world, "wren")[-1])  # no such camera
    for _ in range(40):  # a flood: more pictures in a minute than a camera can wake
        publish("camhub/nodes/owl/snapshot", pictures(world, "owl")[-1])

    def rejected() -> dict[str, float]:
        with urllib.request.urlopen(world.hub.url + "/metrics", timeout=5) as resp:
            lines = resp.read().decode().splitlines()
        return {line.split('reason="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
                for line in lines if line.startswith("camhub_pictures_rejected_total{")}

    counts = wait_until(lambda: (r := rejected()) and {"not_jpeg", "oversized", "not_battery_camera",
                                                       "unknown_camera", "rate"} <= set(r) and r, 10, "rejections")
    assert counts["not_jpeg"] == counts["oversized"] == counts["not_battery_camera"] == counts["unknown_camera"] == 1
    assert counts["rate"] >= 2
    # The streaming camera's feed never saw the pushed picture; the hub is fine and says why, briefly.
    assert world.snapshot("heron") != pictures(world, "wren")[-1] and world.camera("heron")["state"] == "streaming"
    log = world.hub.output()
    assert "refused: not_jpeg" in log and log.count("refused: rate") == 1  # rate-limited logging


def test_a_missed_wake_makes_it_missing_after_the_stated_time_and_a_late_wake_brings_it_back(world: World) -> None:
    lark = BatteryNode("lark", world.broker.port, interval=INTERVAL, runtime="micropython")
    with running(lark):
        wait_until(lambda: world_camera(world.hub, "lark").get("state") == "sleeping", 40, "lark sleeping")
        last = lark.picture_after(world.observer, time.time() - INTERVAL - 5)
    stopped = time.time()  # a board whose battery is flat: no goodbye, no last will
    missing_at = world.camera("lark")["sleep"]["missing_at"]
    assert missing_at == pytest.approx(world.camera("lark")["sleep"]["last_wake"] + MISSING_AFTER, abs=0.01)
    assert missing_at - stopped > 5
    time.sleep(max(0.0, missing_at - time.time() - 2))
    assert world.camera("lark")["state"] == "sleeping"  # two seconds before: still just asleep
    gone = world.observer.wait_for("camhub/hub/cameras/lark/state", lambda m: m.json()["state"] == "offline",
                                   timeout=MISSING_AFTER, after=stopped)
    assert gone.at == pytest.approx(missing_at, abs=1.5)
    camera = world.camera("lark")
    assert camera["sleep"]["missing"] is True and camera["online"] is False
    assert world.snapshot("lark") == last.payload  # its last picture stays
    # A late wake: the camera is back at once.
    revived = BatteryNode("lark", world.broker.port, interval=INTERVAL, runtime="micropython")
    with running(revived):
        back = world.observer.wait_for("camhub/hub/cameras/lark/state", lambda m: m.json()["state"] == "sleeping",
                                       timeout=40, after=gone.at)
        woke = revived.next_wake(world.observer, gone.at)
        assert back.at - woke.at < 2
        assert world.camera("lark")["sleep"]["missing"] is False
    assert "camera lark missed its wakes" in world.hub.output() and "camera lark woke again" in world.hub.output()


@pytest.mark.parametrize("runtime", ["cpython", "micropython"])
def test_on_the_hubs_embedded_broker_too(tmp_path: Path, runtime: str) -> None:
    """The embedded broker (amqtt) delivers the retained set the same way: a queued setting applies."""
    mqtt_port = free_port()
    hub = HubProcess(None, tmp_path, env={"CAMHUB_MQTT_PORT": str(mqtt_port)}).wait_ready()
    observer = None
    node = BatteryNode("robin", mqtt_port, interval=INTERVAL, runtime=runtime)
    try:
        observer = Observer(mqtt_port, ["camhub/#"])
        wait_until(lambda: world_camera(hub, "robin").get("state") == "sleeping", 40, "robin sleeping")
        wait_until(lambda: (c := world_camera(hub, "robin")) and c["last_frame_age_ms"] is not None, 20, "a picture")
        request = urllib.request.Request(f"{hub.url}/api/cameras/robin/settings", method="POST",
                                         data=b'{"frame_size": "QQVGA"}', headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as resp:
            assert resp.status == 202 and json.loads(resp.read())["queued"] is True
        queued_at = time.time()
        announce = node.next_wake(observer, queued_at).json()
        assert announce["frame_size"] == "QQVGA"
        wait_until(lambda: world_camera(hub, "robin")["sleep"]["pending"] == {}, 10, "applied")

        def picture() -> bytes:
            with urllib.request.urlopen(f"{hub.url}/cameras/robin/snapshot.jpg", timeout=5) as resp:
                return resp.read()

        wait_until(lambda: jpeg_size(picture()) == (160, 120), 15, "the smaller picture in the hub")
        assert hashlib.sha256(picture()).hexdigest() in {hashlib.sha256(m.payload).hexdigest()
                                                        for m in observer.on("camhub/nodes/robin/snapshot")}
    finally:
        node.stop()
        if observer is not None:
            observer.close()
        hub.stop()


def test_a_freshly_started_hub_shows_a_sleeping_cameras_last_picture_but_no_wake_it_did_not_hear(
        world: World, tmp_path: Path) -> None:
    """What the broker kept (the retained announce, ``online`` and picture of lark, asleep since the test
    before) tells a new hub what the camera is and what it last saw, never that it is awake: it counts no
    wake, and calls the camera missing 2.5 intervals + 10 s after its own start unless it wakes."""
    lark_picture = pictures(world, "lark")[-1]
    started = time.time()
    hub = HubProcess(world.broker.port, tmp_path / "state").wait_ready()
    try:
        camera = wait_until(lambda: world_camera(hub, "lark").get("last_frame_age_ms") is not None
                            and world_camera(hub, "lark"), 20, "lark's retained picture in the new hub")
        with urllib.request.urlopen(f"{hub.url}/cameras/lark/snapshot.jpg", timeout=5) as resp:
            assert resp.read() == lark_picture
        assert camera["state"] == "sleeping" and camera["mode"] == "snapshot"
        assert camera["sleep"]["wakes"] == 0 and camera["sleep"]["last_wake"] is None
        assert started <= camera["sleep"]["missing_at"] - MISSING_AFTER <= time.time()
    finally:
        hub.stop()


def test_home_assistants_camhub_integration_leaves_battery_cameras_to_mqtt(world: World) -> None:
    """The integration's live entity streams; a battery camera streams only while awake, so the integration
    lists only the streaming camera, and the hub's MQTT camera entity keeps showing the pushed pictures."""
    async def listed() -> dict[str, Any]:
        async with aiohttp.ClientSession() as session:
            return await integration_module("hub").HubClient(session, world.hub.url, None, None).cameras()

    wait_until(lambda: world_camera(world.hub, "heron"), 20, "the streaming camera known to the hub")
    assert set(asyncio.run(listed())) == {"heron"}
