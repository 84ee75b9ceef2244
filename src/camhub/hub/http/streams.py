"""Live streams and snapshots: ``/cameras/<id>/stream`` and ``/cameras/<id>/snapshot.jpg``.

A stream handler checks the limits, writes the response head, and hands the connection's socket to
the frame broker (on a descriptor of its own), which sends the frames; the handler then waits for
the viewer to go and closes the connection. A request that carries this hub's own instance in its
User-Agent (a camera whose source leads back here) is refused with 508. In a cluster another hub's
pull of a camera this hub does not own is refused with 409 (naming the owner): that hub follows an
old claim, and serving it would chain pulls, or loop them between two hubs that disagree for a
moment. Refusals are counted here. A hub in redirect mode (``CAMHUB_STREAM_REDIRECT``) answers a
viewer with a 307 to an edge instead (``redirect.py``), before any of that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from aiohttp import web

from camhub.hub.core.camera import Camera
from camhub.hub.http.clients import client, hub_caller
from camhub.hub.http.redirect import REDIRECT
from camhub.hub.http.responses import camera_or_404, error, query_number
from camhub.hub.http.services import services
from camhub.hub.util.counters import Family
from camhub.hub.util.ratelimit import LogLimiter
from camhub_node import mjpeg

log = logging.getLogger(__name__)

MAX_VIEWER_FPS = 120.0
SNAPSHOT_WAIT_S = 3.0  # a snapshot of a camera whose pull just started waits this long for a frame


@dataclass(frozen=True)
class ViewerLimits:
    max_viewers: int = 500  # the whole hub
    max_viewers_per_camera: int = 250


class StreamGate:
    """Who may become a viewer: the limits, and never the hub's own pull. Counts what it refuses."""

    def __init__(self, limits: ViewerLimits) -> None:
        self.limits = limits
        self.refusals: Counter[str] = Counter()  # viewers turned away, by reason
        self._warnings = LogLimiter(log)

    def sizes(self) -> dict[str, int]:
        return {"refusal_reasons": len(self.refusals), "log_keys": len(self._warnings)}

    def counters(self) -> Iterable[Family]:
        yield Family("camhub_viewers_refused", "Viewer requests refused", "reason", dict(self.refusals))

    def own_request(self, request: web.Request) -> web.Response | None:
        """508 for this hub's own upstream: a camera whose source leads back to the hub would be a loop."""
        if not services(request).identity.is_own_request(request.headers.get("User-Agent", "")):
            return None
        self.refusals["self_loop"] += 1
        self._warnings.warning("self-loop", "refused a stream request from this hub itself (%s): a camera's source "
                               "leads back to the hub", request.path[:80])
        return error(508, "this is the hub's own stream: a camera's source leads back to the hub")

    def not_owner(self, request: web.Request, camera: Camera) -> web.Response | None:
        """409 for another hub's pull of a camera this hub does not own (it follows an old claim)."""
        cluster = services(request).cluster
        caller = hub_caller(request)
        if cluster is None or caller is None or cluster.owns(camera.id):
            return None
        self.refusals["not_owner"] += 1
        owner = cluster.ownership.owner(camera.id)
        return error(409, "this hub does not own the camera", id=camera.id, owner=owner.hub if owner else None)

    def over_limit(self, request: web.Request, camera: Camera) -> web.Response | None:
        if services(request).cameras.broker.viewer_count >= self.limits.max_viewers:
            reason = "hub_limit"
        elif len(camera.feed.viewers) >= self.limits.max_viewers_per_camera:
            reason = "camera_limit"
        else:
            return None
        self.refusals[reason] += 1
        return error(503, f"too many viewers ({reason})", id=camera.id)


GATE = web.AppKey("stream_gate", StreamGate)


def take_connection(request: web.Request, extra_head: bytes) -> tuple[socket.socket, asyncio.Transport, str] | None:
    """Send an MJPEG response head and take the connection over: ``(socket, transport, peer)``.

    The caller writes the parts on its own non-blocking descriptor of the connection; aiohttp keeps
    its own and is told to stop reading, so the two never race. Closing both (the socket, then the
    transport) ends the connection. None: the client is gone already (nothing more to do).
    """
    transport = request.transport
    raw = transport.get_extra_info("socket") if transport is not None else None
    if transport is None or raw is None:
        raise web.HTTPServiceUnavailable()
    sock = socket.socket(fileno=os.dup(raw.fileno()))
    transport.pause_reading()
    peername = transport.get_extra_info("peername") or ("?", 0)
    head = mjpeg.response_head(extra_head)
    try:
        sock.setblocking(False)  # a fresh connection's send buffer takes the head at once, or it is dead
        complete = sock.send(head) == len(head)
    except OSError:
        complete = False
    if not complete:
        sock.close()
        transport.close()
        return None
    return sock, transport, f"{peername[0]}:{peername[1]}"


async def stream(request: web.Request) -> web.StreamResponse:
    gate = request.app[GATE]
    if (loop := gate.own_request(request)) is not None:
        return loop
    camera = camera_or_404(request)
    max_fps = query_number(request, "fps", 0.0, 0.0, MAX_VIEWER_FPS, low_open=True) or 0.0
    redirect = request.app.get(REDIRECT)
    if redirect is not None and (moved := redirect.answer(request, camera, max_fps)) is not None:
        return moved
    if (refused := gate.not_owner(request, camera) or gate.over_limit(request, camera)) is not None:
        return refused
    taken = take_connection(request, b"X-Camera-Id: " + camera.id.encode() + b"\r\n")
    if taken is None:
        return web.Response()
    sock, transport, peer = taken
    if not peer.startswith(client(request) + ":"):
        peer = client(request)  # behind a trusted proxy: the client it names
    viewer = camera.feed.add(sock, peer, request.headers.get("User-Agent", "")[:200], max_fps)
    try:
        await viewer.done
    finally:
        if viewer.reason is None:
            camera.feed.remove(viewer, "server_shutdown")
        transport.close()
    return web.Response()  # never sent: the connection is closed


async def snapshot(request: web.Request) -> web.Response:
    if (loop := request.app[GATE].own_request(request)) is not None:
        return loop
    camera = camera_or_404(request)
    if (refused := request.app[GATE].not_owner(request, camera)) is not None:
        return refused
    services(request).warm(camera)  # on-demand pulls: a snapshot keeps the camera warm for a while
    if camera.feed.latest is None and camera.pulling:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(camera.frame_arrived.wait(), SNAPSHOT_WAIT_S)
    latest = camera.feed.latest
    if latest is None:
        return error(503, "no frame from this camera yet", id=camera.id)
    return web.Response(body=latest.jpeg, content_type="image/jpeg",
                        headers={"Cache-Control": "no-cache, no-store", "X-Frame-Seq": str(latest.seq),
                                 "X-Timestamp": f"{latest.capture_time:.6f}"})


def add_routes(app: web.Application, gate: StreamGate) -> None:
    app[GATE] = gate
    app.router.add_get("/cameras/{camera_id}/{media:stream}", stream)
    app.router.add_get("/cameras/{camera_id}/{media:snapshot\\.jpg}", snapshot)


