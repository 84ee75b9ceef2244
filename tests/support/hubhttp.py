"""The hub's HTTP side built in this process from real parts, for the in-process tests.

``make_world`` builds the ``HttpServer`` exactly as the hub's composition root does, but from parts made
here: the real camera registry, frame broker, options, motion detection and recordings, and, for the
MQTT link, ``StandInLink``, which records what would be published (the link's own behaviour is tested
against mosquitto in test_hub_mqtt_link.py). Requests go over real sockets (aiohttp's test server on
127.0.0.1). Being in process, the tests that use it reach the HTTP code under ``make mutate`` too.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aiohttp.test_utils import TestClient, TestServer

from camhub.hub.cluster.role import ClusterRole
from camhub.hub.core import controls
from camhub.hub.core.broker import Broker, FanoutSettings, Feed
from camhub.hub.core.events import Changes
from camhub.hub.core.identity import HubIdentity
from camhub.hub.core.options import CameraOptions
from camhub.hub.core.registry import Cameras
from camhub.hub.http.server import HttpServer, HttpSettings
from camhub.hub.http.services import HttpServices
from camhub.hub.ingest.control import NodeControl
from camhub.hub.mqtt.topics import Topics
from camhub.hub.taps.motion import Motion, MotionSettings
from camhub.hub.taps.recordings import Recordings, RecordSettings

T = TypeVar("T")
# For parts that are given no frames to analyse. A world that is (``make_world``) gets a pool of its own: a
# pool whose thread started before a fork has none in the child, where every analysis would wait for ever
# (mutmut forks a process per mutant after a first run of the tests).
MOTION_POOL = ThreadPoolExecutor(1, thread_name_prefix="test-motion")
NODE_ANNOUNCE = {"id": "porch", "name": "Porch", "stream_url": "http://127.0.0.1:9/stream", "fps": 10,
                 "jpeg_quality": 12, "frame_size": "VGA"}


@dataclass
class StandInLink:
    """What the parts use of the MQTT link (``mqtt.link.MqttLink``): whether it is up, ``publish`` (recorded
    here, with ``retain`` in ``retained``) and ``subscribe`` (the handlers kept, for the test to call)."""

    connected: bool = True
    published: list[tuple[str, Any, int | None]] = field(default_factory=list)
    retained: list[bool] = field(default_factory=list)
    handlers: dict[str, Callable[[str, bytes], Any]] = field(default_factory=dict)

    def publish(self, topic: str, payload: Any, retain: bool = False, qos: int | None = None) -> None:
        self.published.append((topic, payload, qos))
        self.retained.append(retain)

    def subscribe(self, topic_filter: str, qos: int, handler: Callable[[str, bytes], Any]) -> None:
        if qos not in (0, 1, 2):  # as paho's subscribe, under the real link: ValueError('Invalid QoS level.')
            raise ValueError(f"Invalid QoS level: {qos!r}")
        self.handlers[topic_filter] = handler


@dataclass
class World:
    client: TestClient
    server: HttpServer
    services: HttpServices
    link: StandInLink

    async def json(self, path: str, **kwargs: Any) -> tuple[int, Any, dict[str, str]]:
        async with self.client.get(path, **kwargs) as response:
            text = await response.text()
            body = json.loads(text) if response.content_type == "application/json" else text
            return response.status, body, dict(response.headers)

    async def post(self, path: str, body: Any, **kwargs: Any) -> tuple[int, Any]:
        kwargs.setdefault("json", body)
        async with self.client.post(path, **kwargs) as response:
            return response.status, json.loads(await response.text() or "null")

    async def metric(self, name: str, labels: str, headers: dict[str, str] | None = None) -> float | None:
        async with self.client.get("/metrics", headers=headers) as response:
            text = await response.text()
        for line in text.splitlines():
            if line.startswith(f"{name}{{{labels}}} "):
                return float(line.rsplit(" ", 1)[1])
        return None


async def make_world(tmp_path: Path, options: dict[str, str] | None = None,
                     motion_settings: MotionSettings | None = None, motion_log: Path | None = None,
                     cluster_role: Callable[[Cameras], ClusterRole] | None = None, port: int | None = None,
                     **settings: Any) -> World:
    """The HTTP server over real parts, wired as ``app.py`` wires them (taps, options, extras, counters);
    ``options`` are the cameras' default hub options, ``motion_log`` the motion events' folder. The
    recordings' writer is not started. ``cluster_role`` makes this hub's cluster role from its cameras (the
    caller connects and runs it), ``port`` is the port to serve on (a cluster member's URL names it)."""
    broker = Broker(FanoutSettings())
    cameras = Cameras(broker, max_cameras=8)
    broker.viewers.connect(cameras.viewer_event)  # a camera's viewers are a change of it
    link = StandInLink()
    options_ = CameraOptions(tmp_path, {"motion": "on", "record": "off", **(options or {})})
    motion = Motion(motion_settings or MotionSettings(), options_.defaults["motion"] == "on",
                    ThreadPoolExecutor(1, thread_name_prefix="test-motion"),
                    log_dir=motion_log)
    recordings = Recordings(RecordSettings(root=tmp_path / "rec", preroll_s=0, postroll_s=0, segment_s=60,
                                           keep_days=1, max_gb=1, min_free_gb=0, timelapse_s=0))

    def attach_taps(feed: Feed) -> None:
        state = motion.camera(feed.camera_id)
        state.enabled = options_.get(feed.camera_id, "motion") == "on"
        feed.add_tap("motion", motion.tap(feed.camera_id))
        recorder = recordings.recorder(feed.camera_id, options_.get(feed.camera_id, "record"), state)
        feed.add_tap("recordings", recorder.frame)

    broker.feed_made.connect(attach_taps)
    options_.changed.connect(motion.apply_options)
    options_.changed.connect(recordings.apply_options)
    control = NodeControl(link, Topics(), cameras)  # type: ignore[arg-type]  (the stand-in link)
    services = HttpServices(identity=HubIdentity("9.9.9"), cameras=cameras, warm=lambda camera: None,
                            options=options_, control=control, motion=motion, recordings=recordings,
                            changes=Changes(), counted=[broker, control, motion, recordings],
                            summary_extras=[lambda c: controls.summary(c.announce, c.source),
                                            lambda c: motion.summary(c.id), lambda c: recordings.summary(c.id)],
                            detail_extras=[lambda c: motion.detail(c.id)], hub_extras=[recordings.health],
                            cluster=None if cluster_role is None else cluster_role(cameras))
    for signal in (cameras.changed, cameras.removed, motion.emitted, recordings.status_changed, options_.changed):
        signal.connect(services.changes.notify)
    server = HttpServer(HttpSettings(**settings), services)
    client = TestClient(TestServer(server.app, host="127.0.0.1", port=port))
    await client.start_server()
    return World(client, server, services, link)


class ServedWorld:
    """A world (``make_world``) served from a thread of its own, for a browser driven from the test's thread:
    ``url`` to load, ``run(coroutine)`` and ``call(function, ...)`` to act on its parts on their event loop."""

    def __init__(self, tmp_path: Path, **kwargs: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="served-world", daemon=True)
        self.thread.start()
        self.world: World = self.run(make_world(tmp_path, **kwargs))
        self.url = f"http://127.0.0.1:{self.world.client.port}"
        self.services = self.world.services

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(60)

    def call(self, function: Callable[..., T], *args: Any) -> T:
        async def on_the_loop() -> T:
            return function(*args)
        return self.run(on_the_loop())

    def close(self) -> None:
        async def stop() -> None:
            for task in asyncio.all_tasks() - {asyncio.current_task()}:
                task.cancel()
            await self.services.recordings.stop()
            await self.world.client.close()
        self.run(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
