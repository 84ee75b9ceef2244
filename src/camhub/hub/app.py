"""The hub service: wires discovery, pulls, the frame broker, HTTP and MQTT status together.

``camhub hub`` runs it until SIGINT/SIGTERM, then closes every viewer (reason ``server_shutdown``),
marks its cameras offline, says ``offline`` on MQTT and stops the embedded broker if it started one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import resource
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from camhub import __version__
from camhub.hub.config import HubConfig, add_arguments, config_from_args
from camhub.hub.core.broker import Broker, FanoutSettings, Feed, Viewer
from camhub.hub.core.cameras import OFFLINE, Camera, Cameras
from camhub.hub.core.controls import ChangeRefused, check_change, controls_of, current_settings
from camhub.hub.core.options import CameraOptions
from camhub.hub.http import recordings as recordings_http
from camhub.hub.http import server as webapp
from camhub.hub.http.auth import Auth, load_key
from camhub.hub.http.hostcheck import HostCheck
from camhub.hub.http.metrics import HubCollector, render
from camhub.hub.ingest.announce import (
    AllowedSources,
    AnnounceRejected,
    HubAddresses,
    parse_announce,
    parse_static_sources,
)
from camhub.hub.mqtt.embedded import EmbeddedBroker
from camhub.hub.mqtt.link import MqttLink
from camhub.hub.publish.homeassistant import Discovery
from camhub.hub.taps.motion import Motion, MotionSettings
from camhub.hub.taps.recordings import Recordings, RecordSettings
from camhub.hub.util.ratelimit import LogLimiter
from camhub.settings import SettingsError

log = logging.getLogger(__name__)


class Hub:
    """One running hub."""

    def __init__(self, config: HubConfig) -> None:
        self.config = config
        self.started = time.monotonic()
        self.stopping = asyncio.Event()
        self.rejections: Counter[str] = Counter()  # announces, by reason
        self.refusals: Counter[str] = Counter()  # viewers turned away, by limit
        self.settings_refused: Counter[str] = Counter()  # settings changes not forwarded, by reason
        self.warnings = LogLimiter(log)  # every repeatable warning of the hub's goes through this
        self.allowed = AllowedSources.parse(config.allowed_sources)
        self.options = CameraOptions(config.state_dir / "camera-options.json",
                                     {"motion": config.motion, "record": config.record})
        self._motion_pool = ThreadPoolExecutor(1, thread_name_prefix="camhub-motion")
        self.motion = Motion(MotionSettings(fps=config.motion_fps, threshold=config.motion_threshold,
                                            min_area_pct=config.motion_min_area_pct, frames=config.motion_frames,
                                            quiet_s=config.motion_quiet_s),
                             config.motion == "on", self._motion_pool, self._motion_event, self.warnings,
                             log_dir=config.state_dir / "motion")
        self.recordings = Recordings(RecordSettings(
            root=config.recordings_dir, preroll_s=config.record_preroll_s, postroll_s=config.record_postroll_s,
            segment_s=config.record_segment_s, keep_days=config.record_keep_days, max_gb=config.record_max_gb,
            min_free_gb=config.record_min_free_gb, timelapse_s=config.timelapse_s), self._recordings_changed)
        self.playbacks = 0  # recordings being played back (recordings_http)
        self.broker = Broker(FanoutSettings(write_timeout_s=config.write_timeout_s,
                                            keepalive_s=config.keepalive_s), on_viewer=self._viewer_event,
                             on_feed=self._feed_created)
        # The hub never pulls itself: not its own addresses, nor a stream that carries its own
        # instance in the User-Agent (a loop through a proxy or a name); see is_own_request().
        self.addresses = HubAddresses(config.host, config.port)
        self.instance = uuid.uuid4().hex[:12]
        self.user_agent = f"camhub-hub/{__version__} (+{self.instance})"
        self.cameras = Cameras(config, self.broker, on_change=self._camera_changed,
                               hub_addresses=self.addresses, user_agent=self.user_agent)
        public = urlsplit(config.public_url).hostname if config.public_url else None
        self.hosts = HostCheck(config.host, " ".join(filter(None, (config.allowed_hosts, public))))
        self.auth = Auth(config.auth_required, config.user, config.password, load_key(config.state_dir))
        self.embedded: EmbeddedBroker | None = None
        if config.embedded_broker:  # talk to our own broker where it listens (any address: loopback)
            listen = config.mqtt_listen or config.host
            mqtt_host = "127.0.0.1" if listen in ("0.0.0.0", "::", "") else listen
        else:
            mqtt_host = str(config.mqtt_host)
        self.mqtt = MqttLink(config, mqtt_host, config.mqtt_port, self._node_message, self._mqtt_connected)
        self.discovery: Discovery | None = None
        if config.ha_discovery == "on":
            self.discovery = Discovery(config, self.mqtt, lambda: list(self.cameras.cameras.values()),
                                       config.hub_url, lambda: self.broker.viewer_count)
            self.mqtt.listen(self.discovery.status_topic, self.discovery.ha_status)
        self._collector = HubCollector(self.cameras, self.rejections, self.refusals, lambda: self.mqtt.connected,
                                       self._counters)
        self._listeners: set[asyncio.Event] = set()
        self._tasks: list[asyncio.Task[Any]] = []
        self._runner: web.AppRunner | None = None
        self._app: web.Application | None = None

    # ---- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        config = self.config
        self.cameras.load()
        for camera_id, url in parse_static_sources(config.sources, self.allowed).items():
            if self.addresses.url_is_self(url):
                raise SettingsError(f"CAMHUB_SOURCES: {camera_id}: points at this hub itself")
            self.cameras.add_static(camera_id, url)
        if config.embedded_broker:
            self.embedded = EmbeddedBroker(config.mqtt_listen or config.host, config.mqtt_port)
            await self.embedded.start()
        self._tasks = [asyncio.create_task(coro) for coro in (
            self.mqtt.run(), self.broker.run_housekeeping(), self._refresh_states(), self._tick())]
        if self.discovery is not None:
            self._tasks.append(asyncio.create_task(self.discovery.run_snapshots()))
        self.recordings.start()
        app = self._app = webapp.build_app(self)
        recordings_http.add_routes(app)
        self._runner = await webapp.start_site(app, config.host, config.port)
        self._tasks.append(asyncio.create_task(webapp.enforce_request_deadline(app, self._runner)))
        log.info("hub listening on http://%s:%d/ (auth %s)", config.host, config.port,
                 "on" if self.auth.required else "off")

    async def stop(self) -> None:
        """Stop everything, each step bounded in time; the embedded broker last, after the goodbyes."""
        self.stopping.set()
        self._notify()
        self.broker.close_all()
        for camera in self.cameras.cameras.values():
            camera.state = OFFLINE
            self.mqtt.publish_state(camera.id, camera.state_payload(time.monotonic()))
        await self.mqtt.flush(2.0)  # the offline states go out before the hub says goodbye
        await self.mqtt.close(timeout=3.0)  # returns once the broker has passed the goodbye on
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await _bounded(asyncio.wait(self._tasks), 5.0, "the hub's tasks")
        await _bounded(self.cameras.stop(), 5.0, "the camera pulls")
        if self._runner is not None:
            await _bounded(self._runner.cleanup(), 5.0, "the HTTP server")
        if self.embedded is not None:
            await self.embedded.stop()  # bounded itself
        self._motion_pool.shutdown(wait=False, cancel_futures=True)
        await _bounded(self.recordings.stop(), 10.0, "the recordings writer")

    async def wait_offline(self, camera_ids: list[str], timeout: float) -> None:
        """Wait (at most ``timeout``) until each of these cameras has said ``offline`` (or is unknown)."""
        changed = self.subscribe_changes()
        try:
            async with asyncio.timeout(timeout):
                while True:
                    changed.clear()
                    waiting = [i for i in camera_ids if (c := self.cameras.cameras.get(i)) and c.available]
                    if not waiting:
                        return
                    await changed.wait()
        except TimeoutError:
            log.warning("no offline heard from %s within %g s", ", ".join(waiting), timeout)
        finally:
            self.unsubscribe_changes(changed)

    # ---- views for HTTP --------------------------------------------------------------------
    def summary(self, camera: Camera, now: float) -> dict[str, Any]:
        """A camera's summary with what the hub adds to it (motion)."""
        return {**camera.summary(now), **self._extras(camera)}

    def detail(self, camera: Camera, now: float) -> dict[str, Any]:
        return {**camera.detail(now), **self._extras(camera),
                "motion_events": self.motion.events(camera.id)[:50]}

    def _extras(self, camera: Camera) -> dict[str, Any]:
        controls = controls_of(camera.announce, camera.source)
        return {"motion": self.motion.camera(camera.id).status(),
                "recording": self.recordings.recorder_for(camera.id).status(),
                "controls": None if controls is None else controls.to_dict()}

    def set_options(self, camera: Camera, changes: Any) -> dict[str, str]:
        """Change a camera's hub options (raises OptionError); applied at once."""
        options = self.options.update(camera.id, changes)
        self.motion.set_enabled(camera.id, options["motion"] == "on")
        self.recordings.set_mode(camera.id, options["record"])
        self._notify()
        return options

    def change_settings(self, camera: Camera, body: Any) -> dict[str, Any]:
        """Forward a settings change to the camera's node (its ``set`` topic); raises ChangeRefused.

        The node applies it and re-announces; until then the answer's ``current`` is the old announce.
        """
        try:
            change = check_change(camera.announce, camera.source, camera.available, body)
            if not self.mqtt.connected:
                raise ChangeRefused(503, "mqtt_down", "the hub's MQTT link is down: try again shortly")
        except ChangeRefused as exc:
            self.settings_refused[exc.reason] += 1
            self.warnings.warning(f"settings:{exc.reason}", "settings change for %s refused: %s", camera.id, exc)
            raise
        self.mqtt.publish_set(camera.id, change)
        log.info("settings change for %s sent to its node: %s", camera.id, change)
        return {"id": camera.id, "requested": change, "current": current_settings(camera.announce)}

    def sorted_cameras(self) -> list[Camera]:
        return sorted(self.cameras.cameras.values(), key=lambda c: (c.name.lower(), c.id))

    def health(self) -> dict[str, Any]:
        cameras = self.cameras.cameras.values()
        return {
            "version": __version__,
            "time": round(time.time(), 3),
            "uptime_s": round(time.monotonic() - self.started, 1),
            "mqtt": self.mqtt.stats(),
            "cameras_total": len(self.cameras.cameras),
            "cameras_online": sum(1 for c in cameras if c.state != OFFLINE),
            "viewers": self.broker.viewer_count,
            "auth": self.auth.required,
            "auth_failures": dict(self.auth.failures),
            "hosts_refused": self.hosts.refused,
            "announces_rejected": sum(self.rejections.values()),
            "recordings": self.recordings.store.status(),
        }

    def _counters(self) -> dict[str, tuple[str, str, dict[str, int]]]:
        """The labelled counters /metrics shows besides the per-camera ones."""
        http_log = self._app[webapp.HTTP_LOG_KEY] if self._app is not None else None
        return {
            "camhub_auth_failures": ("Requests refused for missing or wrong credentials", "reason",
                                     dict(self.auth.failures)),
            "camhub_state_saves": ("Writes of the known-cameras file", "file", {"cameras.json": self.cameras.saves}),
            "camhub_mqtt_messages_dropped": ("MQTT messages the hub did not publish", "reason",
                                             dict(self.mqtt.dropped)),
            "camhub_http_requests_malformed": ("Requests the HTTP parser refused", "kind",
                                               {"malformed": http_log.malformed if http_log else 0}),
            "camhub_http_requests_refused": ("Requests refused before any handler", "reason",
                                             {"host": self.hosts.refused}),
            "camhub_settings_refused": ("Camera settings changes refused", "reason", dict(self.settings_refused)),
            **self._motion_and_recording_counters(),
        }

    def _motion_and_recording_counters(self) -> dict[str, tuple[str, str, dict[str, int]]]:
        motion = self.motion.cameras
        recorders = self.recordings.cameras
        store = self.recordings.store
        return {
            "camhub_motion_frames_analysed": ("Frames analysed for motion", "camera",
                                              {c: m.analysed for c, m in motion.items()}),
            "camhub_motion_frames_skipped": ("Frames not analysed: the camera's previous one still was", "camera",
                                             {c: m.skipped for c, m in motion.items()}),
            "camhub_motion_frames_undecodable": ("Frames motion detection could not decode", "camera",
                                                 {c: m.errors for c, m in motion.items()}),
            "camhub_motion_events": ("Motion events started", "camera", {c: m.starts for c, m in motion.items()}),
            "camhub_recording_frames_dropped": ("Frames not recorded: the disk writer was too far behind", "camera",
                                                {c: r.dropped for c, r in recorders.items()}),
            "camhub_recordings_deleted": ("Recordings deleted", "reason", {"retention": store.deleted}),
            "camhub_recording_errors": ("Recording writes that failed", "kind", {"write": store.errors}),
        }

    def metrics(self) -> bytes:
        return render(self._collector)

    def is_own_request(self, user_agent: str) -> bool:
        """A request made by this very hub's upstream (it pulled itself through some name): refuse."""
        return f"(+{self.instance})" in user_agent

    def viewer_refusal(self, camera: Camera) -> str | None:
        if self.broker.viewer_count >= self.config.max_viewers:
            return "hub_limit"
        if len(camera.feed.viewers) >= self.config.max_viewers_per_camera:
            return "camera_limit"
        return None

    def subscribe_changes(self) -> asyncio.Event:
        event = asyncio.Event()
        self._listeners.add(event)
        return event

    def unsubscribe_changes(self, event: asyncio.Event) -> None:
        self._listeners.discard(event)

    def _notify(self) -> None:
        for event in self._listeners:
            event.set()

    # ---- events from the parts -------------------------------------------------------------
    async def _node_message(self, node_id: str, kind: str, payload: bytes) -> None:
        if kind == "announce":
            if not payload:  # a cleared retained announce: decommissioned, or spoofed (cameras.py)
                outcome = self.cameras.cleared(node_id)
                if outcome == "kept":
                    self.rejections["cleared_while_alive"] += 1
                    self.warnings.warning("cleared-alive", "the announce of %s was cleared while the node is "
                                          "alive; keeping the camera (the node re-asserts it)", node_id)
                elif outcome is not None:
                    if self.discovery is not None:
                        self.discovery.camera_removed(node_id)
                    self._notify()
                return
            try:
                announce = parse_announce(node_id, payload, self.allowed)
            except AnnounceRejected as exc:
                self._reject(node_id, exc.reason)
                return
            if self.addresses.url_is_self(announce.stream_url):
                self._reject(node_id, "self_source")
                return
            if not self.cameras.has_room(node_id):
                self._reject(node_id, "camera_limit")
                return
            self.cameras.announced(announce.to_dict())
        elif kind == "availability":
            text = payload.decode("utf-8", "replace").strip().lower()
            if text in ("online", "offline"):
                self.cameras.availability(node_id, text == "online")
        elif kind == "stats":
            self.cameras.node_alive(node_id)  # proof of life, whatever a spoofed "offline" said

    def _reject(self, node_id: str, reason: str) -> None:
        """Count a rejected announce; log it, at most once a minute per reason."""
        self.rejections[reason] += 1
        self.warnings.warning(f"announce:{reason}", "announce on %s/nodes/%s rejected: %s",
                              self.config.topic_prefix, node_id[:40].encode("unicode_escape").decode(), reason)

    def _mqtt_connected(self) -> None:
        now = time.monotonic()
        for camera in self.cameras.cameras.values():
            self.mqtt.publish_state(camera.id, camera.state_payload(now))
            self.mqtt.publish_motion(camera.id, self.motion.camera(camera.id).active)
        if self.discovery is not None:
            self.discovery.publish_all()
        self.mqtt.publish_recordings(self.recordings.store.status())
        self._notify()

    def _feed_created(self, feed: Feed) -> None:
        """Attach the frame taps (motion, then recordings) to a new camera's feed."""
        motion = self.motion.camera(feed.camera_id)
        motion.enabled = self.options.get(feed.camera_id, "motion") == "on"
        feed.taps.append(self.motion.tap(feed.camera_id))
        recorder = self.recordings.recorder(feed.camera_id, self.options.get(feed.camera_id, "record"), motion)
        feed.taps.append(recorder.frame)

    def _recordings_changed(self) -> None:
        self.mqtt.publish_recordings(self.recordings.store.status())
        self._notify()

    def _motion_event(self, camera_id: str, event: dict[str, Any]) -> None:
        self.mqtt.publish_motion(camera_id, event["phase"] == "start")
        self.mqtt.publish_event(camera_id, event)
        self._notify()

    def _camera_changed(self, camera: Camera) -> None:
        self.mqtt.publish_state(camera.id, camera.state_payload(time.monotonic()))
        if self.discovery is not None:
            self.discovery.camera_changed(camera)
        self._notify()

    def _viewer_event(self, kind: str, feed: Feed, viewer: Viewer) -> None:
        camera = self.cameras.cameras.get(feed.camera_id)
        info = viewer.info()
        event = {"event": kind, "client": viewer.id, "peer": viewer.peer,
                 "frames_sent": info["frames_sent"], "frames_dropped": info["frames_dropped"],
                 "bytes_sent": info["bytes_sent"], "user_agent": viewer.user_agent}
        if kind == "disconnect":
            event["reason"] = viewer.reason
            # every disconnect is in the API and on MQTT; the log gets the first of a kind a minute
            self.warnings.info(f"disconnect:{feed.camera_id}:{viewer.reason}",
                               "viewer %s of %s (%s) disconnected: %s after %d frames, %d dropped", viewer.id,
                               feed.camera_id, viewer.peer, viewer.reason, info["frames_sent"], info["frames_dropped"])
        self.mqtt.publish_event(feed.camera_id, event)
        if camera is not None:
            self.cameras.viewers_changed(camera)
            self._camera_changed(camera)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            self.motion.tick()
            self.recordings.tick()

    async def _refresh_states(self) -> None:
        while True:
            await asyncio.sleep(self.config.state_interval_s)
            now = time.monotonic()
            for camera in self.cameras.cameras.values():
                self.mqtt.publish_state(camera.id, camera.state_payload(now))


def _raise_fd_limit() -> None:
    """Each viewer costs two descriptors; lift the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def _bounded(step: Awaitable[Any], timeout: float, what: str) -> None:
    """Await one shutdown step for at most ``timeout`` seconds; a step that fails or overruns is logged."""
    try:
        await asyncio.wait_for(step, timeout)
    except TimeoutError:
        log.warning("stopping %s took longer than %g s; going on", what, timeout)
    except Exception:
        log.exception("stopping %s failed; going on", what)


async def serve(config: HubConfig, ready: Callable[[Hub], None] | None = None,
                stop: asyncio.Event | None = None) -> None:
    """Run a hub until ``stop`` is set (by default: until SIGINT/SIGTERM); ``ready(hub)`` once it serves."""
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
    hub = Hub(config)
    try:
        await hub.start()
    except BaseException:
        await hub.stop()
        raise
    if ready is not None:
        ready(hub)
    try:
        await stop.wait()
    finally:
        log.info("hub stopping")
        await hub.stop()


def configure(parser: argparse.ArgumentParser) -> None:
    add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
    except SettingsError as exc:
        print(f"camhub hub: {exc}", file=sys.stderr)
        return 2
    _raise_fd_limit()
    try:
        asyncio.run(serve(config))
    except SettingsError as exc:  # found while starting, e.g. a bad CAMHUB_SOURCES entry
        print(f"camhub hub: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"camhub hub: {exc}", file=sys.stderr)
        return 1
    return 0
