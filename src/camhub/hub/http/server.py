"""The hub's HTTP side (aiohttp): dashboard, JSON API, server-sent events, snapshots and streams.

aiohttp parses requests, routes and serves everything but the stream bodies. A stream handler
checks credentials and limits, writes the response head, and hands the connection's socket to the
frame broker (on a descriptor of its own), which sends the frames; the handler then just waits for
the viewer to go and closes the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import socket
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from camhub.hub.core.controls import ChangeRefused
from camhub.hub.core.options import OptionError
from camhub.hub.http.auth import NO_CREDENTIALS, THROTTLED, Auth
from camhub.hub.util.ratelimit import LogLimiter
from camhub.resources import shipped
from camhub_node import mjpeg

if TYPE_CHECKING:
    from camhub.hub.app import Hub

log = logging.getLogger(__name__)

WEB_DIR = shipped("web")
_CAMERA_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_STATIC_HEADERS = {"Cache-Control": "no-cache"}

HUB_KEY = web.AppKey("hub", "Hub")
DEADLINE_KEY = web.AppKey("request_deadline", "RequestDeadline")
HTTP_LOG_KEY = web.AppKey("http_log", "HttpLog")
REQUEST_HEAD_TIMEOUT_S = 10.0  # a connection must send a whole request head within this
IDLE_KEEPALIVE_S = 15.0  # an idle keep-alive connection is closed after this


class RequestDeadline:
    """Closes connections that never complete a request head (slowloris), which aiohttp allows.

    The middleware marks each connection that got a request through; a sweep closes the ones that
    have been open longer than the deadline without one. Only public aiohttp API is used.
    """

    def __init__(self, timeout: float = REQUEST_HEAD_TIMEOUT_S) -> None:
        self.timeout = timeout
        self.log = LogLimiter(log)
        self.closed = 0
        # keyed by id(): aiohttp's handlers take no weak references; entries die with the sweep
        self._served: set[int] = set()
        self._first_seen: dict[int, float] = {}

    def served(self, protocol: Any) -> None:
        if protocol is not None:
            self._served.add(id(protocol))

    async def sweep(self, server: web.Server, interval: float = 1.0) -> None:
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            live = {id(protocol): protocol for protocol in server.connections}
            self._served &= live.keys()
            self._first_seen = {key: seen for key, seen in self._first_seen.items() if key in live}
            for key, protocol in live.items():
                if key in self._served:
                    continue
                if now - self._first_seen.setdefault(key, now) > self.timeout:
                    transport = protocol.transport
                    if transport is not None and not transport.is_closing():
                        self.closed += 1
                        self.log.info("slowloris", "closing a connection that sent no complete request in "
                                      "%.0f s", self.timeout)
                        transport.close()


class HttpLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's server log, except that malformed requests (anyone can send them) are counted and
    logged at debug level without a traceback; a handler's own errors stay errors."""

    def __init__(self) -> None:
        super().__init__(logging.getLogger("camhub.hub.http"), {})
        self.malformed = 0

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info")
        if isinstance(exc, HttpProcessingError):
            self.malformed += 1
            level, msg, args = logging.DEBUG, "malformed request: %s", (str(exc).splitlines()[0][:200],)
            kwargs["exc_info"] = None
        super().log(level, msg, *args, **kwargs)


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers, dumps=lambda d: json.dumps(d, default=str))


def _error(status: int, message: str, **extra: Any) -> web.Response:
    headers = {"Retry-After": "5"} if status == 503 else None
    return _json({"error": message, **extra}, status=status, headers=headers)


@web.middleware
async def _guard(request: web.Request, handler: Any) -> web.StreamResponse:
    """Credentials, and JSON errors for everything that goes wrong."""
    hub: Hub = request.app[HUB_KEY]
    request.app[DEADLINE_KEY].served(request.protocol)
    if request.path != "/healthz" and not _host_allowed(hub, request):
        return _error(421, "this hub does not answer to that Host name (add it to CAMHUB_ALLOWED_HOSTS)")
    if request.path != "/healthz":
        camera_id = request.match_info.get("camera_id") if request.match_info.get("media") else None
        client = request.remote or ""
        refused = hub.auth.check(request.headers.get("Authorization"), camera_id, request.query.get("token"), client)
        if refused == THROTTLED:
            hub.warnings.warning(f"auth-throttled:{client}", "too many failed logins from %s; refusing it for a while",
                                 client)
            return web.Response(status=429, text="too many failed attempts; try again later\n",
                                headers={"Retry-After": str(hub.auth.throttle.retry_after(client))})
        if refused is not None:
            if refused != NO_CREDENTIALS:
                hub.warnings.warning("auth-failed", "failed login from %s (%s)", client, refused)
            return web.Response(status=401, text="credentials required\n",
                                headers={"WWW-Authenticate": 'Basic realm="camhub", charset="UTF-8"'})
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status >= 400 and exc.content_type != "application/json":
            return _error(exc.status, exc.reason)
        raise


def _host_allowed(hub: Hub, request: web.Request) -> bool:
    """DNS rebinding: only the hub's own names (hostcheck.py); refusals counted and logged (rate-limited)."""
    host = request.headers.get("Host")
    sockname = request.transport.get_extra_info("sockname") if request.transport is not None else None
    if hub.hosts.allowed(host, sockname[0] if sockname else None):
        return True
    hub.warnings.warning("host-refused", "refused a request for Host %r from %s (not one of the hub's names)",
                         (host or "")[:80], request.remote)
    return False


def build_app(hub: Hub) -> web.Application:
    # client_max_size bounds request bodies; the parser bounds request lines and header fields.
    app = web.Application(middlewares=[_guard], client_max_size=64 * 1024, handler_args={
        "max_line_size": 8190, "max_field_size": 8190, "keepalive_timeout": IDLE_KEEPALIVE_S})
    app[HUB_KEY] = hub
    app[DEADLINE_KEY] = RequestDeadline()
    app[HTTP_LOG_KEY] = HttpLog()
    app.router.add_get("/", index)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/hub", api_hub)
    app.router.add_get("/api/cameras", api_cameras)
    app.router.add_get("/api/cameras/{camera_id}", api_camera)
    app.router.add_get("/api/cameras/{camera_id}/urls", api_urls)
    app.router.add_get("/api/events", api_events)
    app.router.add_post("/api/cameras/{camera_id}/options", api_options)
    app.router.add_post("/api/cameras/{camera_id}/settings", api_settings)
    app.router.add_get("/api/cameras/{camera_id}/motion", api_motion)
    app.router.add_get("/cameras/{camera_id}/{media:stream}", stream)
    app.router.add_get("/cameras/{camera_id}/{media:snapshot\\.jpg}", snapshot)
    app.router.add_get("/metrics", metrics)
    if WEB_DIR.is_dir():
        app.router.add_static("/static/", WEB_DIR, append_version=False)
    return app


def _hub(request: web.Request) -> Hub:
    return request.app[HUB_KEY]


def _camera(request: web.Request) -> Any:
    camera_id = request.match_info["camera_id"]
    camera = _hub(request).cameras.cameras.get(camera_id) if _CAMERA_ID.match(camera_id) else None
    if camera is None:
        raise web.HTTPNotFound(text=json.dumps({"error": "unknown camera", "id": camera_id[:64]}),
                               content_type="application/json")
    return camera


async def index(request: web.Request) -> web.StreamResponse:
    page = WEB_DIR / "index.html"
    if not page.is_file():
        return web.Response(text="camhub hub is running; the dashboard files (web/) are missing.\n")
    return web.FileResponse(page, headers=_STATIC_HEADERS)


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def api_hub(request: web.Request) -> web.Response:
    return _json(_hub(request).health())


async def api_cameras(request: web.Request) -> web.Response:
    now = time.monotonic()
    hub = _hub(request)
    return _json([hub.summary(c, now) for c in hub.sorted_cameras()])


async def api_camera(request: web.Request) -> web.Response:
    return _json(_hub(request).detail(_camera(request), time.monotonic()))


async def api_urls(request: web.Request) -> web.Response:
    camera = _camera(request)
    auth: Auth = _hub(request).auth
    base = f"{request.scheme}://{request.host}"
    query = f"?token={auth.view_token(camera.id)}" if auth.required else ""
    return _json({"stream": f"{base}/cameras/{camera.id}/stream{query}",
                  "snapshot": f"{base}/cameras/{camera.id}/snapshot.jpg{query}"})


async def json_body(request: web.Request) -> Any:
    """A request's JSON body; only ``application/json`` (a cross-site form cannot send that without CORS)."""
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(text='{"error": "send Content-Type: application/json"}',
                                           content_type="application/json")
    try:
        return await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text='{"error": "the body is not JSON"}', content_type="application/json") from None


def time_range(request: web.Request) -> tuple[float | None, float | None]:
    """``?since=&until=`` as Unix seconds (either may be missing)."""
    out: list[float | None] = []
    for name in ("since", "until"):
        raw = request.query.get(name)
        try:
            out.append(None if raw in (None, "") else float(raw))
        except ValueError:
            raise web.HTTPBadRequest(text=json.dumps({"error": f"{name} must be Unix seconds"}),
                                     content_type="application/json") from None
    return out[0], out[1]


def _cross_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")  # browsers send it on every POST; curl and HA's scripts do not
    return origin is not None and urlsplit(origin).netloc != request.host


async def api_options(request: web.Request) -> web.Response:
    hub = _hub(request)
    camera = _camera(request)
    if _cross_origin(request):
        return _error(403, "cross-origin requests may not change camera options")
    try:
        return _json(hub.set_options(camera, await json_body(request)))
    except OptionError as exc:
        return _error(400, str(exc))


async def api_settings(request: web.Request) -> web.Response:
    """Change the node's fps / JPEG quality / frame size: 202, sent to the node, which re-announces."""
    hub = _hub(request)
    camera = _camera(request)
    if _cross_origin(request):
        hub.settings_refused["cross_origin"] += 1
        return _error(403, "cross-origin requests may not change camera settings")
    try:
        body = await json_body(request)
    except web.HTTPException:
        hub.settings_refused["not_json"] += 1
        raise
    try:
        return _json(hub.change_settings(camera, body), status=202)
    except ChangeRefused as exc:
        return _error(exc.status, str(exc), reason=exc.reason)


async def api_motion(request: web.Request) -> web.Response:
    since, until = time_range(request)
    return _json(_hub(request).motion.events(_camera(request).id, since, until))


async def api_events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: the whole picture now, on every change, and every second."""
    hub = _hub(request)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
    await response.prepare(request)
    changed = hub.subscribe_changes()
    try:
        while not hub.stopping.is_set():
            now = time.monotonic()
            data = {"hub": hub.health(), "cameras": [hub.summary(c, now) for c in hub.sorted_cameras()]}
            await response.write(f"event: state\ndata: {json.dumps(data, default=str)}\n\n".encode())
            changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(changed.wait(), 1.0)
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        hub.unsubscribe_changes(changed)
    return response


async def snapshot(request: web.Request) -> web.Response:
    hub = _hub(request)
    if (loop := _refuse_own_request(hub, request)) is not None:
        return loop
    camera = _camera(request)
    hub.cameras.warm(camera)  # on-demand pulls: a snapshot keeps the camera warm for a while
    if camera.feed.latest is None and camera.pulling:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(camera.frame_arrived.wait(), 3.0)
    latest = camera.feed.latest
    if latest is None:
        return _error(503, "no frame from this camera yet", id=camera.id)
    return web.Response(body=latest.jpeg, content_type="image/jpeg",
                        headers={"Cache-Control": "no-cache, no-store", "X-Frame-Seq": str(latest.seq),
                                 "X-Timestamp": f"{latest.capture_time:.6f}"})


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=_hub(request).metrics(),
                        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


def _max_fps(request: web.Request) -> float:
    raw = request.query.get("fps")
    if raw is None:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        raise web.HTTPBadRequest(text='{"error": "fps must be a number"}', content_type="application/json") from None
    if not 0 < value <= 120:
        raise web.HTTPBadRequest(text='{"error": "fps must be in (0, 120]"}', content_type="application/json")
    return value


def _refuse_own_request(hub: Hub, request: web.Request) -> web.Response | None:
    """508 for this hub's own upstream: a camera whose source leads back here would be a loop."""
    if not hub.is_own_request(request.headers.get("User-Agent", "")):
        return None
    hub.refusals["self_loop"] += 1
    hub.warnings.warning("self-loop", "refused a stream request from this hub itself (%s): a camera's source "
                         "leads back to the hub", request.path[:80])
    return _error(508, "this is the hub's own stream: a camera's source leads back to the hub")


def take_connection(request: web.Request, extra_head: bytes) -> tuple[socket.socket, Any, str] | None:
    """Send an MJPEG response head and take the connection over: ``(socket, transport, peer)``.

    The caller writes the parts on its own non-blocking descriptor of the connection; aiohttp keeps
    its own and is told to stop reading, so the two never race. Closing both (the socket, then the
    transport) ends the connection. None: the client is gone already (nothing more to do).
    """
    transport = request.transport
    raw = transport.get_extra_info("socket") if transport is not None else None
    if raw is None:
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
    hub = _hub(request)
    if (loop := _refuse_own_request(hub, request)) is not None:
        return loop
    camera = _camera(request)
    max_fps = _max_fps(request)
    refusal = hub.viewer_refusal(camera)
    if refusal is not None:
        hub.refusals[refusal] += 1
        return _error(503, f"too many viewers ({refusal})", id=camera.id)
    taken = take_connection(request, b"X-Camera-Id: " + camera.id.encode() + b"\r\n")
    if taken is None:
        return web.Response()
    sock, transport, peer = taken
    viewer = camera.feed.add(sock, peer, request.headers.get("User-Agent", "")[:200], max_fps)
    try:
        await viewer.done
    finally:
        if viewer.reason is None:
            camera.feed.remove(viewer, "server_shutdown")
        transport.close()
    return web.Response()  # never sent: the connection is closed


async def start_site(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0, logger=app[HTTP_LOG_KEY])
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024, reuse_address=True)
    await site.start()
    return runner


async def enforce_request_deadline(app: web.Application, runner: web.AppRunner) -> None:
    """Run until cancelled: closes connections that never send a whole request head."""
    assert runner.server is not None
    await app[DEADLINE_KEY].sweep(runner.server)
