"""The hub's HTTP server (aiohttp): the app with its guard, its routes, and the server around it.

aiohttp parses requests, routes and serves everything but the stream bodies (``streams.py`` hands
those connections to the frame broker). Every request passes the guard first: only the hub's own
Host names (DNS rebinding), credentials when auth is on (view tokens for media paths), and JSON
errors for everything that goes wrong. The server bounds request heads and bodies, closes
connections that never complete a request head (slowloris), and counts malformed requests.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from camhub.hub.cluster.credentials import ClusterKey
from camhub.hub.http import api, diagnostics, recordings, streams
from camhub.hub.http.auth import NO_CREDENTIALS, THROTTLED, Auth
from camhub.hub.http.clients import CLIENT, HUB_CALLER, Clients
from camhub.hub.http.hostcheck import HostCheck
from camhub.hub.http.metrics import HubCollector
from camhub.hub.http.metrics import add_routes as add_metrics
from camhub.hub.http.redirect import REDIRECT, StreamRedirect
from camhub.hub.http.responses import error
from camhub.hub.http.services import SERVICES, HttpServices
from camhub.hub.util.counters import Family
from camhub.hub.util.ratelimit import LogLimiter
from camhub.resources import shipped

log = logging.getLogger(__name__)

WEB_DIR = shipped("web")
STATIC_HEADERS = {"Cache-Control": "no-cache"}
REQUEST_HEAD_TIMEOUT_S = 10.0  # a connection must send a whole request head within this
IDLE_KEEPALIVE_S = 15.0  # an idle keep-alive connection is closed after this
MAX_BODY = 64 * 1024
MAX_LINE = 8190


@dataclass(frozen=True)
class HttpSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    auth_required: bool = False
    user: str = "admin"
    password: str | None = field(default=None, repr=False)
    token_key: bytes = field(default=b"", repr=False)  # view tokens' HMAC key (auth.load_key)
    allowed_hosts: str = ""  # Host names besides the hub's own (hostcheck.py)
    limits: streams.ViewerLimits = streams.ViewerLimits()
    write_timeout_s: float = 10.0  # a playback viewer that takes nothing for this long is gone
    trusted_proxies: str = ""  # whose X-Forwarded-For is believed (clients.py)
    cluster: ClusterKey | None = field(default=None, repr=False)  # in a cluster: credentials of the other hubs


class RequestDeadline:
    """Closes connections that never complete a request head (slowloris), which aiohttp allows.

    The guard marks each connection that got a request through; a sweep closes the ones that have
    been open longer than the deadline without one. Only public aiohttp API is used.
    """

    def __init__(self, timeout: float = REQUEST_HEAD_TIMEOUT_S) -> None:
        self.timeout = timeout
        self.log = LogLimiter(log)
        self.closed = 0
        # keyed by id(): aiohttp's handlers take no weak references; entries die with the sweep
        self._served: set[int] = set()
        self._first_seen: dict[int, float] = {}

    def sizes(self) -> dict[str, int]:
        return {"deadline_served": len(self._served), "deadline_watched": len(self._first_seen)}

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
            # the reason only (its first line: "Invalid header token:"), not the request's bytes aiohttp quotes
            reason = (str(exc.message or "").strip().splitlines() or ["?"])[0].rstrip(":")[:200]
            level, msg, args = logging.DEBUG, "malformed request (%d): %s", (exc.code, reason)
            kwargs["exc_info"] = None
        super().log(level, msg, *args, **kwargs)


class Guard:
    """The middleware: Host names, credentials, and JSON errors for everything that goes wrong."""

    def __init__(self, auth: Auth, hosts: HostCheck, deadline: RequestDeadline, clients: Clients) -> None:
        self.auth = auth
        self.hosts = hosts
        self.clients = clients
        self.deadline = deadline
        self.warnings = LogLimiter(log)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.deadline.served(request.protocol)
        request[CLIENT] = self.clients.address(request)
        caller = self.auth.hub_caller(request.headers.get("Authorization"))
        if caller is not None:
            request[HUB_CALLER] = caller
        if request.path != "/healthz":
            if not self._host_allowed(request):
                return error(421, "this hub does not answer to that Host name (add it to CAMHUB_ALLOWED_HOSTS)")
            refused = self._credentials(request)
            if refused is not None:
                return refused
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except web.HTTPException as exc:
            if exc.status >= 400 and exc.content_type != "application/json":
                return error(exc.status, exc.reason)
            raise

    def _host_allowed(self, request: web.Request) -> bool:
        """DNS rebinding: only the hub's own names (hostcheck.py); refusals counted and logged (rate-limited)."""
        host = request.headers.get("Host")
        sockname = request.transport.get_extra_info("sockname") if request.transport is not None else None
        if self.hosts.allowed(host, sockname[0] if sockname else None):
            return True
        self.warnings.warning("host-refused", "refused a request for Host %r from %s (not one of the hub's names)",
                               (host or "")[:80], request[CLIENT])
        return False

    def _credentials(self, request: web.Request) -> web.Response | None:
        camera_id = request.match_info.get("camera_id") if request.match_info.get("media") else None
        client = request[CLIENT]
        refused = self.auth.check(request.headers.get("Authorization"), camera_id, request.query.get("token"), client)
        if refused == THROTTLED:
            self.warnings.warning(f"auth-throttled:{client}", "too many failed logins from %s; refusing it for a "
                                   "while", client)
            return web.Response(status=429, text="too many failed attempts; try again later\n",
                                headers={"Retry-After": str(self.auth.throttle.retry_after(client))})
        if refused is not None:
            if refused != NO_CREDENTIALS:
                self.warnings.warning("auth-failed", "failed login from %s (%s)", client, refused)
            return web.Response(status=401, text="credentials required\n",
                                headers={"WWW-Authenticate": 'Basic realm="camhub", charset="UTF-8"'})
        return None


async def index(request: web.Request) -> web.StreamResponse:
    page = WEB_DIR / "index.html"
    if not page.is_file():
        return web.Response(text="camhub hub is running; the dashboard files (web/) are missing.\n")
    return web.FileResponse(page, headers=STATIC_HEADERS)


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


class HttpServer:
    """The app (``app``, also for in-process tests) and, once started, the server serving it."""

    def __init__(self, settings: HttpSettings, services: HttpServices) -> None:
        self.settings = settings
        self.auth = Auth(settings.auth_required, settings.user, settings.password, settings.token_key, settings.cluster)
        self.clients = Clients(settings.trusted_proxies)
        self.hosts = HostCheck(settings.host, settings.allowed_hosts)
        self.deadline = RequestDeadline()
        self.http_log = HttpLog()
        self.gate = streams.StreamGate(settings.limits)
        self.playbacks = recordings.Playbacks(write_timeout_s=settings.write_timeout_s)
        self.app = self._build(services)
        self._runner: web.AppRunner | None = None

    def _build(self, services: HttpServices) -> web.Application:
        # client_max_size bounds request bodies; the parser bounds request lines and header fields.
        guard = self.guard = Guard(self.auth, self.hosts, self.deadline, self.clients)
        app = web.Application(middlewares=[guard.middleware], client_max_size=MAX_BODY,
                              handler_args={"max_line_size": MAX_LINE, "max_field_size": MAX_LINE,
                                            "keepalive_timeout": IDLE_KEEPALIVE_S})
        app[SERVICES] = services
        app.router.add_get("/", index)
        app.router.add_get("/healthz", healthz)
        api.add_routes(app, api.Health(self.auth, self.hosts, [self]))
        streams.add_routes(app, self.gate)
        if services.cluster is not None and services.cluster.redirects is not None:
            app[REDIRECT] = StreamRedirect(self.auth, services.cluster.redirects)
        recordings.add_routes(app, self.playbacks)
        diagnostics.add_routes(app)
        add_metrics(app, HubCollector(services.cameras, [*services.counted, self]))
        if WEB_DIR.is_dir():
            app.router.add_static("/static/", WEB_DIR, append_version=False)
        return app

    def counters(self) -> Iterable[Family]:
        yield from self.auth.counters()
        yield from self.gate.counters()
        yield Family("camhub_http_requests_malformed", "Requests the HTTP parser refused", "kind",
                     {"malformed": self.http_log.malformed})
        yield Family("camhub_http_requests_refused", "Requests refused before any handler", "reason",
                     {"host": self.hosts.refused, "request_timeout": self.deadline.closed})
        yield Family("camhub_http_forwarded_ignored", "X-Forwarded-For headers ignored: not from a trusted proxy", "",
                     {"": self.clients.ignored})

    def sizes(self) -> dict[str, int]:
        server = self._runner.server if self._runner is not None else None
        gate = self.gate.sizes()
        return {"connections": len(server.connections) if server is not None else 0, **self.deadline.sizes(),
                "auth_throttle": len(self.auth.throttle), "playbacks": self.playbacks.playing,
                "refusal_reasons": gate["refusal_reasons"] + len(self.auth.failures),
                "log_keys": gate["log_keys"] + len(self.deadline.log) + len(self.guard.warnings)}

    async def start(self) -> None:
        runner = self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=2.0, logger=self.http_log)
        await runner.setup()
        site = web.TCPSite(runner, self.settings.host, self.settings.port, backlog=1024, reuse_address=True)
        await site.start()

    async def enforce_request_deadline(self) -> None:
        """Run until cancelled (once started): closes connections that never send a whole request head."""
        assert self._runner is not None and self._runner.server is not None
        await self.deadline.sweep(self._runner.server)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
