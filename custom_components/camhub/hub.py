"""The hub's HTTP API as the integration uses it: its info, its cameras, snapshots and stream requests.

Everything the hub answers is untrusted input: bodies are read up to a limit, JSON is checked for the
fields used, and a 401 is told apart from every other failure (it starts Home Assistant's reauth).
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import aiohttp
from yarl import URL

API_TIMEOUT = aiohttp.ClientTimeout(total=10)
MAX_JSON_BYTES = 4 * 1024 * 1024
MAX_SNAPSHOT_BYTES = 16 * 1024 * 1024
# A live stream: a connection must open within 10 s; the hub re-sends its latest frame every few
# seconds while a camera is quiet, so 30 s without a byte means the hub (or the path to it) is gone.
STREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=10, sock_read=30)
CAMERA_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")  # the hub's own rule for camera ids


class HubError(Exception):
    """The hub could not be reached, or did not answer as a camhub hub does (``status``: its HTTP status)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class HubAuthError(HubError):
    """The hub refused the credentials (401)."""


class NotAHub(HubError):
    """Something answered, but not a camhub hub this integration can use."""


def normalize_url(text: str) -> str:
    """A hub's base URL (``http(s)://host[:port][/path]``, no query) without a trailing slash; ValueError if not."""
    url = URL(text.strip())
    if url.scheme not in ("http", "https") or not url.host or url.query_string or url.fragment:
        raise ValueError(f"not an http(s) URL of a hub: {text[:100]!r}")
    return str(url.with_path(url.path.rstrip("/"))).rstrip("/")


class HubClient:
    """One hub, reached at ``url`` with optional HTTP Basic credentials."""

    def __init__(self, session: aiohttp.ClientSession, url: str, username: str | None = None,
                 password: str | None = None) -> None:
        self.session = session
        self.url = url.rstrip("/")
        # HTTP Basic as a header: aiohttp's BasicAuth is deprecated in newer releases than Home Assistant 2024.3's
        token = base64.b64encode(f"{username}:{password or ''}".encode()).decode() if username else None
        self.headers = {"Authorization": f"Basic {token}"} if token else {}

    async def _get(self, path: str, limit: int) -> tuple[bytes, str]:
        try:
            async with self.session.get(self.url + path, headers=self.headers, timeout=API_TIMEOUT,
                                        allow_redirects=False) as resp:
                if resp.status == 401:
                    raise HubAuthError("the hub refused the credentials", 401)
                if resp.status != 200:
                    raise HubError(f"{path}: HTTP {resp.status}", resp.status)
                body = await resp.content.read(limit + 1)
                if len(body) > limit:
                    raise HubError(f"{path}: answer larger than {limit} bytes")
                return body, resp.headers.get("Content-Type", "")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise HubError(f"{path}: {exc or type(exc).__name__}") from exc

    async def _json(self, path: str) -> Any:
        body, _ = await self._get(path, MAX_JSON_BYTES)
        try:
            return json.loads(body)
        except ValueError as exc:
            raise NotAHub(f"{path}: not JSON", 200) from exc

    async def info(self) -> dict[str, Any]:
        """The hub's health, with its Home Assistant block (``home_assistant``: device, integration topic)."""
        try:
            data = await self._json("/api/hub")
        except HubError as exc:
            if exc.status == 404:
                raise NotAHub(str(exc), 404) from exc
            raise
        ha = data.get("home_assistant") if isinstance(data, dict) else None
        if not isinstance(ha, dict) or not isinstance(ha.get("device"), dict) or not _identifier(ha["device"]):
            raise NotAHub("not a camhub hub (or one too old for this integration): /api/hub has no home_assistant")
        return data

    async def cameras(self) -> dict[str, dict[str, Any]]:
        """The hub's cameras by id (only entries with a usable id and name). In a cluster, only the cameras this
        hub owns (``owned``): each hub is an entry of its own, and a camera's devices are via its owner. Not
        battery cameras (``mode`` ``snapshot``): the hub's MQTT camera entity shows their pushed pictures, which a
        live stream, open only while the camera is awake, would not."""
        data = await self._json("/api/cameras")
        if not isinstance(data, list):
            raise HubError("/api/cameras: not a list")
        return {c["id"]: c for c in data if isinstance(c, dict) and isinstance(c.get("id"), str)
                and CAMERA_ID.fullmatch(c["id"]) and isinstance(c.get("name"), str) and c.get("owned") is not False
                and c.get("mode") != "snapshot"}

    async def snapshot(self, camera_id: str) -> bytes | None:
        """The hub's cached latest JPEG of a camera; None while it has none (503) or when unreachable."""
        try:
            body, content_type = await self._get(f"/cameras/{camera_id}/snapshot.jpg", MAX_SNAPSHOT_BYTES)
        except HubAuthError:
            raise
        except HubError:
            return None
        return body if content_type.startswith("image/jpeg") else None

    async def stream_url(self, camera_id: str) -> str:
        """The camera's MJPEG URL for players (with its view token when the hub requires credentials)."""
        urls = await self._json(f"/api/cameras/{camera_id}/urls")
        if not isinstance(urls, dict) or not isinstance(urls.get("stream"), str):
            raise HubError("no stream URL")
        return urls["stream"]

    async def open_stream(self, camera_id: str, fps: float | None) -> aiohttp.ClientResponse:
        """A live MJPEG response from the hub (whatever its status: the caller checks and closes it)."""
        params = {"fps": f"{fps:g}"} if fps else None
        try:
            return await self.session.get(f"{self.url}/cameras/{camera_id}/stream", params=params,
                                          headers=self.headers, timeout=STREAM_TIMEOUT, allow_redirects=False)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise HubError(f"stream of {camera_id}: {exc or type(exc).__name__}") from exc


def _identifier(device: dict[str, Any]) -> str | None:
    identifiers = device.get("identifiers")
    if isinstance(identifiers, list) and identifiers and isinstance(identifiers[0], str):
        return identifiers[0]
    return None


def hub_id(info: dict[str, Any]) -> str:
    """The hub's identity: its Home Assistant device identifier (``camhub_hub`` for the default topic prefix)."""
    return _identifier(info["home_assistant"]["device"]) or ""
