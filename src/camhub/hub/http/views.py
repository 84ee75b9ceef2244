"""What the API and the dashboard show: a camera's summary and detail, and the hub's health.

A camera's own fields come from ``Camera``; what other parts add (motion, recording, controls, ...)
comes from the extras the composition root registered, in order.
"""

from __future__ import annotations

import time
from typing import Any

from camhub.hub.core.camera import Camera
from camhub.hub.http.auth import Auth
from camhub.hub.http.hostcheck import HostCheck
from camhub.hub.http.services import HttpServices
from camhub.hub.util.counters import Counted


def summary(services: HttpServices, camera: Camera, now: float) -> dict[str, Any]:
    data = camera.summary(now)
    for extra in services.summary_extras:
        data.update(extra(camera))
    return data


def summaries(services: HttpServices) -> list[dict[str, Any]]:
    now = time.monotonic()
    return [summary(services, camera, now) for camera in services.cameras.sorted()]


def detail(services: HttpServices, camera: Camera, now: float) -> dict[str, Any]:
    data = camera.detail(now)
    for extra in (*services.summary_extras, *services.detail_extras):
        data.update(extra(camera))
    return data


def hub_counters(parts: list[Counted]) -> dict[str, dict[str, float]]:
    """Every hub-wide counter (per-camera ones are in the cameras' own views), by metric and label value."""
    return {f.name: dict(f.values) for part in parts for f in part.counters()
            if f.kind == "counter" and f.label != "camera"}


def health(services: HttpServices, auth: Auth, hosts: HostCheck, http_counted: list[Counted]) -> dict[str, Any]:
    cameras = services.cameras
    data: dict[str, Any] = {
        "version": services.identity.version,
        "time": round(time.time(), 3),
        "uptime_s": round(services.identity.uptime_s(), 1),
        "cameras_total": len(cameras),
        "cameras_online": cameras.online(),
        "viewers": cameras.broker.viewer_count,
        "auth": auth.required,
        "auth_failures": dict(auth.failures),
        "hosts_refused": hosts.refused,
    }
    for extra in services.hub_extras:
        data.update(extra())
    data["counters"] = hub_counters([*services.counted, *http_counted])
    return data
