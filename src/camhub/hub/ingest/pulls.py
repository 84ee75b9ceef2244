"""One pull per camera: when it runs (the pull policy), its upstream, and the frames it brings in.

``PullPolicy`` decides whether a camera is pulled now, from where and how: ``AlwaysPull``
(``CAMHUB_PULL = "always"``: every available camera, so its snapshot stays fresh) and ``OnDemandPull``
(``"on_demand"``: while someone watches, and ``keep_warm_s`` after; battery nodes). A cluster role
brings its own policy (an origin pulls the cameras it owns, any hub pulls the others from their
owner, with a credential, asking first whether it may: ``PullOptions``); ``reconsider`` follows a
change of its mind (a new owner) without dropping the camera's viewers.

A frame is published to the camera's feed with its capture time: the node's clock is trusted only
when it is plausible (a board without NTP starts in 2000). Frames beyond 3x the announced rate are
dropped by the upstream (a loop, a runaway camera).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from camhub.hub.core.broker import Feed, Viewer
from camhub.hub.core.camera import CONNECTING, OFFLINE, STALLED, STREAMING, Camera
from camhub.hub.core.registry import Cameras
from camhub.hub.ingest.sources import AllowedSources, HubAddresses
from camhub.hub.ingest.upstream import Admit, Upstream

log = logging.getLogger(__name__)

INGEST_FPS_FACTOR = 3.0  # frames beyond 3x the announced rate are dropped (a loop, a runaway camera)
MIN_INGEST_FPS = 5.0
PLAUSIBLE_CLOCK_S = 3600.0  # a capture time further than this from ours is not believed


@dataclass(frozen=True)
class PullSettings:
    allowed: AllowedSources
    max_frame_bytes: int = 2 * 1024 * 1024
    stall_s: float = 5.0
    max_ingest_fps: float = 60.0  # for cameras that announce no fps (plain MJPEG sources)
    keep_warm_s: float = 30.0  # a pull nobody watches any more runs this long (policies that follow viewers)


@dataclass(frozen=True)
class PullOptions:
    """How a pull is made besides its URL."""

    headers: Mapping[str, str] = field(default_factory=dict)  # with every request (a credential)
    admit: Admit | None = None  # asked before every attempt: None, or why not now (retried with backoff)
    backoff_max_s: float = 30.0  # retries never wait longer than this


BOARD = PullOptions()


class PullPolicy(Protocol):
    """Which cameras this hub pulls, from where, and how."""

    def wants(self, camera: Camera, watched: bool) -> bool:
        """Whether ``camera`` (available, with a source) should be pulled now; ``watched``: it has
        viewers, or a snapshot asked for it within the keep-warm time."""
        ...

    def url(self, camera: Camera) -> str | None:
        """Where to pull ``camera`` from (None: nowhere)."""
        ...

    def options(self, camera: Camera, url: str) -> PullOptions:
        """How to pull ``camera`` from ``url``."""
        ...


class AlwaysPull:
    def wants(self, camera: Camera, watched: bool) -> bool:
        return True

    def url(self, camera: Camera) -> str | None:
        return camera.stream_url

    def options(self, camera: Camera, url: str) -> PullOptions:
        return BOARD


class OnDemandPull(AlwaysPull):
    def wants(self, camera: Camera, watched: bool) -> bool:
        return watched


class Pulls:
    """Starts, restarts and stops each camera's single upstream pull, as the policy wants."""

    def __init__(self, cameras: Cameras, settings: PullSettings, policy: PullPolicy, hub: HubAddresses,
                 user_agent: str) -> None:
        self.cameras = cameras
        self.settings = settings
        self.policy = policy
        self._hub = hub  # upstreams never pull the hub itself
        self._user_agent = user_agent
        self._upstreams: dict[str, Upstream] = {}
        self._idle: dict[str, asyncio.TimerHandle] = {}  # camera id -> when its unwatched pull stops

    def sizes(self) -> dict[str, int]:
        return {"upstreams": len(self._upstreams), "idle_timers": len(self._idle)}

    # ---- what the sources say --------------------------------------------------------------
    def add_static(self, camera_id: str, url: str) -> Camera:
        """A ``CAMHUB_SOURCES`` camera: always available, pulled as the policy wants."""
        camera = self.cameras.add(camera_id, camera_id, "static", url)
        camera.available = True
        self.start_if_wanted(camera)
        return camera

    def announced(self, camera: Camera, moved: bool) -> None:
        """The camera (re-)announced: a new ingest cap, and a new pull if its stream moved."""
        upstream = self._upstreams.get(camera.id)
        if upstream is not None:
            upstream.max_fps = self._ingest_cap(camera)  # e.g. the node's fps was changed
        if moved or not camera.pulling:
            asyncio.get_running_loop().create_task(self.restart(camera))

    def went_offline(self, camera: Camera) -> None:
        asyncio.get_running_loop().create_task(self.stop(camera))
        self.set_state(camera, OFFLINE)

    # ---- viewers drive policies that follow them ---------------------------------------------
    def viewers_changed(self, camera: Camera) -> None:
        if camera.feed.viewers:
            timer = self._idle.pop(camera.id, None)
            if timer is not None:
                timer.cancel()
            self.start_if_wanted(camera, watched=True)
        elif camera.pulling and camera.id not in self._idle and not self.policy.wants(camera, False):
            self._idle[camera.id] = asyncio.get_running_loop().call_later(
                self.settings.keep_warm_s, self._unwatched, camera)

    def viewer_event(self, kind: str, feed: Feed, viewer: Viewer) -> None:
        """The broker's viewers signal: a camera's audience changed."""
        camera = self.cameras.get(feed.camera_id)
        if camera is not None:
            self.viewers_changed(camera)

    def warm(self, camera: Camera) -> None:
        """A snapshot was asked for: make sure a pull runs for at least the keep-warm time."""
        if camera.pulling or not camera.available or self.policy.wants(camera, False):
            return
        self.start_if_wanted(camera, watched=True)
        self.viewers_changed(camera)

    def _unwatched(self, camera: Camera) -> None:
        self._idle.pop(camera.id, None)
        if not camera.feed.viewers and not self.policy.wants(camera, False):
            log.info("camera %s: no viewers for %.0f s, pausing its pull", camera.id, self.settings.keep_warm_s)
            asyncio.get_running_loop().create_task(self.stop(camera))

    # ---- pulls -----------------------------------------------------------------------------
    def start_if_wanted(self, camera: Camera, watched: bool | None = None) -> None:
        if watched is None:
            watched = bool(camera.feed.viewers)
        url = self.policy.url(camera)
        if url and camera.available and not camera.pulling and self.policy.wants(camera, watched):
            self._start(camera, url)

    def reconsider(self, camera: Camera) -> None:
        """The policy may have changed its mind about ``camera`` (its owner changed): start, stop or move
        its pull. Its viewers stay: they see ``stalled``, then the frames of the new pull."""
        upstream = self._upstreams.get(camera.id)
        if upstream is None:
            self.start_if_wanted(camera)
            return
        watched = bool(camera.feed.viewers) or camera.id in self._idle
        url = self.policy.url(camera)
        if url != upstream.url or not camera.available or not self.policy.wants(camera, watched):
            asyncio.get_running_loop().create_task(self._move(camera, watched))

    async def _move(self, camera: Camera, watched: bool) -> None:
        resumed = camera.state in (STREAMING, STALLED)
        await self._stop_upstream(camera)
        url = self.policy.url(camera)
        if url and camera.available and not camera.pulling and self.policy.wants(camera, watched):
            self._start(camera, url, resumed=resumed)
            self.viewers_changed(camera)  # an unwatched pull that only follows its keep-warm time stops then
        elif not camera.pulling:
            self.set_state(camera, OFFLINE)

    def _start(self, camera: Camera, url: str, resumed: bool = False) -> None:
        options = self.policy.options(camera, url)
        upstream = Upstream(
            camera.id, url,
            on_frame=functools.partial(self._frame, camera),
            on_state=functools.partial(self.set_state, camera),
            max_frame_bytes=self.settings.max_frame_bytes,
            stall_s=self.settings.stall_s,
            allowed=self.settings.allowed,
            max_fps=self._ingest_cap(camera),
            hub=self._hub,
            user_agent=self._user_agent,
            headers=options.headers,
            admit=options.admit,
            backoff_max_s=options.backoff_max_s,
            resumed=resumed,
        )
        self._upstreams[camera.id] = upstream
        camera.pull = upstream
        self.set_state(camera, STALLED if resumed else CONNECTING)
        upstream.start()

    def _ingest_cap(self, camera: Camera) -> float:
        """Frames/s the hub takes from this camera: a multiple of what it announced, else the setting."""
        fps = (camera.announce or {}).get("fps")
        if fps:
            return max(INGEST_FPS_FACTOR * float(fps), MIN_INGEST_FPS)
        return self.settings.max_ingest_fps

    async def stop(self, camera: Camera) -> None:
        timer = self._idle.pop(camera.id, None)
        if timer is not None:
            timer.cancel()
        await self._stop_upstream(camera)

    async def _stop_upstream(self, camera: Camera) -> None:
        upstream = self._upstreams.pop(camera.id, None)
        camera.pull = None
        if upstream is not None:
            with contextlib.suppress(Exception):
                await upstream.stop()

    async def restart(self, camera: Camera) -> None:
        await self.stop(camera)
        self.start_if_wanted(camera)

    async def stop_all(self) -> None:
        for camera in self.cameras:
            await self.stop(camera)

    def _frame(self, camera: Camera, jpeg: bytes, seq: int | None, timestamp: float | None) -> None:
        now = time.time()
        capture = timestamp if timestamp is not None and abs(now - timestamp) < PLAUSIBLE_CLOCK_S else now
        camera.frame_in(jpeg, capture, now)

    def set_state(self, camera: Camera, state: str) -> None:
        if camera.pull is None and state != OFFLINE and not camera.available:
            state = OFFLINE
        self.cameras.set_state(camera, state)
