"""The hub state's viewer count on MQTT, in process: when a change goes out and when it waits.

The status publisher runs on the real camera registry and frame broker, wired as ``app.py`` wires them;
viewers are real sockets (socket pairs) adopted by the camera's feed; the clock is one the test moves
(``tests/support/clock.py``); the MQTT link is the stand-in that records what would be published. The
same rules end to end, over mosquitto: test_hub_status.py.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from camhub.hub.core.broker import Broker, FanoutSettings, Feed, Viewer
from camhub.hub.core.registry import Cameras
from camhub.hub.mqtt.topics import Topics
from camhub.hub.publish import status as status_module
from camhub.hub.publish.status import VIEWERS_EVERY_S, StatusPublisher
from camhub.hub.taps.motion import Motion, MotionSettings
from camhub.hub.taps.recordings import Recordings, RecordSettings
from tests.support.clock import Clock
from tests.support.hubhttp import MOTION_POOL, NODE_ANNOUNCE, StandInLink


@dataclass
class Hub:
    link: StandInLink
    status: StatusPublisher
    feed: Feed
    clock: Clock
    viewers: list[tuple[Viewer, socket.socket]] = field(default_factory=list)

    def connect(self, count: int) -> None:
        for _ in range(count):
            ours, theirs = socket.socketpair()
            self.viewers.append((self.feed.add(ours, "127.0.0.1", "test"), theirs))

    def disconnect(self, count: int) -> None:
        for _ in range(count):
            viewer, theirs = self.viewers.pop()
            self.feed.remove(viewer, "closed")
            theirs.close()

    def counts_sent(self) -> list[int]:
        """The viewer counts in the hub states published since the last call."""
        sent = [json.loads(payload)["viewers"] for topic, payload, _ in self.link.published
                if topic == "camhub/hub/state"]
        self.link.published.clear()
        return sent


@pytest.fixture
async def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Hub]:
    clock = Clock()
    monkeypatch.setattr(status_module, "time", clock)
    broker = Broker(FanoutSettings())
    cameras = Cameras(broker, max_cameras=8)
    link = StandInLink()
    recordings = Recordings(RecordSettings(root=tmp_path, preroll_s=0, postroll_s=0, segment_s=60, keep_days=1,
                                           max_gb=1, min_free_gb=0, timelapse_s=0))
    status = StatusPublisher(link, Topics(), cameras, Motion(MotionSettings(), True, MOTION_POOL),  # type: ignore[arg-type]
                             recordings)
    broker.viewers.connect(cameras.viewer_event)  # as app.py wires them
    cameras.changed.connect(status.camera_changed)
    cameras.add("porch", "Porch", "mqtt", "http://127.0.0.1:9/stream", dict(NODE_ANNOUNCE))
    world = Hub(link, status, broker.feed("porch"), clock)
    yield world
    world.disconnect(len(world.viewers))


async def test_viewers_coming_go_out_at_most_every_two_seconds_the_last_count_held_back_by_flush(hub: Hub) -> None:
    hub.counts_sent()
    hub.clock.now += VIEWERS_EVERY_S
    hub.connect(20)
    assert hub.counts_sent() == [1]  # the first change at once, the next 19 held back
    hub.status.flush()
    assert hub.counts_sent() == []  # not yet 2 s since
    hub.clock.now += VIEWERS_EVERY_S
    hub.status.flush()
    assert hub.counts_sent() == [20]
    hub.status.flush()
    assert hub.counts_sent() == []


async def test_a_fall_of_the_viewers_to_half_or_less_goes_out_at_once(hub: Hub) -> None:
    # A hub that redirects viewers to edges counts its own redirects since an edge's last count, so it sees
    # a rise; a fall it learns only from the edge's count: an edge many viewers just left must say so at once,
    # or the redirects keep it empty while the other edges take everyone past the bound (issue #22).
    hub.clock.now += VIEWERS_EVERY_S
    hub.connect(20)
    hub.clock.now += VIEWERS_EVERY_S
    hub.status.flush()
    assert hub.counts_sent()[-1] == 20
    hub.disconnect(9)  # 20 -> 11: more than half, waits
    assert hub.counts_sent() == []
    hub.disconnect(1)  # 10: half of 20, at once
    assert hub.counts_sent() == [10]
    hub.disconnect(4)  # 6: more than half of 10, waits
    assert hub.counts_sent() == []
    hub.disconnect(6)  # 0, at once, each halving on the way too
    assert hub.counts_sent() == [5, 2, 1, 0]
    hub.connect(3)  # a rise still waits
    assert hub.counts_sent() == []
    hub.clock.now += VIEWERS_EVERY_S
    hub.status.flush()
    assert hub.counts_sent() == [3]


async def test_the_hub_state_is_retained_and_counts_the_cameras_those_online_and_the_viewers(hub: Hub) -> None:
    # retained: a redirecting hub that subscribes later reads the last one; the camera is known, not yet online
    hub.link.published.clear()
    hub.link.retained.clear()
    hub.clock.now += VIEWERS_EVERY_S
    hub.connect(2)
    hub.clock.now += VIEWERS_EVERY_S
    hub.status.flush()
    sent = [(payload, retained) for (topic, payload, _), retained in zip(hub.link.published, hub.link.retained,
                                                                         strict=True) if topic == "camhub/hub/state"]
    assert sent == [('{"cameras_total":1,"cameras_online":0,"viewers":1}', True),
                    ('{"cameras_total":1,"cameras_online":0,"viewers":2}', True)]
