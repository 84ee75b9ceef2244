"""Redirect mode's HTTP side: a viewer's ``/cameras/<id>/stream`` answered with a 307 to an edge.

With ``CAMHUB_STREAM_REDIRECT = "edges"`` a hub sends each viewer of a live stream, once the guard let
the request in (its login, or a view token), to the edge ``cluster.redirect`` chooses, so the viewer
connects to that edge directly. The Location is the edge's own URL from its membership info (checked
against ``CAMHUB_ALLOWED_SOURCES`` when it arrived), the camera's path, ``fps`` if asked, and an
expiring view token for that camera (``auth.REDIRECT_TOKEN_S``): a browser drops its Authorization
header on a redirect to another origin, and a password never goes into a URL.

Never redirected, so a redirect can never loop: a request that carries an expiring view token (it was
redirected already: the hub it reached serves it), and another hub's pull (cluster credential). No
live edge, or this hub chosen: served here, as without this mode.
"""

from __future__ import annotations

from urllib.parse import urlencode

from aiohttp import web

from camhub.hub.cluster.redirect import EdgeChooser
from camhub.hub.core.camera import Camera
from camhub.hub.http.auth import Auth
from camhub.hub.http.clients import hub_caller


class StreamRedirect:
    def __init__(self, auth: Auth, chooser: EdgeChooser) -> None:
        self.auth = auth
        self.chooser = chooser

    def answer(self, request: web.Request, camera: Camera, max_fps: float) -> web.Response | None:
        """A 307 to the chosen edge, or None: serve the viewer here."""
        if hub_caller(request) is not None:
            return None  # another hub's pull: it comes for this hub's own copy
        if self.auth.is_expiring(request.query.get("token")):
            self.chooser.keep("redirected")
            return None
        edge = self.chooser.choose(camera.id)
        if edge is None or edge.url is None:
            return None
        query = {"token": self.auth.expiring_token(camera.id), **({"fps": f"{max_fps:g}"} if max_fps else {})}
        location = f"{edge.url}/cameras/{camera.id}/stream?{urlencode(query)}"
        return web.Response(status=307, headers={"Location": location, "Cache-Control": "no-store"},
                            text=f"this camera is served by hub {edge.id}\n")


REDIRECT = web.AppKey("stream_redirect", StreamRedirect)
