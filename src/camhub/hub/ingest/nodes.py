"""What nodes say over MQTT (``<prefix>/nodes/<id>/announce|availability|stats``), and what the hub does.

Each message a node sends is ``heard`` (node id, whether it is new rather than retained, whether it
starts a wake: its ``online``), and each valid announce is ``announce_heard`` (the camera, new or
retained), before the camera's change is told: a battery camera's wakes (``battery.wakes``) follow them.

An announce is checked (``announce.parse_announce``; a stream that is the hub itself, or a camera
beyond ``CAMHUB_MAX_CAMERAS``, is refused too) before it registers the camera or moves its pull; every
rejection is counted by reason and logged at most once a minute per reason. A node's ``stats`` prove
it alive: a camera said ``offline`` (maybe by a spoofed message) comes back with its next stats, and
a cleared announce does not take away a camera whose node is alive (the node re-asserts its
announce). A cleared announce forgets a camera that never streamed, and removes one whose node is gone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Iterable

from camhub.hub.core.camera import Camera
from camhub.hub.core.known import KnownCameras
from camhub.hub.core.registry import Cameras
from camhub.hub.ingest.announce import Announce, parse_announce
from camhub.hub.ingest.pulls import Pulls
from camhub.hub.ingest.sources import AllowedSources, AnnounceRejected, HubAddresses
from camhub.hub.mqtt.link import MqttLink
from camhub.hub.mqtt.topics import Topics
from camhub.hub.util.counters import Family
from camhub.hub.util.ratelimit import LogLimiter
from camhub.hub.util.signals import Signal

log = logging.getLogger(__name__)


class NodeMessages:
    def __init__(self, cameras: Cameras, known: KnownCameras, pulls: Pulls, allowed: AllowedSources,
                 hub: HubAddresses, topics: Topics) -> None:
        self.cameras = cameras
        self.known = known
        self.pulls = pulls
        self.allowed = allowed
        self.hub = hub
        self.topics = topics
        self.rejections: Counter[str] = Counter()  # announces, by reason
        self._warnings = LogLimiter(log)
        self.heard: Signal[[str, bool, bool]] = Signal()  # node id, live (not retained), starts a wake
        self.announce_heard: Signal[[Camera, bool]] = Signal()  # a valid announce's camera, live

    def subscribe(self, link: MqttLink) -> None:
        link.subscribe_retained(self.topics.nodes("announce"), 1, self.message)
        link.subscribe_retained(self.topics.nodes("availability"), 1, self.message)
        link.subscribe_retained(self.topics.nodes("stats"), 0, self.message)

    def counters(self) -> Iterable[Family]:
        yield Family("camhub_announces_rejected", "MQTT announces rejected", "reason", dict(self.rejections))

    def sizes(self) -> dict[str, int]:
        return {"rejection_reasons": len(self.rejections), "log_keys": len(self._warnings)}

    def health(self) -> dict[str, int]:
        """What ``/api/hub`` shows of the announces."""
        return {"announces_rejected": sum(self.rejections.values())}

    def message(self, topic: str, payload: bytes, retained: bool = False) -> None:
        parsed = self.topics.parse_node(topic)
        if parsed is None:
            return
        node_id, kind = parsed
        if kind == "announce":
            if payload:
                self._announce(node_id, payload, live=not retained)
            else:  # a cleared retained announce: decommissioned, or spoofed
                self.cleared(node_id)
        elif kind == "availability":
            text = payload.decode("utf-8", "replace").strip().lower()
            if text in ("online", "offline"):
                self.availability(node_id, text == "online")
                if text == "online":  # a battery camera says it first when it wakes
                    self.heard.emit(node_id, not retained, True)
        elif kind == "stats":
            self.node_alive(node_id)  # proof of life, whatever a spoofed "offline" said
            self.heard.emit(node_id, not retained, False)

    def _announce(self, node_id: str, payload: bytes, live: bool = True) -> None:
        try:
            announce = parse_announce(node_id, payload, self.allowed)
        except AnnounceRejected as exc:
            self._reject(node_id, exc.reason)
            return
        if announce.stream_url is not None and self.hub.url_is_self(announce.stream_url):
            self._reject(node_id, "self_source")
            return
        if not self.cameras.has_room(node_id):
            self._reject(node_id, "camera_limit")
            return
        self.announced(announce, live)

    def _reject(self, node_id: str, reason: str) -> None:
        """Count a rejected announce; log it, at most once a minute per reason."""
        self.rejections[reason] += 1
        shown = node_id[:40].encode("unicode_escape").decode()  # no terminal escapes in the log
        self._warnings.warning(f"announce:{reason}", "announce on %s rejected: %s",
                               self.topics.node(shown, "announce"), reason)

    def announced(self, announce: Announce, live: bool = True) -> None:
        """A valid announce: register the camera, or move its pull if the stream moved (a battery
        camera has no stream: its wakes decide its state)."""
        camera = self.cameras.get(announce.id)
        if camera is None:
            camera = self.cameras.add(announce.id, announce.name or announce.id, "mqtt", announce.stream_url)
            log.info("camera %s discovered at %s", announce.id, announce.stream_url or "MQTT (a battery camera)")
        moved = camera.stream_url != announce.stream_url
        camera.name = announce.name or announce.id
        camera.stream_url = announce.stream_url
        camera.announce = announce.to_dict()
        camera.available = True
        self.known.save_soon()
        self.pulls.announced(camera, moved)
        self.announce_heard.emit(camera, live)
        self.cameras.changed.emit(camera)

    def availability(self, camera_id: str, online: bool) -> None:
        camera = self.cameras.get(camera_id)
        if camera is None or camera.available == online:
            return
        camera.available = online
        log.info("camera %s is %s", camera_id, "online" if online else "offline")
        if online:
            self.pulls.start_if_wanted(camera)
        else:
            self.pulls.went_offline(camera)

    def node_alive(self, camera_id: str) -> None:
        """The node sent stats: it is alive, whatever an ``offline`` (perhaps spoofed) said."""
        camera = self.cameras.get(camera_id)
        if camera is None or camera.source != "mqtt":
            return
        camera.stats_at = time.monotonic()
        if not camera.available and camera.announce is not None:
            log.info("camera %s: its stats say it is alive; online again", camera_id)
            self.availability(camera_id, True)

    def cleared(self, camera_id: str) -> str | None:
        """The node's retained announce was cleared. Returns what was done: ``"kept"`` (the node is
        alive: it re-asserts its announce; a clear from elsewhere is spoofed), ``"forgotten"`` (it
        never streamed), ``"removed"`` (its node is gone), or None for an unknown camera."""
        camera = self.cameras.get(camera_id)
        if camera is None or camera.source != "mqtt":
            return None
        if camera.last_seen is not None and camera.alive(time.monotonic()):
            self.rejections["cleared_while_alive"] += 1
            self._warnings.warning("cleared-alive", "the announce of %s was cleared while the node is alive; "
                                   "keeping the camera (the node re-asserts it)", camera_id)
            return "kept"
        asyncio.get_running_loop().create_task(self.remove(camera_id))
        return "forgotten" if camera.last_seen is None else "removed"

    async def remove(self, camera_id: str) -> None:
        """Forget the camera: stop its pull, close its viewers."""
        camera = self.cameras.pop(camera_id)
        if camera is None:
            return
        await self.pulls.stop(camera)
        self.cameras.forget(camera_id)
        self.known.save_soon()
