"""The hubs of the cluster, as MQTT shows them: who is there, in which role, where, and who is alive.

Each hub keeps a retained ``<prefix>/hubs/<id>/availability`` (``online``; its MQTT last will says
``offline``, so a hub that crashes or goes silent is offline within 1.5 keep-alives) and a retained
``<prefix>/hubs/<id>/info``: ``{"id","role","url","version","instance","cameras","started"}``. This
hub publishes its own info each time its link comes up and when what it owns changes.

Everything on those topics is untrusted: ids by the one id rule, URLs must point into
``CAMHUB_ALLOWED_SOURCES`` (a hub sends its cluster credential there), sizes bounded; what is refused
is counted. After this hub reconnects, a member it knew is believed for ``grace_s`` more without
word from it (the broker re-sends every retained availability at once; a broker that restarted
empty has none, and a member that died meanwhile never says so): then it counts as offline.

Origins also beat: a non-retained ``<prefix>/hubs/<id>/beat`` every ``beat_s``. A crashed hub's will
comes at once, but a machine that goes silent (power, cable, a frozen process) is only given up by
the broker after 1.5 keep-alives plus its own scan (mosquitto 2.0 looks every 5 s): up to ~9 s. An
origin not heard for ``silent_s`` counts as offline before that, so its cameras move within ~5 s;
when it beats again it is back, and finds its cameras owned by others (sticky: it yields).

A hub that redirects viewers to edges (``CAMHUB_STREAM_REDIRECT``) also reads every hub's retained
``<prefix>/hubs/<id>/state`` for its ``viewers`` (a count each hub sends at most every 2 s, a fall to
half at once): the load the bounded hash weighs. Other hubs do not subscribe to it (its rate grows with the edges).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from camhub.hub.ingest.sources import AllowedSources, AnnounceRejected, check_url
from camhub.hub.mqtt.link import MqttLink
from camhub.hub.mqtt.topics import Topics
from camhub.hub.util.counters import Family
from camhub.hub.util.ratelimit import LogLimiter
from camhub.hub.util.signals import Signal
from camhub_node.config import is_valid_id

log = logging.getLogger(__name__)

ROLES = ("origin", "edge")
MAX_INFO_BYTES = 16 * 1024
MAX_MEMBERS = 256
MAX_STATE_BYTES = 4 * 1024
MAX_VIEWERS = 10_000_000
GRACE_S = 10.0
BEAT_S = 1.0
SILENT_S = 4.0  # an origin not heard for this long counts as offline (its will may take longer)


@dataclass(frozen=True)
class ClusterSettings:
    """Who this hub is in the cluster."""

    hub_id: str
    role: str  # origin | edge
    url: str  # how the other hubs reach this one
    version: str
    instance: str  # this run's id (the User-Agent's ``+instance``)
    allowed: AllowedSources  # where member and owner URLs may point
    settle_s: float = 1.0  # after reconnecting, retained claims and members arrive before this hub decides
    startup_s: float = 3.0  # after starting: also lets origins started together see each other first
    grace_s: float = GRACE_S
    beat_s: float = BEAT_S
    silent_s: float = SILENT_S
    rebalance_s: float = 0.0
    redirect_percent: int = 0  # CAMHUB_STREAM_REDIRECT = edges: its bounded load (percent of the mean); 0 = off


@dataclass
class Member:
    id: str
    online: bool = False
    confirmed: bool = True  # heard from since this hub's link last came up
    role: str | None = None
    url: str | None = None
    version: str | None = None
    instance: str | None = None
    cameras: list[str] = field(default_factory=list)
    since: float = field(default_factory=time.monotonic)  # online (or offline) since
    heard: float = field(default_factory=time.monotonic)  # its latest beat (or its coming online)
    silent: bool = False  # an origin that stopped beating (counted offline until it beats again)
    viewers: int = 0  # its viewers, as its latest state said (read only by a hub that redirects)
    viewers_at: float = 0.0  # when that state arrived (monotonic; 0: none yet)

    def view(self) -> dict[str, Any]:
        return {"id": self.id, "role": self.role, "url": self.url, "online": self.online, "version": self.version,
                "cameras_owned": len(self.cameras), "cameras": list(self.cameras)}


class Members:
    """The cluster's hubs, this one included; ``changed`` when one comes, goes, or says something new."""

    def __init__(self, settings: ClusterSettings, link: MqttLink, topics: Topics) -> None:
        self.settings = settings
        self.link = link
        self.topics = topics
        self.me = Member(settings.hub_id, True, True, settings.role, settings.url, settings.version,
                         settings.instance)
        self._others: dict[str, Member] = {}
        self.changed: Signal[[]] = Signal()
        self.rejected: Counter[str] = Counter()
        self.conflicts = 0  # another running hub with this hub's id
        self._own_info_seen = False
        self._grace: asyncio.TimerHandle | None = None
        self._warnings = LogLimiter(log)

    # ---- MQTT ------------------------------------------------------------------------------------
    def subscribe(self) -> None:
        self.link.subscribe(self.topics.members("availability"), 1, self.message)
        self.link.subscribe(self.topics.members("info"), 1, self.message)
        self.link.subscribe(self.topics.members("beat"), 0, self.message)
        if self.settings.redirect_percent:
            self.link.subscribe(self.topics.members("state"), 0, self.message)

    def beat(self) -> None:
        """Every ``beat_s`` (origins): say this hub is alive; note the origins that went silent."""
        if not self.link.connected:
            return  # nothing is heard without the link: the others are judged again once it is up
        if self.me.role == "origin":
            self.link.publish(self.topics.member(self.me.id, "beat"), b"", qos=0)
        now = time.monotonic()
        changed = False
        for member in self._others.values():
            silent = member.role == "origin" and member.online and now - member.heard > self.settings.silent_s
            if silent and not member.silent:
                log.warning("hub %s: not heard for %.0f s; counted offline until it is", member.id, now - member.heard)
                changed = True
            member.silent = silent
        if changed:
            self.changed.emit()

    def link_up(self) -> None:
        """The link is (again) up: say who this hub is; doubt the others until they speak."""
        self._own_info_seen = False
        now = time.monotonic()
        for member in self._others.values():
            member.confirmed = False
            member.heard = now  # its beats could not reach this hub while the link was down
        if self._grace is not None:
            self._grace.cancel()
        self._grace = asyncio.get_running_loop().call_later(self.settings.grace_s, self._end_grace)
        self.publish_info()

    def publish_info(self) -> None:
        me = self.me
        self.link.publish(self.topics.member(me.id, "info"), {
            "id": me.id, "role": me.role, "url": me.url, "version": me.version, "instance": me.instance,
            "cameras": sorted(me.cameras), "started": round(time.time() - (time.monotonic() - me.since), 3)},
            retain=True)

    def owned(self, cameras: Iterable[str]) -> None:
        """What this hub owns now (shown in its info)."""
        cameras = sorted(cameras)
        if cameras != self.me.cameras:
            self.me.cameras = cameras
            self.publish_info()

    def _end_grace(self) -> None:
        self._grace = None
        silent = [m for m in self._others.values() if not m.confirmed and m.online]
        for member in silent:
            member.online = False
            member.since = time.monotonic()
            log.info("hub %s said nothing since this hub reconnected: counted offline", member.id)
        if silent:
            self.changed.emit()

    def message(self, topic: str, payload: bytes) -> None:
        parsed = self.topics.parse_member(topic)
        if parsed is None:
            return
        hub_id, leaf = parsed
        if leaf not in ("availability", "info", "beat", "state"):
            return
        if not is_valid_id(hub_id):
            self._reject("bad_id", topic)
            return
        if hub_id == self.me.id:
            self._own(leaf, payload)
            return
        member = self._others.get(hub_id)
        if member is None:
            if not payload:
                return
            if len(self._others) >= MAX_MEMBERS:
                self._reject("member_limit", topic)
                return
            if leaf in ("beat", "state"):
                return  # a beat or a viewer count says nothing about a hub not seen yet
            member = self._others[hub_id] = Member(hub_id)
        if leaf == "beat":
            self._heard(member)
        elif leaf == "state":
            self._state(member, payload)
        elif leaf == "availability":
            self._availability(member, payload)
        elif payload:
            self._info(member, payload)
        else:  # a cleared info: that hub was taken out of the cluster
            self._others.pop(hub_id, None)
            self.changed.emit()

    def _heard(self, member: Member) -> None:
        member.heard = time.monotonic()
        if member.silent:
            member.silent = False
            log.info("hub %s: heard again", member.id)
            self.changed.emit()

    def _availability(self, member: Member, payload: bytes) -> None:
        text = payload[:16].decode("utf-8", "replace").strip().lower()
        if text not in ("online", "offline"):
            self._reject("bad_availability", member.id)
            return
        member.confirmed = True
        online = text == "online"
        if online != member.online:
            member.online = online
            member.since = member.heard = time.monotonic()
            log.info("hub %s (%s) is %s", member.id, member.role or "role unknown", text)
            self.changed.emit()

    def _state(self, member: Member, payload: bytes) -> None:
        """A hub's state (``{"cameras_total","cameras_online","viewers"}``): its viewer count."""
        try:
            viewers = json.loads(payload).get("viewers") if 0 < len(payload) <= MAX_STATE_BYTES else None
        except (UnicodeDecodeError, ValueError, AttributeError, RecursionError):
            viewers = None
        if payload and (not isinstance(viewers, int) or isinstance(viewers, bool)
                        or not 0 <= viewers <= MAX_VIEWERS):
            self._reject("bad_state", member.id)
            return
        member.viewers, member.viewers_at = (viewers or 0), time.monotonic()

    def _info(self, member: Member, payload: bytes) -> None:
        info = self._parse_info(member.id, payload)
        if info is None:
            return
        before = (member.role, member.url, member.cameras)
        member.role, member.url, member.version, member.instance, member.cameras = (
            info["role"], info["url"], info["version"], info["instance"], info["cameras"])
        if before[:2] != (member.role, member.url):
            log.info("hub %s: %s at %s", member.id, member.role, member.url)
        if before != (member.role, member.url, member.cameras):
            self.changed.emit()

    def _parse_info(self, hub_id: str, payload: bytes) -> dict[str, Any] | None:
        if len(payload) > MAX_INFO_BYTES:
            self._reject("info_oversized", hub_id)
            return None
        try:
            data = json.loads(payload)
        except (UnicodeDecodeError, ValueError, RecursionError):
            data = None
        if not isinstance(data, dict) or data.get("id") != hub_id or data.get("role") not in ROLES:
            self._reject("bad_info", hub_id)
            return None
        try:
            url = check_url(data.get("url"), self.settings.allowed).rstrip("/")
        except AnnounceRejected as exc:
            self._reject("info_" + exc.reason, hub_id)
            return None
        cameras = data.get("cameras")
        cameras = [c for c in cameras if is_valid_id(c)] if isinstance(cameras, list) else []
        version, instance = data.get("version"), data.get("instance")
        return {"role": data["role"], "url": url, "cameras": sorted(cameras)[:4096],
                "version": version[:64] if isinstance(version, str) else None,
                "instance": instance[:64] if isinstance(instance, str) else None}

    def _own(self, leaf: str, payload: bytes) -> None:
        """Our own topics, as the broker has them: another hub with our id shows up here."""
        if leaf != "info" or not payload:
            return  # our own beats and availability
        try:
            instance = json.loads(payload).get("instance")
        except (UnicodeDecodeError, ValueError, AttributeError, RecursionError):
            return
        if instance == self.me.instance:
            self._own_info_seen = True
        elif self._own_info_seen:
            self.conflicts += 1
            self._warnings.log(logging.ERROR, "conflict", "another hub (instance %s) runs with this hub's id %s: "
                               "give every hub its own CAMHUB_HUB_ID", str(instance)[:16], self.me.id)

    def _reject(self, reason: str, where: str) -> None:
        self.rejected[reason] += 1
        self._warnings.warning(f"member:{reason}", "cluster message about %s refused: %s", where[:80], reason)

    # ---- what the others ask -----------------------------------------------------------------------
    def get(self, hub_id: str) -> Member | None:
        return self.me if hub_id == self.me.id else self._others.get(hub_id)

    def all(self) -> list[Member]:
        return [self.me, *sorted(self._others.values(), key=lambda m: m.id)]

    def live(self, hub_id: str) -> bool:
        if hub_id == self.me.id:
            return self.link.connected
        member = self._others.get(hub_id)
        return member is not None and member.online and not member.silent and member.url is not None

    def live_origin(self, hub_id: str) -> bool:
        member = self.get(hub_id)
        return member is not None and member.role == "origin" and self.live(hub_id)

    def live_origins(self) -> list[str]:
        return [m.id for m in self.all() if m.role == "origin" and self.live(m.id)]

    def live_others(self) -> list[Member]:
        return [m for m in self._others.values() if self.live(m.id)]

    def view(self) -> list[dict[str, Any]]:
        members = []
        for member in self.all():
            data = member.view()
            data["online"] = self.live(member.id)
            data["self"] = member is self.me
            members.append(data)
        return members

    def counters(self) -> Iterable[Family]:
        yield Family("camhub_cluster_members", "Hubs of the cluster online, by role (this one included)", "role",
                     {role: sum(1 for m in self.all() if m.role == role and self.live(m.id)) for role in ROLES},
                     kind="gauge")
        yield Family("camhub_cluster_messages_rejected", "Cluster membership messages refused", "reason",
                     dict(self.rejected))
        yield Family("camhub_cluster_id_conflicts", "Times another hub with this hub's id was seen", "",
                     {"": self.conflicts})
