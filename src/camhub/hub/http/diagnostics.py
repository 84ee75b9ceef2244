"""``/api/hub/diagnostics`` (``CAMHUB_DIAGNOSTICS``, off by default): what a long-running hub holds.

``GET`` answers each part's structure sizes, the process's memory, descriptors, threads and tasks
(``util.diagnostics``); with tracing on (``tracemalloc``) also the places whose memory grew most since
the baseline (``?top=``, 25, 0 for none; ``?key=lineno|filename|traceback``). ``POST /api/hub/diagnostics/baseline``
takes a new baseline. Behind the same credentials as the rest of the API; 404 while off.
"""

from __future__ import annotations

from aiohttp import web

from camhub.hub.http.responses import cross_origin, error, json_response, query_number
from camhub.hub.http.services import services
from camhub.hub.util.diagnostics import Diagnostics

KEYS = ("lineno", "filename", "traceback")
OFF = "diagnostics are off: set CAMHUB_DIAGNOSTICS = \"on\" (or \"tracemalloc\") and restart the hub"


def _diagnostics(request: web.Request) -> Diagnostics | web.Response:
    found = services(request).diagnostics
    return found if found is not None else error(404, OFF)


async def report(request: web.Request) -> web.Response:
    found = _diagnostics(request)
    if isinstance(found, web.Response):
        return found
    top = int(query_number(request, "top", 25, 0, 500) or 0)
    key = request.query.get("key", "lineno")
    if key not in KEYS:
        return error(400, f"key must be one of {', '.join(KEYS)}")
    return json_response(await found.report(top=top, key=key))


async def baseline(request: web.Request) -> web.Response:
    found = _diagnostics(request)
    if isinstance(found, web.Response):
        return found
    if cross_origin(request):
        return error(403, "cross-origin requests may not take a baseline")
    if found.tracer is None:
        return error(409, "tracemalloc is off: set CAMHUB_DIAGNOSTICS = \"tracemalloc\" and restart the hub")
    return json_response(await found.report(baseline=True, top=0))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/hub/diagnostics", report)
    app.router.add_post("/api/hub/diagnostics/baseline", baseline)
