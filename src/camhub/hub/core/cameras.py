"""The cameras the hub knows: what each announced, its upstream pull, its feed, and its state.

Cameras come from MQTT announces, from ``CAMHUB_SOURCES`` and from the state directory (known
cameras are listed after a restart, offline until they announce again). At most
``CAMHUB_MAX_CAMERAS`` are kept; the state file is written at most every ``SAVE_DELAY_S``, on a
worker thread, and at shutdown. A node's ``stats`` prove it alive: a camera said ``offline`` (maybe
by a spoofed message) comes back with its next stats, and a cleared announce does not take away
a camera whose node is alive (the node re-asserts its announce). A cleared announce forgets a
camera that never streamed, and removes one whose node is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from camhub.hub.config import HubConfig
from camhub.hub.core.broker import Broker, Feed
from camhub.hub.ingest.announce import HubAddresses
from camhub.hub.ingest.upstream import Upstream

log = logging.getLogger(__name__)

CONNECTING, STREAMING, STALLED, OFFLINE = "connecting", "streaming", "stalled", "offline"
INGEST_FPS_FACTOR = 3.0  # frames beyond 3x the announced rate are dropped (a loop, a runaway camera)
MIN_INGEST_FPS = 5.0
SAVE_DELAY_S = 2.0  # announces in a burst cost one write of the state file, not one each
ALIVE_S = 30.0  # stats this recent prove the node alive


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
        self.upstream: Upstream | None = None
        self.state = OFFLINE
        self.available = False  # the node says it is online (static sources: always)
        self.last_seen = last_seen  # Unix time of the last frame
        self.frame_arrived = asyncio.Event()
        self.idle_timer: asyncio.TimerHandle | None = None
        self.stats_at: float | None = None  # time.monotonic() of the node's latest stats message

    def alive(self, now: float) -> bool:
        """The node shows signs of life: its stats are recent, or frames are flowing."""
        recent_stats = self.stats_at is not None and now - self.stats_at < ALIVE_S
        return recent_stats or self.state == STREAMING

    @property
    def pulling(self) -> bool:
        return self.upstream is not None

    def last_frame_age_ms(self, now: float) -> int | None:
        latest = self.feed.latest
        return None if latest is None else int((now - latest.arrived) * 1000)

    def summary(self, now: float) -> dict[str, Any]:
        up = self.upstream
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
        }

    def detail(self, now: float) -> dict[str, Any]:
        data = self.summary(now)
        data["clients"] = self.feed.viewer_infos()
        data["disconnects"] = list(self.feed.disconnects)
        up = self.upstream
        data["upstream"] = up.stats() if up else None
        return data

    def state_payload(self, now: float) -> dict[str, Any]:
        """The retained ``camhub/hub/cameras/<id>/state`` payload (the contract's fields)."""
        up = self.upstream
        return {
            "id": self.id,
            "state": self.state,
            "fps_in": round(up.fps_in, 2) if up else 0.0,
            "frames_in": up.frames_in if up else 0,
            "clients": len(self.feed.viewers),
            "dropped_total": self.feed.dropped_total,
            "last_frame_age_ms": self.last_frame_age_ms(now),
        }


class Cameras:
    """The registry: starts, restarts and stops each camera's single upstream pull."""

    def __init__(self, config: HubConfig, broker: Broker, on_change: Callable[[Camera], None], *,
                 hub_addresses: HubAddresses | None = None, user_agent: str | None = None) -> None:
        self.config = config
        self.broker = broker
        self._on_change = on_change
        self._hub_addresses = hub_addresses  # upstreams never pull the hub itself
        self._user_agent = user_agent
        self.cameras: dict[str, Camera] = {}
        self._store = config.state_dir / "cameras.json"
        self._save_timer: asyncio.TimerHandle | None = None
        self._saving: asyncio.Task[None] | None = None
        self.saves = 0

    # ---- lifecycle -------------------------------------------------------------------------
    def load(self) -> None:
        """List the cameras known from an earlier run (offline until they announce again)."""
        try:
            saved = json.loads(self._store.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable %s: %s", self._store, exc)
            return
        for entry in saved.get("cameras", []) if isinstance(saved, dict) else []:
            try:
                camera_id, name = str(entry["id"]), str(entry.get("name") or entry["id"])
            except (KeyError, TypeError):
                continue
            if len(self.cameras) >= self.config.max_cameras:
                log.warning("%s lists more than CAMHUB_MAX_CAMERAS (%d) cameras; the rest are left out",
                            self._store, self.config.max_cameras)
                break
            if camera_id not in self.cameras and entry.get("source") == "mqtt":
                self.cameras[camera_id] = Camera(camera_id, name, "mqtt", entry.get("stream_url"),
                                                 self.broker.feed(camera_id), entry.get("announce"),
                                                 entry.get("last_seen"))
        log.info("%d known cameras from %s", len(self.cameras), self._store)

    def _entries(self) -> str:
        entries = [{"id": c.id, "name": c.name, "source": c.source, "stream_url": c.stream_url,
                    "announce": c.announce, "last_seen": c.last_seen}
                   for c in self.cameras.values() if c.source == "mqtt"]
        return json.dumps({"cameras": entries}, indent=1)

    def _write(self, text: str) -> None:
        """Write the known cameras atomically (a crash never leaves a torn file)."""
        try:
            self._store.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._store.with_suffix(".tmp")
            tmp.write_text(text)
            os.replace(tmp, self._store)
            self.saves += 1
        except OSError as exc:
            log.warning("cannot save known cameras to %s: %s", self._store, exc)

    def save(self) -> None:
        """Write now (blocking; for shutdown)."""
        if self._save_timer is not None:
            self._save_timer.cancel()
            self._save_timer = None
        self._write(self._entries())

    def save_soon(self) -> None:
        """Write within SAVE_DELAY_S, once for everything that changed meanwhile, off the event loop."""
        if self._save_timer is None:
            self._save_timer = asyncio.get_running_loop().call_later(SAVE_DELAY_S, self._save_later)

    def _save_later(self) -> None:
        self._save_timer = None
        if self._saving is not None and not self._saving.done():
            self.save_soon()  # the previous write is still going: try again shortly
            return
        self._saving = asyncio.get_running_loop().create_task(asyncio.to_thread(self._write, self._entries()))

    async def stop(self) -> None:
        for camera in self.cameras.values():
            await self._stop_pull(camera)
        if self._saving is not None:
            await asyncio.wait([self._saving])
        self.save()

    # ---- what the sources say --------------------------------------------------------------
    def add_static(self, camera_id: str, url: str) -> Camera:
        camera = Camera(camera_id, camera_id, "static", url, self.broker.feed(camera_id))
        camera.available = True
        self.cameras[camera_id] = camera
        self._pull_if_wanted(camera)
        return camera

    def has_room(self, camera_id: str) -> bool:
        """Whether an announce for ``camera_id`` may be taken (known, or below CAMHUB_MAX_CAMERAS)."""
        return camera_id in self.cameras or len(self.cameras) < self.config.max_cameras

    def announced(self, announce: dict[str, Any]) -> Camera:
        """A valid announce: register the camera, or restart its pull if the stream moved."""
        camera_id = announce["id"]
        camera = self.cameras.get(camera_id)
        if camera is None:
            camera = Camera(camera_id, announce.get("name") or camera_id, "mqtt", announce["stream_url"],
                            self.broker.feed(camera_id))
            self.cameras[camera_id] = camera
            log.info("camera %s discovered at %s", camera_id, announce["stream_url"])
        moved = camera.stream_url != announce["stream_url"]
        camera.name = announce.get("name") or camera_id
        camera.stream_url = announce["stream_url"]
        camera.announce = announce
        camera.available = True
        if camera.upstream is not None:
            camera.upstream.max_fps = self._ingest_cap(camera)  # e.g. the node's fps was changed
        self.save_soon()
        if moved or not camera.pulling:
            asyncio.get_running_loop().create_task(self._restart_pull(camera))
        self._on_change(camera)
        return camera

    def availability(self, camera_id: str, online: bool) -> None:
        camera = self.cameras.get(camera_id)
        if camera is None or camera.available == online:
            return
        camera.available = online
        log.info("camera %s is %s", camera_id, "online" if online else "offline")
        if online:
            self._pull_if_wanted(camera)
        else:
            asyncio.get_running_loop().create_task(self._stop_pull(camera))
            self._set_state(camera, OFFLINE)

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
            return "kept"
        asyncio.get_running_loop().create_task(self.remove(camera_id))
        return "forgotten" if camera.last_seen is None else "removed"

    async def remove(self, camera_id: str) -> None:
        """Forget the camera and close its viewers."""
        camera = self.cameras.pop(camera_id, None)
        if camera is None:
            return
        await self._stop_pull(camera)
        self.broker.remove_feed(camera_id)
        self.save_soon()
        log.info("camera %s removed", camera_id)

    # ---- viewers drive on-demand pulls -----------------------------------------------------
    def viewers_changed(self, camera: Camera) -> None:
        if self.config.pull != "on_demand":
            return
        if camera.feed.viewers:
            if camera.idle_timer is not None:
                camera.idle_timer.cancel()
                camera.idle_timer = None
            self._pull_if_wanted(camera)
        elif camera.pulling and camera.idle_timer is None:
            camera.idle_timer = asyncio.get_running_loop().call_later(
                self.config.keep_warm_s, self._idle, camera)

    def warm(self, camera: Camera) -> None:
        """A snapshot was asked for: make sure a pull runs for at least the keep-warm time."""
        if self.config.pull == "on_demand" and not camera.pulling and camera.available:
            self._pull_if_wanted(camera, force=True)
            self.viewers_changed(camera)

    def _idle(self, camera: Camera) -> None:
        camera.idle_timer = None
        if not camera.feed.viewers:
            log.info("camera %s: no viewers for %.0f s, pausing its pull", camera.id, self.config.keep_warm_s)
            asyncio.get_running_loop().create_task(self._stop_pull(camera))

    # ---- pulls -----------------------------------------------------------------------------
    def _pull_if_wanted(self, camera: Camera, force: bool = False) -> None:
        wanted = force or self.config.pull == "always" or bool(camera.feed.viewers)
        if wanted and camera.available and not camera.pulling and camera.stream_url:
            self._start_pull(camera)

    def _start_pull(self, camera: Camera) -> None:
        assert camera.stream_url is not None
        camera.upstream = Upstream(
            camera.id, camera.stream_url,
            on_frame=lambda jpeg, seq, ts, c=camera: self._frame(c, jpeg, ts),
            on_state=lambda state, c=camera: self._set_state(c, state),
            max_frame_bytes=self.config.max_frame_bytes,
            stall_s=self.config.stall_s,
            allowed=self.config.allowed_sources,
            max_fps=self._ingest_cap(camera),
            hub=self._hub_addresses,
            user_agent=self._user_agent,
        )
        self._set_state(camera, CONNECTING)
        camera.upstream.start()

    def _ingest_cap(self, camera: Camera) -> float:
        """Frames/s the hub takes from this camera: a multiple of what it announced, else the setting."""
        fps = (camera.announce or {}).get("fps")
        if fps:
            return max(INGEST_FPS_FACTOR * float(fps), MIN_INGEST_FPS)
        return self.config.max_ingest_fps

    async def _stop_pull(self, camera: Camera) -> None:
        upstream, camera.upstream = camera.upstream, None
        if upstream is not None:
            with contextlib.suppress(Exception):
                await upstream.stop()

    async def _restart_pull(self, camera: Camera) -> None:
        await self._stop_pull(camera)
        self._pull_if_wanted(camera)

    def _frame(self, camera: Camera, jpeg: bytes, timestamp: float | None) -> None:
        now = time.time()
        # The node's clock is trusted only when it is plausible (a board without NTP starts in 2000).
        capture = timestamp if timestamp is not None and abs(now - timestamp) < 3600 else now
        camera.feed.publish(jpeg, capture)
        camera.last_seen = now
        camera.frame_arrived.set()
        camera.frame_arrived.clear()

    def _set_state(self, camera: Camera, state: str) -> None:
        if camera.upstream is None and state != OFFLINE and not camera.available:
            state = OFFLINE
        if camera.state != state:
            log.info("camera %s: %s -> %s", camera.id, camera.state, state)
            camera.state = state
            self._on_change(camera)
