"""The fence against double pulls is the board itself: its socket budget and its ``/status``.

A board serves a couple of stream clients at most (``CAMHUB_MAX_CLIENTS``, 2 by default) and lists
them in ``/status`` with their User-Agent; a hub's says ``camhub-hub/<version> (+<instance>)``. Before
each attempt to pull a board it owns (so also after a 503), an origin reads that list: with two
other hubs on it already, it does not become the third (it retries later, when one has let go).
With one other hub there (an owner that is paused, or cut off from the broker, and still holds its
connection), it pulls anyway and counts the camera as **shared** until the board shows it alone:
``/metrics`` says how many cameras are pulled by more than one hub now, and how often it happened.

A board that does not answer ``/status`` (or a plain MJPEG camera without one) is pulled: the board's
own 503 is the last fence. Answers are bounded in size and time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import aiohttp

from camhub.hub.core.camera import Camera
from camhub.hub.util.counters import Family

log = logging.getLogger(__name__)

HUB_AGENT = re.compile(r"^camhub-hub/\S+ \(\+([0-9a-zA-Z]{1,64})\)")
MAX_STATUS_BYTES = 256 * 1024
STATUS_TIMEOUT_S = 2.0
RECHECK_S = 2.0  # a shared camera's board is read this often until it shows this hub alone
MAX_HUBS_ON_A_BOARD = 2  # never be the third


@dataclass
class Shared:
    status_url: str
    others: int


class BoardFence:
    def __init__(self, instance: str, user_agent: str) -> None:
        self.instance = instance
        self.user_agent = user_agent
        self.shared: dict[str, Shared] = {}  # camera id -> its board also serves other hubs
        self.episodes = 0  # times a camera became shared
        self.refused: Counter[str] = Counter()
        self.unread = 0  # /status reads that failed (the pull went ahead)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=STATUS_TIMEOUT_S), headers={"User-Agent": self.user_agent},
                connector=aiohttp.TCPConnector(limit=8, force_close=True), cookie_jar=aiohttp.DummyCookieJar())
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def other_hubs(self, status_url: str) -> set[str] | None:
        """The instances of the other hubs pulling the board now (None: its /status could not be read)."""
        try:
            async with self._client().get(status_url, allow_redirects=False) as response:
                if response.status != 200:
                    raise ValueError(f"HTTP {response.status}")
                body = await response.content.read(MAX_STATUS_BYTES + 1)
            if len(body) > MAX_STATUS_BYTES:
                raise ValueError("too large")
            viewers = json.loads(body).get("viewers")
            if not isinstance(viewers, list):
                raise ValueError("no viewer list")
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError, AttributeError, RecursionError) as exc:
            self.unread += 1
            log.debug("board status %s not read: %s", status_url, exc)
            return None
        found = set()
        for viewer in viewers:
            agent = viewer.get("user_agent") if isinstance(viewer, dict) else None
            match = HUB_AGENT.match(agent) if isinstance(agent, str) else None
            if match and match.group(1) != self.instance:
                found.add(match.group(1))
        return found

    async def admit(self, camera: Camera, url: str) -> str | None:
        """Before pulling ``camera``'s board from ``url``: None to go ahead, else why not now."""
        status_url = (camera.announce or {}).get("status_url")
        if url != camera.stream_url or not isinstance(status_url, str):
            return None
        others = await self.other_hubs(status_url)
        if others is None:
            return None
        if len(others) >= MAX_HUBS_ON_A_BOARD:
            self.refused["third_hub"] += 1
            return f"{len(others)} other hubs pull this board already; not a third"
        self._note(camera.id, status_url, len(others))
        return None

    def _note(self, camera_id: str, status_url: str, others: int) -> None:
        if others and camera_id not in self.shared:
            self.episodes += 1
            log.warning("camera %s: another hub still pulls its board; pulling too until it lets go", camera_id)
        if others:
            self.shared[camera_id] = Shared(status_url, others)
        else:
            self.shared.pop(camera_id, None)

    def forget(self, camera_id: str) -> None:
        """This hub no longer pulls the camera's board."""
        self.shared.pop(camera_id, None)

    async def watch(self) -> None:
        """Until cancelled: re-read the boards of shared cameras until each shows this hub alone."""
        while True:
            await asyncio.sleep(RECHECK_S)
            for camera_id, entry in list(self.shared.items()):
                others = await self.other_hubs(entry.status_url)
                if others is not None and camera_id in self.shared:
                    self._note(camera_id, entry.status_url, len(others))
                    if not others:
                        log.info("camera %s: its board serves only this hub again", camera_id)

    def counters(self) -> Iterable[Family]:
        yield Family("camhub_cluster_cameras_shared", "Cameras this hub pulls whose board another hub pulls too",
                     "", {"": len(self.shared)}, kind="gauge")
        yield Family("camhub_cluster_shared_pulls", "Times a camera this hub pulls was pulled by another hub too",
                     "", {"": self.episodes})
        yield Family("camhub_cluster_pulls_refused", "Board pulls not started: other hubs pull it already", "reason",
                     dict(self.refused))
