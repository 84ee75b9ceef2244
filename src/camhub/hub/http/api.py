"""The JSON API (docs/api.md): the hub, its cameras, their URLs, options and settings, motion events,
and the dashboard's server-sent events."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

from aiohttp import web

from camhub.hub.core.controls import ChangeRefused
from camhub.hub.core.options import OptionError
from camhub.hub.http import views
from camhub.hub.http.auth import Auth
from camhub.hub.http.hostcheck import HostCheck
from camhub.hub.http.responses import camera_or_404, cross_origin, error, json_body, json_response, time_range
from camhub.hub.http.services import HttpServices, services
from camhub.hub.util.counters import Counted

SSE_INTERVAL_S = 1.0  # the dashboard gets the whole picture at least this often


class Health:
    """The hub's health as ``/api/hub`` shows it, with the HTTP side's own checks and counters."""

    def __init__(self, auth: Auth, hosts: HostCheck, http_counted: list[Counted]) -> None:
        self.auth = auth
        self.hosts = hosts
        self.http_counted = http_counted

    def __call__(self, services: HttpServices) -> dict[str, object]:
        return views.health(services, self.auth, self.hosts, self.http_counted)


HEALTH = web.AppKey("health", Health)


def add_routes(app: web.Application, health: Health) -> None:
    app[HEALTH] = health
    app.router.add_get("/api/hub", api_hub)
    app.router.add_get("/api/cameras", api_cameras)
    app.router.add_get("/api/cameras/{camera_id}", api_camera)
    app.router.add_get("/api/cameras/{camera_id}/urls", api_urls)
    app.router.add_get("/api/events", api_events)
    app.router.add_post("/api/cameras/{camera_id}/options", api_options)
    app.router.add_post("/api/cameras/{camera_id}/settings", api_settings)
    app.router.add_get("/api/cameras/{camera_id}/motion", api_motion)


async def api_hub(request: web.Request) -> web.Response:
    return json_response(request.app[HEALTH](services(request)))


async def api_cameras(request: web.Request) -> web.Response:
    return json_response(views.summaries(services(request)))


async def api_camera(request: web.Request) -> web.Response:
    return json_response(views.detail(services(request), camera_or_404(request), time.monotonic()))


async def api_urls(request: web.Request) -> web.Response:
    camera = camera_or_404(request)
    auth = request.app[HEALTH].auth
    base = f"{request.scheme}://{request.host}"
    query = f"?token={auth.view_token(camera.id)}" if auth.required else ""
    return json_response({"stream": f"{base}/cameras/{camera.id}/stream{query}",
                          "snapshot": f"{base}/cameras/{camera.id}/snapshot.jpg{query}"})


async def api_options(request: web.Request) -> web.Response:
    camera = camera_or_404(request)
    if cross_origin(request):
        return error(403, "cross-origin requests may not change camera options")
    try:
        return json_response(services(request).options.update(camera.id, await json_body(request)))
    except OptionError as exc:
        return error(400, str(exc))


async def api_settings(request: web.Request) -> web.Response:
    """Change the node's fps / JPEG quality / frame size: 202, sent to the node, which re-announces."""
    control = services(request).control
    camera = camera_or_404(request)
    if cross_origin(request):
        control.refused("cross_origin")
        return error(403, "cross-origin requests may not change camera settings")
    try:
        body = await json_body(request)
    except web.HTTPException:
        control.refused("not_json")
        raise
    try:
        return json_response(control.change_settings(camera, body), status=202)
    except ChangeRefused as exc:
        return error(exc.status, str(exc), reason=exc.reason)


async def api_motion(request: web.Request) -> web.Response:
    since, until = time_range(request)
    return json_response(services(request).motion.events(camera_or_404(request).id, since, until))


async def api_events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: the whole picture now, on every change, and every second."""
    found = services(request)
    health = request.app[HEALTH]
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
    await response.prepare(request)
    changed = found.changes.subscribe()
    try:
        while not found.changes.closing:
            data = {"hub": health(found), "cameras": views.summaries(found)}
            await response.write(f"event: state\ndata: {json.dumps(data, default=str)}\n\n".encode())
            changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(changed.wait(), SSE_INTERVAL_S)
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        found.changes.unsubscribe(changed)
    return response
