"""Asking the other hubs: a camera's recordings held elsewhere, and a request passed on to its holder.

A camera that moved has recordings on each hub that owned it. ``recordings`` asks every live member
for its own list of the camera's (``?local=1``), in parallel, each within ``timeout_s``; a member
that does not answer is left out (and named in ``unreachable``). ``open`` makes a request to one
member for the HTTP side to pass on (a playback or a download through any hub). Requests carry the
cluster credential for that member; answers are bounded in size.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Any

import aiohttp

from camhub.hub.cluster.credentials import ClusterKey
from camhub.hub.cluster.members import Member, Members

log = logging.getLogger(__name__)

MAX_LIST_BYTES = 4 * 1024 * 1024
TIMEOUT_S = 3.0


class Peers:
    def __init__(self, members: Members, key: ClusterKey, user_agent: str, timeout_s: float = TIMEOUT_S) -> None:
        self.members = members
        self.key = key
        self.user_agent = user_agent
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers={"User-Agent": self.user_agent}, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False,
                timeout=aiohttp.ClientTimeout(total=None, connect=self.timeout_s, sock_read=30.0))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def hub_id(self) -> str:
        return self.members.me.id

    def live(self, hub_id: str) -> Member | None:
        member = self.members.get(hub_id)
        return member if member is not None and member is not self.members.me and self.members.live(hub_id) else None

    async def recordings(self, camera_id: str, query: Mapping[str, str]) -> tuple[dict[str, list[Any]], list[str]]:
        """``({hub id: its recordings of the camera}, [hubs that did not answer])`` of the other live hubs."""
        others = self.members.live_others()
        answers = await asyncio.gather(*(self._list(m, camera_id, query) for m in others))
        found = {m.id: items for m, items in zip(others, answers, strict=True) if items is not None}
        return found, sorted(m.id for m, items in zip(others, answers, strict=True) if items is None)

    async def _list(self, member: Member, camera_id: str, query: Mapping[str, str]) -> list[Any] | None:
        params = {**{k: v for k, v in query.items() if k in ("since", "until")}, "local": "1"}
        try:
            async with asyncio.timeout(self.timeout_s), self._client().get(
                    f"{member.url}/api/cameras/{camera_id}/recordings", params=params, allow_redirects=False,
                    headers=self.key.headers(member.id)) as response:
                if response.status == 404:
                    return []  # that hub does not know the camera
                if response.status != 200:
                    raise ValueError(f"HTTP {response.status}")
                body = await response.content.read(MAX_LIST_BYTES + 1)
            if len(body) > MAX_LIST_BYTES:
                raise ValueError("too large")
            items = json.loads(body)
            if not isinstance(items, list):
                raise ValueError("not a list")
            return [i for i in items if isinstance(i, dict) and isinstance(i.get("id"), str)]
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError, RecursionError) as exc:
            log.info("recordings of %s on hub %s not read: %s", camera_id, member.id, exc)
            return None

    async def open(self, member: Member, path: str, query: Mapping[str, str]) -> aiohttp.ClientResponse:
        """A GET of ``path`` on ``member`` (the caller reads and releases the response)."""
        async with asyncio.timeout(self.timeout_s):
            return await self._client().get(f"{member.url}{path}", params=dict(query), allow_redirects=False,
                                            headers=self.key.headers(member.id))
