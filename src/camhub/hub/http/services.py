"""What the HTTP side gets from the composition root: exactly the services it uses, typed.

The handlers reach them as ``services(request)`` (an aiohttp ``AppKey``), never through a hub object.
A capability that adds a field to the camera summary or to ``/api/hub`` registers an extra here
(``summary_extras``, ``detail_extras``, ``hub_extras``) instead of changing the views; one whose
counters belong in ``/metrics`` and ``/api/hub`` is added to ``counted``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from camhub.hub.cluster.role import ClusterRole
from camhub.hub.core.camera import Camera
from camhub.hub.core.events import Changes
from camhub.hub.core.identity import HubIdentity
from camhub.hub.core.options import CameraOptions
from camhub.hub.core.registry import Cameras
from camhub.hub.ingest.control import NodeControl
from camhub.hub.taps.motion import Motion
from camhub.hub.taps.recordings import Recordings
from camhub.hub.util.counters import Counted
from camhub.hub.util.diagnostics import Diagnostics

CameraExtra = Callable[[Camera], Mapping[str, Any]]
HubExtra = Callable[[], Mapping[str, Any]]


@dataclass(frozen=True)
class HttpServices:
    identity: HubIdentity
    cameras: Cameras
    warm: Callable[[Camera], None]  # a snapshot was asked for: keep (or get) the camera's pull running
    options: CameraOptions
    control: NodeControl
    motion: Motion
    recordings: Recordings
    changes: Changes
    counted: Sequence[Counted] = ()  # every part with counters: /metrics and /api/hub show them
    summary_extras: Sequence[CameraExtra] = ()  # fields a camera's summary gets besides its own
    detail_extras: Sequence[CameraExtra] = ()  # and its detail
    hub_extras: Sequence[HubExtra] = field(default=())  # fields /api/hub gets besides the HTTP side's own
    cluster: ClusterRole | None = None  # in a cluster: who owns what, and the other hubs
    diagnostics: Diagnostics | None = None  # /api/hub/diagnostics (CAMHUB_DIAGNOSTICS); None: off


SERVICES = web.AppKey("services", HttpServices)


def services(request: web.Request) -> HttpServices:
    return request.app[SERVICES]
