"""THE composition root: builds every part of the hub, wires their events, taps and routes, and starts
and stops them in order.

Nothing else builds a part or connects one to another; no part imports this module. Each capability
is one block below: it builds its parts from ``HubConfig`` (each gets its own narrow settings),
connects their signals, and registers what the hub runs (``_start``, ``_task``), what HTTP shows
(``counted``, ``*_extras``) and how it stops (``_stop``; stop steps run in reverse order, after the
viewers are closed, the cameras said offline, MQTT said goodbye and the background tasks ended).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from camhub.hub.battery.pictures import PushedPictures
from camhub.hub.battery.wakes import Wakes
from camhub.hub.cluster.members import ClusterSettings
from camhub.hub.cluster.role import ClusterRole
from camhub.hub.config import HubConfig, cluster_secret
from camhub.hub.core import controls
from camhub.hub.core.broker import Broker, FanoutSettings, Feed
from camhub.hub.core.camera import OFFLINE
from camhub.hub.core.events import Changes
from camhub.hub.core.identity import HubIdentity
from camhub.hub.core.known import KnownCameras
from camhub.hub.core.options import CameraOptions
from camhub.hub.core.registry import Cameras
from camhub.hub.http.auth import load_key
from camhub.hub.http.server import HttpServer, HttpSettings
from camhub.hub.http.services import CameraExtra, HttpServices, HubExtra
from camhub.hub.http.streams import ViewerLimits
from camhub.hub.ingest.control import NodeControl
from camhub.hub.ingest.nodes import NodeMessages
from camhub.hub.ingest.pulls import AlwaysPull, OnDemandPull, PullPolicy, Pulls, PullSettings
from camhub.hub.ingest.sources import AllowedSources, HubAddresses, parse_static_sources
from camhub.hub.mqtt.embedded import EmbeddedBroker
from camhub.hub.mqtt.link import LinkSettings, MqttLink
from camhub.hub.mqtt.topics import Topics
from camhub.hub.publish.homeassistant import Discovery, DiscoverySettings, camera_device, integration_info
from camhub.hub.publish.status import StatusPublisher
from camhub.hub.taps.motion import Motion, MotionSettings
from camhub.hub.taps.recordings import Recordings, RecordSettings
from camhub.hub.util.counters import Counted
from camhub.hub.util.diagnostics import Diagnostics, Sized, Tracer
from camhub.hub.util.tasks import every
from camhub.settings import SettingsError

log = logging.getLogger(__name__)

TICK_S = 0.5  # motion and recordings look at the clock this often (events that end by silence)
STOP_TASKS_S = 5.0


class Hub:
    """One running hub: ``await start()``, then ``await stop()``."""

    def __init__(self, config: HubConfig) -> None:
        self.config = config
        # first, so that tracing sees every part being built (CAMHUB_DIAGNOSTICS = "tracemalloc")
        tracer = Tracer() if config.diagnostics == "tracemalloc" else None
        sized: dict[str, Sized] = {}  # each part's structure sizes, by name, for /api/hub/diagnostics
        self._steps: list[Callable[[], Awaitable[None] | None]] = []  # start, in order
        self._leaving: list[Callable[[], None]] = []  # the first thing stop() does, in order
        self._stops: list[tuple[str, float, Callable[[], Awaitable[None] | None]]] = []  # stop, in reverse
        self._tasks: list[asyncio.Task[Any]] = []
        counted: list[Counted] = []
        summary_extras: list[CameraExtra] = []
        detail_extras: list[CameraExtra] = []
        hub_extras: list[HubExtra] = []

        # ---- core: who the hub is, its cameras and their feeds, the dashboard's change bus ----------------
        self.identity = HubIdentity()
        self.changes = Changes()
        self.broker = Broker(FanoutSettings(write_timeout_s=config.write_timeout_s, keepalive_s=config.keepalive_s))
        self.cameras = cameras = Cameras(self.broker, config.max_cameras)
        self.known = KnownCameras(cameras, config.state_dir)
        self.options = CameraOptions(config.state_dir, {"motion": config.motion, "record": config.record})
        self.broker.viewers.connect(cameras.viewer_event)
        summary_extras.append(lambda camera: controls.summary(camera.announce, camera.source))
        counted += [self.broker, self.known]
        sized.update(cameras=cameras, broker=self.broker, options=self.options, changes=self.changes)
        self._start(self.known.load)
        self._task(self.broker.run_housekeeping)
        self._stop("the known cameras", 5.0, self.known.flush)
        self._stop("the camera options", 5.0, self.options.flush)

        # ---- MQTT: the contract's topics, the embedded broker (when there is no other), the link ------------
        self.topics = Topics(config.topic_prefix, config.ha_discovery_prefix,
                             config.hub_id if config.clustered else None)
        mqtt_host = str(config.mqtt_host)
        if config.embedded_broker:  # talk to our own broker where it listens (any address: loopback)
            listen = config.mqtt_listen or config.host
            mqtt_host = "127.0.0.1" if listen in ("0.0.0.0", "::", "") else listen
            embedded = EmbeddedBroker(listen, config.mqtt_port)
            self._start(embedded.start)
            self._stop("the embedded MQTT broker", 10.0, embedded.stop)  # bounded itself
            sized["mqtt_broker"] = embedded
        self.link = link = MqttLink(LinkSettings(mqtt_host, config.mqtt_port, config.mqtt_user, config.mqtt_password,
                                                 embedded=config.embedded_broker,
                                                 keep_retained=not config.clustered), self.topics)
        self._task(link.run)
        counted.append(link)
        sized["mqtt"] = link
        hub_extras.append(lambda: {"mqtt": link.stats()})

        # ---- cluster (CAMHUB_ROLE origin or edge): members, ownership, hub-to-hub pulls ------------------
        # A camera's owner pulls its board and writes its topics; every hub serves it (pulling it from its
        # owner while watched); motion and recordings run on the owner. A single hub has none of this.
        allowed = AllowedSources.parse(config.allowed_sources)
        board_policy: PullPolicy = AlwaysPull() if config.pull == "always" else OnDemandPull()
        self.cluster: ClusterRole | None = None
        if config.clustered:
            self.cluster = cluster = ClusterRole(
                ClusterSettings(hub_id=config.hub_id, role=config.role, url=config.hub_url,
                                version=self.identity.version, instance=self.identity.instance, allowed=allowed,
                                rebalance_s=config.rebalance_s,
                                redirect_percent=config.stream_redirect_balance if config.stream_redirect == "edges"
                                else 0),
                cluster_secret(config) or "", link, self.topics, cameras, board_policy, self.identity.user_agent)
            cluster.subscribe()
            link.up.connect(cluster.link_up)  # first: nothing about a camera goes out until it has settled
            link.down.connect(cluster.link_down)
            cameras.changed.connect(cluster.ownership.camera_changed)
            counted.append(cluster)
            hub_extras.append(cluster.health)
            self._leaving.append(cluster.leave)
            self._task(cluster.run)
            self._stop("the cluster's clients", 2.0, cluster.close)
        publishes = self.cluster.publishes if self.cluster else _always

        # ---- taps: motion detection and recordings see every frame of every feed ---------------------------
        motion_pool = ThreadPoolExecutor(1, thread_name_prefix="camhub-motion")
        self.motion = motion = Motion(
            MotionSettings(fps=config.motion_fps, threshold=config.motion_threshold,
                           min_area_pct=config.motion_min_area_pct, frames=config.motion_frames,
                           quiet_s=config.motion_quiet_s),
            config.motion == "on", motion_pool, log_dir=config.state_dir / "motion")
        self.recordings = recordings = Recordings(RecordSettings(
            root=config.recordings_dir, preroll_s=config.record_preroll_s, postroll_s=config.record_postroll_s,
            segment_s=config.record_segment_s, keep_days=config.record_keep_days, max_gb=config.record_max_gb,
            min_free_gb=config.record_min_free_gb, timelapse_s=config.timelapse_s))

        def attach_taps(feed: Feed) -> None:
            state = motion.camera(feed.camera_id)
            state.enabled = self.options.get(feed.camera_id, "motion") == "on"
            recorder = recordings.recorder(feed.camera_id, self.options.get(feed.camera_id, "record"), state)
            taps = {"motion": motion.tap(feed.camera_id), "recordings": recorder.frame}
            for name, tap in taps.items():  # in a cluster they run on the camera's owner only
                feed.add_tap(name, self.cluster.only_owned(feed.camera_id, tap) if self.cluster else tap)

        self.broker.feed_made.connect(attach_taps)
        self.options.changed.connect(motion.apply_options)
        self.options.changed.connect(recordings.apply_options)
        cameras.removed.connect(motion.forget)  # a removed camera leaves nothing behind (issue #26)
        cameras.removed.connect(recordings.forget)
        summary_extras += [lambda camera: motion.summary(camera.id), lambda camera: recordings.summary(camera.id)]
        detail_extras.append(lambda camera: motion.detail(camera.id))
        hub_extras.append(recordings.health)
        counted += [motion, recordings]
        sized.update(motion=motion, recordings=recordings)
        self._task(lambda: every(TICK_S, motion.tick))
        self._start(recordings.start)
        self._task(lambda: every(TICK_S, recordings.tick))
        self._stop("the recordings writer", 10.0, recordings.stop)
        self._stop("motion detection", 1.0, lambda: motion_pool.shutdown(wait=False, cancel_futures=True))

        # ---- ingest: where cameras come from, and one pull each ------------------------------------------
        # The hub never pulls itself: not its own addresses, nor a stream that carries its own
        # instance in the User-Agent (a loop through a proxy or a name; see http.streams).
        addresses = HubAddresses(config.host, config.port)
        static = parse_static_sources(config.sources, allowed)
        for camera_id, url in static.items():
            if addresses.url_is_self(url):
                raise SettingsError(f"CAMHUB_SOURCES: {camera_id}: points at this hub itself")
        self.pulls = pulls = Pulls(
            cameras, PullSettings(allowed=allowed, max_frame_bytes=config.max_frame_bytes, stall_s=config.stall_s,
                                  max_ingest_fps=config.max_ingest_fps, keep_warm_s=config.keep_warm_s),
            self.cluster.policy if self.cluster else board_policy, addresses, self.identity.user_agent)
        self.nodes = nodes = NodeMessages(cameras, self.known, pulls, allowed, addresses, self.topics)
        self.control = control = NodeControl(link, self.topics, cameras)
        nodes.subscribe(link)
        self.broker.viewers.connect(pulls.viewer_event)
        hub_extras.append(nodes.health)
        counted += [nodes, self.control]
        sized.update(pulls=pulls, nodes=nodes)
        def add_static_sources() -> None:
            for camera_id, url in static.items():
                pulls.add_static(camera_id, url)

        self._start(add_static_sources)
        self._stop("the camera pulls", 5.0, pulls.stop_all)

        # ---- battery cameras: pictures pushed over MQTT, missed wakes, settings queued for the next wake --
        wakes = Wakes(cameras, link, self.topics)
        nodes.heard.connect(wakes.heard)  # every message a node sends: a battery camera's wake
        nodes.announce_heard.connect(wakes.announced)  # before the camera's change is told
        pushed = PushedPictures(cameras, wakes, self.topics, config.max_frame_bytes)
        pushed.subscribe(link)  # after the announces: a retained picture's camera is known by then
        wakes.subscribe()
        control.queue_with(wakes)  # a battery camera's settings wait for its next wake
        control.subscribe()  # Home Assistant's controls of a battery camera, through the hub
        self._start(wakes.restore)  # the battery cameras known from an earlier run: missing, or sleeping
        self._task(lambda: every(TICK_S, wakes.tick))
        counted += [pushed, wakes]

        # ---- publish: the hub's status on MQTT, always; Home Assistant discovery if wanted ---------------
        self.status = status = StatusPublisher(link, self.topics, cameras, motion, recordings, publishes)
        cameras.changed.connect(status.camera_changed)
        cameras.removed.connect(status.camera_removed)
        self.broker.viewers.connect(status.viewer_event)
        motion.emitted.connect(status.motion_event)
        recordings.status_changed.connect(status.recordings_changed)
        link.up.connect(status.republish)
        sized["status"] = status
        self._task(lambda: every(config.state_interval_s, status.states))
        self._task(lambda: every(1.0, status.flush))
        self.discovery: Discovery | None = None
        if config.ha_discovery == "on":
            self.discovery = discovery = Discovery(
                DiscoverySettings(hub_url=config.hub_url, snapshot_s=config.ha_snapshot_s), link, self.topics,
                cameras, status, publishes)
            discovery.subscribe()
            cameras.changed.connect(discovery.camera_changed)
            cameras.removed.connect(discovery.camera_removed)
            link.up.connect(discovery.publish_all)
            self._task(discovery.run_snapshots)
            sized["discovery"] = discovery
        # what Home Assistant's camhub integration adopts the hub and its cameras' devices by (also without MQTT)
        summary_extras.append(lambda camera: {"ha_device": camera_device(self.topics, config.hub_url, camera,
                                                                         self._owner(camera.id))})
        hub_extras.append(lambda: {"home_assistant": {
            **integration_info(self.topics, config.hub_url, self.discovery is not None),
            "integration": self.discovery is not None and self.discovery.integration}})

        # ---- the cluster: a change of owner moves pulls and who publishes; the owner clears a removed claim --
        if self.cluster is not None:
            ownership = self.cluster.ownership
            for listener in (pulls.reconsider, status.camera_gained, *([discovery.camera_gained] if self.discovery
                                                                      else [])):
                ownership.gained.connect(listener)
            ownership.lost.connect(pulls.reconsider)
            ownership.lost.connect(self.cluster.lost)
            if self.discovery is not None:
                ownership.lost.connect(lambda camera: discovery.camera_lost(camera.id))
            ownership.moved.connect(pulls.reconsider)
            cameras.removed.connect(self.cluster.camera_removed)  # after the publishers: they still own it
            summary_extras.append(self.cluster.summary)  # last: a camera not pulled here shows its owner's state
            for cluster_signal in (ownership.gained, ownership.lost, ownership.moved):
                cluster_signal.connect(self.changes.notify)

        # ---- the dashboard hears of every change --------------------------------------------------------
        for signal in (cameras.changed, cameras.removed, motion.emitted, recordings.status_changed,
                       self.options.changed, link.up):
            signal.connect(self.changes.notify)

        # ---- HTTP: dashboard, API, streams, recordings, metrics -------------------------------------------
        public = urlsplit(config.public_url).hostname if config.public_url else None
        self.http = http = HttpServer(
            HttpSettings(host=config.host, port=config.port, auth_required=config.auth_required, user=config.user,
                         password=config.password,
                         token_key=self.cluster.key.view_token_key if self.cluster else load_key(config.state_dir),
                         trusted_proxies=config.trusted_proxies, cluster=self.cluster.key if self.cluster else None,
                         allowed_hosts=" ".join(filter(None, (config.allowed_hosts, public))),
                         limits=ViewerLimits(config.max_viewers, config.max_viewers_per_camera),
                         write_timeout_s=config.write_timeout_s),
            HttpServices(identity=self.identity, cameras=cameras, warm=pulls.warm, options=self.options,
                         control=self.control, motion=motion, recordings=recordings, changes=self.changes,
                         counted=counted, summary_extras=summary_extras, detail_extras=detail_extras,
                         hub_extras=hub_extras, cluster=self.cluster,
                         diagnostics=Diagnostics(sized, tracer) if config.diagnostics != "off" else None))
        sized["http"] = http
        self._start(http.start)
        self._task(http.enforce_request_deadline)
        self._stop("the HTTP server", 5.0, http.stop)

    # ---- registering ---------------------------------------------------------------------------------
    def _start(self, step: Callable[[], Awaitable[None] | None]) -> None:
        self._steps.append(step)

    def _owner(self, camera_id: str) -> str | None:
        """The hub a camera's Home Assistant device is via: its owner in a cluster (this hub while it has
        none), None for a single hub."""
        if self.cluster is None:
            return None
        claim = self.cluster.ownership.owner(camera_id)
        return claim.hub if claim is not None else self.topics.hub_id

    def _task(self, job: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        """A background job, started in its place among the start steps and cancelled when the hub stops."""
        self._steps.append(lambda: self._tasks.append(asyncio.create_task(job())))

    def _stop(self, what: str, timeout: float, step: Callable[[], Awaitable[None] | None]) -> None:
        self._stops.append((what, timeout, step))

    # ---- lifecycle -----------------------------------------------------------------------------------
    async def start(self) -> None:
        for step in self._steps:
            done = step()
            if done is not None:
                await done
        config = self.config
        log.info("hub listening on http://%s:%d/ (auth %s)", config.host, config.port,
                 "on" if config.auth_required else "off")

    async def stop(self) -> None:
        """Stop everything, each step bounded in time; the embedded broker after the goodbyes."""
        for leave in self._leaving:
            leave()
        self.changes.close()
        self.broker.close_all()
        for camera in self.cameras:  # their offline states go out before the hub says goodbye
            self.cameras.set_state(camera, OFFLINE)
        await self.link.flush(2.0)
        await self.link.close(timeout=3.0)  # returns once the broker has passed the goodbye on
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await _bounded(asyncio.wait(self._tasks), STOP_TASKS_S, "the hub's tasks")
        for what, timeout, step in reversed(self._stops):
            await _bounded(step(), timeout, what)

    async def wait_offline(self, camera_ids: list[str], timeout: float) -> None:
        """Wait (at most ``timeout``) until each of these cameras has said ``offline`` (or is unknown)."""
        changed = self.changes.subscribe()
        waiting: list[str] = []
        try:
            async with asyncio.timeout(timeout):
                while True:
                    changed.clear()
                    waiting = [i for i in camera_ids if (c := self.cameras.get(i)) and c.available]
                    if not waiting:
                        return
                    await changed.wait()
        except TimeoutError:
            log.warning("no offline heard from %s within %g s", ", ".join(waiting), timeout)
        finally:
            self.changes.unsubscribe(changed)


def _always(camera_id: str) -> bool:
    return True


async def _bounded(step: Awaitable[Any] | None, timeout: float, what: str) -> None:
    """Await one shutdown step for at most ``timeout`` seconds; a step that fails or overruns is logged."""
    if step is None:
        return
    try:
        await asyncio.wait_for(step, timeout)
    except TimeoutError:
        log.warning("stopping %s took longer than %g s; going on", what, timeout)
    except Exception:
        log.exception("stopping %s failed; going on", what)
