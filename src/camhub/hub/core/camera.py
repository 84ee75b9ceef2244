"""One camera as the hub knows it: identity, the node's announce, its state, its feed and its pull.

The states (``connecting``, ``streaming``, ``stalled``, ``offline``) are the contract's, defined
here once, with ``sleeping``: a battery camera (a node in snapshot mode) between its wakes, on
schedule; it is ``offline`` only when it is missing. The pull itself lives in ``ingest``; a camera
sees it only as ``PullStats``, and a battery camera's wakes only as ``WakeStats``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Protocol

from camhub.hub.core.broker import Feed

CONNECTING, STREAMING, STALLED, OFFLINE = "connecting", "streaming", "stalled", "offline"
SLEEPING = "sleeping"
STATES = (CONNECTING, STREAMING, STALLED, SLEEPING, OFFLINE)
ALIVE_S = 30.0  # stats this recent prove the node alive


class PullStats(Protocol):
    """What a camera shows of its running pull (``ingest.upstream.Upstream``)."""

    @property
    def fps_in(self) -> float: ...
    @property
    def frames_in(self) -> int: ...
    @property
    def reconnects(self) -> int: ...
    @property
    def errors(self) -> Mapping[str, int]: ...
    @property
    def last_error(self) -> str | None: ...

    def stats(self) -> dict[str, Any]: ...


class WakeStats(Protocol):
    """What a camera shows of a battery camera's wakes (``battery.wakes.Wake``)."""

    def summary(self) -> dict[str, Any]: ...

    def state_fields(self) -> dict[str, Any]: ...


class Camera:
    """One camera: identity, the node's announce, the upstream pull and the viewers' feed."""

    def __init__(self, camera_id: str, name: str, source: str, stream_url: str | None, feed: Feed,
                 announce: dict[str, Any] | None = None, last_seen: float | None = None) -> None:
        self.id = camera_id
        self.name = name
        self.source = source  # "mqtt" or "static"
        self.stream_url = stream_url
        self.announce = announce
        self.feed = feed
        self.pull: PullStats | None = None  # set by ingest while a pull runs
        self.wakes: WakeStats | None = None  # set by ``battery`` while the node is a battery camera (snapshot mode)
        self.state = OFFLINE
        self.available = False  # the node says it is online (static sources: always)
        self.last_seen = last_seen  # Unix time of the last frame
        self.frame_arrived = asyncio.Event()
        self.stats_at: float | None = None  # time.monotonic() of the node's latest stats message

    def alive(self, now: float) -> bool:
        """The node shows signs of life: its stats are recent, frames are flowing, or it sleeps on schedule."""
        recent_stats = self.stats_at is not None and now - self.stats_at < ALIVE_S
        return recent_stats or self.state in (STREAMING, SLEEPING)

    @property
    def pulling(self) -> bool:
        return self.pull is not None

    @property
    def mode(self) -> str:
        """``snapshot`` for a battery camera (its node pushes a picture per wake), else ``stream``."""
        return "snapshot" if (self.announce or {}).get("mode") == "snapshot" else "stream"

    def frame_in(self, jpeg: bytes, capture_time: float, now: float) -> None:
        """A new picture (pulled or pushed) becomes the feed's latest frame; ``now``: Unix time."""
        self.feed.publish(jpeg, capture_time)
        self.last_seen = now
        self.frame_arrived.set()
        self.frame_arrived.clear()

    def last_frame_age_ms(self, now: float) -> int | None:
        latest = self.feed.latest
        return None if latest is None else int((now - latest.arrived) * 1000)

    def summary(self, now: float) -> dict[str, Any]:
        up = self.pull
        announce = self.announce or {}
        return {
            "id": self.id,
            "name": self.name,
            "state": self.state,
            "online": self.state != OFFLINE,
            "pulling": self.pulling,
            "fps_in": round(up.fps_in, 2) if up else 0.0,
            "frames_in": up.frames_in if up else 0,
            "clients": len(self.feed.viewers),
            "viewers": len(self.feed.viewers),
            "dropped_total": self.feed.dropped_total,
            "last_frame_age_ms": self.last_frame_age_ms(now),
            "last_seen": self.last_seen,
            "last_error": up.last_error if up else None,
            "source": self.source,
            "stream": f"/cameras/{self.id}/stream",
            "snapshot": f"/cameras/{self.id}/snapshot.jpg",
            "width": announce.get("width"),
            "height": announce.get("height"),
            "board": announce.get("board"),
            "announce": self.announce,
            "mode": self.mode,
            "sleep": self.wakes.summary() if self.wakes is not None else None,
        }

    def detail(self, now: float) -> dict[str, Any]:
        data = self.summary(now)
        data["clients"] = self.feed.viewer_infos()
        data["disconnects"] = list(self.feed.disconnects)
        up = self.pull
        data["upstream"] = up.stats() if up else None
        return data

    def state_payload(self, now: float) -> dict[str, Any]:
        """The retained ``camhub/hub/cameras/<id>/state`` payload (the contract's fields; a battery
        camera's add its wakes: ``mode``, ``last_wake``, ``next_wake``, ``battery_v``, ...)."""
        up = self.pull
        payload = {
            "id": self.id,
            "state": self.state,
            "fps_in": round(up.fps_in, 2) if up else 0.0,
            "frames_in": up.frames_in if up else 0,
            "clients": len(self.feed.viewers),
            "dropped_total": self.feed.dropped_total,
            "last_frame_age_ms": self.last_frame_age_ms(now),
        }
        if self.wakes is not None:
            payload.update(self.wakes.state_fields())
        return payload
