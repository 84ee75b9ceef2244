"""Answers every handler shares: JSON bodies and errors (one shape: ``{"error": ..., **details}``, 503s
with ``Retry-After``), the camera of a path (404 for an unknown or invalid id), query numbers, JSON
request bodies and the same-origin check for changes."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from camhub.hub.core.camera import Camera
from camhub.hub.http.services import services
from camhub_node.config import is_valid_id

RETRY_AFTER_S = "5"


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers, dumps=lambda d: json.dumps(d, default=str))


def error(status: int, message: str, **details: Any) -> web.Response:
    """The one JSON error answer."""
    headers = {"Retry-After": RETRY_AFTER_S} if status == 503 else None
    return json_response({"error": message, **details}, status=status, headers=headers)


def http_error(exc: type[web.HTTPError], message: str, **details: Any) -> web.HTTPError:
    """The same answer as an exception to raise from a helper (``raise http_error(...)``)."""
    return exc(text=json.dumps({"error": message, **details}), content_type="application/json")


def camera_or_404(request: web.Request) -> Camera:
    camera_id = request.match_info["camera_id"]
    camera = services(request).cameras.get(camera_id) if is_valid_id(camera_id) else None
    if camera is None:
        raise http_error(web.HTTPNotFound, "unknown camera", id=camera_id[:64])
    return camera


def query_number(request: web.Request, name: str, default: float | None = None, low: float | None = None,
                 high: float | None = None, *, low_open: bool = False, what: str = "a number") -> float | None:
    """``?name=`` as a number within [low, high] (``(low, high]`` with ``low_open``); ``default`` when absent
    or empty; 400 otherwise."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise http_error(web.HTTPBadRequest, f"{name} must be {what}") from None
    below = low is not None and (value <= low if low_open else value < low)
    if below or (high is not None and value > high):
        bracket = "(" if low_open else "["
        raise http_error(web.HTTPBadRequest, f"{name} must be in {bracket}{low:g}, {high:g}]")
    return value


def time_range(request: web.Request) -> tuple[float | None, float | None]:
    """``?since=&until=`` as Unix seconds (either may be missing)."""
    return (query_number(request, "since", what="Unix seconds"), query_number(request, "until", what="Unix seconds"))


async def json_body(request: web.Request) -> Any:
    """A request's JSON body; only ``application/json`` (a cross-site form cannot send that without CORS)."""
    if request.content_type != "application/json":
        raise http_error(web.HTTPUnsupportedMediaType, "send Content-Type: application/json")
    try:
        return await request.json()
    except ValueError:
        raise http_error(web.HTTPBadRequest, "the body is not JSON") from None


def cross_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")  # browsers send it on every POST; curl and HA's scripts do not
    return origin is not None and urlsplit(origin).netloc != request.host
