"""Battery cameras, part by part and in process: the announce a snapshot-mode node sends, the hub's
judgement of its wakes on a clock the test turns, the settings queued for its next wake, pushed
pictures that are refused, and the node's sleep memory and ``alarm`` stand-in."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
import pytest

from camhub.hub.battery.pictures import PICTURES_PER_MINUTE, PushedPictures
from camhub.hub.battery.wakes import MISSING_GRACE_S, MISSING_INTERVALS, Wakes
from camhub.hub.core.broker import Broker, FanoutSettings
from camhub.hub.core.camera import OFFLINE, SLEEPING, Camera
from camhub.hub.core.registry import Cameras
from camhub.hub.ingest.announce import parse_announce
from camhub.hub.ingest.sources import AllowedSources, AnnounceRejected
from camhub.hub.mqtt.link import LinkSettings, MqttLink
from camhub.hub.mqtt.topics import Topics
from camhub_node import simalarm, snapshot
from camhub_node.config import Config, ConfigError
from tests.support import scenes
from tests.support.families import families
from tests.support.procs import Mosquitto

ALLOWED = AllowedSources.parse("loopback,private")
BATTERY = {"id": "nestbox", "name": "Nest box", "mode": "snapshot", "interval_s": 300, "wake": "timer",
           "wake_pin": True, "battery_v": 3.91, "frame_size": "VGA", "jpeg_quality": 12, "fps": 10,
           "controls": {"fps": [1, 30], "jpeg_quality": [2, 55], "frame_size": ["QQVGA", "QVGA", "VGA"]}}


def announce_bytes(**changes: Any) -> bytes:
    return json.dumps({**BATTERY, **changes}).encode()


def rejected(raw: bytes) -> str:
    with pytest.raises(AnnounceRejected) as info:
        parse_announce("nestbox", raw, ALLOWED)
    return info.value.reason


# ---- the announce ------------------------------------------------------------------------------------


def test_a_snapshot_announce_needs_no_stream_and_keeps_its_wake_fields() -> None:
    announce = parse_announce("nestbox", announce_bytes(), ALLOWED)
    assert announce.stream_url is None and announce.mode == "snapshot"
    data = announce.to_dict()
    assert (data["interval_s"], data["wake"], data["wake_pin"], data["battery_v"]) == (300, "timer", True, 3.91)
    # A battery camera has nothing to pull, whatever its announce says: no stream URL is ever taken from it.
    assert parse_announce("nestbox", announce_bytes(stream_url="http://127.0.0.1:9/s"), ALLOWED).stream_url is None
    # A streaming node's announce keeps DESIGN.md's shape: none of the battery camera's fields.
    stream = parse_announce("door", b'{"id": "door", "stream_url": "http://127.0.0.1:9/stream"}', ALLOWED)
    assert not {"mode", "interval_s", "wake", "battery_v"} & set(stream.to_dict())


@pytest.mark.parametrize("changes,reason", [
    ({"mode": "timelapse"}, "bad_field:mode"),
    ({"interval_s": None}, "missing_field:interval_s"),
    ({"interval_s": 0}, "bad_field:interval_s"),
    ({"interval_s": 8 * 86400}, "bad_field:interval_s"),
    ({"interval_s": 2.5}, "bad_field:interval_s"),
    ({"interval_s": True}, "bad_field:interval_s"),
    ({"wake": "nap"}, "bad_field:wake"),
    ({"wake_pin": "yes"}, "bad_field:wake_pin"),
    ({"battery_v": "3.9"}, "bad_field:battery_v"),
    ({"battery_v": -1}, "bad_field:battery_v"),
])
def test_a_bad_snapshot_announce_is_refused_with_its_reason(changes: dict[str, Any], reason: str) -> None:
    assert rejected(announce_bytes(**changes)) == reason


def test_a_stream_announce_still_needs_its_stream() -> None:
    assert rejected(b'{"id": "nestbox", "mode": "stream"}') == "missing_field:stream_url"


# ---- the hub: wakes on a clock the test turns --------------------------------------------------------


@dataclass
class StandInLink:
    connected: bool = True
    published: list[tuple[str, Any, bool]] = field(default_factory=list)

    def publish(self, topic: str, payload: Any, retain: bool = False, qos: int | None = None) -> None:
        self.published.append((topic, payload, retain))

    def subscribe_retained(self, topic_filter: str, qos: int, handler: Any) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Hub:
    cameras: Cameras
    wakes: Wakes
    link: StandInLink
    clock: Clock

    def battery_camera(self, interval: int = 60, **announce: Any) -> Camera:
        camera = self.cameras.add("nestbox", "Nest box", "mqtt", None, {**BATTERY, "interval_s": interval, **announce})
        camera.available = True
        return camera


@pytest.fixture
async def hub() -> Hub:
    cameras = Cameras(Broker(FanoutSettings()), max_cameras=8)
    link = StandInLink()
    clock = Clock()
    return Hub(cameras, Wakes(cameras, link, Topics(), clock=clock), link, clock)  # type: ignore[arg-type]


async def test_a_sleeping_camera_goes_missing_only_after_its_missed_wakes_and_a_late_wake_brings_it_back(
        hub: Hub) -> None:
    camera = hub.battery_camera(interval=60)
    hub.wakes.announced(camera, live=True)
    assert camera.state == SLEEPING
    woke = hub.clock.now
    deadline = woke + MISSING_INTERVALS * 60 + MISSING_GRACE_S
    assert camera.wakes is not None and camera.wakes.summary()["missing_at"] == deadline
    hub.clock.now = deadline - 0.5
    hub.wakes.tick()
    assert camera.state == SLEEPING  # two wakes missed is not yet missing
    hub.clock.now = deadline
    hub.wakes.tick()
    assert camera.state == OFFLINE and camera.wakes.summary()["missing"] is True
    hub.clock.now += 600  # a late wake
    hub.wakes.heard("nestbox", live=True, starts=True)
    assert camera.state == SLEEPING and camera.wakes.summary()["last_wake"] == hub.clock.now


async def test_only_a_new_message_is_a_wake_a_retained_one_is_not(hub: Hub) -> None:
    camera = hub.battery_camera(interval=60)
    hub.wakes.announced(camera, live=False)  # what the broker kept: the hub just started
    summary = camera.wakes.summary() if camera.wakes else {}
    assert summary["last_wake"] is None and summary["wakes"] == 0 and camera.state == SLEEPING
    hub.clock.now += 200
    hub.wakes.heard("nestbox", live=False)  # its retained "online": still no wake
    hub.wakes.tick()
    assert camera.state == OFFLINE  # never heard since the hub started, 2.5 intervals + 10 s ago


async def test_one_wake_is_counted_once_and_its_next_is_an_interval_after_it_began(hub: Hub) -> None:
    camera = hub.battery_camera(interval=2)
    hub.wakes.heard("nestbox", live=True, starts=True)  # before the hub knew it: nothing to count
    hub.wakes.announced(camera, live=True)
    began = hub.clock.now
    for _ in range(3):  # its stats and its picture, within the wake
        hub.clock.now += 0.3
        hub.wakes.heard("nestbox", live=True)
    assert camera.wakes is not None
    assert camera.wakes.summary()["wakes"] == 1 and camera.wakes.summary()["next_wake"] == began + 2
    # Two seconds asleep: its next wake starts with "online", however close to the last one.
    hub.clock.now = began + 2.8
    hub.wakes.heard("nestbox", live=True, starts=True)
    assert camera.wakes.summary()["wakes"] == 2 and camera.wakes.summary()["next_wake"] == began + 4.8


async def test_a_queued_setting_waits_as_a_retained_set_and_is_dropped_once_applied(hub: Hub) -> None:
    camera = hub.battery_camera()
    hub.wakes.announced(camera, live=True)
    hub.clock.now += 10
    assert hub.wakes.queue(camera, {"frame_size": "QVGA"}) == {"frame_size": "QVGA"}
    assert hub.wakes.queue(camera, {"jpeg_quality": 20}) == {"frame_size": "QVGA", "jpeg_quality": 20}
    assert hub.link.published[-1] == ("camhub/nodes/nestbox/set", {"frame_size": "QVGA", "jpeg_quality": 20}, True)
    assert camera.state_payload(0)["pending"] == {"frame_size": "QVGA", "jpeg_quality": 20}
    # The next wake applies both: nothing pending any more.
    hub.clock.now += 60
    hub.wakes.heard("nestbox", live=True, starts=True)
    camera.announce = {**BATTERY, "frame_size": "QVGA", "jpeg_quality": 20}
    hub.wakes.announced(camera, live=True)
    assert camera.wakes is not None and camera.wakes.summary()["pending"] == {}
    assert hub.wakes.outcomes == {"applied": 1}


async def test_a_setting_the_node_refused_is_dropped_and_one_sent_during_its_wake_waits_for_the_next(
        hub: Hub) -> None:
    camera = hub.battery_camera()
    hub.wakes.announced(camera, live=True)
    hub.clock.now += 10
    hub.wakes.queue(camera, {"frame_size": "QVGA"})
    hub.clock.now += 60
    hub.wakes.heard("nestbox", live=True, starts=True)
    hub.wakes.announced(camera, live=True)  # it woke, read the set, and still says VGA: refused
    assert camera.wakes is not None and camera.wakes.summary()["pending"] == {}
    assert hub.wakes.outcomes == {"refused": 1}
    # Queued while it is awake: it may have read the set before, so it stays for the next wake.
    hub.clock.now += 60
    hub.wakes.heard("nestbox", live=True, starts=True)
    hub.clock.now += 0.2
    hub.wakes.queue(camera, {"jpeg_quality": 30})
    hub.clock.now += 0.2
    published = len(hub.link.published)
    hub.wakes.announced(camera, live=True)
    assert camera.wakes.summary()["pending"] == {"jpeg_quality": 30}
    assert hub.link.published[published:] == [("camhub/nodes/nestbox/set", {"jpeg_quality": 30}, True)]


async def test_a_change_queued_before_a_hub_restart_is_learnt_back_from_the_retained_set(hub: Hub) -> None:
    camera = hub.battery_camera()
    hub.wakes.announced(camera, live=False)
    hub.wakes.set_seen("camhub/nodes/nestbox/set", b'{"frame_size": "qqvga"}', True)
    assert camera.wakes is not None and camera.wakes.summary()["pending"] == {"frame_size": "QQVGA"}
    hub.wakes.set_seen("camhub/nodes/nestbox/set", b'{"frame_size": "VGA"}', False)  # a live one: ours, or a clear
    hub.wakes.set_seen("camhub/nodes/nestbox/set", b'{"frame_size": "HUGE"}', True)
    assert camera.wakes.summary()["pending"] == {"frame_size": "QQVGA"}
    # its next wake does not apply it: the node had it all along (the hub sent nothing since), so refused
    hub.clock.now += 60
    hub.wakes.heard("nestbox", live=True, starts=True)
    hub.wakes.announced(camera, live=True)
    assert camera.wakes.summary()["pending"] == {} and hub.wakes.outcomes == {"refused": 1}


async def test_pushed_pictures_that_are_not_a_battery_cameras_jpeg_are_refused(hub: Hub) -> None:
    pushed = PushedPictures(hub.cameras, hub.wakes, Topics(), max_frame_bytes=100_000, clock=hub.clock)
    camera = hub.battery_camera()
    hub.wakes.announced(camera, live=True)
    streaming = hub.cameras.add("door", "Door", "mqtt", "http://127.0.0.1:9/stream", {"id": "door"})
    jpeg = scenes.still(count=1, size=(160, 120))[0]
    pushed.picture("camhub/nodes/nestbox/snapshot", b"GIF89a" + jpeg, False)
    pushed.picture("camhub/nodes/nestbox/snapshot", jpeg[:-2], False)  # cut short: no end of image
    pushed.picture("camhub/nodes/nestbox/snapshot", jpeg + b"\0" * 100_000, False)
    pushed.picture("camhub/nodes/door/snapshot", jpeg, False)
    pushed.picture("camhub/nodes/ghost/snapshot", jpeg, False)
    assert pushed.rejections == {"not_jpeg": 2, "oversized": 1, "not_battery_camera": 1, "unknown_camera": 1}
    assert camera.feed.latest is None and streaming.feed.latest is None
    for _ in range(PICTURES_PER_MINUTE + 3):
        pushed.picture("camhub/nodes/nestbox/snapshot", jpeg + b"\0\0", False)  # padding is trimmed
    assert pushed.received == PICTURES_PER_MINUTE and pushed.rejections["rate"] == 3
    assert camera.feed.latest is not None and camera.feed.latest.jpeg == jpeg



async def test_a_retained_picture_is_the_latest_frame_after_a_restart_but_no_wake(hub: Hub) -> None:
    pushed = PushedPictures(hub.cameras, hub.wakes, Topics(), max_frame_bytes=100_000, clock=hub.clock)
    camera = hub.battery_camera(interval=600)
    camera.last_seen = hub.clock.now - 100  # its last picture, as the hub remembers it from before
    hub.wakes.restore()
    jpeg = scenes.still(count=1, size=(160, 120))[0]
    pushed.picture("camhub/nodes/nestbox/snapshot", b"", True)  # a cleared picture: nothing to show
    assert camera.feed.latest is None and pushed.rejections == {}
    pushed.picture("camhub/nodes/nestbox/snapshot", jpeg, True)  # what the broker kept: shown at once
    assert camera.feed.latest is not None and camera.feed.latest.jpeg == jpeg
    assert camera.feed.latest.capture_time == hub.clock.now - 100  # taken then, not now
    assert camera.wakes is not None and camera.wakes.summary()["wakes"] == 0
    assert camera.wakes.summary()["last_wake"] == hub.clock.now - 100 and camera.state == SLEEPING
    assert pushed.received == 0
    # a camera the hub never saw a picture of: its retained picture is dated now
    other = hub.cameras.add("pond", "Pond", "mqtt", None, {**BATTERY, "id": "pond"})
    hub.wakes.announced(other, live=False)
    pushed.picture("camhub/nodes/pond/snapshot", jpeg, True)
    assert other.feed.latest is not None and other.feed.latest.capture_time == hub.clock.now
    # a new picture is a wake, counted
    hub.clock.now += 5
    pushed.picture("camhub/nodes/nestbox/snapshot", jpeg, False)
    assert camera.wakes.summary()["wakes"] == 1 and camera.wakes.summary()["last_wake"] == hub.clock.now
    assert camera.last_seen == hub.clock.now  # the camera's "last seen" is this picture's arrival
    pushed.picture("camhub/nodes/ghost/snapshot", b"GIF", False)
    assert families(pushed) == {"camhub_pictures_pushed": ("", "counter", {"": 1.0}),
                               "camhub_pictures_rejected": ("reason", "counter", {"unknown_camera": 1})}
    # its retained picture, hours after its wakes stopped, shows it missing: no wake, judged as it is
    hub.clock.now += 3600
    pushed.picture("camhub/nodes/nestbox/snapshot", jpeg, True)
    assert camera.state == OFFLINE


async def test_a_picture_of_exactly_the_size_limit_is_taken_and_each_refusal_is_logged_by_reason(
        hub: Hub, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "camhub.hub.battery.pictures")
    jpeg = scenes.still(count=1, size=(160, 120))[0]
    pushed = PushedPictures(hub.cameras, hub.wakes, Topics(), max_frame_bytes=len(jpeg), clock=hub.clock)
    camera = hub.battery_camera()
    hub.wakes.announced(camera, live=True)
    pushed.picture("camhub/nodes/nestbox/snapshot", jpeg, False)
    assert camera.feed.latest is not None and pushed.rejections == {}
    pushed.picture("camhub/nodes/nestbox/snapshot", jpeg + b"\0", False)
    pushed.picture("camhub/nodes/nestbox/snapshot", b"GIF89a", False)
    pushed.picture("camhub/nodes/nestbox/snapshot", b"GIF89a", False)  # the same reason: logged once
    long_id = "x" * 60
    pushed.picture(f"camhub/nodes/{long_id}/snapshot", jpeg, False)
    pushed.picture("camhub/nodes/\x1b[2Jbox/snapshot", jpeg, False)  # no terminal escapes in the log
    assert [r.getMessage() for r in caplog.records] == [
        f"picture on camhub/nodes/nestbox/snapshot ({len(jpeg) + 1} bytes) refused: oversized",
        "picture on camhub/nodes/nestbox/snapshot (6 bytes) refused: not_jpeg",
        f"picture on camhub/nodes/{'x' * 40}/snapshot ({len(jpeg)} bytes) refused: unknown_camera"]
    assert pushed.rejections == {"oversized": 1, "not_jpeg": 2, "unknown_camera": 2}


async def test_after_a_restart_a_known_battery_camera_is_missing_counted_from_its_last_picture(hub: Hub) -> None:
    long_gone = hub.battery_camera(interval=60)
    long_gone.last_seen = hub.clock.now - (MISSING_INTERVALS * 60 + MISSING_GRACE_S)
    recent = hub.cameras.add("pond", "Pond", "mqtt", None, {**BATTERY, "id": "pond", "interval_s": 60})
    recent.available = True
    recent.last_seen = hub.clock.now - 30
    unseen = hub.cameras.add("shed", "Shed", "mqtt", None, {**BATTERY, "id": "shed", "interval_s": 60})
    unseen.available = True
    hub.wakes.restore()
    assert long_gone.state == OFFLINE  # its wakes stopped while the hub was down
    assert recent.state == SLEEPING and recent.wakes is not None
    assert recent.wakes.summary()["missing_at"] == recent.last_seen + MISSING_INTERVALS * 60 + MISSING_GRACE_S
    assert recent.wakes.summary()["last_wake"] == recent.last_seen
    assert recent.wakes.summary()["next_wake"] == recent.last_seen + 60
    assert unseen.state == SLEEPING and unseen.wakes is not None  # waited for from the hub's start on
    assert unseen.wakes.summary()["missing_at"] == hub.clock.now + MISSING_INTERVALS * 60 + MISSING_GRACE_S
    assert unseen.wakes.summary()["next_wake"] is None and hub.wakes.next_wake(unseen) is None
    assert hub.wakes.next_wake(recent) == recent.last_seen + 60
    hub.clock.now = recent.last_seen + MISSING_INTERVALS * 60 + MISSING_GRACE_S
    hub.wakes.tick()
    assert recent.state == OFFLINE and unseen.state == SLEEPING
    assert {f.name: dict(f.values) for f in hub.wakes.counters()} == {
        "camhub_battery_cameras_missing": {"": 2.0}, "camhub_battery_cameras_went_missing": {"": 1.0},
        "camhub_settings_queued": {"": 0.0}, "camhub_settings_queued_outcomes": {}}


async def test_a_battery_camera_that_streams_again_leaves_the_wakes_and_a_forgotten_one_is_dropped(
        hub: Hub) -> None:
    camera = hub.battery_camera(interval=60)
    hub.wakes.announced(camera, live=True)
    assert hub.wakes.holds(camera) and camera.wakes is not None and hub.wakes.get("nestbox") is camera.wakes
    streaming = hub.cameras.add("door", "Door", "mqtt", "http://127.0.0.1:9/stream", {"id": "door"})
    hub.wakes.announced(streaming, live=True)
    assert not hub.wakes.holds(streaming) and streaming.wakes is None and hub.wakes.get("door") is None
    # the node is flashed to stream: its settings apply at once again, its pull decides its state
    camera.announce = {**BATTERY, "mode": "stream", "stream_url": "http://127.0.0.1:9/s"}
    hub.wakes.announced(camera, live=True)
    assert not hub.wakes.holds(camera) and camera.wakes is None and hub.wakes.get("nestbox") is None
    hub.clock.now += 3600
    hub.wakes.tick()
    assert camera.state == SLEEPING  # no longer judged by its wakes
    # a battery camera removed from the hub is forgotten at the next tick, never judged missing
    pond = hub.cameras.add("pond", "Pond", "mqtt", None, {**BATTERY, "id": "pond", "interval_s": 60})
    hub.wakes.announced(pond, live=True)
    shed = hub.cameras.add("shed", "Shed", "mqtt", None, {**BATTERY, "id": "shed", "interval_s": 60})
    shed.available = True
    hub.wakes.announced(shed, live=True)
    hub.cameras.pop("pond")
    hub.wakes.set_seen("camhub/nodes/pond/set", b'{"frame_size": "QVGA"}', True)  # its set, still retained
    hub.clock.now += 3600
    hub.wakes.tick()
    assert hub.wakes.get("pond") is None and hub.wakes.went_missing == 1 and shed.state == OFFLINE


async def test_a_retained_set_that_is_not_a_queued_change_is_left_alone(hub: Hub) -> None:
    camera = hub.battery_camera()
    hub.wakes.announced(camera, live=False)
    for payload in (b"not json", b"\xff\xfe", b'["frame_size"]', b""):
        hub.wakes.set_seen("camhub/nodes/nestbox/set", payload, True)
    hub.wakes.set_seen("camhub/nodes/ghost/set", b'{"frame_size": "QVGA"}', True)
    hub.wakes.set_seen("camhub/hub/cameras/nestbox/set", b'{"frame_size": "QVGA"}', True)  # not a node's
    assert camera.wakes is not None and camera.wakes.summary()["pending"] == {}
    hub.wakes.queue(camera, {"jpeg_quality": 20})  # queued here since: the newer word
    hub.wakes.set_seen("camhub/nodes/nestbox/set", b'{"frame_size": "QVGA"}', True)
    assert camera.wakes.summary()["pending"] == {"jpeg_quality": 20}
    assert {f.name: dict(f.values) for f in hub.wakes.counters()}["camhub_settings_queued"] == {"": 1.0}




async def test_what_the_api_and_the_state_topic_show_of_a_battery_camera_s_wakes(hub: Hub) -> None:
    hub.clock.now = 1_800_000_000.12345  # shown to the millisecond
    camera = hub.battery_camera(interval=300, wake="pin", wake_pin=True, battery_v=3.71)
    hub.wakes.announced(camera, live=False)  # what the broker kept: not a wake, its reason as it was
    assert camera.wakes is not None
    assert camera.wakes.summary() == {
        "interval_s": 300, "last_wake": None, "next_wake": None, "missing_at": 1_800_000_760.123, "missing": False,
        "wake_reason": "pin", "wake_pin": True, "battery_v": 3.71, "wakes": 0, "pending": {}}
    hub.wakes.heard("nestbox", live=True, starts=True)  # it wakes (its "online" comes first)
    camera.announce = {**BATTERY, "interval_s": 600, "wake": "timer", "wake_pin": False, "battery_v": 3.65}
    hub.wakes.announced(camera, live=True)  # its announce in the same wake: one wake, the new figures
    assert camera.wakes.summary() == {
        "interval_s": 600, "last_wake": 1_800_000_000.123, "next_wake": 1_800_000_600.123,
        "missing_at": 1_800_001_510.123, "missing": False, "wake_reason": "timer", "wake_pin": False,
        "battery_v": 3.65, "wakes": 1, "pending": {}}
    assert hub.wakes.next_wake(camera) == 1_800_000_600.123
    payload = camera.state_payload(hub.clock.now)
    assert {k: payload[k] for k in ("state", "mode", "interval_s", "last_wake", "next_wake", "wake_reason",
                                    "battery_v", "pending")} == {
        "state": SLEEPING, "mode": "snapshot", "interval_s": 600, "last_wake": 1_800_000_000.123,
        "next_wake": 1_800_000_600.123, "wake_reason": "timer", "battery_v": 3.65, "pending": {}}
    streaming = hub.cameras.add("door", "Door", "mqtt", "http://127.0.0.1:9/stream", {"id": "door"})
    assert hub.wakes.next_wake(streaming) is None and "mode" not in streaming.state_payload(hub.clock.now)


async def test_a_fresh_wake_begins_with_its_online_or_after_five_quiet_seconds(hub: Hub) -> None:
    camera = hub.battery_camera(interval=60)
    hub.wakes.announced(camera, live=True)
    assert camera.wakes is not None and camera.wakes.summary()["wakes"] == 1
    hub.clock.now += 5.0  # its stats, five seconds on: still the same wake
    hub.wakes.heard("nestbox", live=True)
    assert camera.wakes.summary()["wakes"] == 1
    hub.clock.now += 5.001  # more than five quiet seconds: another wake, though its "online" was missed
    hub.wakes.heard("nestbox", live=True)
    assert camera.wakes.summary()["wakes"] == 2 and camera.wakes.summary()["next_wake"] == hub.clock.now + 60


async def test_missing_and_back_are_logged_and_counted_and_each_change_is_told(
        hub: Hub, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "camhub.hub.battery.wakes")
    told: list[str] = []
    hub.cameras.changed.connect(lambda camera: told.append(camera.id))
    camera = hub.battery_camera(interval=60)
    hub.wakes.announced(camera, live=True)
    silent = hub.cameras.add("shed", "Shed", "mqtt", None, {**BATTERY, "id": "shed", "interval_s": 60})
    silent.available = True
    hub.wakes.announced(silent, live=False)  # never heard since the hub started
    assert told == ["nestbox", "shed"]  # their wake figures are news even where the state stays
    start = hub.clock.now
    for _ in range(2):
        hub.clock.now += MISSING_INTERVALS * 60 + MISSING_GRACE_S
        hub.wakes.tick()
        assert camera.state == OFFLINE
        hub.clock.now += 30
        hub.wakes.heard("nestbox", live=True, starts=True)
        assert camera.state == SLEEPING and camera.wakes is not None and camera.wakes.summary()["missing"] is False
    assert families(hub.wakes)["camhub_battery_cameras_went_missing"] == ("", "counter", {"": 3.0})
    assert families(hub.wakes)["camhub_battery_cameras_missing"] == ("", "gauge", {"": 1.0})  # the shed
    lines = [r.getMessage() for r in caplog.records]
    assert lines.count("camera nestbox missed its wakes (every 60 s; last heard 160 s ago): missing") == 2
    assert "camera shed missed its wakes (every 60 s; never heard): missing" in lines
    assert lines.count("camera nestbox woke again (timer); no longer missing") == 2
    assert hub.clock.now == start + 2 * (MISSING_INTERVALS * 60 + MISSING_GRACE_S + 30)


async def test_queued_settings_are_counted_logged_and_told(hub: Hub, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "camhub.hub.battery.wakes")
    told: list[str] = []
    camera = hub.battery_camera()
    hub.wakes.announced(camera, live=True)
    hub.cameras.changed.connect(lambda changed: told.append(changed.id))
    for quality, wake in ((20, "applied"), (30, "applied"), (40, "refused"), (50, "refused")):
        hub.clock.now += 10
        hub.wakes.queue(camera, {"jpeg_quality": quality})
        hub.clock.now += 60
        hub.wakes.heard("nestbox", live=True, starts=True)
        if wake == "applied":
            camera.announce = {**BATTERY, "jpeg_quality": quality}
        hub.wakes.announced(camera, live=True)
    assert hub.wakes.outcomes == {"applied": 2, "refused": 2}
    assert families(hub.wakes)["camhub_settings_queued"] == ("", "counter", {"": 4.0})
    assert families(hub.wakes)["camhub_settings_queued_outcomes"] == (
        "outcome", "counter", {"applied": 2, "refused": 2})
    lines = [r.getMessage() for r in caplog.records]
    assert "camera nestbox applied the queued {'jpeg_quality': 20} at its wake" in lines
    assert ("camera nestbox did not apply the queued {'jpeg_quality': 50} (its node refused it; its log says "
            "why): dropped") in lines
    assert told.count("nestbox") >= 4 + 8  # each queued change, each wake's figures


async def test_a_set_sent_exactly_a_second_before_the_wake_may_have_been_missed_and_waits(hub: Hub) -> None:
    camera = hub.battery_camera()
    hub.wakes.announced(camera, live=True)
    hub.clock.now += 10
    hub.wakes.queue(camera, {"jpeg_quality": 30})
    hub.clock.now += 1.0  # the node woke a second later: it may have read the retained set before
    hub.wakes.heard("nestbox", live=True, starts=True)
    hub.wakes.announced(camera, live=True)
    assert camera.wakes is not None and camera.wakes.summary()["pending"] == {"jpeg_quality": 30}
    hub.clock.now += 60.001  # queued long before this wake: it had the set, and refused it
    hub.wakes.heard("nestbox", live=True, starts=True)
    hub.wakes.announced(camera, live=True)
    assert camera.wakes.summary()["pending"] == {} and hub.wakes.outcomes == {"refused": 1}


async def test_a_live_set_is_the_hub_s_own_and_learnt_from_only_when_retained(hub: Hub) -> None:
    camera = hub.battery_camera()
    hub.wakes.announced(camera, live=False)
    hub.wakes.set_seen("camhub/nodes/nestbox/set", b'{"frame_size": "QVGA"}', False)
    assert camera.wakes is not None and camera.wakes.summary()["pending"] == {}
    told: list[str] = []
    hub.cameras.changed.connect(lambda changed: told.append(changed.id))
    hub.wakes.set_seen("camhub/nodes/nestbox/set", b'{"frame_size": "QVGA"}', True)
    assert camera.wakes.summary()["pending"] == {"frame_size": "QVGA"} and told == ["nestbox"]



async def test_over_a_real_broker_a_restarted_hub_learns_the_retained_picture_and_set_then_hears_a_wake(
        mosquitto: Mosquitto) -> None:
    cameras = Cameras(Broker(FanoutSettings()), max_cameras=8)
    topics = Topics()
    link = MqttLink(LinkSettings("127.0.0.1", mosquitto.port), topics)
    wakes = Wakes(cameras, link, topics)
    pushed = PushedPictures(cameras, wakes, topics, max_frame_bytes=100_000)
    camera = cameras.add("nestbox", "Nest box", "mqtt", None, {**BATTERY, "interval_s": 60})
    camera.available = True
    jpeg = scenes.still(count=1, size=(160, 120))[0]
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as node:  # what the broker kept while the hub was away
        await node.publish("camhub/nodes/nestbox/snapshot", jpeg, qos=1, retain=True)
        await node.publish("camhub/nodes/nestbox/set", b'{"frame_size": "QVGA"}', qos=1, retain=True)
    wakes.restore()
    wakes.subscribe()
    pushed.subscribe(link)
    task = asyncio.create_task(link.run())
    try:
        async with asyncio.timeout(10):
            while camera.feed.latest is None or not (camera.wakes and camera.wakes.summary()["pending"]):
                await asyncio.sleep(0.05)
        assert camera.feed.latest.jpeg == jpeg and camera.wakes.summary()["pending"] == {"frame_size": "QVGA"}
        assert camera.wakes.summary()["wakes"] == 0 and pushed.received == 0  # what was kept is no wake
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as node:
            await node.publish("camhub/nodes/nestbox/snapshot", jpeg + b"\0", qos=1)  # a wake's new picture
        async with asyncio.timeout(10):
            while pushed.received == 0:
                await asyncio.sleep(0.05)
        assert camera.wakes.summary()["wakes"] == 1
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# ---- the node: settings, sleep memory, the alarm stand-in ---------------------------------------------


def test_the_node_reads_its_battery_settings() -> None:
    cfg = Config(getenv={"CAMHUB_MODE": "Snapshot", "CAMHUB_SNAPSHOT_INTERVAL_S": "600",
                         "CAMHUB_WARMUP_FRAMES": "6", "CAMHUB_WAKE_PIN": "17:low"}.get)
    assert (cfg.mode, cfg.snapshot_interval_s, cfg.warmup_frames, cfg.wake_pin, cfg.wake_value) == \
        ("snapshot", 600, 6, 17, False)
    assert Config(getenv={"CAMHUB_WAKE_PIN": "A0"}.get).wake_pin == "A0"
    default = Config(getenv={}.get)
    assert (default.mode, default.snapshot_interval_s, default.wake_pin) == ("stream", 300, None)


@pytest.mark.parametrize("settings,message", [
    ({"CAMHUB_MODE": "sometimes"}, "CAMHUB_MODE must be stream or snapshot"),
    ({"CAMHUB_SNAPSHOT_INTERVAL_S": "0"}, "CAMHUB_SNAPSHOT_INTERVAL_S must be from 1"),
    ({"CAMHUB_WAKE_PIN": "33"}, "GPIO33 cannot wake an ESP32-S3 from deep sleep"),
    ({"CAMHUB_WAKE_PIN": "A0:rising"}, "must be high or low"),
    ({"CAMHUB_WAKE_PIN": "-1"}, "leave the setting empty"),
])
def test_bad_battery_settings_are_refused_by_name(settings: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Config(getenv=settings.get)


def test_sleep_memory_keeps_what_a_wake_leaves_the_next() -> None:
    memory = simalarm.SleepMemory(bytearray(simalarm.SLEEP_MEMORY_LENGTH))
    fresh = snapshot.SleepState(memory)  # power-on: all zero
    assert (fresh.wakes, fresh.last_awake_ms, fresh.frame_size, fresh.quality) == (0, None, None, None)
    fresh.wakes, fresh.last_awake_ms, fresh.failures = 70000, 1234, 3
    fresh.fps, fresh.quality, fresh.frame_size = 5, 20, "QQVGA"
    fresh.save()
    again = snapshot.SleepState(memory)
    assert (again.wakes, again.last_awake_ms, again.failures) == (70000, 1234, 3)
    cfg = Config(getenv={}.get)
    again.apply(cfg)
    assert (cfg.fps, cfg.jpeg_quality, cfg.frame_size) == (5, 20, "QQVGA")
    with pytest.raises(ValueError):
        memory[0:4] = b"toolong"  # a fixed length, as the board's


def test_the_alarm_stand_in_follows_circuitpythons_documented_behaviour(monkeypatch: pytest.MonkeyPatch,
                                                                        tmp_path: Any) -> None:
    import time

    with pytest.raises(ValueError):
        simalarm.TimeAlarm()  # exactly one of monotonic_time and epoch_time
    with pytest.raises(ValueError):
        simalarm.TimeAlarm(monotonic_time=time.monotonic() - 5)  # "already in the past": an exception
    with pytest.raises(ValueError, match="Only level"):
        simalarm.PinAlarm("A0", True, edge=True)  # Espressif wakes on a level only
    monkeypatch.setenv("CAMHUB_VM_ALARM", str(tmp_path))
    timer = simalarm.TimeAlarm(monotonic_time=time.monotonic() + 30)
    with pytest.raises(simalarm.DeepSleepRequest):  # the program ends here: it "does not return"
        simalarm.exit_and_deep_sleep_until_alarms(timer, simalarm.PinAlarm("A0", True))
    request = json.loads((tmp_path / "sleep").read_text())
    assert 29 < request["seconds"] <= 30 and request["pins"] == [{"pin": "A0", "value": True, "pull": False}]
    assert not issubclass(simalarm.DeepSleepRequest, Exception)  # no `except Exception` swallows it
    with pytest.raises(TypeError):
        simalarm.exit_and_deep_sleep_until_alarms("not an alarm")
