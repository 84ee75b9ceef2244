"""Which hub owns each camera: claimed on MQTT, decided by every origin the same way, no coordinator.

A camera's owner is the only hub that pulls its board, runs motion detection, recordings and Home
Assistant for it, and writes its topics. The claim is the retained ``<prefix>/cameras/<id>/owner``
(``{"hub","url","since"}``), written by the hub that takes the camera. Every hub hears every claim,
in the broker's one order, so all of them agree on the latest. The rule each origin follows:

- a claim by a live origin stands (**sticky**: a hub that comes back does not take its cameras back,
  nothing flaps);
- a camera without one (never claimed, cleared, or its owner went offline) goes to the live origin
  its rendezvous hash prefers (``hashing``), which claims it at once; the next-preferred claims it
  after ``claim_step_s`` if the first has not, and so on (a preferred hub that cannot act);
- when two claim at once, the later claim in the broker's order stands and the other yields;
- after the link comes (back) up, a hub first listens for ``settle_s`` (the retained claims and
  member availabilities arrive at once) before it claims or publishes anything about a camera: a hub
  that lost the broker keeps pulling what it owned, and yields when it sees another owner; after the
  hub starts it listens ``startup_s``, so that origins started together share the cameras out;
- with ``rebalance_s``, an origin hands back one camera per interval whose preferred origin has been
  online at least that long (it clears its claim; the preferred one claims it).

Ownership here is an efficiency lock: two hubs pulling one board for a moment corrupts nothing (the
board's socket budget is the fence, see ``fence``); a camera nobody owns for long is the failure.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from camhub.hub.cluster.hashing import ranked
from camhub.hub.cluster.members import ClusterSettings, Members
from camhub.hub.core.camera import Camera
from camhub.hub.core.registry import Cameras
from camhub.hub.ingest.sources import AnnounceRejected, check_url
from camhub.hub.mqtt.link import MqttLink
from camhub.hub.mqtt.topics import Topics
from camhub.hub.util.counters import Family
from camhub.hub.util.ratelimit import LogLimiter
from camhub.hub.util.signals import Signal
from camhub_node.config import is_valid_id

log = logging.getLogger(__name__)

MAX_CLAIM_BYTES = 1024
MAX_STATE_BYTES = 2048
DECIDE_DELAY_S = 0.05  # claims that arrive together are decided on together
CLAIM_STEP_S = 2.0  # the n-th preferred origin claims an unowned camera after n steps
TICK_S = 0.5


@dataclass(frozen=True)
class Claim:
    hub: str
    url: str
    since: float

    def payload(self) -> dict[str, Any]:
        return {"hub": self.hub, "url": self.url, "since": self.since}


class Ownership:
    """The claims, this hub's decisions, and what it owns (``owns``); ``gained``/``lost`` when that
    changes, ``moved`` when any camera's owner changes (pulls from the owner follow it)."""

    def __init__(self, settings: ClusterSettings, link: MqttLink, topics: Topics, cameras: Cameras,
                 members: Members) -> None:
        self.settings = settings
        self.me = settings.hub_id
        self.origin = settings.role == "origin"
        self.link = link
        self.topics = topics
        self.cameras = cameras
        self.members = members
        self.claims: dict[str, Claim] = {}
        self.owned: set[str] = set()
        self.reported: dict[str, dict[str, Any]] = {}  # camera id -> its owner's latest state payload
        self.gained: Signal[[Camera]] = Signal()
        self.lost: Signal[[Camera]] = Signal()
        self.moved: Signal[[Camera]] = Signal()
        self.changes: Counter[str] = Counter()  # ownership changes of this hub, by kind
        self.rejected: Counter[str] = Counter()
        self.settled = False  # the link is up and this hub has listened for settle_s since
        self.leaving = False
        self._unowned_since: dict[str, float] = {}
        self._seen: set[str] = set()  # cameras decided on at least once
        self._started = False  # the link has come up before
        self._heard: set[str] = set()  # cameras whose claim (or its clearing) arrived since the link came up
        self._decide: asyncio.TimerHandle | None = None
        self._settle: asyncio.TimerHandle | None = None
        self._rebalanced_at = time.monotonic()
        self._warnings = LogLimiter(log)

    # ---- what others ask -------------------------------------------------------------------------
    def owns(self, camera_id: str) -> bool:
        return camera_id in self.owned

    def publishes(self, camera_id: str) -> bool:
        """Whether this hub writes the camera's topics now: it owns it, has settled, and is not leaving."""
        return self.settled and not self.leaving and self.link.connected and camera_id in self.owned

    def owner(self, camera_id: str) -> Claim | None:
        """The camera's live owner, if it has one."""
        claim = self.claims.get(camera_id)
        if claim is None or not self.members.live_origin(claim.hub):
            return None
        return claim

    # ---- MQTT ------------------------------------------------------------------------------------
    def subscribe(self) -> None:
        self.link.subscribe(self.topics.owners, 1, self.claim_message)
        self.link.subscribe(self.topics.camera_states, 0, self.state_message)

    def link_down(self) -> None:
        self.settled = False

    def link_up(self) -> None:
        self.settled = False
        self._heard.clear()
        if self._settle is not None:
            self._settle.cancel()
        wait = self.settings.settle_s if self._started else max(self.settings.settle_s, self.settings.startup_s)
        self._started = True
        self._settle = asyncio.get_running_loop().call_later(wait, self._settled)

    def _settled(self) -> None:
        self._settle = None
        if not self.link.connected:
            return
        self.settled = True
        for camera_id in sorted(self.owned):  # our claims the broker no longer has (it restarted empty)
            claim = self.claims.get(camera_id)
            if claim is not None and claim.hub == self.me and camera_id not in self._heard:
                self.link.publish(self.topics.camera_owner(camera_id), claim.payload(), retain=True)
        self.decide()
        for camera_id in sorted(self.owned):  # everything about them is (re-)asserted now
            camera = self.cameras.get(camera_id)
            if camera is not None:
                self.gained.emit(camera)

    def claim_message(self, topic: str, payload: bytes) -> None:
        camera_id = self.topics.parse_owner(topic)
        if camera_id is None or not is_valid_id(camera_id):
            self._reject("bad_topic")
            return
        self._heard.add(camera_id)
        if not payload:
            before = self.claims.pop(camera_id, None)
        else:
            claim = self._parse(payload)
            if claim is None:
                return
            before = self.claims.get(camera_id)
            if before is None and len(self.claims) >= 4 * max(self.cameras.max_cameras, 1) \
                    and camera_id not in self.cameras:
                self._reject("claim_limit")
                return
            self.claims[camera_id] = claim
        if before != self.claims.get(camera_id):
            camera = self.cameras.get(camera_id)
            if camera is not None:
                self.moved.emit(camera)
        self.decide_soon()

    def _parse(self, payload: bytes) -> Claim | None:
        if len(payload) > MAX_CLAIM_BYTES:
            self._reject("oversized")
            return None
        try:
            data = json.loads(payload)
        except (UnicodeDecodeError, ValueError, RecursionError):
            data = None
        since = data.get("since") if isinstance(data, dict) else None
        if not isinstance(data, dict) or not is_valid_id(data.get("hub")) or not isinstance(since, int | float) \
                or isinstance(since, bool) or not math.isfinite(since):
            self._reject("bad_claim")
            return None
        try:
            url = check_url(data.get("url"), self.settings.allowed).rstrip("/")
        except AnnounceRejected as exc:
            self._reject("claim_" + exc.reason)
            return None
        return Claim(data["hub"], url, float(since))

    def state_message(self, topic: str, payload: bytes) -> None:
        """A camera's state as its owner reports it (what this hub shows while it does not pull it)."""
        parsed = self.topics.parse_camera(topic)
        if parsed is None or parsed[0] not in self.cameras or len(payload) > MAX_STATE_BYTES:
            return
        if not payload:
            self.reported.pop(parsed[0], None)
            return
        try:
            data = json.loads(payload)
        except (UnicodeDecodeError, ValueError, RecursionError):
            return
        if isinstance(data, dict):
            self.reported[parsed[0]] = data

    def _reject(self, reason: str) -> None:
        self.rejected[reason] += 1
        self._warnings.warning(f"claim:{reason}", "camera owner claim refused: %s", reason)

    # ---- deciding -----------------------------------------------------------------------------------
    def decide_soon(self) -> None:
        if self._decide is None:
            self._decide = asyncio.get_running_loop().call_later(DECIDE_DELAY_S, self.decide)

    def tick(self) -> None:
        """Every ``TICK_S``: cameras waiting for their next-preferred origin, and the slow rebalance."""
        if self._unowned_since:
            self.decide()
        if self.settings.rebalance_s > 0 and time.monotonic() - self._rebalanced_at >= self.settings.rebalance_s:
            self._rebalanced_at = time.monotonic()
            self._rebalance()

    def decide(self) -> None:
        """For every camera: who owns it now; claim what this hub should take; note what it gained or lost."""
        if self._decide is not None:
            self._decide.cancel()
            self._decide = None
        if not self.settled or self.leaving or not self.link.connected:
            return  # without the broker nothing changes: keep pulling what is owned
        origins = self.members.live_origins()
        now = time.monotonic()
        gained: list[Camera] = []
        lost: list[Camera] = []
        for camera in self.cameras:  # claims go out first (the queue keeps their order): others learn soonest
            owner = self._owner_of(camera, origins, now)
            if owner == self.me and camera.id not in self.owned:
                self.owned.add(camera.id)
                gained.append(camera)
            elif owner != self.me and camera.id in self.owned:
                self.owned.discard(camera.id)
                lost.append(camera)
        for camera in lost:
            self.changes["lost"] += 1
            log.info("camera %s: now owned by %s; this hub yields", camera.id,
                     (claim.hub if (claim := self.owner(camera.id)) else None) or "nobody yet")
            self.lost.emit(camera)
        for camera in gained:
            self.changes["gained"] += 1
            log.info("camera %s: owned by this hub (%s)", camera.id, self.me)
            self.gained.emit(camera)
        for camera_id in [c for c in self.owned if c not in self.cameras]:
            self.owned.discard(camera_id)
        self._unowned_since = {c: t for c, t in self._unowned_since.items() if c in self.cameras}
        self.members.owned(self.owned)

    def _owner_of(self, camera: Camera, origins: list[str], now: float) -> str | None:
        claim = self.claims.get(camera.id)
        if claim is not None and claim.hub in origins:
            self._unowned_since.pop(camera.id, None)
            if claim.hub == self.me and claim.url != self.settings.url:
                self._claim(camera)  # our own claim from before, with an old address
            return claim.hub
        if not self.origin or not origins or camera.stream_url is None:
            return None
        waiting = now - self._unowned_since.setdefault(camera.id, now)
        order = ranked(camera.id, origins)
        if self.me in order and waiting >= order.index(self.me) * CLAIM_STEP_S:
            self._claim(camera)
            return self.me
        return None

    def _claim(self, camera: Camera) -> None:
        claim = Claim(self.me, self.settings.url, round(time.time(), 3))
        self.claims[camera.id] = claim
        self._unowned_since.pop(camera.id, None)
        self.changes["claimed"] += 1
        self.link.publish(self.topics.camera_owner(camera.id), claim.payload(), retain=True)

    def _rebalance(self) -> None:
        """Hand back one camera whose preferred origin has been online for ``rebalance_s``."""
        if not self.settled or self.leaving or not self.link.connected:
            return
        origins = self.members.live_origins()
        steady = [h for h in origins if h == self.me or self._online_for(h) >= self.settings.rebalance_s]
        for camera_id in sorted(self.owned):
            preferred = ranked(camera_id, steady)
            if preferred and preferred[0] != self.me:
                log.info("camera %s: handed back to %s (rebalance)", camera_id, preferred[0])
                self.release(camera_id)
                self.changes["released"] += 1
                return

    def _online_for(self, hub_id: str) -> float:
        member = self.members.get(hub_id)
        return 0.0 if member is None else time.monotonic() - member.since

    def release(self, camera_id: str) -> None:
        """Give a camera up: clear the claim (the preferred live origin takes it)."""
        if self.claims.get(camera_id, None) is not None and self.claims[camera_id].hub == self.me:
            self.claims.pop(camera_id)
            self.link.publish(self.topics.camera_owner(camera_id), "", retain=True)
        self.decide()

    def camera_changed(self, camera: Camera) -> None:
        """The registry's ``changed``: a camera this hub has not decided on yet is decided on soon."""
        if camera.id not in self._seen:
            self._seen.add(camera.id)
            self.decide_soon()

    def camera_removed(self, camera_id: str) -> None:
        """A camera is gone for good: its owner clears the claim."""
        claim = self.claims.get(camera_id)
        if claim is not None and claim.hub == self.me and self.link.connected:
            self.link.publish(self.topics.camera_owner(camera_id), "", retain=True)
            self.claims.pop(camera_id, None)
        self.owned.discard(camera_id)
        self.reported.pop(camera_id, None)
        self._unowned_since.pop(camera_id, None)
        self._seen.discard(camera_id)
        self.members.owned(self.owned)

    def leave(self) -> None:
        """This hub stops: it writes nothing more about cameras (the others take them over when its
        availability says ``offline``)."""
        self.leaving = True

    # ---- views -------------------------------------------------------------------------------------
    def summary(self, camera: Camera) -> dict[str, Any]:
        """What a camera's summary shows of its owner; on a hub that does not pull it, the owner's state."""
        claim = self.claims.get(camera.id)
        live = claim is not None and self.members.live_origin(claim.hub)
        data: dict[str, Any] = {"owner": None if claim is None else {**claim.payload(), "online": live},
                                "owned": camera.id in self.owned}
        if camera.id not in self.owned and not camera.pulling:
            reported = self.reported.get(camera.id) if live else None
            state = reported.get("state") if reported else None
            data["state"] = state if isinstance(state, str) else "offline"
            data["online"] = data["state"] != "offline"
        return data

    def online(self) -> int:
        """Cameras streaming (or trying to) as the cluster sees them: here, or at their owner."""
        return sum(1 for c in self.cameras if self.summary(c).get("state", c.state) != "offline")

    def health(self) -> dict[str, Any]:
        return {"settled": self.settled, "cameras_owned": sorted(self.owned),
                "cameras_unowned": sorted(c.id for c in self.cameras if self.owner(c.id) is None)}

    def counters(self) -> Iterable[Family]:
        yield Family("camhub_cluster_cameras_owned", "Cameras this hub owns", "", {"": len(self.owned)}, kind="gauge")
        yield Family("camhub_cluster_cameras_unowned", "Known cameras without a live owner", "",
                     {"": sum(1 for c in self.cameras if self.owner(c.id) is None)}, kind="gauge")
        yield Family("camhub_cluster_ownership_changes", "Cameras this hub claimed, gained, lost or handed back",
                     "kind", dict(self.changes))
        yield Family("camhub_cluster_claims_rejected", "Camera owner claims refused", "reason", dict(self.rejected))
