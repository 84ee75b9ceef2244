"""Several hubs as a cluster, for the tests: their settings, and what a user reads of them.

The readers take a ``get_json(url)`` (``waiting.get_json`` on loopback; the test bed's own, which
reaches into a namespace, there) so that loopback tests and the network-namespace scenarios read the
cluster the same way: who owns each camera, which hubs pull a board, and the hubs' metrics.
"""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any

SECRET = "test-cluster-secret-0123456789abcdef"
HUB_AGENT = re.compile(r"^camhub-hub/\S+ \(\+([0-9a-zA-Z]+)\)")

GetJson = Callable[[str], Any]


def cluster_env(role: str, hub_id: str, **extra: str) -> dict[str, str]:
    """A hub's environment for ``role`` (origin or edge) as ``hub_id`` in the test cluster."""
    return {"CAMHUB_ROLE": role, "CAMHUB_HUB_ID": hub_id, "CAMHUB_CLUSTER_SECRET": SECRET, **extra}


def owners(get_json: GetJson, hub_urls: Iterable[str]) -> dict[str, list[str]]:
    """``{camera: [hubs that say they own it]}`` over every camera any of the hubs lists."""
    found: dict[str, list[str]] = {}
    for url in hub_urls:
        hub_id = get_json(url + "/api/hub")["cluster"]["hub_id"]
        for camera in get_json(url + "/api/cameras"):
            found.setdefault(camera["id"], [])
            if camera.get("owned"):
                found[camera["id"]].append(hub_id)
    return found


def owned_once(get_json: GetJson, hub_urls: Iterable[str], cameras: Iterable[str]) -> dict[str, str] | None:
    """``{camera: owner}`` when each of ``cameras`` is owned by exactly one of the hubs, else None."""
    found = owners(get_json, hub_urls)
    if not all(len(found.get(c, [])) == 1 for c in cameras):
        return None
    return {c: found[c][0] for c in cameras}


def hub_pullers(status: dict[str, Any]) -> list[str]:
    """The instances of the hubs a board's ``/status`` lists among its stream clients."""
    return [m.group(1) for v in status.get("viewers", []) if (m := HUB_AGENT.match(v.get("user_agent") or ""))]


def instance(get_json: GetJson, hub_url: str) -> str:
    return get_json(hub_url + "/api/hub")["cluster"]["instance"]


def metrics(hub_url: str, fetch: Callable[[str], bytes] | None = None) -> dict[str, float]:
    """``/metrics`` as ``{'name{labels}': value}``."""
    if fetch is None:
        with urllib.request.urlopen(hub_url + "/metrics", timeout=5) as resp:
            text = resp.read().decode()
    else:
        text = fetch(hub_url + "/metrics").decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line and not line.startswith("#")}
